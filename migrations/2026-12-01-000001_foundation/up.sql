-- Organizations, users, sessions, RBAC, API keys, the resources the role
-- matrix guards (instances, billing) and the tamper-evident audit log.

CREATE TABLE orgs (
    id            uuid PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    -- Bumped in the same transaction as any change that alters someone's
    -- permissions in the org; permission caches are keyed by it.
    authz_version bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE roles (
    id          uuid PRIMARY KEY,
    org_id      uuid REFERENCES orgs (id) ON DELETE CASCADE, -- NULL: built-in
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    permissions text[] NOT NULL,
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((org_id IS NULL) = builtin)
);
CREATE UNIQUE INDEX roles_builtin_name ON roles (name) WHERE org_id IS NULL;
CREATE UNIQUE INDEX roles_org_name ON roles (org_id, name) WHERE org_id IS NOT NULL;

-- The seed's default roles, with fixed ids the code knows (src/rbac/builtin.rs).
INSERT INTO roles (id, org_id, name, description, permissions, builtin) VALUES
 ('00000000-0000-0000-0000-00000000a001', NULL, 'admin', 'Full access to the organization',
  ARRAY['instances:*','reservations:*','billing:*','team:*','admin:*','jobs:*','finetune:*'], true),
 ('00000000-0000-0000-0000-00000000a002', NULL, 'developer', 'Runs workloads; reads billing and teams',
  ARRAY['instances:*','reservations:*','jobs:*','finetune:*','billing:read','team:read'], true),
 ('00000000-0000-0000-0000-00000000a003', NULL, 'billing', 'Manages billing; reads workloads and teams',
  ARRAY['instances:read','reservations:read','jobs:read','finetune:read','billing:*','team:read'], true),
 ('00000000-0000-0000-0000-00000000a004', NULL, 'viewer', 'Reads everything except administration',
  ARRAY['instances:read','reservations:read','jobs:read','finetune:read','billing:read','team:read'], true);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email         text NOT NULL,
    name          text NOT NULL,
    password_hash text,
    -- An org-wide role applies in every team of the org (see README, "Scope").
    org_role_id   uuid REFERENCES roles (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Login is by e-mail alone, so an address belongs to one user in the whole system.
CREATE UNIQUE INDEX users_email ON users (lower(email));
CREATE INDEX users_org ON users (org_id);

-- An org always keeps at least one org-wide admin. The org row lock serializes
-- concurrent demotions so that two of them cannot both see "one other admin left".
CREATE FUNCTION users_keep_one_admin() RETURNS trigger AS $$
DECLARE
    others integer;
BEGIN
    IF OLD.org_role_id = '00000000-0000-0000-0000-00000000a001'
       AND (TG_OP = 'DELETE' OR NEW.org_role_id IS DISTINCT FROM OLD.org_role_id) THEN
        PERFORM 1 FROM orgs WHERE id = OLD.org_id FOR UPDATE;
        SELECT count(*) INTO others FROM users
         WHERE org_id = OLD.org_id AND id <> OLD.id
           AND org_role_id = '00000000-0000-0000-0000-00000000a001';
        IF others = 0 THEN
            RAISE EXCEPTION 'last_org_admin: organization % must keep an org-wide admin', OLD.org_id;
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER users_keep_one_admin BEFORE UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_keep_one_admin();

CREATE TABLE sessions (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id     uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Refresh tokens rotate: each is used once. Presenting a used one again means
-- it leaked, and revokes the whole session.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY, -- SHA-256 of the token
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE teams (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id    uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    uuid NOT NULL REFERENCES roles (id) ON DELETE RESTRICT,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);
CREATE INDEX team_members_role ON team_members (role_id);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,           -- first characters, shown to help people tell keys apart
    key_hash     bytea NOT NULL UNIQUE,   -- SHA-256 of the whole key; the key itself is never stored
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE INDEX api_keys_org ON api_keys (org_id);

CREATE TABLE instances (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    team_id    uuid NOT NULL REFERENCES teams (id) ON DELETE RESTRICT,
    name       text NOT NULL,
    gpu_type   text NOT NULL,
    gpu_count  integer NOT NULL CHECK (gpu_count BETWEEN 1 AND 64),
    state      text NOT NULL CHECK (state IN ('running', 'stopped', 'failed', 'destroyed')),
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_org_team ON instances (org_id, team_id);

CREATE TABLE billing_accounts (
    org_id                uuid PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    balance               numeric(24, 6) NOT NULL DEFAULT 0,
    low_balance_threshold numeric(24, 6) NOT NULL DEFAULT 0 CHECK (low_balance_threshold >= 0),
    currency              text NOT NULL DEFAULT 'USD',
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- The audit log: one hash chain per org. audit_heads holds each chain's tip;
-- a writer locks it, so records of one org are chained in commit order.
CREATE TABLE audit_heads (
    org_id uuid PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    seq    bigint NOT NULL,
    hash   bytea NOT NULL
);

CREATE TABLE audit_logs (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    occurred_at   timestamptz NOT NULL,
    user_id       uuid,
    user_email    text,
    action        text NOT NULL,
    resource_type text NOT NULL,
    resource_id   text,
    ip_address    text,
    user_agent    text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    prev_hash     bytea NOT NULL,
    hash          bytea NOT NULL,
    UNIQUE (org_id, seq)
);
CREATE INDEX audit_logs_org_time ON audit_logs (org_id, occurred_at DESC, seq DESC);
CREATE INDEX audit_logs_org_action_time ON audit_logs (org_id, action, occurred_at DESC);

-- Append-only for the application: rows are never changed, and removed only
-- by retention, which sets dumont.audit_retention for its own transaction.
CREATE FUNCTION audit_logs_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('dumont.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_logs is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
