//! /api/v1/teams/{id}/members

use crate::json_body::Json;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::authorizer::bump_version;
use super::model::{Role, find_role, lock_role_for_grant};
use super::permission::PermSet;
use super::teams::find_team;
use crate::audit::{self, ClientInfo};
use crate::auth::Principal;
use crate::db::schema::{roles, team_members, users};
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::startup::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub team_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    pub user_id: Uuid,
    /// A default role (admin, developer, billing, viewer) or a custom role's name or id.
    #[schema(example = "developer")]
    pub role: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    pub role: String,
}

type Row = (Uuid, Uuid, String, String, String, DateTime<Utc>, DateTime<Utc>);

async fn load_members(conn: &mut AsyncPgConnection, team: Uuid, only: Option<Uuid>) -> QueryResult<Vec<Member>> {
    let mut q = team_members::table
        .inner_join(users::table)
        .inner_join(roles::table)
        .filter(team_members::team_id.eq(team))
        .select((
            team_members::team_id,
            team_members::user_id,
            users::email,
            users::name,
            roles::name,
            team_members::created_at,
            team_members::updated_at,
        ))
        .order(users::email.asc())
        .into_boxed();
    if let Some(u) = only {
        q = q.filter(team_members::user_id.eq(u));
    }
    Ok(q.load::<Row>(conn)
        .await?
        .into_iter()
        .map(|(team_id, user_id, email, name, role, created_at, updated_at)| Member {
            team_id,
            user_id,
            email,
            name,
            role,
            created_at,
            updated_at,
        })
        .collect())
}

/// The role to assign, refused when it grants more than the caller holds
/// in that team (no privilege escalation).
async fn assignable_role(
    conn: &mut AsyncPgConnection,
    principal: &Principal,
    team: Uuid,
    name: &str,
) -> ApiResult<Role> {
    let role = find_role(conn, principal.org_id, name)
        .await?
        .ok_or_else(|| ApiError::invalid("role", format!("unknown role {name:?}")))?;
    check_grantable(principal, team, &role)?;
    Ok(role)
}

/// The answer to a failed membership insert: the member exists already
/// (409), or the team or the user was deleted since they were looked up
/// (404, as if the request had come after). The role cannot be gone: it is
/// locked (`lock_assignable`).
fn member_insert_error(e: diesel::result::Error) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            ApiError::Conflict("the user is a member of this team already".into())
        }
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, ref info)
            if info.constraint_name() == Some("team_members_team_id_fkey") =>
        {
            ApiError::not_found("team")
        }
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, ref info)
            if info.constraint_name() == Some("team_members_user_id_fkey") =>
        {
            ApiError::not_found("user")
        }
        other => other.into(),
    }
}

/// `role` again, inside the assignment's transaction: locked against a
/// concurrent edit and checked as it is now (see `lock_role_for_grant`).
/// The check before the transaction refuses early; this one decides.
async fn lock_assignable(c: &mut AsyncPgConnection, principal: &Principal, team: Uuid, role: &Role) -> ApiResult<Role> {
    let locked = lock_role_for_grant(c, role.id)
        .await?
        .ok_or_else(|| ApiError::invalid("role", format!("unknown role {:?}", role.name)))?;
    check_grantable(principal, team, &locked)?;
    Ok(locked)
}

fn check_grantable(principal: &Principal, team: Uuid, role: &Role) -> ApiResult<()> {
    let missing = role.perms().minus(principal.perms.grantable(Some(team)));
    if missing != PermSet::EMPTY {
        return Err(ApiError::forbidden(missing.to_strings().join(", ")));
    }
    Ok(())
}

/// The member's role, with their membership row locked until the end of
/// the transaction: a concurrent change or removal waits, and one that came
/// first makes this a 404.
async fn lock_member(conn: &mut AsyncPgConnection, team: Uuid, user: Uuid) -> ApiResult<Role> {
    let role_id: Uuid = team_members::table
        .find((team, user))
        .select(team_members::role_id)
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("member"))?;
    Ok(roles::table.find(role_id).select(Role::as_select()).first(conn).await?)
}

/// Adds a user of the org to a team with a role.
#[utoipa::path(tag = "teams", params(("id" = Uuid, Path)), request_body = AddMember,
    responses((status = 201, body = Member), (status = 403), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = ["team:update"])))]
#[post("/teams/{id}/members")]
pub async fn add_member(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
    body: Json<AddMember>,
) -> ApiResult<HttpResponse> {
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let team = find_team(&mut conn, org, *id).await?;
    let user_exists: i64 = users::table
        .filter(users::id.eq(body.user_id).and(users::org_id.eq(org)))
        .count()
        .get_result(&mut conn)
        .await?;
    if user_exists == 0 {
        return Err(ApiError::invalid("user_id", "no such user in this organization"));
    }
    let role = assignable_role(&mut conn, &principal, team.id, &body.role).await?;
    let now = state.clock.now();
    let user = body.user_id;
    let version = conn
        .transaction(async |c| {
            let role = lock_assignable(c, &principal, team.id, &role).await?;
            diesel::insert_into(team_members::table)
                .values((
                    team_members::team_id.eq(team.id),
                    team_members::user_id.eq(user),
                    team_members::role_id.eq(role.id),
                    team_members::created_at.eq(now),
                    team_members::updated_at.eq(now),
                ))
                .execute(c)
                .await
                .map_err(member_insert_error)?;
            let v = bump_version(c, org).await?;
            let meta = serde_json::json!({"team_id": team.id, "user_id": user, "before": null, "after": {"role": role.name, "permissions": role.permissions}});
            audit::append(c, &principal.audit(&client, now, events::TEAM_MEMBER_ADD, "team_member", format!("{}/{}", team.id, user), meta)).await?;
            Ok::<_, ApiError>(v)
        })
        .await?;
    state.after_authz_change(org, version).await;
    let member = load_members(&mut conn, team.id, Some(user)).await?;
    Ok(HttpResponse::Created().json(member.first()))
}

/// The team's members and their roles.
#[utoipa::path(tag = "teams", params(("id" = Uuid, Path)),
    responses((status = 200, body = [Member]), (status = 404)),
    security(("bearer" = ["team:read"])))]
#[get("/teams/{id}/members")]
pub async fn list_members(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let team = find_team(&mut conn, principal.org_id, *id).await?;
    Ok(HttpResponse::Ok().json(load_members(&mut conn, team.id, None).await?))
}

/// Gives a member another role.
#[utoipa::path(tag = "teams", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = UpdateMember,
    responses((status = 200, body = Member), (status = 403), (status = 404), (status = 422)),
    security(("bearer" = ["team:update"])))]
#[patch("/teams/{id}/members/{user_id}")]
pub async fn update_member(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<UpdateMember>,
) -> ApiResult<HttpResponse> {
    let (team_id, user) = path.into_inner();
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let team = find_team(&mut conn, org, team_id).await?;
    let role = assignable_role(&mut conn, &principal, team.id, &body.role).await?;
    let now = state.clock.now();
    let (version, member) = conn
        .transaction(async |c| {
            let before = lock_member(c, team.id, user).await?;
            // Changing someone's role takes their old one away: the caller
            // must be able to grant both. The old role needs no lock: an
            // edit of it racing with this change ends as if this change came
            // first (taking a role away grants nothing, and the edit, seeing
            // the member still holding it, checked this team anyway).
            check_grantable(&principal, team.id, &before)?;
            let role = lock_assignable(c, &principal, team.id, &role).await?;
            let updated = diesel::update(team_members::table.find((team.id, user)))
                .set((team_members::role_id.eq(role.id), team_members::updated_at.eq(now)))
                .execute(c)
                .await?;
            if updated != 1 {
                return Err(ApiError::not_found("member"));
            }
            let v = bump_version(c, org).await?;
            let meta = serde_json::json!({"team_id": team.id, "user_id": user,
                "before": {"role": before.name, "permissions": before.permissions},
                "after": {"role": role.name, "permissions": role.permissions}});
            audit::append(
                c,
                &principal.audit(
                    &client,
                    now,
                    events::TEAM_MEMBER_UPDATE,
                    "team_member",
                    format!("{}/{}", team.id, user),
                    meta,
                ),
            )
            .await?;
            // Read back under the lock: the answer is the row as updated.
            let member = load_members(c, team.id, Some(user))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::not_found("member"))?;
            Ok::<_, ApiError>((v, member))
        })
        .await?;
    state.after_authz_change(org, version).await;
    Ok(HttpResponse::Ok().json(member))
}

/// Removes a member from a team.
#[utoipa::path(tag = "teams", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 403), (status = 404)),
    security(("bearer" = ["team:update"])))]
#[delete("/teams/{id}/members/{user_id}")]
pub async fn remove_member(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let (team_id, user) = path.into_inner();
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let team = find_team(&mut conn, org, team_id).await?;
    let now = state.clock.now();
    let version = conn
        .transaction(async |c| {
            // Locked: of two concurrent removals, one records it, the other is a 404.
            let before = lock_member(c, team.id, user).await?;
            check_grantable(&principal, team.id, &before)?;
            if diesel::delete(team_members::table.find((team.id, user))).execute(c).await? != 1 {
                return Err(ApiError::not_found("member"));
            }
            let v = bump_version(c, org).await?;
            let meta = serde_json::json!({"team_id": team.id, "user_id": user,
                "before": {"role": before.name, "permissions": before.permissions}, "after": null});
            audit::append(
                c,
                &principal.audit(
                    &client,
                    now,
                    events::TEAM_MEMBER_REMOVE,
                    "team_member",
                    format!("{}/{}", team.id, user),
                    meta,
                ),
            )
            .await?;
            Ok::<_, ApiError>(v)
        })
        .await?;
    state.after_authz_change(org, version).await;
    Ok(HttpResponse::NoContent().finish())
}
