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

/// The role `id` as it is now, locked `FOR SHARE` until the end of the
/// caller's transaction; `None` when it was deleted meanwhile.
///
/// Every assignment (a team membership added or changed, an org-wide role
/// set) calls this inside its transaction and checks the grant against the
/// row it returns, not against the role as read before the transaction.
/// Why: `update_role` locks the role `FOR UPDATE`, checks the places where
/// the role is held, and widens it. An assignment checked beforehand
/// against the old permissions would only wait on that lock in its foreign
/// key check, then commit next to the edit: the new holder gets the widened
/// role in a team that neither check covered. `FOR SHARE` conflicts with
/// `FOR UPDATE` (and with the edit's own row lock): the assignment waits
/// for a pending edit and then reads the permissions it committed
/// (PostgreSQL returns the row's latest version after waiting), and an
/// edit that comes later waits for the assignment to commit and finds it
/// among the holders. Either way one of the two checks covers the other.
/// Shared locks do not conflict with each other: assignments of one role
/// do not queue behind each other.
pub async fn lock_role_for_grant(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Role>> {
    roles::table.find(id).select(Role::as_select()).for_share().first(conn).await.optional()
}
