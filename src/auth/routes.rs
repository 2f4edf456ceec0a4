//! POST /api/v1/auth/login, /refresh, /logout.

use crate::json_body::Json;
use actix_web::{HttpResponse, post, web};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::credential::announce_revoked;
use super::password;
use super::principal::{Credential, Principal};
use super::sessions::{self, Refreshed};
use crate::audit::{self, AuditEntry, ClientInfo};
use crate::db::schema::users;
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::startup::AppState;

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "admin@example.com")]
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always "Bearer".
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single use: each refresh returns a new one.
    pub refresh_token: String,
}

fn token_response(
    state: &AppState,
    user: Uuid,
    org: Uuid,
    sid: Uuid,
    refresh_token: String,
) -> ApiResult<TokenResponse> {
    let access_token = state.tokens.issue(user, org, sid, state.clock.now())?;
    Ok(TokenResponse { access_token, token_type: "Bearer", expires_in: state.tokens.access_ttl_secs, refresh_token })
}

type Checked = (crate::db::DbConn, Option<(Uuid, Uuid, Option<String>)>, bool);

/// The account of `email` (if any) and whether `password` is its password.
/// An unknown e-mail still costs a dummy hash check.
async fn check_password(state: &AppState, email: &str, password: &str) -> ApiResult<Checked> {
    let mut conn = state.conn().await?;
    // PostgreSQL refuses NUL in text, so no account has one: such an e-mail
    // is an unknown one (not a 500).
    let user: Option<(Uuid, Uuid, Option<String>)> = if email.contains('\0') {
        None
    } else {
        users::table
            .filter(users::email.eq(email))
            .select((users::id, users::org_id, users::password_hash))
            .first(&mut conn)
            .await
            .optional()?
    };
    let ok = password::verify(password.to_string(), user.as_ref().and_then(|u| u.2.clone())).await?;
    Ok((conn, user, ok))
}

/// Exchanges an e-mail and password for a session.
#[utoipa::path(tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401), (status = 429)),
    security(()))]
#[post("/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    let email = body.email.trim().to_lowercase();
    let attempt = match state.limiter.begin(&email, client.ip).await {
        Ok(attempt) => attempt,
        Err(retry_after_secs) => return Err(ApiError::TooManyRequests { retry_after_secs }),
    };
    let (mut conn, user, ok) = match check_password(&state, &email, &body.password).await {
        Ok(checked) => checked,
        Err(e) => {
            state.limiter.not_a_failure(attempt).await;
            return Err(e);
        }
    };
    let now = state.clock.now();
    let Some((user_id, org_id, _)) = user.clone().filter(|_| ok) else {
        // The attempt stays counted: it failed.
        drop(attempt);
        if let Some((user_id, org_id, _)) = user {
            let entry = AuditEntry {
                org_id,
                user_id: Some(user_id),
                user_email: Some(email.clone()),
                action: events::AUTH_LOGIN_FAILED,
                resource_type: "user",
                resource_id: Some(user_id.to_string()),
                ip_address: client.ip_string(),
                user_agent: client.user_agent.clone(),
                metadata: serde_json::json!({}),
                at: now,
            };
            conn.transaction(async |c| audit::append(c, &entry).await).await?;
        }
        return Err(ApiError::Unauthorized("invalid email or password".into()));
    };
    state.limiter.succeeded(attempt, &email).await;
    let ttl = state.settings.auth.refresh_token_ttl_secs;
    let session = conn
        .transaction(async |c| {
            let s = sessions::create(c, user_id, org_id, now, ttl).await?;
            let entry = AuditEntry {
                org_id,
                user_id: Some(user_id),
                user_email: Some(email.clone()),
                action: events::AUTH_LOGIN,
                resource_type: "session",
                resource_id: Some(s.id.to_string()),
                ip_address: client.ip_string(),
                user_agent: client.user_agent.clone(),
                metadata: serde_json::json!({"method": "password"}),
                at: now,
            };
            audit::append(c, &entry).await?;
            Ok::<_, ApiError>(s)
        })
        .await?;
    Ok(HttpResponse::Ok().json(token_response(&state, user_id, org_id, session.id, session.refresh_token)?))
}

/// Rotates a refresh token: returns a new pair; the old refresh token stops
/// working, and presenting it again revokes the whole session.
#[utoipa::path(tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401)),
    security(()))]
#[post("/auth/refresh")]
pub async fn refresh(state: web::Data<AppState>, body: Json<RefreshRequest>) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    let mut conn = state.conn().await?;
    let token = body.refresh_token.clone();
    let outcome = conn.transaction(async |c| sessions::rotate(c, &token, now).await).await?;
    match outcome {
        Refreshed::Rotated { session, user, org, refresh_token } => {
            Ok(HttpResponse::Ok().json(token_response(&state, user, org, session, refresh_token)?))
        }
        Refreshed::Reused { session } => {
            tracing::warn!(%session, "refresh token reused; session revoked");
            announce_revoked(&state, Credential::Session(session)).await;
            Err(ApiError::unauthenticated())
        }
        Refreshed::Invalid => Err(ApiError::unauthenticated()),
    }
}

/// Ends the caller's session: its access and refresh tokens stop working at
/// once on every replica.
#[utoipa::path(tag = "auth", responses((status = 204), (status = 401), (status = 422)),
    security(("bearer" = [])))]
#[post("/auth/logout")]
pub async fn logout(state: web::Data<AppState>, principal: Principal, client: ClientInfo) -> ApiResult<HttpResponse> {
    let Credential::Session(sid) = principal.credential else {
        return Err(ApiError::invalid(
            "authorization",
            "logout ends a session; revoke an API key with DELETE /api/v1/api-keys/{id}",
        ));
    };
    let now = state.clock.now();
    let entry = principal.audit(&client, now, events::AUTH_LOGOUT, "session", sid, serde_json::json!({}));
    let mut conn = state.conn().await?;
    conn.transaction(async |c| {
        sessions::revoke(c, sid, now).await?;
        audit::append(c, &entry).await?;
        Ok::<_, ApiError>(())
    })
    .await?;
    announce_revoked(&state, principal.credential).await;
    Ok(HttpResponse::NoContent().finish())
}
