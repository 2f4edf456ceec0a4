//! /api/v1/users

use crate::json_body::Json;
use actix_web::{HttpResponse, get, patch, post, web};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use uuid::Uuid;

use super::model::{self, UserView};
use crate::audit::{self, ClientInfo};
use crate::auth::{Principal, password};
use crate::db::schema::users;
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::rbac::authorizer::bump_version;
use crate::rbac::model::{Role, find_role, lock_role_for_grant};
use crate::rbac::permission::PermSet;
use crate::startup::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(example = "dev@company.com")]
    pub email: String,
    pub name: String,
    pub password: String,
    /// Optional org-wide role (a role name), applying in every team.
    pub org_role: Option<String>,
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub name: Option<String>,
    /// A role name to make org-wide, or null to remove the org-wide role.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub org_role: Option<Option<String>>,
}

/// Creates a user in the caller's organization (org admins).
#[utoipa::path(tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 409), (status = 422)),
    security(("bearer" = ["admin:create"])))]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<CreateUser>,
) -> ApiResult<HttpResponse> {
    let email = model::normalize_email(&body.email)?;
    let name = model::check_name("name", &body.name, 200)?;
    password::check_strength(&body.password, state.settings.auth.min_password_length)?;
    let mut conn = state.conn().await?;
    let role = match &body.org_role {
        Some(r) => Some(org_role_to_grant(&mut conn, &principal, r).await?),
        None => None,
    };
    let hash = password::hash(body.password.clone()).await?;
    let now = state.clock.now();
    let org = principal.org_id;
    let (id, version) = conn
        .transaction(async |c| {
            // The grant is decided against the role as locked here.
            let role = match &role {
                Some(r) => Some(lock_org_role(c, &principal, r).await?),
                None => None,
            };
            let id = model::insert(c, org, &email, &name, Some(&hash), role.as_ref().map(|r| r.id), now).await?;
            let version = match role {
                Some(_) => Some(bump_version(c, org).await?),
                None => None,
            };
            let meta = serde_json::json!({"email": email, "org_role": role.as_ref().map(|r| &r.name)});
            audit::append(c, &principal.audit(&client, now, events::USER_CREATE, "user", id, meta)).await?;
            Ok::<_, ApiError>((id, version))
        })
        .await?;
    if let Some(v) = version {
        state.after_authz_change(org, v).await;
    }
    Ok(HttpResponse::Created().json(model::get(&mut conn, org, id).await?))
}

/// Checks that `principal` may hand out `name` as an org-wide role. This
/// refuses early; `lock_org_role` decides, inside the transaction.
async fn org_role_to_grant(
    conn: &mut diesel_async::AsyncPgConnection,
    principal: &Principal,
    name: &str,
) -> ApiResult<Role> {
    let role = find_role(conn, principal.org_id, name)
        .await?
        .ok_or_else(|| ApiError::invalid("org_role", format!("unknown role {name:?}")))?;
    check_org_grant(principal, &role)?;
    Ok(role)
}

fn check_org_grant(principal: &Principal, role: &Role) -> ApiResult<()> {
    let missing = role.perms().minus(principal.perms.grantable(None));
    if missing != PermSet::EMPTY {
        return Err(ApiError::forbidden(missing.to_strings().join(", ")));
    }
    Ok(())
}

/// `role` again, inside the transaction that assigns it: locked against a
/// concurrent edit of the role and checked as it is now, so that an edit
/// widening it cannot commit next to this assignment unchecked (see
/// `lock_role_for_grant`). A role deleted meanwhile is unknown (422).
async fn lock_org_role(c: &mut diesel_async::AsyncPgConnection, principal: &Principal, role: &Role) -> ApiResult<Role> {
    let locked = lock_role_for_grant(c, role.id)
        .await?
        .ok_or_else(|| ApiError::invalid("org_role", format!("unknown role {:?}", role.name)))?;
    check_org_grant(principal, &locked)?;
    Ok(locked)
}

/// Lists the users of the caller's organization.
#[utoipa::path(tag = "users", responses((status = 200, body = [UserView])),
    security(("bearer" = ["team:read"])))]
#[get("/users")]
pub async fn list_users(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(model::list(&mut conn, principal.org_id, None).await?))
}

/// The caller.
#[utoipa::path(tag = "users", responses((status = 200, body = UserView)),
    security(("bearer" = [])))]
#[get("/users/me")]
pub async fn me(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(model::get(&mut conn, principal.org_id, principal.user_id).await?))
}

/// One user of the caller's organization.
#[utoipa::path(tag = "users", params(("id" = Uuid, Path)),
    responses((status = 200, body = UserView), (status = 404)),
    security(("bearer" = ["team:read"])))]
#[get("/users/{id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(model::get(&mut conn, principal.org_id, *id).await?))
}

/// Renames a user or changes their org-wide role. Removing or demoting the
/// last org-wide admin is refused with 409.
#[utoipa::path(tag = "users", params(("id" = Uuid, Path)), request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = ["admin:update"])))]
#[patch("/users/{id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
    body: Json<UpdateUser>,
) -> ApiResult<HttpResponse> {
    let id = *id;
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let before = model::get(&mut conn, org, id).await?;
    let name = body.name.as_deref().map(|n| model::check_name("name", n, 200)).transpose()?;
    let new_role = match &body.org_role {
        Some(Some(r)) => Some(Some(org_role_to_grant(&mut conn, &principal, r).await?)),
        Some(None) => Some(None),
        None => None,
    };
    // Taking away a role is handing out nothing, but only someone who could
    // grant that role may take it away.
    if new_role.is_some()
        && let Some(old) = &before.org_role
    {
        org_role_to_grant(&mut conn, &principal, old).await?;
    }
    let now = state.clock.now();
    let version = conn
        .transaction(async |c| {
            // The grant is decided against the role as locked here.
            let new_role = match &new_role {
                Some(Some(r)) => Some(Some(lock_org_role(c, &principal, r).await?)),
                other => other.clone(),
            };
            if let Some(n) = &name {
                diesel::update(users::table.find(id))
                    .set((users::name.eq(n), users::updated_at.eq(now)))
                    .execute(c)
                    .await?;
            }
            let mut version = None;
            if let Some(role) = &new_role {
                diesel::update(users::table.find(id))
                    .set((users::org_role_id.eq(role.as_ref().map(|r| r.id)), users::updated_at.eq(now)))
                    .execute(c)
                    .await?;
                version = Some(bump_version(c, org).await?);
            }
            let meta = serde_json::json!({
                "before": {"name": before.name, "org_role": before.org_role},
                "after": {
                    "name": name.as_ref().unwrap_or(&before.name),
                    "org_role": match &new_role { Some(r) => r.as_ref().map(|r| r.name.clone()), None => before.org_role.clone() },
                },
            });
            audit::append(c, &principal.audit(&client, now, events::USER_UPDATE, "user", id, meta)).await?;
            Ok::<_, ApiError>(version)
        })
        .await?;
    if let Some(v) = version {
        state.after_authz_change(org, v).await;
    }
    Ok(HttpResponse::Ok().json(model::get(&mut conn, org, id).await?))
}
