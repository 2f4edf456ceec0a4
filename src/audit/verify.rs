//! Re-walks an org's hash chain from its checkpoint (or the genesis) to its
//! head, in pages, and names the first record that does not fit.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::chain::{GENESIS, chain_hash};
use super::record::AuditRecord;
use crate::db::schema::{audit_checkpoints, audit_heads, audit_logs};

#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    pub valid: bool,
    pub records_checked: i64,
    /// The first record that was altered, or that follows removed records.
    pub first_invalid_id: Option<Uuid>,
    /// Why the chain is invalid.
    pub reason: Option<String>,
}

const PAGE: i64 = 5000;

/// Verifies in one `REPEATABLE READ READ ONLY` transaction: the checkpoint,
/// every page and the head come from one snapshot, so a record appended or a
/// retention run committed while we walk cannot look like a removal.
pub async fn verify(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<Verification> {
    conn.build_transaction().repeatable_read().read_only().run(async |c| walk(c, org).await).await
}

async fn walk(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<Verification> {
    let (mut expected_seq, mut prev): (i64, Vec<u8>) = audit_checkpoints::table
        .find(org)
        .select((audit_checkpoints::seq, audit_checkpoints::hash))
        .first(conn)
        .await
        .optional()?
        .unwrap_or((0, GENESIS.to_vec()));
    expected_seq += 1;
    let mut checked = 0i64;
    let invalid = |checked, id, reason: &str| Verification {
        valid: false,
        records_checked: checked,
        first_invalid_id: id,
        reason: Some(reason.to_string()),
    };
    loop {
        let rows: Vec<AuditRecord> = audit_logs::table
            .filter(audit_logs::org_id.eq(org).and(audit_logs::seq.ge(expected_seq)))
            .select(AuditRecord::as_select())
            .order(audit_logs::seq.asc())
            .limit(PAGE)
            .load(conn)
            .await?;
        let n = rows.len();
        for r in rows {
            checked += 1;
            if r.seq != expected_seq {
                return Ok(invalid(checked, Some(r.id), "records before this one were removed"));
            }
            if r.prev_hash != prev {
                return Ok(invalid(checked, Some(r.id), "its previous-hash link does not match the record before it"));
            }
            if chain_hash(&prev, &r.canonical()) != r.hash {
                return Ok(invalid(checked, Some(r.id), "its content does not match its hash"));
            }
            prev = r.hash;
            expected_seq += 1;
        }
        if (n as i64) < PAGE {
            break;
        }
    }
    let head: Option<(i64, Vec<u8>)> =
        audit_heads::table.find(org).select((audit_heads::seq, audit_heads::hash)).first(conn).await.optional()?;
    if let Some((seq, hash)) = head
        && (seq != expected_seq - 1 || hash != prev)
    {
        return Ok(invalid(checked, None, "records at the end of the chain were removed"));
    }
    Ok(Verification { valid: true, records_checked: checked, first_invalid_id: None, reason: None })
}
