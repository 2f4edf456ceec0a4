-- The row-level append-only trigger does not fire on TRUNCATE, which would
-- empty the audit log in one statement. Refuse it at statement level; the
-- chain's tables go with it (emptying audit_heads or audit_checkpoints would
-- hide removals from verify). Retention deletes row by row and is unaffected.
-- Statement triggers, like row triggers, bind the application, not a
-- superuser or the table owner, who can drop or disable them (verify then
-- still names records that were altered or removed).
CREATE FUNCTION audit_no_truncate() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: TRUNCATE is refused', TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();
CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_no_truncate();
