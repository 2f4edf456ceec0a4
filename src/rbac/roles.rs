//! /api/v1/roles: the default roles and the org's custom roles.

use crate::json_body::Json;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::authorizer::bump_version;
use super::builtin::is_builtin_name;
use super::model::{Role, find_role};
use super::permission::PermSet;
use crate::audit::{self, ClientInfo};
use crate::auth::Principal;
use crate::db::schema::{roles, team_members, users};
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::startup::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    #[schema(example = "ml_engineer")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[schema(example = json!(["instances:*", "jobs:*", "finetune:*"]))]
    pub permissions: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<Vec<String>>,
}

fn check_role_name(name: &str) -> ApiResult<String> {
    let ok = (2..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        return Err(ApiError::invalid(
            "name",
            "2-64 characters: lowercase letters, digits, '_' or '-', starting with a letter",
        ));
    }
    if is_builtin_name(name) {
        return Err(ApiError::Conflict(format!("{name:?} is a built-in role")));
    }
    Ok(name.to_string())
}

/// Descriptions may span lines; they are cut at 2000 characters.
fn check_description(d: &str) -> ApiResult<String> {
    crate::validate::multi_line("description", d)?;
    Ok(d.trim().chars().take(2000).collect())
}

/// Validates permissions and checks the caller holds all of them.
fn check_permissions(principal: &Principal, perms: &[String]) -> ApiResult<Vec<String>> {
    if perms.is_empty() {
        return Err(ApiError::invalid("permissions", "must list at least one permission"));
    }
    let set = PermSet::parse_all(perms).map_err(|bad| {
        let i = perms.iter().position(|p| *p == bad.0).unwrap_or(0);
        ApiError::invalid(format!("permissions[{i}]"), format!("unknown permission {:?}; use resource:action with resources instances, reservations, billing, team, admin, jobs, finetune and actions create, read, update, delete, *", bad.0))
    })?;
    let missing = set.minus(principal.perms.any());
    if missing != PermSet::EMPTY {
        return Err(ApiError::forbidden(missing.to_strings().join(", ")));
    }
    let mut list: Vec<String> = perms.to_vec();
    list.sort();
    list.dedup();
    Ok(list)
}

/// Editing a role changes what its holders get where they hold it: the
/// caller must be able to grant `perms` in every team where the role is
/// held, and org-wide when it is someone's org-wide role. (Holding them in
/// some other team is not enough: that would let a team's admin widen a
/// role used in a team they only view.)
async fn check_holders(
    c: &mut diesel_async::AsyncPgConnection,
    principal: &Principal,
    role: Uuid,
    perms: PermSet,
) -> ApiResult<()> {
    let teams: Vec<Uuid> = team_members::table
        .filter(team_members::role_id.eq(role))
        .select(team_members::team_id)
        .distinct()
        .load(c)
        .await?;
    let org_wide: i64 = users::table.filter(users::org_role_id.eq(role)).count().get_result(c).await?;
    let scopes = teams.into_iter().map(Some).chain((org_wide > 0).then_some(None));
    for scope in scopes {
        let missing = perms.minus(principal.perms.grantable(scope));
        if missing != PermSet::EMPTY {
            return Err(ApiError::forbidden(missing.to_strings().join(", ")));
        }
    }
    Ok(())
}

async fn find(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Role> {
    let mut conn = state.conn().await?;
    find_role(&mut conn, principal.org_id, id).await?.ok_or_else(|| ApiError::not_found("role"))
}

fn refuse_builtin(role: &Role) -> ApiResult<()> {
    if role.builtin {
        return Err(ApiError::Forbidden {
            detail: format!("{:?} is a built-in role and cannot be changed or deleted", role.name),
            missing_permission: None,
        });
    }
    Ok(())
}

/// Creates a custom role. Its permissions may not exceed the caller's.
#[utoipa::path(tag = "roles", request_body = CreateRole,
    responses((status = 201, body = Role), (status = 403), (status = 409), (status = 422)),
    security(("bearer" = ["admin:create"])))]
#[post("/roles")]
pub async fn create_role(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<CreateRole>,
) -> ApiResult<HttpResponse> {
    let name = check_role_name(&body.name)?;
    let permissions = check_permissions(&principal, &body.permissions)?;
    let description = check_description(&body.description)?;
    let now = state.clock.now();
    let id = Uuid::now_v7();
    let mut conn = state.conn().await?;
    let role = conn
        .transaction(async |c| {
            let role: Role = diesel::insert_into(roles::table)
                .values((
                    roles::id.eq(id),
                    roles::org_id.eq(principal.org_id),
                    roles::name.eq(&name),
                    roles::description.eq(&description),
                    roles::permissions.eq(&permissions),
                    roles::builtin.eq(false),
                    roles::created_at.eq(now),
                    roles::updated_at.eq(now),
                ))
                .returning(Role::as_returning())
                .get_result(c)
                .await
                .map_err(|e| match ApiError::from(e) {
                    ApiError::Conflict(_) => ApiError::Conflict(format!("a role named {name:?} exists already")),
                    other => other,
                })?;
            let meta = serde_json::json!({"name": name, "before": null, "after": {"permissions": permissions}});
            audit::append(c, &principal.audit(&client, now, events::ROLE_CREATE, "role", id, meta)).await?;
            Ok::<_, ApiError>(role)
        })
        .await?;
    Ok(HttpResponse::Created().json(role))
}

/// Lists the default (built-in) roles and the org's custom roles.
#[utoipa::path(tag = "roles", responses((status = 200, body = [Role])),
    security(("bearer" = ["admin:read"])))]
#[get("/roles")]
pub async fn list_roles(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let list: Vec<Role> = roles::table
        .filter(roles::org_id.is_null().or(roles::org_id.eq(principal.org_id)))
        .select(Role::as_select())
        .order((roles::builtin.desc(), roles::name.asc()))
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One role, by id or by name.
#[utoipa::path(tag = "roles", params(("id" = String, Path, description = "role id or name")),
    responses((status = 200, body = Role), (status = 404)),
    security(("bearer" = ["admin:read"])))]
#[get("/roles/{id}")]
pub async fn get_role(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(find(&state, &principal, &id).await?))
}

/// Edits a custom role; takes effect on every member's next request.
#[utoipa::path(tag = "roles", params(("id" = String, Path, description = "role id or name")), request_body = UpdateRole,
    responses((status = 200, body = Role), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = ["admin:update"])))]
#[patch("/roles/{id}")]
pub async fn update_role(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<String>,
    body: Json<UpdateRole>,
) -> ApiResult<HttpResponse> {
    let before = find(&state, &principal, &id).await?;
    refuse_builtin(&before)?;
    // Editing a role changes what its holders get: the caller must hold
    // everything it grants, before and after.
    check_permissions(&principal, &before.permissions)?;
    let name = body.name.as_deref().map(check_role_name).transpose()?;
    let permissions = body.permissions.as_deref().map(|p| check_permissions(&principal, p)).transpose()?;
    let description = body.description.as_deref().map(check_description).transpose()?;
    let now = state.clock.now();
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let (role, version) = conn
        .transaction(async |c| {
            // The role as it is now, locked, so that the holders checked are
            // the holders it has when the change commits (assignments lock it
            // too), and so that fields this edit leaves alone keep what a
            // concurrent edit committed (not what we read before).
            let before: Role = roles::table
                .find(before.id)
                .select(Role::as_select())
                .for_update()
                .first(c)
                .await
                .optional()?
                .ok_or_else(|| ApiError::not_found("role"))?;
            check_permissions(&principal, &before.permissions)?;
            let granted = PermSet::parse_lossy(&before.permissions)
                .union(permissions.as_deref().map(PermSet::parse_lossy).unwrap_or(PermSet::EMPTY));
            check_holders(c, &principal, before.id, granted).await?;
            let role: Role = diesel::update(roles::table.find(before.id))
                .set((
                    roles::name.eq(name.as_ref().unwrap_or(&before.name)),
                    roles::description.eq(description.as_ref().unwrap_or(&before.description)),
                    roles::permissions.eq(permissions.as_ref().unwrap_or(&before.permissions)),
                    roles::updated_at.eq(now),
                ))
                .returning(Role::as_returning())
                .get_result(c)
                .await?;
            let v = bump_version(c, org).await?;
            let meta = serde_json::json!({
                "before": {"name": before.name, "permissions": before.permissions},
                "after": {"name": role.name, "permissions": role.permissions},
            });
            audit::append(c, &principal.audit(&client, now, events::ROLE_UPDATE, "role", role.id, meta)).await?;
            Ok::<_, ApiError>((role, v))
        })
        .await?;
    state.after_authz_change(org, version).await;
    Ok(HttpResponse::Ok().json(role))
}

/// Deletes a custom role. A role still held by someone: 409.
#[utoipa::path(tag = "roles", params(("id" = String, Path, description = "role id or name")),
    responses((status = 204), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = ["admin:delete"])))]
#[delete("/roles/{id}")]
pub async fn delete_role(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let role = find(&state, &principal, &id).await?;
    refuse_builtin(&role)?;
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    conn.transaction(async |c| {
        let held: i64 = team_members::table.filter(team_members::role_id.eq(role.id)).count().get_result(c).await?;
        let org_wide: i64 = users::table.filter(users::org_role_id.eq(role.id)).count().get_result(c).await?;
        if held + org_wide > 0 {
            return Err(ApiError::Conflict(format!(
                "role {:?} is held by {} member(s); reassign them first",
                role.name,
                held + org_wide
            )));
        }
        // The foreign keys refuse a concurrent assignment that slipped in.
        diesel::delete(roles::table.find(role.id)).execute(c).await?;
        let meta = serde_json::json!({"name": role.name, "before": {"permissions": role.permissions}, "after": null});
        audit::append(c, &principal.audit(&client, now, events::ROLE_DELETE, "role", role.id, meta)).await?;
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
