DROP TABLE exchange_rate_snapshots;
ALTER TABLE users DROP COLUMN currency;
