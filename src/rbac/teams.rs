//! /api/v1/teams

use std::collections::HashMap;

use crate::json_body::Json;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::authorizer::bump_version;
use crate::audit::{self, ClientInfo};
use crate::auth::Principal;
use crate::db::schema::{instances, reservations, roles, team_members, teams};
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::startup::AppState;
use crate::users::model::check_name;

#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = teams)]
pub struct Team {
    pub id: Uuid,
    #[serde(skip)]
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    #[schema(example = "ML Team")]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    pub name: Option<String>,
    pub description: Option<String>,
}

fn check_description(d: &str) -> ApiResult<String> {
    if d.chars().count() > 2000 {
        return Err(ApiError::invalid("description", "must be at most 2000 characters"));
    }
    crate::validate::multi_line("description", d)?;
    Ok(d.trim().to_string())
}

pub async fn find_team(conn: &mut AsyncPgConnection, org: Uuid, id: Uuid) -> ApiResult<Team> {
    teams::table
        .filter(teams::id.eq(id).and(teams::org_id.eq(org)))
        .select(Team::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("team"))
}

/// Creates a team.
#[utoipa::path(tag = "teams", request_body = CreateTeam,
    responses((status = 201, body = Team), (status = 409), (status = 422)),
    security(("bearer" = ["team:create"])))]
#[post("/teams")]
pub async fn create_team(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<CreateTeam>,
) -> ApiResult<HttpResponse> {
    let name = check_name("name", &body.name, 100)?;
    let description = check_description(&body.description)?;
    let now = state.clock.now();
    let id = Uuid::now_v7();
    let mut conn = state.conn().await?;
    let team = conn
        .transaction(async |c| {
            let team: Team = diesel::insert_into(teams::table)
                .values((
                    teams::id.eq(id),
                    teams::org_id.eq(principal.org_id),
                    teams::name.eq(&name),
                    teams::description.eq(&description),
                    teams::created_at.eq(now),
                    teams::updated_at.eq(now),
                ))
                .returning(Team::as_returning())
                .get_result(c)
                .await
                .map_err(|e| match ApiError::from(e) {
                    ApiError::Conflict(_) => ApiError::Conflict(format!("a team named {name:?} exists already")),
                    other => other,
                })?;
            let meta = serde_json::json!({"name": name, "description": description});
            audit::append(c, &principal.audit(&client, now, events::TEAM_CREATE, "team", id, meta)).await?;
            Ok::<_, ApiError>(team)
        })
        .await?;
    Ok(HttpResponse::Created().json(team))
}

/// Lists the org's teams.
#[utoipa::path(tag = "teams", responses((status = 200, body = [Team])),
    security(("bearer" = ["team:read"])))]
#[get("/teams")]
pub async fn list_teams(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let list: Vec<Team> = teams::table
        .filter(teams::org_id.eq(principal.org_id))
        .select(Team::as_select())
        .order(teams::name.asc())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One team.
#[utoipa::path(tag = "teams", params(("id" = Uuid, Path)),
    responses((status = 200, body = Team), (status = 404)),
    security(("bearer" = ["team:read"])))]
#[get("/teams/{id}")]
pub async fn get_team(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(find_team(&mut conn, principal.org_id, *id).await?))
}

/// Renames a team or changes its description.
#[utoipa::path(tag = "teams", params(("id" = Uuid, Path)), request_body = UpdateTeam,
    responses((status = 200, body = Team), (status = 404), (status = 409), (status = 422)),
    security(("bearer" = ["team:update"])))]
#[patch("/teams/{id}")]
pub async fn update_team(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
    body: Json<UpdateTeam>,
) -> ApiResult<HttpResponse> {
    let name = body.name.as_deref().map(|n| check_name("name", n, 100)).transpose()?;
    let description = body.description.as_deref().map(check_description).transpose()?;
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    let before = find_team(&mut conn, principal.org_id, *id).await?;
    let team = conn
        .transaction(async |c| {
            let team: Team = diesel::update(teams::table.find(before.id))
                .set((
                    teams::name.eq(name.as_ref().unwrap_or(&before.name)),
                    teams::description.eq(description.as_ref().unwrap_or(&before.description)),
                    teams::updated_at.eq(now),
                ))
                .returning(Team::as_returning())
                .get_result(c)
                .await?;
            let meta = serde_json::json!({
                "before": {"name": before.name, "description": before.description},
                "after": {"name": team.name, "description": team.description},
            });
            audit::append(c, &principal.audit(&client, now, events::TEAM_UPDATE, "team", team.id, meta)).await?;
            Ok::<_, ApiError>(team)
        })
        .await?;
    Ok(HttpResponse::Ok().json(team))
}

/// Maps the foreign key violation of a live resource's `live_team_id`
/// (`constraint`) to the answer a missing team gets: the team was deleted
/// between the caller's check and the insert, whose key check waited on the
/// deletion's lock. Any other error passes through.
pub fn deleted_team(constraint: &'static str) -> impl Fn(diesel::result::Error) -> ApiError {
    move |e| {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info)
                if info.constraint_name() == Some(constraint) =>
            {
                ApiError::invalid("team_id", "no such team in this organization")
            }
            other => other.into(),
        }
    }
}

/// What still keeps a team from being deleted: its live instances (any
/// state but destroyed) and its reservations in force (scheduled or
/// active), described for the 409. Read with the team row locked, so that
/// none can be added meanwhile (their foreign key checks wait on it).
async fn live_resources(c: &mut AsyncPgConnection, team: Uuid) -> ApiResult<Vec<String>> {
    const SHOWN: i64 = 20;
    let insts: Vec<(Uuid, String, String)> = instances::table
        .filter(instances::live_team_id.eq(team))
        .select((instances::id, instances::name, instances::state))
        .order(instances::created_at.asc())
        .limit(SHOWN)
        .load(c)
        .await?;
    let n_insts: i64 = instances::table.filter(instances::live_team_id.eq(team)).count().get_result(c).await?;
    let resvs: Vec<(Uuid, String, String)> = reservations::table
        .filter(reservations::live_team_id.eq(team))
        .select((reservations::id, reservations::gpu_type, reservations::state))
        .order(reservations::created_at.asc())
        .limit(SHOWN)
        .load(c)
        .await?;
    let n_resvs: i64 = reservations::table.filter(reservations::live_team_id.eq(team)).count().get_result(c).await?;
    let mut parts = Vec::new();
    if n_insts > 0 {
        let list: Vec<String> = insts.iter().map(|(id, name, st)| format!("{name:?} ({id}, {st})")).collect();
        let more = if n_insts > SHOWN { format!(" and {} more", n_insts - SHOWN) } else { String::new() };
        parts.push(format!("{n_insts} live instance(s): {}{more}", list.join(", ")));
    }
    if n_resvs > 0 {
        let list: Vec<String> = resvs.iter().map(|(id, gpu, st)| format!("{id} ({gpu}, {st})")).collect();
        let more = if n_resvs > SHOWN { format!(" and {} more", n_resvs - SHOWN) } else { String::new() };
        parts.push(format!("{n_resvs} reservation(s) in force: {}{more}", list.join(", ")));
    }
    Ok(parts)
}

/// Deletes a team and its memberships. A team that still owns live
/// instances (not destroyed) or reservations in force (scheduled or
/// active): 409 naming them. Its history (destroyed instances, completed or
/// cancelled reservations) does not block it and is kept, still naming the
/// team; an org-wide role reads it.
#[utoipa::path(tag = "teams", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404), (status = 409)),
    security(("bearer" = ["team:delete"])))]
#[delete("/teams/{id}")]
pub async fn delete_team(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let team = find_team(&mut conn, org, *id).await?;
    let version = conn
        .transaction(async |c| {
            // The team row, locked: an instance, reservation or membership
            // being added waits here (its key check locks the row too) and
            // then fails, or it committed first and is seen below. A team
            // deleted meanwhile: 404.
            teams::table
                .filter(teams::id.eq(team.id).and(teams::org_id.eq(org)))
                .select(teams::id)
                .for_update()
                .first::<Uuid>(c)
                .await
                .optional()?
                .ok_or_else(|| ApiError::not_found("team"))?;
            let live = live_resources(c, team.id).await?;
            if !live.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "team {:?} still owns {}; destroy the instances and cancel or wait out the reservations first",
                    team.name,
                    live.join("; ")
                )));
            }
            // The memberships the delete removes (a permission change each),
            // locked so that the record says exactly what went.
            let members: Vec<(Uuid, Uuid)> = team_members::table
                .filter(team_members::team_id.eq(team.id))
                .select((team_members::user_id, team_members::role_id))
                .order(team_members::user_id.asc())
                .for_update()
                .load(c)
                .await?;
            let role_ids: Vec<Uuid> = members.iter().map(|(_, r)| *r).collect();
            let names: HashMap<Uuid, (String, Vec<String>)> = roles::table
                .filter(roles::id.eq_any(&role_ids))
                .select((roles::id, roles::name, roles::permissions))
                .load::<(Uuid, String, Vec<String>)>(c)
                .await?
                .into_iter()
                .map(|(id, name, perms)| (id, (name, perms)))
                .collect();
            let removed: Vec<serde_json::Value> = members
                .iter()
                .map(|(user, role)| {
                    let (name, perms) = names.get(role).cloned().unwrap_or_default();
                    serde_json::json!({"user_id": user, "role": name, "role_id": role, "permissions": perms})
                })
                .collect();
            // The key on live resources refuses the delete too, should any
            // have slipped past the check above.
            diesel::delete(teams::table.find(team.id)).execute(c).await.map_err(|e| match ApiError::from(e) {
                ApiError::Conflict(_) => ApiError::Conflict(format!(
                    "team {:?} still owns live instances or reservations in force",
                    team.name
                )),
                other => other,
            })?;
            let v = bump_version(c, org).await?;
            let meta = serde_json::json!({"name": team.name, "members_removed": removed});
            audit::append(c, &principal.audit(&client, now, events::TEAM_DELETE, "team", team.id, meta)).await?;
            Ok::<_, ApiError>(v)
        })
        .await?;
    state.after_authz_change(org, version).await;
    Ok(HttpResponse::NoContent().finish())
}
