use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::schema::{roles, users};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub name: String,
    /// The org-wide role, if any (applies in every team).
    pub org_role: Option<String>,
    pub created_at: DateTime<Utc>,
}

type Row = (Uuid, Uuid, String, String, Option<String>, DateTime<Utc>);

impl From<Row> for UserView {
    fn from((id, org_id, email, name, org_role, created_at): Row) -> Self {
        UserView { id, org_id, email, name, org_role, created_at }
    }
}

/// Users of `org`, optionally one of them.
pub async fn list(conn: &mut AsyncPgConnection, org: Uuid, only: Option<Uuid>) -> QueryResult<Vec<UserView>> {
    let mut q = users::table
        .left_join(roles::table.on(roles::id.nullable().eq(users::org_role_id)))
        .filter(users::org_id.eq(org))
        .select((users::id, users::org_id, users::email, users::name, roles::name.nullable(), users::created_at))
        .order(users::created_at.asc())
        .into_boxed();
    if let Some(id) = only {
        q = q.filter(users::id.eq(id));
    }
    Ok(q.load::<Row>(conn).await?.into_iter().map(UserView::from).collect())
}

pub async fn get(conn: &mut AsyncPgConnection, org: Uuid, id: Uuid) -> ApiResult<UserView> {
    list(conn, org, Some(id)).await?.into_iter().next().ok_or_else(|| ApiError::not_found("user"))
}

pub fn normalize_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_lowercase();
    crate::validate::single_line("email", &email)?;
    if email.len() > 254 || !email_address::EmailAddress::is_valid(&email) {
        return Err(ApiError::invalid("email", "not a valid e-mail address"));
    }
    Ok(email)
}

pub fn check_name(field: &str, name: &str, max: usize) -> ApiResult<String> {
    let n = name.trim();
    if n.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if n.chars().count() > max {
        return Err(ApiError::invalid(field, format!("must be at most {max} characters")));
    }
    crate::validate::single_line(field, n)?;
    Ok(n.to_string())
}

/// Inserts a user; the caller has hashed the password and checked the role.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    email: &str,
    name: &str,
    password_hash: Option<&str>,
    org_role_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> QueryResult<Uuid> {
    let id = Uuid::now_v7();
    diesel::insert_into(users::table)
        .values((
            users::id.eq(id),
            users::org_id.eq(org),
            users::email.eq(email),
            users::name.eq(name),
            users::password_hash.eq(password_hash),
            users::org_role_id.eq(org_role_id),
            users::created_at.eq(now),
            users::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(id)
}
