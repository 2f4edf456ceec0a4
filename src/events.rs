//! One vocabulary of action names, shared by the audit log (and the
//! webhooks that will fan out the same events). The names are API.

pub const AUTH_LOGIN: &str = "auth.login";
pub const AUTH_LOGIN_FAILED: &str = "auth.login_failed";
pub const AUTH_LOGOUT: &str = "auth.logout";
pub const USER_CREATE: &str = "user.create";
pub const USER_UPDATE: &str = "user.update";
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
