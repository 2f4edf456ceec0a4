//! /api/v1/instances

use crate::json_body::Json;
use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::state::{Transition, next};
use crate::audit::{self, ClientInfo};
use crate::auth::Principal;
use crate::db::schema::{instances, teams};
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::rbac::effective::TeamFilter;
use crate::rbac::permission::{Action, Permission, Resource};
use crate::startup::AppState;
use crate::webhooks::outbox;

const fn perm(a: Action) -> Permission {
    Permission::new(Resource::Instances, a)
}

#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = instances)]
pub struct Instance {
    pub id: Uuid,
    #[serde(skip)]
    pub org_id: Uuid,
    pub team_id: Uuid,
    pub name: String,
    pub gpu_type: String,
    pub gpu_count: i32,
    /// running, stopped, failed or destroyed.
    pub state: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    pub name: String,
    #[schema(example = "A100_40GB")]
    pub gpu_type: String,
    pub gpu_count: i32,
    pub team_id: Uuid,
}

fn check_gpu_type(s: &str) -> ApiResult<String> {
    let ok = (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(ApiError::invalid("gpu_type", "1-64 characters: letters, digits, '_' or '-'"));
    }
    Ok(s.to_string())
}

/// Creates (and starts) an instance in a team where the caller holds instances:create.
#[utoipa::path(tag = "instances", request_body = CreateInstance,
    responses((status = 201, body = Instance), (status = 403), (status = 422)),
    security(("bearer" = ["instances:create"])))]
#[post("/instances")]
pub async fn create_instance(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<CreateInstance>,
) -> ApiResult<HttpResponse> {
    let name = crate::users::model::check_name("name", &body.name, 100)?;
    let gpu_type = check_gpu_type(&body.gpu_type)?;
    if !(1..=64).contains(&body.gpu_count) {
        return Err(ApiError::invalid("gpu_count", "must be between 1 and 64"));
    }
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let team_exists: i64 = teams::table
        .filter(teams::id.eq(body.team_id).and(teams::org_id.eq(org)))
        .count()
        .get_result(&mut conn)
        .await?;
    if team_exists == 0 {
        return Err(ApiError::invalid("team_id", "no such team in this organization"));
    }
    principal.require(perm(Action::Create), Some(body.team_id))?;
    let now = state.clock.now();
    let id = Uuid::now_v7();
    let inst = conn
        .transaction(async |c| {
            let inst: Instance = diesel::insert_into(instances::table)
                .values((
                    instances::id.eq(id),
                    instances::org_id.eq(org),
                    instances::team_id.eq(body.team_id),
                    instances::name.eq(&name),
                    instances::gpu_type.eq(&gpu_type),
                    instances::gpu_count.eq(body.gpu_count),
                    instances::state.eq("running"),
                    instances::created_by.eq(principal.user_id),
                    instances::created_at.eq(now),
                    instances::updated_at.eq(now),
                ))
                .returning(Instance::as_returning())
                .get_result(c)
                .await
                .map_err(crate::rbac::teams::deleted_team("instances_live_team_fkey"))?;
            let meta = serde_json::json!({"name": name, "gpu_type": gpu_type, "gpu_count": body.gpu_count, "team_id": body.team_id});
            audit::append(c, &principal.audit(&client, now, events::INSTANCE_CREATE, "instance", id, meta)).await?;
            let data = serde_json::to_value(&inst).unwrap_or_default();
            outbox::enqueue(c, org, "instance.created", &format!("instance:{id}"), data, now).await?;
            Ok::<_, ApiError>(inst)
        })
        .await?;
    state.kick_webhooks();
    Ok(HttpResponse::Created().json(inst))
}

/// The instances the caller may read (their teams', or all with an org-wide role).
#[utoipa::path(tag = "instances", responses((status = 200, body = [Instance])),
    security(("bearer" = ["instances:read"])))]
#[get("/instances")]
pub async fn list_instances(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    let mut q = instances::table
        .filter(instances::org_id.eq(principal.org_id))
        .select(Instance::as_select())
        .order(instances::created_at.desc())
        .into_boxed();
    if let TeamFilter::Only(teams) = principal.perms.teams_allowing(perm(Action::Read)) {
        q = q.filter(instances::team_id.eq_any(teams));
    }
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(q.load::<Instance>(&mut conn).await?))
}

/// An instance the caller may read; others are 404, as if absent.
async fn readable(conn: &mut AsyncPgConnection, principal: &Principal, id: Uuid) -> ApiResult<Instance> {
    let inst: Instance = instances::table
        .filter(instances::id.eq(id).and(instances::org_id.eq(principal.org_id)))
        .select(Instance::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("instance"))?;
    if !principal.can(perm(Action::Read), Some(inst.team_id)) {
        return Err(ApiError::not_found("instance"));
    }
    Ok(inst)
}

/// One instance.
#[utoipa::path(tag = "instances", params(("id" = Uuid, Path)),
    responses((status = 200, body = Instance), (status = 404)),
    security(("bearer" = ["instances:read"])))]
#[get("/instances/{id}")]
pub async fn get_instance(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(readable(&mut conn, &principal, *id).await?))
}

async fn transition(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    id: Uuid,
    t: Transition,
) -> ApiResult<Instance> {
    let (needed, action) = match t {
        Transition::Start => (perm(Action::Update), events::INSTANCE_START),
        Transition::Stop => (perm(Action::Update), events::INSTANCE_STOP),
        Transition::Destroy => (perm(Action::Delete), events::INSTANCE_DESTROY),
    };
    let mut conn = state.conn().await?;
    let current = readable(&mut conn, principal, id).await?;
    principal.require(needed, Some(current.team_id))?;
    let now = state.clock.now();
    conn.transaction(async |c| {
        // Re-read under lock: two concurrent transitions cannot both pass.
        let cur: String = instances::table.find(id).select(instances::state).for_update().first(c).await?;
        let to =
            next(&cur, t).ok_or_else(|| ApiError::Conflict(format!("cannot {action} an instance that is {cur}")))?;
        let inst: Instance = diesel::update(instances::table.find(id))
            .set((instances::state.eq(to), instances::updated_at.eq(now)))
            .returning(Instance::as_returning())
            .get_result(c)
            .await?;
        let meta = serde_json::json!({"before": {"state": cur}, "after": {"state": to}, "team_id": inst.team_id});
        audit::append(c, &principal.audit(client, now, action, "instance", id, meta)).await?;
        if let Some(kind) = events::webhook_event_for(action) {
            let data = serde_json::to_value(&inst).unwrap_or_default();
            outbox::enqueue(c, inst.org_id, kind, &format!("instance:{id}"), data, now).await?;
        }
        Ok::<_, ApiError>(inst)
    })
    .await
    .inspect(|_| state.kick_webhooks())
}

/// Starts a stopped or failed instance.
#[utoipa::path(tag = "instances", params(("id" = Uuid, Path)),
    responses((status = 200, body = Instance), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = ["instances:update"])))]
#[post("/instances/{id}/start")]
pub async fn start_instance(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(transition(&state, &principal, &client, *id, Transition::Start).await?))
}

/// Stops a running instance.
#[utoipa::path(tag = "instances", params(("id" = Uuid, Path)),
    responses((status = 200, body = Instance), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = ["instances:update"])))]
#[post("/instances/{id}/stop")]
pub async fn stop_instance(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(transition(&state, &principal, &client, *id, Transition::Stop).await?))
}

/// Destroys an instance (its record stays, in state destroyed).
#[utoipa::path(tag = "instances", params(("id" = Uuid, Path)),
    responses((status = 200, body = Instance), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = ["instances:delete"])))]
#[delete("/instances/{id}")]
pub async fn destroy_instance(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(transition(&state, &principal, &client, *id, Transition::Destroy).await?))
}
