//! The webhook actor owns this replica's delivery workers: on a timer (and
//! when kicked after a local commit) it leases due deliveries, sends each
//! without holding a database connection, and records the outcome. Several
//! replicas run it at once; `FOR UPDATE SKIP LOCKED` and leases keep each
//! delivery with one worker at a time.
//!
//! Successes (the common case) are not recorded one by one: the actor
//! gathers them and records them together in one transaction, on a second
//! connection while its next claim runs (or on its timer). A failure is
//! recorded at once (it may disable its endpoint). A stopping replica
//! drains (`Drain`); successes still buffered when a process dies are sent
//! again after their lease: at least once, as promised.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::delivery::{self, Claimed, Success};
use crate::clock::Clock;
use crate::config::WebhookSettings;
use crate::db::DbPool;
use crate::secrets::SecretBox;

pub struct WebhookActor {
    pub db: DbPool,
    pub client: reqwest::Client,
    pub secrets: Arc<SecretBox>,
    pub settings: WebhookSettings,
    pub clock: Clock,
    in_flight: usize,
    claiming: bool,
    /// Successes not yet recorded (see the module's comment).
    succeeded: Vec<Success>,
    /// Set by `Drain` (shutdown): no more claims; told when the deliveries
    /// in flight are done and every success is recorded.
    draining: Option<Vec<tokio::sync::oneshot::Sender<()>>>,
}

impl WebhookActor {
    pub fn new(
        db: DbPool,
        client: reqwest::Client,
        secrets: Arc<SecretBox>,
        settings: WebhookSettings,
        clock: Clock,
    ) -> Self {
        WebhookActor {
            db,
            client,
            secrets,
            settings,
            clock,
            in_flight: 0,
            claiming: false,
            succeeded: Vec::new(),
            draining: None,
        }
    }

    /// Records the buffered successes and, at the same time on another
    /// connection, leases as many due deliveries as there are free slots;
    /// one such job at a time.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        let free = if self.draining.is_some() { 0 } else { self.settings.concurrency.saturating_sub(self.in_flight) };
        if self.claiming || (free == 0 && self.succeeded.is_empty()) {
            self.drained();
            return;
        }
        self.claiming = true;
        let done = std::mem::take(&mut self.succeeded);
        let (db, now, lease) = (self.db.clone(), self.clock.now(), self.settings.lease_secs);
        // The record answers the successes it could not record (kept for
        // the next round); the claim, the deliveries leased.
        let record_db = db.clone();
        let record = async move {
            if done.is_empty() {
                return done;
            }
            match record_db.get().await {
                Ok(mut conn) => record_all(&mut conn, done).await,
                Err(e) => {
                    tracing::warn!(error = %e, "recording webhook attempts; will retry");
                    done
                }
            }
        };
        let lease_due = async move {
            if free == 0 {
                return Ok(Vec::new());
            }
            let mut conn = db.get().await.map_err(|e| e.to_string())?;
            delivery::claim(&mut conn, now, lease, free as i64).await.map_err(|e| e.to_string())
        };
        let claim = futures_util::future::join(record, lease_due);
        ctx.spawn(claim.into_actor(self).map(move |(unrecorded, res), act, ctx| {
            act.claiming = false;
            // What could not be recorded waits for the timer's next poll
            // (no tight retry loop while the database is away).
            let retry_later = !unrecorded.is_empty();
            act.succeeded.extend(unrecorded);
            match res {
                Ok(batch) => {
                    let more = free > 0 && batch.len() == free;
                    for c in batch {
                        act.deliver(c, ctx);
                    }
                    if more || (!retry_later && !act.succeeded.is_empty()) {
                        act.poll(ctx);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries"),
            }
            act.drained();
        }));
    }

    /// Tells whoever waits on `Drain` once nothing is in flight, claimed or
    /// unrecorded.
    fn drained(&mut self) {
        if self.in_flight == 0
            && !self.claiming
            && self.succeeded.is_empty()
            && let Some(waiting) = self.draining.as_mut()
        {
            for tx in waiting.drain(..) {
                let _ = tx.send(());
            }
        }
    }

    fn deliver(&mut self, c: Claimed, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let (db, client, secrets, settings, clock) =
            (self.db.clone(), self.client.clone(), self.secrets.clone(), self.settings.clone(), self.clock.clone());
        let fut = async move {
            let outcome = delivery::send(&client, &secrets, settings.allow_private_targets, &c, clock.now()).await;
            let now = clock.now();
            if let Some(ok) = Success::of(&c, &outcome, now) {
                return Some(ok); // recorded with others at the next poll
            }
            // A failure to record leaves the lease to lapse: the attempt is
            // retried (at least once, never lost).
            match db.get().await {
                Ok(mut conn) => {
                    if let Err(e) = delivery::record(&mut conn, &c, &outcome, now, &settings).await {
                        tracing::warn!(error = %e, delivery = %c.delivery_id, "recording webhook attempt");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "recording webhook attempt"),
            }
            None
        };
        ctx.spawn(fut.into_actor(self).map(|ok, act, ctx| {
            act.in_flight -= 1;
            act.succeeded.extend(ok);
            // Refill in batches (half the slots at a time): one lease query
            // and one success record for many deliveries rather than one
            // each. Successes gathered while slow deliveries hold the slots
            // are flushed by the timer's poll.
            if act.in_flight <= act.settings.concurrency / 2 || act.draining.is_some() {
                act.poll(ctx);
            }
        }));
    }
}

/// Records `done` in one batch; when the batch fails (an endpoint deleted
/// meanwhile takes its deliveries, and its attempts' keys with them), one
/// by one, so that one lost row costs no other delivery a resend. Returns
/// those that could not be recorded, to be tried again (not those whose
/// delivery no longer exists: their failure is final).
async fn record_all(conn: &mut diesel_async::AsyncPgConnection, done: Vec<Success>) -> Vec<Success> {
    if delivery::record_successes(conn, &done).await.is_ok() {
        return Vec::new();
    }
    let mut again = Vec::new();
    for ok in done {
        match delivery::record_successes(conn, std::slice::from_ref(&ok)).await {
            Ok(()) => {}
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _)) => {}
            Err(e) => {
                tracing::warn!(error = %e, delivery = %ok.delivery_id, "recording webhook attempt; will retry");
                again.push(ok);
            }
        }
    }
    again
}

/// Shutdown: stop claiming, let the deliveries in flight finish (each is
/// bounded by the total timeout) and record every success, so that a
/// restart sends none of them again. Answers when done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for WebhookActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.draining.get_or_insert_with(Vec::new).push(tx);
        self.poll(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Look for due deliveries now (sent after a commit that enqueued some).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Kick;

impl Actor for WebhookActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.settings.concurrency == 0 {
            return; // this replica does not deliver
        }
        ctx.run_interval(Duration::from_millis(self.settings.poll_ms.max(10)), |act, ctx| act.poll(ctx));
    }
}

impl Handler<Kick> for WebhookActor {
    type Result = ();

    fn handle(&mut self, _: Kick, ctx: &mut Self::Context) {
        if self.settings.concurrency > 0 {
            self.poll(ctx);
        }
    }
}
