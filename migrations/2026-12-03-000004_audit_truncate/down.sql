DROP TRIGGER audit_checkpoints_no_truncate ON audit_checkpoints;
DROP TRIGGER audit_heads_no_truncate ON audit_heads;
DROP TRIGGER audit_logs_no_truncate ON audit_logs;
DROP FUNCTION audit_no_truncate();
