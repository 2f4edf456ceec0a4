//! One vocabulary of action names, shared by the audit log (and the
//! webhooks that will fan out the same events). The names are API.

pub const AUTH_LOGIN: &str = "auth.login";
pub const AUTH_LOGIN_FAILED: &str = "auth.login_failed";
pub const AUTH_LOGOUT: &str = "auth.logout";
pub const USER_CREATE: &str = "user.create";
pub const USER_UPDATE: &str = "user.update";
pub const USER_PREFERENCES_UPDATE: &str = "user.preferences.update";
pub const ORG_CREATE: &str = "org.create";
pub const INSTANCE_CREATE: &str = "instance.create";
pub const INSTANCE_START: &str = "instance.start";
pub const INSTANCE_STOP: &str = "instance.stop";
pub const INSTANCE_DESTROY: &str = "instance.destroy";
pub const BILLING_UPDATE: &str = "billing.update";
pub const BILLING_CREDIT: &str = "billing.credit";
pub const TEAM_CREATE: &str = "team.create";
pub const TEAM_UPDATE: &str = "team.update";
pub const TEAM_DELETE: &str = "team.delete";
pub const TEAM_MEMBER_ADD: &str = "team.member.add";
pub const TEAM_MEMBER_UPDATE: &str = "team.member.update";
pub const TEAM_MEMBER_REMOVE: &str = "team.member.remove";
pub const ROLE_CREATE: &str = "role.create";
pub const ROLE_UPDATE: &str = "role.update";
pub const ROLE_DELETE: &str = "role.delete";
pub const API_KEY_CREATE: &str = "api_key.create";
pub const API_KEY_REVOKE: &str = "api_key.revoke";
pub const INSTANCE_FAILED: &str = "instance.failed";
pub const FAILOVER_STARTED: &str = "failover.started";
pub const FAILOVER_COMPLETED: &str = "failover.completed";
pub const SNAPSHOT_CREATED: &str = "snapshot.created";

/// Events the platform reports on the internal listener, with the type of
/// resource each is about.
pub const PLATFORM_EVENTS: [(&str, &str); 4] = [
    (INSTANCE_FAILED, "instance"),
    (FAILOVER_STARTED, "instance"),
    (FAILOVER_COMPLETED, "instance"),
    (SNAPSHOT_CREATED, "snapshot"),
];

/// The catalogue's (name, resource type) for a platform event name.
pub fn platform_event(name: &str) -> Option<(&'static str, &'static str)> {
    PLATFORM_EVENTS.iter().copied().find(|(n, _)| *n == name)
}

/// Webhook event names (the seed's catalogue). Subscribing to `*` means all.
pub const WEBHOOK_EVENTS: [&str; 8] = [
    "instance.created",
    "instance.started",
    "instance.stopped",
    "instance.failed",
    "failover.started",
    "failover.completed",
    "snapshot.created",
    "billing.low_balance",
];
/// Sent only by POST /api/v1/webhooks/{id}/test.
pub const WEBHOOK_PING: &str = "webhook.ping";

pub const WEBHOOK_CREATE: &str = "webhook.create";
pub const WEBHOOK_UPDATE: &str = "webhook.update";
pub const WEBHOOK_DELETE: &str = "webhook.delete";
pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
pub const WEBHOOK_ROTATE_SECRET: &str = "webhook.rotate_secret";

/// The webhook event an audited action fans out as, if any.
pub fn webhook_event_for(action: &str) -> Option<&'static str> {
    match action {
        INSTANCE_CREATE => Some("instance.created"),
        INSTANCE_START => Some("instance.started"),
        INSTANCE_STOP => Some("instance.stopped"),
        INSTANCE_FAILED => Some("instance.failed"),
        FAILOVER_STARTED => Some("failover.started"),
        FAILOVER_COMPLETED => Some("failover.completed"),
        SNAPSHOT_CREATED => Some("snapshot.created"),
        _ => None,
    }
}

pub const RESERVATION_CREATE: &str = "reservation.create";
pub const RESERVATION_CANCEL: &str = "reservation.cancel";
pub const BILLING_CHARGE: &str = "billing.charge";
pub const BILLING_REFUND: &str = "billing.refund";
