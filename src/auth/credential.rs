//! Turning a bearer token into a `Principal`, on every request.
//!
//! One Redis round trip fetches both the org's authorization version and
//! the credential's state ("1" active, "0" revoked); when Redis cannot
//! answer, PostgreSQL does. Revocations overwrite the Redis entry, so they
//! reach every replica on its next request.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::principal::{Credential, Principal};
use crate::api_keys;
use crate::db::schema::{api_keys as keys_t, orgs, sessions};
use crate::error::{ApiError, ApiResult};
use crate::rbac::actor::RetrySet;
use crate::startup::AppState;

/// How long an "active" credential state may be cached.
const ACTIVE_TTL_SECS: u64 = 300;
/// Revocation markers outlive any token they could concern.
const REVOKED_TTL_SECS: u64 = 60 * 60 * 24 * 31;

pub fn state_key(state: &AppState, c: Credential) -> String {
    match c {
        Credential::Session(id) => state.cache.key(&format!("cred:s:{id}")),
        Credential::ApiKey(id) => state.cache.key(&format!("cred:k:{id}")),
    }
}

/// Marks a credential revoked in Redis after the database commit; retried
/// by the RBAC actor if Redis refuses.
pub async fn announce_revoked(state: &AppState, c: Credential) {
    let key = state_key(state, c);
    if !state.cache.set_ex(&key, "0", REVOKED_TTL_SECS).await {
        state.rbac.do_send(RetrySet { key, value: "0".into(), ttl_secs: REVOKED_TTL_SECS });
    }
}

struct Presented {
    user_id: Uuid,
    org_id: Uuid,
    credential: Credential,
    scopes: Option<crate::rbac::permission::PermSet>,
}

pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<Principal> {
    let now = state.clock.now();
    // A connection is taken only when a cache misses: the warm path is one
    // Redis round trip and no database work.
    let mut conn: Option<crate::db::DbConn> = None;
    let presented = if api_keys::format::looks_like_key(token) {
        // A mistyped key (bad checksum) is refused before any pool checkout,
        // so it is a 401 even when the database is down or saturated.
        if !api_keys::format::is_well_formed(token) {
            return Err(ApiError::unauthenticated());
        }
        let rec = match state.keys.cached(token, now) {
            Some(hit) => hit,
            None => state
                .keys
                .resolve(db(state, &mut conn).await?, token, now)
                .await?
                .ok_or_else(ApiError::unauthenticated)?,
        };
        Presented {
            user_id: rec.user_id,
            org_id: rec.org_id,
            credential: Credential::ApiKey(rec.id),
            scopes: Some(rec.scopes),
        }
    } else {
        let claims = state.tokens.verify(token, now).ok_or_else(ApiError::unauthenticated)?;
        Presented { user_id: claims.sub, org_id: claims.org, credential: Credential::Session(claims.sid), scopes: None }
    };

    let version_key = state.authorizer.version_key(presented.org_id);
    let cred_key = state_key(state, presented.credential);
    let cached = state.cache.mget(&[version_key, cred_key.clone()]).await;
    let (version, active) = match cached.as_deref() {
        Some([Some(v), Some(c)]) if v.parse::<i64>().is_ok() => (v.parse::<i64>().unwrap_or(0), c == "1"),
        _ => {
            let (v, active) = from_database(db(state, &mut conn).await?, &presented, now).await?;
            if cached.is_some() {
                // Redis answered but lacked an entry: fill it.
                state.authorizer.announce(presented.org_id, v).await;
                state.cache.set_nx_ex(&cred_key, if active { "1" } else { "0" }, ACTIVE_TTL_SECS).await;
            }
            (v, active)
        }
    };
    if !active {
        return Err(ApiError::unauthenticated());
    }
    let eff = match state.authorizer.cached(presented.user_id, version) {
        Some(hit) => hit,
        None => state
            .authorizer
            .effective(db(state, &mut conn).await?, presented.org_id, presented.user_id, version)
            .await?
            .ok_or_else(ApiError::unauthenticated)?,
    };
    let perms = match presented.scopes {
        Some(scopes) => Arc::new(eff.restricted_to(scopes)),
        None => eff,
    };
    if let Credential::ApiKey(id) = presented.credential {
        state.keys.touch(id, now);
    }
    Ok(Principal {
        user_id: presented.user_id,
        org_id: presented.org_id,
        email: perms.email.clone(),
        perms,
        credential: presented.credential,
    })
}

/// The request's connection, taken from the pool on first use.
async fn db<'a>(
    state: &AppState,
    slot: &'a mut Option<crate::db::DbConn>,
) -> ApiResult<&'a mut diesel_async::AsyncPgConnection> {
    if slot.is_none() {
        *slot = Some(state.conn().await?);
    }
    match slot {
        Some(c) => Ok(&mut **c),
        None => Err(ApiError::Unavailable("database unavailable".into())),
    }
}

async fn from_database(
    conn: &mut diesel_async::AsyncPgConnection,
    p: &Presented,
    now: DateTime<Utc>,
) -> ApiResult<(i64, bool)> {
    let version: i64 = orgs::table
        .find(p.org_id)
        .select(orgs::authz_version)
        .first(conn)
        .await
        .optional()?
        .ok_or_else(ApiError::unauthenticated)?;
    let active = match p.credential {
        Credential::Session(sid) => {
            sessions::table
                .find(sid)
                .filter(sessions::user_id.eq(p.user_id))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::expires_at.gt(now))
                .count()
                .get_result::<i64>(conn)
                .await?
                > 0
        }
        Credential::ApiKey(id) => {
            keys_t::table.find(id).filter(keys_t::revoked_at.is_null()).count().get_result::<i64>(conn).await? > 0
        }
    };
    Ok((version, active))
}
