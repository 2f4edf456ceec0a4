//! One delivery attempt: claim (a lease, `FOR UPDATE SKIP LOCKED`), send
//! (no database connection held), record the outcome.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Int4, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schedule::next_delay_secs;
use super::signature;
use super::ssrf;
use crate::audit::{self, AuditEntry};
use crate::config::WebhookSettings;
use crate::db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use crate::events;
use crate::secrets::SecretBox;

#[derive(Debug, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    pub delivery_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub endpoint_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub org_id: Uuid,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Bytea)]
    pub secret_enc: Vec<u8>,
    #[diesel(sql_type = Nullable<Bytea>)]
    pub previous_secret_enc: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub previous_expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
}

/// Leases up to `n` due deliveries of enabled endpoints, walking the
/// `(next_attempt_at, seq)` index in order and stopping at `n` (a disabled
/// endpoint's backlog is `paused`, outside that index: never in the way).
/// A delivery waits while an older one for
/// the same endpoint and resource is pending (ordering); one leased by a
/// worker that died becomes due again when its lease lapses.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    lease_secs: i64,
    n: i64,
) -> QueryResult<Vec<Claimed>> {
    conn.transaction(async |c| {
        // Relaxed commit (see `relaxed_commit`), and the claim must walk the
        // (next_attempt_at, seq) index and stop after `n` rows. When the table's statistics lag behind a burst (a fresh
        // or fast-growing backlog looks tiny to the planner), PostgreSQL
        // instead reads, checks and sorts the whole backlog: 13 ms instead
        // of 1.6 ms for 2,200 pending rows, on every claim. These settings
        // last until the end of this transaction only; one round trip.
        diesel::sql_query(
            "SELECT set_config('synchronous_commit', 'off', true), set_config('enable_sort', 'off', true),
                    set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)",
        )
        .execute(c)
        .await?;
        claim_query(c, now, lease_secs, n).await
    })
    .await
}

/// A claim or an attempt record lost in a crash only means the delivery is
/// sent again after its lease (at least once, as promised), so these
/// commits need not wait for the WAL flush. The events themselves, written
/// with the change that caused them, keep full durability.
async fn relaxed_commit(c: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query("SET LOCAL synchronous_commit TO OFF").execute(c).await.map(drop)
}

async fn claim_query(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    lease_secs: i64,
    n: i64,
) -> QueryResult<Vec<Claimed>> {
    diesel::sql_query(
        "WITH due AS (
            SELECT d.id FROM webhook_deliveries d
             WHERE d.state = 'pending' AND d.next_attempt_at <= $1
               AND (d.lease_until IS NULL OR d.lease_until < $1)
               AND EXISTS (SELECT 1 FROM webhook_endpoints we WHERE we.id = d.endpoint_id AND we.enabled)
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o
                                WHERE o.endpoint_id = d.endpoint_id AND o.ordering_key = d.ordering_key
                                  AND o.state = 'pending' AND o.seq < d.seq)
             ORDER BY d.next_attempt_at, d.seq
             LIMIT $3
             FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries d
            SET lease_until = $1 + make_interval(secs => $2), attempts = d.attempts + 1
           FROM due, webhook_events e, webhook_endpoints w
          WHERE d.id = due.id AND e.id = d.event_id AND w.id = d.endpoint_id AND w.enabled
         RETURNING d.id AS delivery_id, d.endpoint_id, d.org_id, d.attempts, w.url, w.secret_enc,
                   w.previous_secret_enc, w.previous_expires_at, e.payload",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(lease_secs)
    .bind::<BigInt, _>(n)
    .load(conn)
    .await
}

/// Disabling an endpoint parks its backlog, including a delivery in flight:
/// if it then succeeds it is recorded as delivered (`record_successes`); a
/// failure is not recorded, and it is sent again on resume. Its lease is
/// kept, so a quick re-enable does not hand it to a second worker while the
/// first one's answer is on its way.
pub async fn pause(conn: &mut AsyncPgConnection, endpoint: Uuid) -> QueryResult<usize> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(endpoint))
            .filter(webhook_deliveries::state.eq("pending")),
    )
    .set(webhook_deliveries::state.eq("paused"))
    .execute(conn)
    .await
}

/// Enabling it again makes the backlog due at once, in its original order.
pub async fn resume(conn: &mut AsyncPgConnection, endpoint: Uuid, now: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::endpoint_id.eq(endpoint))
            .filter(webhook_deliveries::state.eq("paused")),
    )
    .set((webhook_deliveries::state.eq("pending"), webhook_deliveries::next_attempt_at.eq(now)))
    .execute(conn)
    .await
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: i32,
    pub retry_after: Option<i64>,
}

impl Outcome {
    fn failed(error: String, started: Instant) -> Outcome {
        Outcome {
            status: None,
            error: Some(error),
            latency_ms: started.elapsed().as_millis() as i32,
            retry_after: None,
        }
    }
}

/// The HTTP client for deliveries: no redirects, the configured timeouts,
/// and (unless private targets are allowed) a resolver that only answers
/// with public addresses.
pub fn client(s: &WebhookSettings) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(s.connect_timeout_secs))
        .timeout(Duration::from_secs(s.timeout_secs))
        .user_agent("Dumont-Webhooks/1.0")
        // A proxy from the environment would resolve and dial the target
        // itself, past the vetting resolver below.
        .no_proxy();
    if !s.allow_private_targets {
        b = b.https_only(true).dns_resolver(std::sync::Arc::new(ssrf::PublicOnlyResolver));
    }
    Ok(b.build()?)
}

/// The `webhook-signature` header: the current secret's signature, plus the
/// previous secret's while a rotation's grace period lasts.
pub fn signature_header(
    secrets: &SecretBox,
    c: &Claimed,
    id: &str,
    ts: i64,
    body: &[u8],
    now: DateTime<Utc>,
) -> Option<String> {
    let current = String::from_utf8(secrets.open(&c.secret_enc)?).ok()?;
    let mut sigs = vec![signature::sign(&signature::key_of(&current)?, id, ts, body)];
    if let (Some(prev), Some(until)) = (&c.previous_secret_enc, c.previous_expires_at)
        && until > now
        && let Some(p) = secrets.open(prev).and_then(|p| String::from_utf8(p).ok())
        && let Some(key) = signature::key_of(&p)
    {
        sigs.push(signature::sign(&key, id, ts, body));
    }
    Some(sigs.join(" "))
}

pub async fn send(
    client: &reqwest::Client,
    secrets: &SecretBox,
    allow_private: bool,
    c: &Claimed,
    now: DateTime<Utc>,
) -> Outcome {
    let started = Instant::now();
    let Ok(url) = url::Url::parse(&c.url) else {
        return Outcome::failed("malformed URL".into(), started);
    };
    if !allow_private && !ssrf::literal_host_allowed(&url) {
        return Outcome::failed("target address is not public".into(), started);
    }
    let id = c.payload["id"].as_str().unwrap_or_default().to_string();
    let body = serde_json::to_vec(&c.payload).unwrap_or_default();
    let ts = now.timestamp();
    let Some(sig) = signature_header(secrets, c, &id, ts, &body, now) else {
        return Outcome::failed("signing secret cannot be decrypted with the configured keys".into(), started);
    };
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await;
    match res {
        Ok(r) => {
            let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(retry_after_secs);
            Outcome {
                status: Some(r.status().as_u16()),
                error: None,
                latency_ms: started.elapsed().as_millis() as i32,
                retry_after,
            }
        }
        Err(e) => Outcome::failed(error_text(&e), started),
    }
}

/// `Retry-After` in either form RFC 9110 allows: delay-seconds or an
/// HTTP-date (compared with the real wall clock, which is what the
/// receiver's date refers to).
fn retry_after_secs(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return Some(secs.max(0));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).map_or(0, |d| d.as_secs() as i64))
}

fn error_text(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The source chain says why (refused, DNS, TLS) without the URL's query.
    let mut detail = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") }
}

/// A 2xx answer, waiting to be recorded with others (see `record_successes`).
#[derive(Debug, Clone)]
pub struct Success {
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempts: i32,
    pub status: i32,
    pub latency_ms: i32,
    pub at: DateTime<Utc>,
}

impl Success {
    /// `Some` when `o` is a success (any 2xx).
    pub fn of(c: &Claimed, o: &Outcome, at: DateTime<Utc>) -> Option<Success> {
        let status = o.status.filter(|st| (200..300).contains(st))?;
        Some(Success {
            delivery_id: c.delivery_id,
            endpoint_id: c.endpoint_id,
            attempts: c.attempts,
            status: i32::from(status),
            latency_ms: o.latency_ms,
            at,
        })
    }
}

/// Records many successes in one transaction of two statements, however
/// many there are (one per delivery was the workers' main cost): the
/// batch's endpoints locked in id order (endpoints before deliveries, as
/// failure records, `PATCH` with its `pause` and `DELETE` take them, so
/// that none of them deadlocks with a batch) and the failing streaks of
/// those that had one ended, then the
/// attempts written and each delivery `succeeded` if it is still ours
/// (same attempt, see `record`; pending, or paused while in flight: it was
/// delivered, and resuming must not send it again). Commits like `relaxed_commit`: a
/// batch lost in a crash is sent again after its lease (at least once).
pub async fn record_successes(conn: &mut AsyncPgConnection, batch: &[Success]) -> QueryResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut endpoints: Vec<Uuid> = batch.iter().map(|s| s.endpoint_id).collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let col = |f: fn(&Success) -> i32| batch.iter().map(f).collect::<Vec<i32>>();
    let attempt_ids: Vec<Uuid> = batch.iter().map(|_| Uuid::now_v7()).collect();
    let deliveries: Vec<Uuid> = batch.iter().map(|s| s.delivery_id).collect();
    let ats: Vec<DateTime<Utc>> = batch.iter().map(|s| s.at).collect();
    conn.transaction(async |t| {
        relaxed_commit(t).await?;
        diesel::sql_query(
            "UPDATE webhook_endpoints w SET failing_since = NULL
               FROM (SELECT id, failing_since FROM webhook_endpoints
                      WHERE id = ANY($1)
                      ORDER BY id FOR NO KEY UPDATE) l
              WHERE w.id = l.id AND l.failing_since IS NOT NULL",
        )
        .bind::<Array<SqlUuid>, _>(&endpoints)
        .execute(t)
        .await?;
        diesel::sql_query(
            "WITH s AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int4[], $5::int4[], $6::int4[])
                          AS s(attempt_id, delivery_id, at, status, latency_ms, attempts)),
                  a AS (INSERT INTO webhook_attempts (id, delivery_id, attempted_at, status_code, latency_ms, error)
                        SELECT s.attempt_id, s.delivery_id, s.at, s.status, s.latency_ms, NULL
                          FROM s JOIN webhook_deliveries d ON d.id = s.delivery_id)
             UPDATE webhook_deliveries d
                SET state = 'succeeded', completed_at = s.at, last_status = s.status, last_error = NULL,
                    lease_until = NULL
               FROM s
              WHERE d.id = s.delivery_id AND d.state IN ('pending', 'paused') AND d.attempts = s.attempts",
        )
        .bind::<Array<SqlUuid>, _>(&attempt_ids)
        .bind::<Array<SqlUuid>, _>(&deliveries)
        .bind::<Array<Timestamptz>, _>(&ats)
        .bind::<Array<Int4>, _>(col(|s| s.status))
        .bind::<Array<Int4>, _>(col(|s| s.latency_ms))
        .bind::<Array<Int4>, _>(col(|s| s.attempts))
        .execute(t)
        .await?;
        Ok(())
    })
    .await
}

/// Writes the attempt and moves the delivery (and its endpoint) on.
pub async fn record(
    conn: &mut AsyncPgConnection,
    c: &Claimed,
    o: &Outcome,
    now: DateTime<Utc>,
    s: &WebhookSettings,
) -> QueryResult<()> {
    if let Some(ok) = Success::of(c, o, now) {
        return record_successes(conn, &[ok]).await;
    }
    let gone = o.status == Some(410);
    conn.transaction(async |t| {
        relaxed_commit(t).await?;
        // The endpoint's row first, locked until commit: a failure may
        // disable the endpoint, and `PATCH /webhooks/{id}` decides from the
        // same row under the same lock, so an administrator's change and an
        // automatic disable happen one after the other, each seeing the
        // other's outcome. Taken before the delivery's row, the order in
        // which `PATCH` (and `pause` below) take them: failing workers and
        // an administrator queue on the endpoint instead of deadlocking.
        let Some(enabled) = webhook_endpoints::table
            .find(c.endpoint_id)
            .select(webhook_endpoints::enabled)
            .for_no_key_update()
            .first::<bool>(t)
            .await
            .optional()?
        else {
            return Ok(()); // deleted meanwhile, with its deliveries
        };
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::id.eq(Uuid::now_v7()),
                webhook_attempts::delivery_id.eq(c.delivery_id),
                webhook_attempts::attempted_at.eq(now),
                webhook_attempts::status_code.eq(o.status.map(i32::from)),
                webhook_attempts::latency_ms.eq(o.latency_ms),
                webhook_attempts::error.eq(&o.error),
            ))
            .execute(t)
            .await?;
        // Still ours? A worker whose lease lapsed may find the delivery
        // claimed again (attempts moved on) or finished by another worker:
        // its attempt is history, but it must not overwrite the outcome.
        let target = webhook_deliveries::table
            .find(c.delivery_id)
            .filter(webhook_deliveries::state.eq("pending"))
            .filter(webhook_deliveries::attempts.eq(c.attempts));
        let last = (
            webhook_deliveries::last_status.eq(o.status.map(i32::from)),
            webhook_deliveries::last_error.eq(&o.error),
            webhook_deliveries::lease_until.eq(None::<DateTime<Utc>>),
        );
        let delay = if gone { None } else { next_delay_secs(c.attempts, o.retry_after, s.max_retry_after_secs) };
        let moved = match delay {
            Some(d) => {
                diesel::update(target)
                    .set((webhook_deliveries::next_attempt_at.eq(now + chrono::Duration::seconds(d)), last))
                    .execute(t)
                    .await?
            }
            None => {
                diesel::update(target)
                    .set((webhook_deliveries::state.eq("failed"), webhook_deliveries::completed_at.eq(now), last))
                    .execute(t)
                    .await?
            }
        };
        if moved == 0 {
            return Ok(());
        }
        let failing_since: Option<DateTime<Utc>> = diesel::update(webhook_endpoints::table.find(c.endpoint_id))
            .set(
                webhook_endpoints::failing_since.eq(diesel::dsl::sql::<Nullable<Timestamptz>>(
                    "coalesce(failing_since, ",
                )
                .bind::<Timestamptz, _>(now)
                .sql(")")),
            )
            .returning(webhook_endpoints::failing_since)
            .get_result(t)
            .await?;
        let failing_too_long = failing_since.is_some_and(|f| (now - f).num_seconds() >= s.disable_after_failing_secs);
        if enabled && (gone || failing_too_long) {
            let reason = if gone {
                "the endpoint answered 410 Gone".to_string()
            } else {
                format!("deliveries failed for {} days in a row", s.disable_after_failing_secs / 86400)
            };
            // Conditional as well as locked: only an enabled endpoint is
            // disabled (and audited) here.
            diesel::update(webhook_endpoints::table.find(c.endpoint_id).filter(webhook_endpoints::enabled))
                .set((
                    webhook_endpoints::enabled.eq(false),
                    webhook_endpoints::disabled_reason.eq(&reason),
                    webhook_endpoints::updated_at.eq(now),
                ))
                .execute(t)
                .await?;
            pause(t, c.endpoint_id).await?;
            audit::append(
                t,
                &AuditEntry {
                    org_id: c.org_id,
                    user_id: None,
                    user_email: None,
                    action: events::WEBHOOK_DISABLED,
                    resource_type: "webhook",
                    resource_id: Some(c.endpoint_id.to_string()),
                    ip_address: None,
                    user_agent: Some("webhook worker".into()),
                    metadata: serde_json::json!({"reason": reason, "status": o.status}),
                    at: now,
                },
            )
            .await?;
            tracing::warn!(endpoint = %c.endpoint_id, %reason, "webhook endpoint disabled");
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::retry_after_secs;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(retry_after_secs(" 120 "), Some(120));
        assert_eq!(retry_after_secs("-5"), Some(0));
        let in_90 = std::time::SystemTime::now() + std::time::Duration::from_secs(90);
        let secs = retry_after_secs(&httpdate::fmt_http_date(in_90)).unwrap();
        assert!((88..=90).contains(&secs), "{secs}");
        assert_eq!(retry_after_secs("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0), "a past date: now");
        assert_eq!(retry_after_secs("soon"), None);
    }
}
