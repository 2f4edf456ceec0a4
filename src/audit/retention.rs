//! Retention: removes an org's records older than the cut-off, oldest
//! first, and records where the chain resumes (a checkpoint) so that what
//! remains still verifies.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{audit_checkpoints, audit_heads, audit_logs};

/// Removes records older than `cutoff` in every org; returns how many.
pub async fn apply(conn: &mut AsyncPgConnection, cutoff: DateTime<Utc>) -> QueryResult<usize> {
    let orgs: Vec<Uuid> = audit_logs::table
        .filter(audit_logs::occurred_at.lt(cutoff))
        .select(audit_logs::org_id)
        .distinct()
        .load(conn)
        .await?;
    let mut removed = 0;
    for org in orgs {
        removed += conn
            .transaction(async |c| {
                // The append-only trigger lets this transaction, and only it, delete.
                diesel::sql_query("SELECT set_config('dumont.audit_retention', 'on', true)").execute(c).await?;
                // One retention run per org at a time, on any replica: with the
                // chain head locked, a second run reads what the first left
                // and can never move the checkpoint back behind removed records.
                audit_heads::table.find(org).select(audit_heads::seq).for_update().first::<i64>(c).await.optional()?;
                let last: Option<(i64, Vec<u8>)> = audit_logs::table
                    .filter(audit_logs::org_id.eq(org).and(audit_logs::occurred_at.lt(cutoff)))
                    .select((audit_logs::seq, audit_logs::hash))
                    .order(audit_logs::seq.desc())
                    .first(c)
                    .await
                    .optional()?;
                let Some((seq, hash)) = last else { return Ok::<_, diesel::result::Error>(0) };
                diesel::insert_into(audit_checkpoints::table)
                    .values((
                        audit_checkpoints::org_id.eq(org),
                        audit_checkpoints::seq.eq(seq),
                        audit_checkpoints::hash.eq(&hash),
                        audit_checkpoints::created_at.eq(Utc::now()),
                    ))
                    .on_conflict(audit_checkpoints::org_id)
                    .do_update()
                    .set((
                        audit_checkpoints::seq.eq(excluded(audit_checkpoints::seq)),
                        audit_checkpoints::hash.eq(excluded(audit_checkpoints::hash)),
                        audit_checkpoints::created_at.eq(excluded(audit_checkpoints::created_at)),
                    ))
                    .execute(c)
                    .await?;
                diesel::delete(audit_logs::table.filter(audit_logs::org_id.eq(org).and(audit_logs::seq.le(seq))))
                    .execute(c)
                    .await
            })
            .await?;
    }
    Ok(removed)
}
