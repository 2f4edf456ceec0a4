//! GET /api/v1/permissions/check: is it allowed, and which role grants it.

use actix_web::{HttpResponse, get, web};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::permission::{Action, PermSet, Permission, Resource};
use crate::auth::Principal;
use crate::db::schema::{roles, team_members, teams, users};
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

#[derive(Deserialize, IntoParams)]
pub struct CheckQuery {
    /// An exact permission, e.g. `instances:create`.
    pub permission: String,
    /// The team owning the resource (for team-scoped permissions).
    pub team_id: Option<Uuid>,
    /// Whom to ask about (default: the caller; others need admin:read).
    pub user_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct Grant {
    pub role: String,
    /// "org" for the org-wide role, "team" for a team role.
    pub scope: &'static str,
    pub team_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct CheckResult {
    pub allowed: bool,
    pub permission: String,
    pub user_id: Uuid,
    pub team_id: Option<Uuid>,
    /// The roles that grant it (empty when no role does).
    pub granted_by: Vec<Grant>,
    /// Present when the caller asks about themselves with an API key:
    /// whether the key's scopes let the permission through. `allowed` is
    /// then what a request made with this key would get.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_scopes_allow: Option<bool>,
}

/// Explains a permission decision for the caller (or, for admins, anyone in the org).
#[utoipa::path(tag = "roles", params(CheckQuery),
    responses((status = 200, body = CheckResult), (status = 400), (status = 403), (status = 404)),
    security(("bearer" = [])))]
#[get("/permissions/check")]
pub async fn check_permission(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<CheckQuery>,
) -> ApiResult<HttpResponse> {
    let p = Permission::parse(&q.permission).ok_or_else(|| {
        ApiError::bad_field("permission", format!("{:?} is not an exact resource:action permission", q.permission))
    })?;
    let user = q.user_id.unwrap_or(principal.user_id);
    if user != principal.user_id {
        principal.require(Permission::new(Resource::Admin, Action::Read), None)?;
    }
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    if let Some(t) = q.team_id {
        let found: i64 =
            teams::table.filter(teams::id.eq(t).and(teams::org_id.eq(org))).count().get_result(&mut conn).await?;
        if found == 0 {
            return Err(ApiError::not_found("team"));
        }
    }
    let org_role: Option<(String, Vec<String>)> = users::table
        .inner_join(roles::table.on(roles::id.nullable().eq(users::org_role_id)))
        .filter(users::id.eq(user).and(users::org_id.eq(org)))
        .select((roles::name, roles::permissions))
        .first(&mut conn)
        .await
        .optional()?;
    let exists: i64 =
        users::table.filter(users::id.eq(user).and(users::org_id.eq(org))).count().get_result(&mut conn).await?;
    if exists == 0 {
        return Err(ApiError::not_found("user"));
    }
    let team_roles: Vec<(Uuid, String, Vec<String>)> = team_members::table
        .inner_join(roles::table)
        .filter(team_members::user_id.eq(user))
        .select((team_members::team_id, roles::name, roles::permissions))
        .load(&mut conn)
        .await?;
    let mut granted_by = Vec::new();
    if let Some((name, perms)) = org_role
        && PermSet::parse_lossy(&perms).contains(p)
    {
        granted_by.push(Grant { role: name, scope: "org", team_id: None });
    }
    for (team, name, perms) in team_roles {
        // Team-scoped permissions come only from that team's role; org-wide
        // ones from a role in any team.
        let relevant = !p.resource.is_team_scoped() || q.team_id.is_none_or(|t| t == team);
        if relevant && PermSet::parse_lossy(&perms).contains(p) {
            granted_by.push(Grant { role: name, scope: "team", team_id: Some(team) });
        }
    }
    let key_scopes_allow = (user == principal.user_id
        && matches!(principal.credential, crate::auth::principal::Credential::ApiKey(_)))
    .then(|| principal.perms.allows(p, q.team_id));
    Ok(HttpResponse::Ok().json(CheckResult {
        allowed: !granted_by.is_empty() && key_scopes_allow.unwrap_or(true),
        key_scopes_allow,
        permission: p.to_string(),
        user_id: user,
        team_id: q.team_id,
        granted_by,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TeamPermissions {
    pub team_id: Uuid,
    pub permissions: Vec<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub struct MyPermissions {
    pub user_id: Uuid,
    pub org_id: Uuid,
    /// From the org-wide role: held in every team.
    pub org_wide: Vec<&'static str>,
    /// From the role held in each team.
    pub teams: Vec<TeamPermissions>,
    /// True when the request was made with an API key: the lists are then
    /// cut down to its scopes.
    pub api_key: bool,
}

/// What the caller may do, for a UI deciding which actions to offer. Served
/// from the permission cache: no database work when it is warm.
#[utoipa::path(tag = "roles", responses((status = 200, body = MyPermissions)),
    security(("bearer" = [])))]
#[get("/users/me/permissions")]
pub async fn my_permissions(principal: Principal) -> HttpResponse {
    let perms = &principal.perms;
    HttpResponse::Ok().json(MyPermissions {
        user_id: principal.user_id,
        org_id: principal.org_id,
        org_wide: perms.org_role.names(),
        teams: perms
            .teams
            .iter()
            .map(|(team_id, p)| TeamPermissions { team_id: *team_id, permissions: p.names() })
            .collect(),
        api_key: matches!(principal.credential, crate::auth::principal::Credential::ApiKey(_)),
    })
}
