//! The outbox: an event and one delivery per subscribed endpoint, written in
//! the transaction of the change that caused them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{webhook_deliveries, webhook_endpoints, webhook_events};

/// Records `kind` for every enabled endpoint of `org` subscribed to it.
/// `ordering_key` names the resource: its events reach an endpoint in order.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    kind: &str,
    ordering_key: &str,
    data: serde_json::Value,
    now: DateTime<Utc>,
) -> QueryResult<Option<Uuid>> {
    let subs = subscribers(conn, org).await?;
    enqueue_for(conn, org, &subs, kind, ordering_key, data, now).await
}

/// The enabled endpoints of `org` and what each subscribes to (load once
/// for a batch of events).
pub async fn subscribers(conn: &mut AsyncPgConnection, org: Uuid) -> QueryResult<Vec<(Uuid, Vec<String>)>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::org_id.eq(org))
        .filter(webhook_endpoints::enabled.eq(true))
        .select((webhook_endpoints::id, webhook_endpoints::events))
        .load(conn)
        .await
}

/// `enqueue` with the subscribers already loaded.
pub async fn enqueue_for(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    subs: &[(Uuid, Vec<String>)],
    kind: &str,
    ordering_key: &str,
    data: serde_json::Value,
    now: DateTime<Utc>,
) -> QueryResult<Option<Uuid>> {
    let endpoints: Vec<Uuid> =
        subs.iter().filter(|(_, evs)| evs.iter().any(|e| e == kind || e == "*")).map(|(id, _)| *id).collect();
    if endpoints.is_empty() {
        return Ok(None);
    }
    enqueue_to(conn, org, &endpoints, kind, ordering_key, data, now).await.map(Some)
}

/// Records an event for the given endpoints (the test ping uses it directly).
pub async fn enqueue_to(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    endpoints: &[Uuid],
    kind: &str,
    ordering_key: &str,
    data: serde_json::Value,
    now: DateTime<Utc>,
) -> QueryResult<Uuid> {
    let id = Uuid::now_v7();
    let payload = serde_json::json!({
        "id": format!("msg_{}", id.simple()),
        "type": kind,
        "timestamp": crate::audit::chain::timestamp(now),
        "org_id": org,
        "data": data,
    });
    diesel::insert_into(webhook_events::table)
        .values((
            webhook_events::id.eq(id),
            webhook_events::org_id.eq(org),
            webhook_events::kind.eq(kind),
            webhook_events::payload.eq(&payload),
            webhook_events::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    let rows: Vec<_> = endpoints
        .iter()
        .map(|e| {
            (
                webhook_deliveries::id.eq(Uuid::now_v7()),
                webhook_deliveries::event_id.eq(id),
                webhook_deliveries::endpoint_id.eq(*e),
                webhook_deliveries::org_id.eq(org),
                webhook_deliveries::ordering_key.eq(ordering_key),
                webhook_deliveries::state.eq("pending"),
                webhook_deliveries::next_attempt_at.eq(now),
                webhook_deliveries::created_at.eq(now),
            )
        })
        .collect();
    diesel::insert_into(webhook_deliveries::table).values(rows).execute(conn).await?;
    Ok(id)
}
