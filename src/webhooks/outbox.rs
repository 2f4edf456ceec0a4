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

/// The endpoints among `subs` that subscribe to `kind`.
pub fn subscribed(subs: &[(Uuid, Vec<String>)], kind: &str) -> Vec<Uuid> {
    subs.iter().filter(|(_, evs)| evs.iter().any(|e| e == kind || e == "*")).map(|(id, _)| *id).collect()
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
    let endpoints = subscribed(subs, kind);
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
    let one = Outgoing {
        org,
        endpoints: endpoints.to_vec(),
        kind: kind.to_string(),
        ordering_key: ordering_key.to_string(),
        data,
    };
    let ids = enqueue_batch(conn, vec![one], now).await?;
    ids.into_iter().next().ok_or(diesel::result::Error::NotFound)
}

/// One event and the endpoints it goes to.
pub struct Outgoing {
    pub org: Uuid,
    pub endpoints: Vec<Uuid>,
    pub kind: String,
    pub ordering_key: String,
    pub data: serde_json::Value,
}

#[derive(Insertable)]
#[diesel(table_name = webhook_events)]
struct NewEvent {
    id: Uuid,
    org_id: Uuid,
    kind: String,
    payload: serde_json::Value,
    created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = webhook_deliveries)]
struct NewDelivery {
    id: Uuid,
    event_id: Uuid,
    endpoint_id: Uuid,
    org_id: Uuid,
    ordering_key: String,
    state: &'static str,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

/// Rows per INSERT: well under PostgreSQL's 65535 bind parameters.
const ROWS_PER_INSERT: usize = 2000;

/// Events (those with at least one endpoint) and their deliveries in
/// multi-row INSERTs: bulk ingestion writes a batch in a few statements
/// rather than two per event. Deliveries take their `seq` in the order
/// given, which is the order events about one resource are delivered in.
/// Returns the ids of the events written.
pub async fn enqueue_batch(
    conn: &mut AsyncPgConnection,
    items: Vec<Outgoing>,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    let mut events = Vec::with_capacity(items.len());
    let mut deliveries = Vec::new();
    for it in items.into_iter().filter(|it| !it.endpoints.is_empty()) {
        let id = Uuid::now_v7();
        let payload = serde_json::json!({
            "id": format!("msg_{}", id.simple()),
            "type": it.kind,
            "timestamp": crate::audit::chain::timestamp(now),
            "org_id": it.org,
            "data": it.data,
        });
        for endpoint in &it.endpoints {
            deliveries.push(NewDelivery {
                id: Uuid::now_v7(),
                event_id: id,
                endpoint_id: *endpoint,
                org_id: it.org,
                ordering_key: it.ordering_key.clone(),
                state: "pending",
                next_attempt_at: now,
                created_at: now,
            });
        }
        events.push(NewEvent { id, org_id: it.org, kind: it.kind, payload, created_at: now });
    }
    for chunk in events.chunks(ROWS_PER_INSERT) {
        diesel::insert_into(webhook_events::table).values(chunk).execute(conn).await?;
    }
    for chunk in deliveries.chunks(ROWS_PER_INSERT) {
        diesel::insert_into(webhook_deliveries::table).values(chunk).execute(conn).await?;
    }
    Ok(events.into_iter().map(|e| e.id).collect())
}
