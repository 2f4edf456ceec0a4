//! Role rows and lookups shared by the RBAC routes.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::permission::PermSet;
use crate::db::schema::roles;

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = roles)]
pub struct Role {
    pub id: Uuid,
    #[serde(skip)]
    pub org_id: Option<Uuid>,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    /// Built-in roles (the seed's four) cannot be edited or deleted.
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Role {
    pub fn perms(&self) -> PermSet {
        PermSet::parse_lossy(&self.permissions)
    }
}

/// A built-in role or one of `org`'s custom roles, by id or by name.
pub async fn find_role(conn: &mut AsyncPgConnection, org: Uuid, id_or_name: &str) -> QueryResult<Option<Role>> {
    // No role name holds a NUL (PostgreSQL refuses it in text): not found.
    if id_or_name.contains('\0') {
        return Ok(None);
    }
    let visible = roles::org_id.is_null().or(roles::org_id.eq(org));
    let q = roles::table.filter(visible).select(Role::as_select());
    match Uuid::parse_str(id_or_name) {
        Ok(id) => q.filter(roles::id.eq(id)).first(conn).await.optional(),
        Err(_) => q.filter(roles::name.eq(id_or_name)).first(conn).await.optional(),
    }
}
