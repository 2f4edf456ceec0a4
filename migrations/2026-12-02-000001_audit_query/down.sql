DROP TABLE audit_checkpoints;
DROP INDEX audit_logs_org_seq;
DROP INDEX audit_logs_org_action_time;
ALTER TABLE audit_logs ALTER COLUMN action TYPE text COLLATE "default";
CREATE INDEX audit_logs_org_action_time ON audit_logs (org_id, action, occurred_at DESC);
