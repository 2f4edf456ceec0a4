//! /api/v1/api-keys

use crate::json_body::Json;
use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::format;
use crate::audit::{self, AuditEntry, ClientInfo};
use crate::auth::credential::announce_revoked;
use crate::auth::{Credential, Principal};
use crate::db::schema::api_keys;
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::rbac::permission::{Action, PermSet, Permission, Resource};
use crate::startup::AppState;

const ADMIN_READ: Permission = Permission::new(Resource::Admin, Action::Read);
const ADMIN_UPDATE: Permission = Permission::new(Resource::Admin, Action::Update);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(example = "Production API")]
    pub name: String,
    /// RBAC permissions, wildcards allowed: ["instances:read", "instances:create"].
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct KeyView {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    /// The secret. Shown only in this response: store it now.
    pub key: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Inserts a key; returns (id, secret). The caller writes the audit record
/// in the same transaction.
pub async fn insert_key(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    user: Uuid,
    name: &str,
    scopes: &[&str],
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> QueryResult<(Uuid, String)> {
    let key = format::generate();
    let id = Uuid::now_v7();
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(id),
            api_keys::org_id.eq(org),
            api_keys::user_id.eq(user),
            api_keys::name.eq(name),
            api_keys::prefix.eq(format::display_prefix(&key)),
            api_keys::key_hash.eq(format::hash(&key).to_vec()),
            api_keys::scopes.eq(scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            api_keys::created_at.eq(now),
            api_keys::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok((id, key))
}

/// Creates a key for the caller. Its scopes may not exceed the caller's
/// own permissions (403 naming the excess); at every request the key's
/// permissions are its scopes intersected with its owner's.
#[utoipa::path(tag = "api-keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 403), (status = 422)),
    security(("bearer" = [])))]
#[post("/api-keys")]
pub async fn create_key(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<CreateKey>,
) -> ApiResult<HttpResponse> {
    let name = crate::users::model::check_name("name", &body.name, 200)?;
    if body.scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "must list at least one permission"));
    }
    let requested = PermSet::parse_all(&body.scopes)
        .map_err(|bad| ApiError::invalid("scopes", format!("unknown permission {:?}", bad.0)))?;
    let missing = requested.minus(principal.perms.any());
    if missing != PermSet::EMPTY {
        return Err(ApiError::forbidden(missing.to_strings().join(", ")));
    }
    let now = state.clock.now();
    if body.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    let scopes: Vec<&str> = body.scopes.iter().map(String::as_str).collect();
    let mut conn = state.conn().await?;
    let (id, key) = conn
        .transaction(async |c| {
            let (id, key) =
                insert_key(c, principal.org_id, principal.user_id, &name, &scopes, body.expires_at, now).await?;
            let meta = serde_json::json!({"name": name, "scopes": body.scopes, "expires_at": body.expires_at});
            audit::append(c, &principal.audit(&client, now, events::API_KEY_CREATE, "api_key", id, meta)).await?;
            Ok::<_, ApiError>((id, key))
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedKey {
        id,
        name,
        scopes: body.scopes.clone(),
        prefix: format::display_prefix(&key),
        key,
        created_at: now,
        expires_at: body.expires_at,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// `org` lists every key in the organization (needs admin:read).
    pub all: Option<bool>,
}

/// The caller's keys; with `?all=true`, every key in the org (admin:read).
/// Never returns the secret.
#[utoipa::path(tag = "api-keys", params(ListQuery), responses((status = 200, body = [KeyView])),
    security(("bearer" = [])))]
#[get("/api-keys")]
pub async fn list_keys(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let mut query = api_keys::table
        .filter(api_keys::org_id.eq(principal.org_id))
        .select(KeyView::as_select())
        .order(api_keys::created_at.desc())
        .into_boxed();
    if q.all.unwrap_or(false) {
        principal.require(ADMIN_READ, None)?;
    } else {
        query = query.filter(api_keys::user_id.eq(principal.user_id));
    }
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(query.load::<KeyView>(&mut conn).await?))
}

async fn visible_key(conn: &mut AsyncPgConnection, principal: &Principal, id: Uuid) -> ApiResult<KeyView> {
    let key: KeyView = api_keys::table
        .filter(api_keys::id.eq(id).and(api_keys::org_id.eq(principal.org_id)))
        .select(KeyView::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("api key"))?;
    if key.user_id != principal.user_id && !principal.can(ADMIN_READ, None) {
        return Err(ApiError::not_found("api key"));
    }
    Ok(key)
}

/// One key (the caller's own, or any in the org with admin:read).
#[utoipa::path(tag = "api-keys", params(("key_id" = Uuid, Path)),
    responses((status = 200, body = KeyView), (status = 404)),
    security(("bearer" = [])))]
#[get("/api-keys/{key_id}")]
pub async fn get_key(state: web::Data<AppState>, principal: Principal, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(visible_key(&mut conn, &principal, *id).await?))
}

/// Revokes a key (the caller's own, or any in the org with admin:update).
/// It stops working on every replica at the next request.
#[utoipa::path(tag = "api-keys", params(("key_id" = Uuid, Path)),
    responses((status = 204), (status = 403), (status = 404)),
    security(("bearer" = [])))]
#[delete("/api-keys/{key_id}")]
pub async fn revoke_key(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.conn().await?;
    let key = visible_key(&mut conn, &principal, *id).await?;
    if key.user_id != principal.user_id {
        principal.require(ADMIN_UPDATE, None)?;
    }
    let now = state.clock.now();
    let entry: AuditEntry =
        principal.audit(&client, now, events::API_KEY_REVOKE, "api_key", key.id, serde_json::json!({"name": key.name}));
    let revoked = conn
        .transaction(async |c| {
            let n = diesel::update(api_keys::table.find(key.id))
                .filter(api_keys::revoked_at.is_null())
                .set(api_keys::revoked_at.eq(now))
                .execute(c)
                .await?;
            if n > 0 {
                audit::append(c, &entry).await?;
            }
            Ok::<_, ApiError>(n > 0)
        })
        .await?;
    if revoked {
        announce_revoked(&state, Credential::ApiKey(key.id)).await;
    }
    Ok(HttpResponse::NoContent().finish())
}
