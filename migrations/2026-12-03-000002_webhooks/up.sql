-- Webhooks: endpoints, the transactional outbox of events, and deliveries.

CREATE TABLE webhook_endpoints (
    id                     uuid PRIMARY KEY,
    org_id                 uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    url                    text NOT NULL,
    events                 text[] NOT NULL,
    -- AES-256-GCM (key id || nonce || ciphertext); never stored in the clear.
    secret_enc             bytea NOT NULL,
    -- After a rotation the old secret keeps signing until this instant.
    previous_secret_enc    bytea,
    previous_expires_at    timestamptz,
    enabled                boolean NOT NULL DEFAULT true,
    disabled_reason        text,
    -- Start of the current run of failures (NULL while deliveries succeed).
    failing_since          timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints (org_id);

CREATE TABLE webhook_events (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    type        text NOT NULL,
    -- The exact body sent: {id, type, timestamp, org_id, data}.
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    org_id          uuid NOT NULL,
    -- Events about one resource reach an endpoint in order: a delivery waits
    -- while an older one with the same key is still pending.
    ordering_key    text NOT NULL,
    seq             bigserial,
    state           text NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, ordering_key, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);

CREATE TABLE webhook_attempts (
    id           uuid PRIMARY KEY,
    delivery_id  uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL,
    status_code  integer,
    latency_ms   integer NOT NULL,
    error        text
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempted_at);
