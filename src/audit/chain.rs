//! Appending to an org's hash chain. Each record's hash covers the previous
//! hash and a canonical JSON encoding of the record (fixed field order,
//! object keys sorted, timestamps to the microsecond, metadata as jsonb
//! returns it).

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::schema::{audit_heads, audit_logs};

/// What a handler says happened; who, from where and when are filled in
/// from the request.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub org_id: Uuid,
    pub user_id: Option<Uuid>,
    pub user_email: Option<String>,
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub metadata: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// The fields a record's hash covers, in this order.
#[derive(Serialize)]
pub struct Canonical<'a> {
    pub id: Uuid,
    pub org_id: Uuid,
    pub seq: i64,
    pub timestamp: String,
    pub user_id: Option<Uuid>,
    pub user_email: Option<&'a str>,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<&'a str>,
    pub ip_address: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub metadata: &'a serde_json::Value,
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The hash covers the metadata as jsonb hands it back (see `as_stored`),
/// which is what `verify` re-hashes.
pub fn chain_hash(prev: &[u8], record: &Canonical<'_>) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(serde_json::to_vec(record).unwrap_or_default());
    h.finalize().to_vec()
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    m: serde_json::Value,
}

/// Each entry's metadata as PostgreSQL will return it from the jsonb
/// column. jsonb is not the JSON that came in: numbers become `numeric`
/// (-0.0 comes back as 0.0, 1e19 as an integer), so hashing the incoming
/// value would let `verify` report an untouched record as altered. Asking
/// PostgreSQL itself (one round trip per batch) matches it in every case.
async fn as_stored(conn: &mut AsyncPgConnection, entries: &[AuditEntry]) -> QueryResult<Vec<serde_json::Value>> {
    let values: Vec<&serde_json::Value> = entries.iter().map(|e| &e.metadata).collect();
    let rows: Vec<Stored> =
        diesel::sql_query("SELECT m FROM unnest($1::jsonb[]) WITH ORDINALITY AS t(m, i) ORDER BY i")
            .bind::<diesel::sql_types::Array<diesel::sql_types::Jsonb>, _>(values)
            .load(conn)
            .await?;
    if rows.len() != entries.len() {
        return Err(diesel::result::Error::QueryBuilderError("jsonb round trip lost entries".into()));
    }
    Ok(rows.into_iter().map(|r| r.m).collect())
}

pub const GENESIS: [u8; 32] = [0; 32];

#[derive(Insertable)]
#[diesel(table_name = audit_logs)]
struct NewRecord<'a> {
    id: Uuid,
    org_id: Uuid,
    seq: i64,
    occurred_at: DateTime<Utc>,
    user_id: Option<Uuid>,
    user_email: Option<&'a str>,
    action: &'a str,
    resource_type: &'a str,
    resource_id: Option<&'a str>,
    ip_address: Option<&'a str>,
    user_agent: Option<&'a str>,
    metadata: &'a serde_json::Value,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

/// Appends a record to its org's chain. Call inside the transaction that
/// makes the change, as late as possible: it locks the org's chain head
/// until commit.
pub async fn append(conn: &mut AsyncPgConnection, e: &AuditEntry) -> QueryResult<Uuid> {
    Ok(append_many(conn, std::slice::from_ref(e)).await?.into_iter().next().unwrap_or_default())
}

/// Appends records (of any orgs) in one transaction: one head lock and one
/// multi-row INSERT per org, orgs locked in id order so that concurrent
/// batches cannot deadlock.
pub async fn append_many(conn: &mut AsyncPgConnection, entries: &[AuditEntry]) -> QueryResult<Vec<Uuid>> {
    let mut orgs: Vec<Uuid> = entries.iter().map(|e| e.org_id).collect();
    orgs.sort();
    orgs.dedup();
    let mut ids = vec![Uuid::nil(); entries.len()];
    let stored = as_stored(conn, entries).await?;
    for org in orgs {
        diesel::insert_into(audit_heads::table)
            .values((audit_heads::org_id.eq(org), audit_heads::seq.eq(0i64), audit_heads::hash.eq(GENESIS.to_vec())))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        let (mut seq, mut prev): (i64, Vec<u8>) = audit_heads::table
            .find(org)
            .select((audit_heads::seq, audit_heads::hash))
            .for_update()
            .get_result(conn)
            .await?;
        let mut rows = Vec::new();
        for (i, e) in entries.iter().enumerate().filter(|(_, e)| e.org_id == org) {
            let id = Uuid::now_v7();
            seq += 1;
            let hash = chain_hash(&prev, &canonical(id, seq, e, &stored[i]));
            ids[i] = id;
            rows.push(NewRecord {
                id,
                org_id: org,
                seq,
                occurred_at: e.at,
                user_id: e.user_id,
                user_email: e.user_email.as_deref(),
                action: e.action,
                resource_type: e.resource_type,
                resource_id: e.resource_id.as_deref(),
                ip_address: e.ip_address.as_deref(),
                user_agent: e.user_agent.as_deref(),
                metadata: &e.metadata,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            });
        }
        // PostgreSQL caps a statement at 65535 bind parameters (14 per row).
        for chunk in rows.chunks(4000) {
            diesel::insert_into(audit_logs::table).values(chunk).execute(conn).await?;
        }
        diesel::update(audit_heads::table.find(org))
            .set((audit_heads::seq.eq(seq), audit_heads::hash.eq(&prev)))
            .execute(conn)
            .await?;
    }
    Ok(ids)
}

fn canonical<'a>(id: Uuid, seq: i64, e: &'a AuditEntry, metadata: &'a serde_json::Value) -> Canonical<'a> {
    Canonical {
        id,
        org_id: e.org_id,
        seq,
        timestamp: timestamp(e.at),
        user_id: e.user_id,
        user_email: e.user_email.as_deref(),
        action: e.action,
        resource_type: e.resource_type,
        resource_id: e.resource_id.as_deref(),
        ip_address: e.ip_address.as_deref(),
        user_agent: e.user_agent.as_deref(),
        metadata,
    }
}
