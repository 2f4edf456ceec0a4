//! An audit record as stored and as returned by the API.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::chain::{Canonical, timestamp};
use crate::db::schema::audit_logs;

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = audit_logs)]
pub struct AuditRecord {
    pub id: Uuid,
    pub org_id: Uuid,
    /// Position in the org's hash chain.
    pub seq: i64,
    /// RFC 3339, UTC.
    #[serde(rename = "timestamp")]
    pub occurred_at: DateTime<Utc>,
    pub user_id: Option<Uuid>,
    pub user_email: Option<String>,
    #[schema(example = "instance.create")]
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[serde(skip)]
    pub prev_hash: Vec<u8>,
    /// SHA-256 chain hash, hex.
    #[serde(serialize_with = "as_hex")]
    #[schema(value_type = String)]
    pub hash: Vec<u8>,
}

fn as_hex<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

impl AuditRecord {
    pub fn canonical(&self) -> Canonical<'_> {
        Canonical {
            id: self.id,
            org_id: self.org_id,
            seq: self.seq,
            timestamp: timestamp(self.occurred_at),
            user_id: self.user_id,
            user_email: self.user_email.as_deref(),
            action: &self.action,
            resource_type: &self.resource_type,
            resource_id: self.resource_id.as_deref(),
            ip_address: self.ip_address.as_deref(),
            user_agent: self.user_agent.as_deref(),
            metadata: &self.metadata,
        }
    }
}
