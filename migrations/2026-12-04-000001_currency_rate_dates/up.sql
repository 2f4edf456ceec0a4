-- Each rate keeps its own dates: a refresh in which one provider failed (or
-- stopped publishing a currency) stores the new rates of the others and
-- keeps the old rates of the rest, which must go on aging from when they
-- were last confirmed. Maps each code in `rates` to
-- {"as_of": date, "confirmed_at": timestamptz}; a code missing here (rows
-- stored before this column) takes the row's as_of and fetched_at.
ALTER TABLE exchange_rate_snapshots
    ADD COLUMN rate_dates jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(rate_dates) = 'object');
