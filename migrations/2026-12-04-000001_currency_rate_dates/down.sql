ALTER TABLE exchange_rate_snapshots DROP COLUMN rate_dates;
