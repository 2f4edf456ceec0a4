//! /api/v1/webhooks

use std::future::Future;
use std::pin::Pin;

use crate::json_body::Json;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{delivery, outbox, signature, ssrf};
use crate::audit::{self, ClientInfo};
use crate::auth::Principal;
use crate::db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events};
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::startup::AppState;

#[derive(Debug, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
pub struct Endpoint {
    pub id: Uuid,
    #[serde(skip)]
    pub org_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    /// Why the endpoint was disabled automatically (410 Gone, or failing for days).
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The generated signing secret, shown only here (absent when you gave one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    #[schema(example = "https://your-app.com/webhook")]
    pub url: String,
    #[schema(example = json!(["instance.failed", "failover.completed"]))]
    pub events: Vec<String>,
    /// `whsec_` + base64, or any other string (used as its UTF-8 bytes).
    /// Generated when absent.
    pub secret: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret; generated when absent.
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Rotated {
    pub secret: String,
    /// Until then deliveries carry signatures by both secrets.
    pub previous_secret_valid_until: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct Attempt {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: String,
    pub event_type: String,
    /// pending, paused (its endpoint is disabled), succeeded or failed (given up).
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<Attempt>,
}

/// An optional JSON body: no bytes at all is `None`; any other body must be
/// a valid `T`, read by the API's `Json` (400 when malformed, 422 naming the
/// field for a wrong value or an unknown field). Unlike `Option<Json<T>>`,
/// which turns every error into `None`, a bad body is refused.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
            if bytes.is_empty() {
                return Ok(OptionalJson(None));
            }
            let parsed = Json::<T>::from_request(&req, &mut Payload::from(bytes)).await?;
            Ok(OptionalJson(Some(parsed.into_inner())))
        })
    }
}

async fn check_url(state: &AppState, url: &str) -> ApiResult<String> {
    crate::validate::single_line("url", url)?;
    ssrf::vet(url, state.settings.webhooks.allow_private_targets)
        .await
        .map(|u| u.to_string())
        .map_err(|e| ApiError::invalid("url", e.to_string()))
}

fn check_events(list: &[String]) -> ApiResult<Vec<String>> {
    if list.is_empty() {
        return Err(ApiError::invalid("events", "subscribe to at least one event, or \"*\""));
    }
    for (i, e) in list.iter().enumerate() {
        if e != "*" && !events::WEBHOOK_EVENTS.contains(&e.as_str()) {
            return Err(ApiError::invalid(
                format!("events[{i}]"),
                format!("unknown event {e:?}; known: {}, or \"*\"", events::WEBHOOK_EVENTS.join(", ")),
            ));
        }
    }
    let mut out = list.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

fn check_secret(s: &str) -> ApiResult<()> {
    if s.len() < 16 || s.len() > 256 {
        return Err(ApiError::invalid("secret", "must be 16 to 256 characters"));
    }
    crate::validate::single_line("secret", s)?;
    if signature::key_of(s).is_none() {
        return Err(ApiError::invalid("secret", "a whsec_ secret must be followed by base64"));
    }
    Ok(())
}

async fn find(conn: &mut AsyncPgConnection, org: Uuid, id: Uuid) -> ApiResult<Endpoint> {
    webhook_endpoints::table
        .filter(webhook_endpoints::id.eq(id).and(webhook_endpoints::org_id.eq(org)))
        .select(Endpoint::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// `find`, locking the row for the rest of the transaction. `FOR NO KEY
/// UPDATE`, not `FOR UPDATE`: it queues with the delivery worker's lock
/// (`delivery::record`), but not with the key checks of deliveries being
/// enqueued, which a request holding its org's audit head may be making (a
/// `FOR UPDATE` here, followed by our own audit append, deadlocked with it).
async fn find_for_update(conn: &mut AsyncPgConnection, org: Uuid, id: Uuid) -> ApiResult<Endpoint> {
    webhook_endpoints::table
        .filter(webhook_endpoints::id.eq(id).and(webhook_endpoints::org_id.eq(org)))
        .select(Endpoint::as_select())
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// Registers an endpoint. The URL must be https and public (see README, SSRF).
#[utoipa::path(tag = "webhooks", request_body = CreateEndpoint,
    responses((status = 201, body = CreatedEndpoint), (status = 422)),
    security(("bearer" = ["admin:create"])))]
#[post("/webhooks")]
pub async fn create_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<CreateEndpoint>,
) -> ApiResult<HttpResponse> {
    let url = check_url(&state, &body.url).await?;
    let evs = check_events(&body.events)?;
    if let Some(s) = &body.secret {
        check_secret(s)?;
    }
    let generated = body.secret.is_none().then(signature::generate_secret);
    let secret = body.secret.clone().or_else(|| generated.clone()).unwrap_or_default();
    let sealed = state.secrets.seal(secret.as_bytes())?;
    let now = state.clock.now();
    let id = Uuid::now_v7();
    let mut conn = state.conn().await?;
    let endpoint = conn
        .transaction(async |c| {
            let e: Endpoint = diesel::insert_into(webhook_endpoints::table)
                .values((
                    webhook_endpoints::id.eq(id),
                    webhook_endpoints::org_id.eq(principal.org_id),
                    webhook_endpoints::url.eq(&url),
                    webhook_endpoints::events.eq(&evs),
                    webhook_endpoints::secret_enc.eq(&sealed),
                    webhook_endpoints::created_at.eq(now),
                    webhook_endpoints::updated_at.eq(now),
                ))
                .returning(Endpoint::as_returning())
                .get_result(c)
                .await?;
            let meta = serde_json::json!({"url": url, "events": evs});
            audit::append(c, &principal.audit(&client, now, events::WEBHOOK_CREATE, "webhook", id, meta)).await?;
            Ok::<_, ApiError>(e)
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedEndpoint { endpoint, secret: generated }))
}

/// The org's endpoints (never their secrets).
#[utoipa::path(tag = "webhooks", responses((status = 200, body = [Endpoint])),
    security(("bearer" = ["admin:read"])))]
#[get("/webhooks")]
pub async fn list_webhooks(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let list: Vec<Endpoint> = webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(principal.org_id))
        .select(Endpoint::as_select())
        .order(webhook_endpoints::created_at.asc())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One endpoint.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path)),
    responses((status = 200, body = Endpoint), (status = 404)),
    security(("bearer" = ["admin:read"])))]
#[get("/webhooks/{id}")]
pub async fn get_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(find(&mut conn, principal.org_id, *id).await?))
}

/// Changes the URL, the events, or `enabled` (enabling clears an automatic disable).
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path)), request_body = UpdateEndpoint,
    responses((status = 200, body = Endpoint), (status = 404), (status = 422)),
    security(("bearer" = ["admin:update"])))]
#[patch("/webhooks/{id}")]
pub async fn update_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
    body: Json<UpdateEndpoint>,
) -> ApiResult<HttpResponse> {
    let url = match &body.url {
        Some(u) => Some(check_url(&state, u).await?),
        None => None,
    };
    let evs = body.events.as_deref().map(check_events).transpose()?;
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    let after = conn
        .transaction(async |c| {
            // Everything is decided from the row as it is under our lock: the
            // delivery worker takes the same lock before it disables an
            // endpoint (410, failing streak), so the two cannot interleave
            // (a PATCH never re-enables without resuming the backlog, and
            // the audit's `before` is what was replaced).
            let before = find_for_update(c, principal.org_id, *id).await?;
            let enabled = body.enabled.unwrap_or(before.enabled);
            let reenabled = enabled && !before.enabled;
            let disabled_now = !enabled && before.enabled;
            let mut e: Endpoint = diesel::update(webhook_endpoints::table.find(before.id))
                .set((
                    webhook_endpoints::url.eq(url.as_ref().unwrap_or(&before.url)),
                    webhook_endpoints::events.eq(evs.as_ref().unwrap_or(&before.events)),
                    webhook_endpoints::enabled.eq(enabled),
                    webhook_endpoints::updated_at.eq(now),
                ))
                .returning(Endpoint::as_returning())
                .get_result(c)
                .await?;
            if reenabled {
                delivery::resume(c, before.id, now).await?;
            } else if !enabled {
                delivery::pause(c, before.id).await?;
            }
            // The reason changes with the state only: editing the URL of an
            // endpoint disabled for 410 Gone keeps that reason.
            if reenabled || disabled_now {
                let reason: Option<&str> = if enabled { None } else { Some("disabled by an administrator") };
                e = diesel::update(webhook_endpoints::table.find(before.id))
                    .set((
                        webhook_endpoints::disabled_reason.eq(reason),
                        webhook_endpoints::failing_since.eq(None::<DateTime<Utc>>),
                    ))
                    .returning(Endpoint::as_returning())
                    .get_result(c)
                    .await?;
            }
            let meta = serde_json::json!({
                "before": {"url": before.url, "events": before.events, "enabled": before.enabled},
                "after": {"url": e.url, "events": e.events, "enabled": e.enabled},
            });
            audit::append(c, &principal.audit(&client, now, events::WEBHOOK_UPDATE, "webhook", e.id, meta)).await?;
            Ok::<_, ApiError>(e)
        })
        .await?;
    Ok(HttpResponse::Ok().json(after))
}

/// Deletes an endpoint and its pending deliveries.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404)),
    security(("bearer" = ["admin:delete"])))]
#[delete("/webhooks/{id}")]
pub async fn delete_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    let e = find(&mut conn, principal.org_id, *id).await?;
    conn.transaction(async |c| {
        // The audit head first, then the endpoint: the order of a request
        // that enqueues deliveries (audit head, then the key check on the
        // endpoint), so the two queue instead of deadlocking. A delete that
        // finds nothing rolls its record back.
        let meta = serde_json::json!({"url": e.url, "events": e.events});
        audit::append(c, &principal.audit(&client, now, events::WEBHOOK_DELETE, "webhook", e.id, meta)).await?;
        let deleted = diesel::delete(webhook_endpoints::table.find(e.id)).execute(c).await?;
        if deleted == 0 {
            return Err(ApiError::not_found("webhook"));
        }
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

type AttemptRow = (Uuid, DateTime<Utc>, Option<i32>, i32, Option<String>);
type DeliveryRow = (
    Uuid,
    serde_json::Value,
    String,
    String,
    i32,
    DateTime<Utc>,
    Option<i32>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// Recent deliveries to an endpoint (newest first, at most 100), with every attempt.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path)),
    responses((status = 200, body = [Delivery]), (status = 404)),
    security(("bearer" = ["admin:read"])))]
#[get("/webhooks/{id}/deliveries")]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let e = find(&mut conn, principal.org_id, *id).await?;
    // One snapshot for both reads, so a delivery and its attempts agree.
    let (rows, attempts) = conn
        .build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |c| {
            let rows: Vec<DeliveryRow> = webhook_deliveries::table
                .inner_join(webhook_events::table)
                .filter(webhook_deliveries::endpoint_id.eq(e.id))
                .order(webhook_deliveries::seq.desc())
                .limit(100)
                .select((
                    webhook_deliveries::id,
                    webhook_events::payload,
                    webhook_events::kind,
                    webhook_deliveries::state,
                    webhook_deliveries::attempts,
                    webhook_deliveries::next_attempt_at,
                    webhook_deliveries::last_status,
                    webhook_deliveries::last_error,
                    webhook_deliveries::created_at,
                    webhook_deliveries::completed_at,
                ))
                .load(c)
                .await?;
            let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
            let attempts: Vec<AttemptRow> = webhook_attempts::table
                .filter(webhook_attempts::delivery_id.eq_any(&ids))
                .order(webhook_attempts::attempted_at.asc())
                .select((
                    webhook_attempts::delivery_id,
                    webhook_attempts::attempted_at,
                    webhook_attempts::status_code,
                    webhook_attempts::latency_ms,
                    webhook_attempts::error,
                ))
                .load(c)
                .await?;
            Ok::<_, diesel::result::Error>((rows, attempts))
        })
        .await?;
    let out: Vec<Delivery> = rows
        .into_iter()
        .map(|(id, payload, kind, st, n, next, last_status, last_error, created_at, completed_at)| Delivery {
            id,
            event_id: payload["id"].as_str().unwrap_or_default().to_string(),
            event_type: kind,
            next_attempt_at: (st == "pending").then_some(next),
            state: st,
            attempts: n,
            last_status,
            last_error,
            created_at,
            completed_at,
            attempt_log: attempts
                .iter()
                .filter(|a| a.0 == id)
                .map(|a| Attempt { attempted_at: a.1, status_code: a.2, latency_ms: a.3, error: a.4.clone() })
                .collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

/// Sends a `webhook.ping` event to this endpoint only.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404)),
    security(("bearer" = ["admin:update"])))]
#[post("/webhooks/{id}/test")]
pub async fn test_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    let e = find(&mut conn, principal.org_id, *id).await?;
    if !e.enabled {
        return Err(ApiError::Conflict("the endpoint is disabled; enable it to send a test".into()));
    }
    // The event and its delivery together, or neither.
    let event = conn
        .transaction(async |c| {
            outbox::enqueue_to(
                c,
                principal.org_id,
                &[e.id],
                events::WEBHOOK_PING,
                &format!("ping:{}", e.id),
                serde_json::json!({"endpoint_id": e.id}),
                now,
            )
            .await
        })
        .await?;
    state.kick_webhooks();
    Ok(HttpResponse::Accepted().json(serde_json::json!({"event_id": format!("msg_{}", event.simple())})))
}

/// Replays a delivery (succeeded or given up): it is sent again, with the same `webhook-id`.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path)),
    responses((status = 202), (status = 404), (status = 409)),
    security(("bearer" = ["admin:update"])))]
#[post("/webhooks/deliveries/{id}/retry")]
pub async fn retry_delivery(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    let enabled_endpoints = webhook_endpoints::table.filter(webhook_endpoints::enabled).select(webhook_endpoints::id);
    let n = diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq(*id))
            .filter(webhook_deliveries::org_id.eq(principal.org_id))
            .filter(webhook_deliveries::state.ne("pending"))
            .filter(webhook_deliveries::endpoint_id.eq_any(enabled_endpoints)),
    )
    .set((
        webhook_deliveries::state.eq("pending"),
        webhook_deliveries::next_attempt_at.eq(now),
        webhook_deliveries::completed_at.eq(None::<DateTime<Utc>>),
        webhook_deliveries::lease_until.eq(None::<DateTime<Utc>>),
        webhook_deliveries::attempts.eq(0),
    ))
    .execute(&mut conn)
    .await?;
    if n == 0 {
        let found: Option<(String, bool)> = webhook_deliveries::table
            .inner_join(webhook_endpoints::table)
            .filter(webhook_deliveries::id.eq(*id).and(webhook_deliveries::org_id.eq(principal.org_id)))
            .select((webhook_deliveries::state, webhook_endpoints::enabled))
            .first(&mut conn)
            .await
            .optional()?;
        return Err(match found {
            None => ApiError::not_found("delivery"),
            Some((_, false)) => ApiError::Conflict("the endpoint is disabled; enable it to retry".into()),
            Some(_) => ApiError::Conflict("the delivery is still pending".into()),
        });
    }
    state.kick_webhooks();
    Ok(HttpResponse::Accepted().json(serde_json::json!({"id": *id, "state": "pending"})))
}

/// Replaces the signing secret. For 24 hours deliveries carry a signature by
/// the old secret beside the new one, so receivers can switch without loss.
#[utoipa::path(tag = "webhooks", params(("id" = Uuid, Path)), request_body = RotateSecret,
    responses((status = 200, body = Rotated), (status = 404), (status = 422)),
    security(("bearer" = ["admin:update"])))]
#[post("/webhooks/{id}/rotate-secret")]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
    body: OptionalJson<RotateSecret>,
) -> ApiResult<HttpResponse> {
    let given = body.0.and_then(|b| b.secret);
    if let Some(s) = &given {
        check_secret(s)?;
    }
    let secret = given.unwrap_or_else(signature::generate_secret);
    let sealed = state.secrets.seal(secret.as_bytes())?;
    let now = state.clock.now();
    let until = now + Duration::hours(24);
    let mut conn = state.conn().await?;
    let e = find(&mut conn, principal.org_id, *id).await?;
    conn.transaction(async |c| {
        let current: Vec<u8> = webhook_endpoints::table
            .find(e.id)
            .select(webhook_endpoints::secret_enc)
            .for_no_key_update()
            .first(c)
            .await?;
        diesel::update(webhook_endpoints::table.find(e.id))
            .set((
                webhook_endpoints::previous_secret_enc.eq(Some(current)),
                webhook_endpoints::previous_expires_at.eq(Some(until)),
                webhook_endpoints::secret_enc.eq(&sealed),
                webhook_endpoints::updated_at.eq(now),
            ))
            .execute(c)
            .await?;
        let meta = serde_json::json!({"previous_secret_valid_until": until});
        audit::append(c, &principal.audit(&client, now, events::WEBHOOK_ROTATE_SECRET, "webhook", e.id, meta)).await?;
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(Rotated { secret, previous_secret_valid_until: until }))
}
