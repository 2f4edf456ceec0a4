//! POST /internal/v1/events: the platform's events (instance.failed,
//! failover.*, snapshot.created), one or a batch, recorded in the audit log
//! in one transaction.

use crate::json_body::Json;
use actix_web::{HttpResponse, web};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Deserialize;
use uuid::Uuid;

use super::chain::{AuditEntry, append_many};
use crate::db::schema::{instances, orgs};
use crate::error::{ApiError, ApiResult};
use crate::events::{self, platform_event};
use crate::startup::AppState;
use crate::validate;
use crate::webhooks::outbox;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub org_id: Uuid,
    pub resource_id: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    Many(Vec<PlatformEvent>),
    One(PlatformEvent),
}

pub const MAX_BATCH: usize = 10_000;

/// The webhook ordering key of a platform event's resource. An id that is a
/// UUID, in any spelling the platform sends (upper case, no hyphens, braces),
/// is written as the API writes it (`instance:{uuid}`, lower case,
/// hyphenated), so an instance's platform and API events share one order.
fn ordering_key(resource_type: &str, resource_id: &str) -> String {
    match Uuid::parse_str(resource_id) {
        Ok(id) => format!("{resource_type}:{id}"),
        Err(_) => format!("{resource_type}:{resource_id}"),
    }
}

pub async fn ingest(state: web::Data<AppState>, body: Json<OneOrMany>) -> ApiResult<HttpResponse> {
    let events = match body.into_inner() {
        OneOrMany::Many(v) => v,
        OneOrMany::One(e) => vec![e],
    };
    if events.is_empty() || events.len() > MAX_BATCH {
        return Err(ApiError::invalid("body", format!("send 1 to {MAX_BATCH} events")));
    }
    let now = state.clock.now();
    let mut entries = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let (action, resource_type) = platform_event(&e.kind).ok_or_else(|| {
            let known: Vec<&str> = events::PLATFORM_EVENTS.iter().map(|(n, _)| *n).collect();
            ApiError::invalid(format!("[{i}].type"), format!("unknown event {:?}; known: {}", e.kind, known.join(", ")))
        })?;
        if e.resource_id.is_empty() || e.resource_id.len() > 200 {
            return Err(ApiError::invalid(format!("[{i}].resource_id"), "must be 1 to 200 characters"));
        }
        validate::single_line(&format!("[{i}].resource_id"), &e.resource_id)?;
        if !(e.data.is_object() || e.data.is_null()) {
            return Err(ApiError::invalid(format!("[{i}].data"), "must be an object"));
        }
        validate::json(&format!("[{i}].data"), &e.data)?;
        entries.push(AuditEntry {
            org_id: e.org_id,
            user_id: None,
            user_email: None,
            action,
            resource_type,
            resource_id: Some(e.resource_id.clone()),
            ip_address: None,
            user_agent: Some("platform".into()),
            metadata: if e.data.is_null() { serde_json::json!({}) } else { e.data.clone() },
            at: now,
        });
    }
    let mut org_ids: Vec<Uuid> = entries.iter().map(|e| e.org_id).collect();
    org_ids.sort();
    org_ids.dedup();
    let mut conn = state.conn().await?;
    let found: i64 = orgs::table.filter(orgs::id.eq_any(&org_ids)).count().get_result(&mut conn).await?;
    if found != org_ids.len() as i64 {
        return Err(ApiError::invalid("org_id", "unknown organization"));
    }
    let ids = conn
        .transaction(async |c| {
            // A failed instance we know of changes state with its record.
            for e in entries.iter().filter(|e| e.action == events::INSTANCE_FAILED) {
                if let Some(id) = e.resource_id.as_deref().and_then(|r| Uuid::parse_str(r).ok()) {
                    diesel::update(instances::table.find(id))
                        .filter(instances::org_id.eq(e.org_id))
                        .filter(instances::state.eq_any(["running", "stopped"]))
                        .set((instances::state.eq("failed"), instances::updated_at.eq(now)))
                        .execute(c)
                        .await?;
                }
            }
            // The same events, fanned out to webhook subscribers (written
            // together, in the batch's order).
            let mut subs: std::collections::HashMap<Uuid, Vec<(Uuid, Vec<String>)>> = Default::default();
            let mut outgoing = Vec::new();
            for (e, raw) in entries.iter().zip(&events) {
                let Some(kind) = events::webhook_event_for(e.action) else { continue };
                if let std::collections::hash_map::Entry::Vacant(slot) = subs.entry(e.org_id) {
                    slot.insert(outbox::subscribers(c, e.org_id).await?);
                }
                let mut data = serde_json::json!({"resource_id": raw.resource_id});
                if let (Some(d), serde_json::Value::Object(m)) = (raw.data.as_object(), &mut data) {
                    m.extend(d.clone());
                }
                outgoing.push(outbox::Outgoing {
                    org: e.org_id,
                    endpoints: outbox::subscribed(&subs[&e.org_id], kind),
                    kind: kind.to_string(),
                    ordering_key: ordering_key(e.resource_type, &raw.resource_id),
                    data,
                });
            }
            outbox::enqueue_batch(c, outgoing, now).await?;
            append_many(c, &entries).await
        })
        .await?;
    state.kick_webhooks();
    Ok(HttpResponse::Created().json(serde_json::json!({"recorded": ids.len(), "ids": ids})))
}

#[cfg(test)]
mod tests {
    use super::ordering_key;
    use uuid::Uuid;

    #[test]
    fn webhooks_order_an_instance_id_in_any_spelling_with_the_api_events() {
        let id = Uuid::now_v7();
        // What the instance API writes (src/instances/routes.rs).
        let api = format!("instance:{id}");
        for spelling in [
            id.to_string(),
            id.to_string().to_uppercase(),
            id.simple().to_string(),
            id.simple().to_string().to_uppercase(),
            id.braced().to_string(),
            id.urn().to_string(),
        ] {
            assert_eq!(ordering_key("instance", &spelling), api, "{spelling}");
        }
        assert_eq!(ordering_key("snapshot", "snap_1"), "snapshot:snap_1");
        assert_eq!(ordering_key("instance", "inst_xyz"), "instance:inst_xyz");
    }
}
