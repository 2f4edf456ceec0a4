-- Claiming walks due deliveries in order and stops at the batch size: an
-- index in exactly the claim's order (next_attempt_at, seq) lets it, where
-- the old one made every claim read, check and sort the whole backlog.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, seq) WHERE state = 'pending';

-- A disabled endpoint's backlog is 'paused': out of that index, so a large
-- backlog of a dead endpoint costs the claim nothing. Enabling the endpoint
-- makes it 'pending' again.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_state_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_state_check
    CHECK (state IN ('pending', 'paused', 'succeeded', 'failed'));
UPDATE webhook_deliveries d SET state = 'paused', lease_until = NULL
  FROM webhook_endpoints w
 WHERE w.id = d.endpoint_id AND NOT w.enabled AND d.state = 'pending';
