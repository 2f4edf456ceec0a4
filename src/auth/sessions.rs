//! Sessions and their rotating refresh tokens, in PostgreSQL.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::tokens;
use crate::db::schema::{refresh_tokens, sessions};

pub struct NewSession {
    pub id: Uuid,
    pub refresh_token: String,
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    org: Uuid,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> QueryResult<NewSession> {
    let id = Uuid::new_v4();
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(id),
            sessions::user_id.eq(user),
            sessions::org_id.eq(org),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(now + Duration::seconds(ttl_secs)),
        ))
        .execute(conn)
        .await?;
    let refresh_token = issue_refresh(conn, id, now).await?;
    Ok(NewSession { id, refresh_token })
}

async fn issue_refresh(conn: &mut AsyncPgConnection, session: Uuid, now: DateTime<Utc>) -> QueryResult<String> {
    let token = tokens::new_refresh_token();
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(tokens::digest(&token)),
            refresh_tokens::session_id.eq(session),
            refresh_tokens::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(token)
}

pub enum Refreshed {
    Rotated {
        session: Uuid,
        user: Uuid,
        org: Uuid,
        refresh_token: String,
    },
    /// A used token came back: the session is now revoked.
    Reused {
        session: Uuid,
    },
    Invalid,
}

/// Rotates a refresh token. Run inside a transaction.
pub async fn rotate(conn: &mut AsyncPgConnection, token: &str, now: DateTime<Utc>) -> QueryResult<Refreshed> {
    let row: Option<(Uuid, Option<DateTime<Utc>>)> = refresh_tokens::table
        .find(tokens::digest(token))
        .select((refresh_tokens::session_id, refresh_tokens::used_at))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let Some((session_id, used_at)) = row else {
        return Ok(Refreshed::Invalid);
    };
    let session: (Uuid, Uuid, DateTime<Utc>, Option<DateTime<Utc>>) = sessions::table
        .find(session_id)
        .select((sessions::user_id, sessions::org_id, sessions::expires_at, sessions::revoked_at))
        .for_update()
        .first(conn)
        .await?;
    let (user, org, expires_at, revoked_at) = session;
    if used_at.is_some() {
        if revoked_at.is_none() {
            revoke(conn, session_id, now).await?;
        }
        return Ok(Refreshed::Reused { session: session_id });
    }
    if revoked_at.is_some() || expires_at <= now {
        return Ok(Refreshed::Invalid);
    }
    diesel::update(refresh_tokens::table.find(tokens::digest(token)))
        .set(refresh_tokens::used_at.eq(now))
        .execute(conn)
        .await?;
    let refresh_token = issue_refresh(conn, session_id, now).await?;
    Ok(Refreshed::Rotated { session: session_id, user, org, refresh_token })
}

pub async fn revoke(conn: &mut AsyncPgConnection, session: Uuid, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(sessions::table.find(session))
        .filter(sessions::revoked_at.is_null())
        .set(sessions::revoked_at.eq(now))
        .execute(conn)
        .await
}
