-- GPU capacity and reservations. Capacity is enforced by locking the GPU
-- type's row for the length of a booking (see src/reservations/capacity.rs).

CREATE TABLE gpu_types (
    gpu_type         text PRIMARY KEY CHECK (gpu_type ~ '^[A-Za-z0-9_-]{1,64}$'),
    total_capacity   integer NOT NULL CHECK (total_capacity >= 0),
    hourly_price_usd numeric(12, 4) NOT NULL CHECK (hourly_price_usd >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reservations (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    team_id      uuid REFERENCES teams (id) ON DELETE RESTRICT,
    gpu_type     text NOT NULL REFERENCES gpu_types (gpu_type),
    quantity     integer NOT NULL CHECK (quantity > 0),
    -- Whole UTC days, both inclusive.
    start_date   date NOT NULL,
    end_date     date NOT NULL CHECK (end_date >= start_date),
    state        text NOT NULL CHECK (state IN ('scheduled', 'active', 'completed', 'cancelled')),
    price_usd    numeric(24, 6) NOT NULL,
    created_by   uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL,
    cancelled_at timestamptz
);
CREATE INDEX reservations_in_force ON reservations (gpu_type, start_date, end_date) WHERE state IN ('scheduled', 'active');
CREATE INDEX reservations_org ON reservations (org_id, created_at DESC);
