-- Byte-order collation on action, so that a prefix filter ("instance.*") is
-- an index range scan.
DROP INDEX audit_logs_org_action_time;
ALTER TABLE audit_logs ALTER COLUMN action TYPE text COLLATE "C";
CREATE INDEX audit_logs_org_action_time ON audit_logs (org_id, action, occurred_at DESC, seq DESC);
CREATE INDEX audit_logs_org_seq ON audit_logs (org_id, seq);

-- Where an org's chain resumes after retention removed its oldest records:
-- the seq and hash of the last removed record.
CREATE TABLE audit_checkpoints (
    org_id     uuid PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    hash       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
