DROP TABLE reservations;
DROP TABLE gpu_types;
