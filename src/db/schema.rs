// @generated-style: mirrors migrations/. Keep in step with them.

diesel::table! {
    orgs (id) {
        id -> Uuid,
        name -> Text,
        authz_version -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    roles (id) {
        id -> Uuid,
        org_id -> Nullable<Uuid>,
        name -> Text,
        description -> Text,
        permissions -> Array<Text>,
        builtin -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        org_id -> Uuid,
        email -> Text,
        name -> Text,
        password_hash -> Nullable<Text>,
        org_role_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        currency -> Text,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        org_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Uuid,
        created_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    teams (id) {
        id -> Uuid,
        org_id -> Uuid,
        name -> Text,
        description -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    team_members (team_id, user_id) {
        team_id -> Uuid,
        user_id -> Uuid,
        role_id -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        org_id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        scopes -> Array<Text>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    instances (id) {
        id -> Uuid,
        org_id -> Uuid,
        team_id -> Uuid,
        name -> Text,
        gpu_type -> Text,
        gpu_count -> Int4,
        state -> Text,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        // Generated (team_id while not destroyed, else NULL); the team key
        // is on it. Never written.
        live_team_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    billing_accounts (org_id) {
        org_id -> Uuid,
        balance -> Numeric,
        low_balance_threshold -> Numeric,
        currency -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    audit_heads (org_id) {
        org_id -> Uuid,
        seq -> Int8,
        hash -> Bytea,
    }
}

diesel::table! {
    audit_logs (id) {
        id -> Uuid,
        org_id -> Uuid,
        seq -> Int8,
        occurred_at -> Timestamptz,
        user_id -> Nullable<Uuid>,
        user_email -> Nullable<Text>,
        action -> Text,
        resource_type -> Text,
        resource_id -> Nullable<Text>,
        ip_address -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        metadata -> Jsonb,
        prev_hash -> Bytea,
        hash -> Bytea,
    }
}

diesel::table! {
    audit_checkpoints (org_id) {
        org_id -> Uuid,
        seq -> Int8,
        hash -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    exchange_rate_snapshots (id) {
        id -> Int8,
        as_of -> Date,
        fetched_at -> Timestamptz,
        providers -> Text,
        rates -> Jsonb,
        rate_dates -> Jsonb,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        org_id -> Uuid,
        url -> Text,
        events -> Array<Text>,
        secret_enc -> Bytea,
        previous_secret_enc -> Nullable<Bytea>,
        previous_expires_at -> Nullable<Timestamptz>,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        failing_since -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Uuid,
        org_id -> Uuid,
        #[sql_name = "type"]
        kind -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        event_id -> Uuid,
        endpoint_id -> Uuid,
        org_id -> Uuid,
        ordering_key -> Text,
        seq -> Int8,
        state -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        lease_until -> Nullable<Timestamptz>,
        last_status -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Uuid,
        delivery_id -> Uuid,
        attempted_at -> Timestamptz,
        status_code -> Nullable<Int4>,
        latency_ms -> Int4,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    gpu_types (gpu_type) {
        gpu_type -> Text,
        total_capacity -> Int4,
        hourly_price_usd -> Numeric,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    reservations (id) {
        id -> Uuid,
        org_id -> Uuid,
        team_id -> Nullable<Uuid>,
        gpu_type -> Text,
        quantity -> Int4,
        start_date -> Date,
        end_date -> Date,
        state -> Text,
        price_usd -> Numeric,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        cancelled_at -> Nullable<Timestamptz>,
        // Generated (team_id while scheduled or active, else NULL); the team
        // key is on it. Never written.
        live_team_id -> Nullable<Uuid>,
    }
}

diesel::joinable!(webhook_deliveries -> webhook_events (event_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(users -> orgs (org_id));
diesel::joinable!(team_members -> teams (team_id));
diesel::joinable!(team_members -> users (user_id));
diesel::joinable!(team_members -> roles (role_id));
diesel::joinable!(instances -> teams (team_id));

diesel::allow_tables_to_appear_in_same_query!(
    orgs,
    roles,
    users,
    sessions,
    refresh_tokens,
    teams,
    team_members,
    api_keys,
    instances,
    billing_accounts,
    audit_heads,
    audit_logs,
    audit_checkpoints,
    webhook_endpoints,
    webhook_events,
    webhook_deliveries,
    webhook_attempts,
    gpu_types,
    reservations,
    exchange_rate_snapshots,
);
