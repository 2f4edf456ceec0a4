-- Multi-currency: each user's display currency, and the history of the
-- exchange rates the server has used.

ALTER TABLE users ADD COLUMN currency text NOT NULL DEFAULT 'USD'
    CHECK (currency ~ '^[A-Z]{3}$');

-- One row per successful fetch, not one per (date, currency): a snapshot is
-- published, distributed and replaced as a whole, so storing it as one row
-- makes "the latest rates" a single-row read, lets replicas detect a new one
-- by its id alone, and keeps every fetch's provenance (which providers, when).
-- History by date is a lookup on as_of. `rates` maps each ISO 4217 code to
-- its units per 1 USD as a decimal string (never a JSON number, which
-- readers may turn into a float).
CREATE TABLE exchange_rate_snapshots (
    id          bigserial PRIMARY KEY,
    as_of       date NOT NULL,
    fetched_at  timestamptz NOT NULL,
    providers   text NOT NULL,
    rates       jsonb NOT NULL CHECK (jsonb_typeof(rates) = 'object')
);
CREATE INDEX exchange_rate_snapshots_as_of ON exchange_rate_snapshots (as_of);
