//! Resolving a presented key to its record, on every request: an in-process
//! cache by hash, else PostgreSQL. Revocation is not decided here but by the
//! shared credential state (see `auth::credential`), so that it reaches
//! every replica at once. `last_used_at` is buffered and written by the
//! API key actor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::format;
use crate::db::schema::api_keys;
use crate::rbac::permission::PermSet;

#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub scopes: PermSet,
    pub expires_at: Option<DateTime<Utc>>,
}

type KeyRow = (Uuid, Uuid, Uuid, Vec<String>, Option<DateTime<Utc>>, Vec<u8>);

pub struct KeyStore {
    by_hash: moka::sync::Cache<[u8; 32], Arc<KeyRecord>>,
    last_used: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

impl Default for KeyStore {
    fn default() -> Self {
        KeyStore {
            by_hash: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(600)).build(),
            last_used: Mutex::new(HashMap::new()),
        }
    }
}

impl KeyStore {
    /// The in-process layer alone (no database): `None` on a miss, and for
    /// malformed or expired keys (which `resolve` then refuses).
    pub fn cached(&self, key: &str, now: DateTime<Utc>) -> Option<Arc<KeyRecord>> {
        if !format::is_well_formed(key) {
            return None;
        }
        self.by_hash.get(&format::hash(key)).filter(|r| r.expires_at.is_none_or(|e| e > now))
    }

    /// `None` for malformed, unknown, revoked (as far as this replica's
    /// database read knows) and expired keys alike.
    pub async fn resolve(
        &self,
        conn: &mut AsyncPgConnection,
        key: &str,
        now: DateTime<Utc>,
    ) -> QueryResult<Option<Arc<KeyRecord>>> {
        if !format::is_well_formed(key) {
            return Ok(None);
        }
        let digest = format::hash(key);
        let record = match self.by_hash.get(&digest) {
            Some(r) => r,
            None => {
                let row: Option<KeyRow> = api_keys::table
                    .filter(api_keys::key_hash.eq(digest.to_vec()))
                    .filter(api_keys::revoked_at.is_null())
                    .select((
                        api_keys::id,
                        api_keys::user_id,
                        api_keys::org_id,
                        api_keys::scopes,
                        api_keys::expires_at,
                        api_keys::key_hash,
                    ))
                    .first(conn)
                    .await
                    .optional()?;
                let Some((id, user_id, org_id, scopes, expires_at, stored)) = row else {
                    return Ok(None);
                };
                // The index found it; compare anyway, in constant time.
                if !bool::from(stored.as_slice().ct_eq(digest.as_slice())) {
                    return Ok(None);
                }
                let r = Arc::new(KeyRecord { id, user_id, org_id, scopes: PermSet::parse_lossy(&scopes), expires_at });
                self.by_hash.insert(digest, r.clone());
                r
            }
        };
        if record.expires_at.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        Ok(Some(record))
    }

    pub fn touch(&self, id: Uuid, at: DateTime<Utc>) {
        if let Ok(mut m) = self.last_used.lock() {
            // The latest use wins (a failed write puts an older time back).
            let t = m.entry(id).or_insert(at);
            *t = (*t).max(at);
        }
    }

    pub fn take_last_used(&self) -> HashMap<Uuid, DateTime<Utc>> {
        self.last_used.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default()
    }
}
