//! Effective permission sets, read on every request without a mailbox:
//! an in-process cache, then Redis, then PostgreSQL. Entries are keyed by
//! the org's authorization version (bumped in the same transaction as any
//! change), so a stale entry is never read and nothing needs sweeping.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::effective::Effective;
use super::permission::PermSet;
use crate::cache::Cache;
use crate::db::schema::{orgs, roles, team_members, users};

pub struct Authorizer {
    local: moka::sync::Cache<(Uuid, i64), Arc<Effective>>,
    cache: Cache,
    ttl_secs: u64,
}

impl Authorizer {
    pub fn new(cache: Cache, capacity: u64, ttl_secs: u64) -> Self {
        Authorizer {
            local: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(Duration::from_secs(ttl_secs))
                .build(),
            cache,
            ttl_secs,
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn version_key(&self, org: Uuid) -> String {
        self.cache.key(&format!("authz:{org}"))
    }

    fn perm_key(&self, org: Uuid, version: i64, user: Uuid) -> String {
        self.cache.key(&format!("perm:{org}:{version}:{user}"))
    }

    /// The in-process layer only: the hot path's first stop.
    pub fn cached(&self, user: Uuid, version: i64) -> Option<Arc<Effective>> {
        self.local.get(&(user, version))
    }

    /// `None` when the user no longer exists in the org.
    pub async fn effective(
        &self,
        conn: &mut AsyncPgConnection,
        org: Uuid,
        user: Uuid,
        version: i64,
    ) -> QueryResult<Option<Arc<Effective>>> {
        if let Some(hit) = self.cached(user, version) {
            return Ok(Some(hit));
        }
        let key = self.perm_key(org, version, user);
        if let Some(Some(json)) = self.cache.get(&key).await
            && let Ok(e) = serde_json::from_str::<Effective>(&json)
        {
            let e = Arc::new(e);
            self.local.insert((user, version), e.clone());
            return Ok(Some(e));
        }
        let Some(e) = load(conn, org, user).await? else {
            return Ok(None);
        };
        if let Ok(json) = serde_json::to_string(&e) {
            self.cache.set_ex(&key, &json, self.ttl_secs).await;
        }
        let e = Arc::new(e);
        self.local.insert((user, version), e.clone());
        Ok(Some(e))
    }

    /// Publishes a version read from (or bumped in) PostgreSQL. Never lowers it.
    pub async fn announce(&self, org: Uuid, version: i64) -> bool {
        self.cache.set_max(&self.version_key(org), version, self.ttl_secs).await
    }
}

/// Computes a user's effective permissions from PostgreSQL.
pub async fn load(conn: &mut AsyncPgConnection, org: Uuid, user: Uuid) -> QueryResult<Option<Effective>> {
    let row: Option<(String, Option<Vec<String>>)> = users::table
        .left_join(roles::table.on(roles::id.nullable().eq(users::org_role_id)))
        .filter(users::id.eq(user).and(users::org_id.eq(org)))
        .select((users::email, roles::permissions.nullable()))
        .first(conn)
        .await
        .optional()?;
    let Some((email, org_perms)) = row else {
        return Ok(None);
    };
    let teams: Vec<(Uuid, Vec<String>)> = team_members::table
        .inner_join(roles::table)
        .filter(team_members::user_id.eq(user))
        .select((team_members::team_id, roles::permissions))
        .load(conn)
        .await?;
    Ok(Some(Effective {
        user_id: user,
        org_id: org,
        email,
        org_role: org_perms.map(|p| PermSet::parse_lossy(&p)).unwrap_or_default(),
        teams: teams.into_iter().map(|(t, p)| (t, PermSet::parse_lossy(&p))).collect(),
    }))
}

/// Bumps the org's authorization version; call in the transaction that
/// changes anyone's permissions, then `announce` the result after commit.
pub async fn bump_version(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<i64> {
    diesel::update(orgs::table.find(org))
        .set(orgs::authz_version.eq(orgs::authz_version + 1))
        .returning(orgs::authz_version)
        .get_result(conn)
        .await
}
