//! The webhook actor owns this replica's delivery workers: on a timer (and
//! when kicked after a local commit) it leases due deliveries, sends each
//! without holding a database connection, and records the outcome. Several
//! replicas run it at once; `FOR UPDATE SKIP LOCKED` and leases keep each
//! delivery with one worker at a time.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::delivery::{self, Claimed};
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
}

impl WebhookActor {
    pub fn new(
        db: DbPool,
        client: reqwest::Client,
        secrets: Arc<SecretBox>,
        settings: WebhookSettings,
        clock: Clock,
    ) -> Self {
        WebhookActor { db, client, secrets, settings, clock, in_flight: 0, claiming: false }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        let free = self.settings.concurrency.saturating_sub(self.in_flight);
        if free == 0 || self.claiming {
            return;
        }
        self.claiming = true;
        let (db, now, lease) = (self.db.clone(), self.clock.now(), self.settings.lease_secs);
        let claim = async move {
            let mut conn = db.get().await.map_err(|e| e.to_string())?;
            delivery::claim(&mut conn, now, lease, free as i64).await.map_err(|e| e.to_string())
        };
        ctx.spawn(claim.into_actor(self).map(move |res, act, ctx| {
            act.claiming = false;
            match res {
                Ok(batch) => {
                    let more = batch.len() == free;
                    for c in batch {
                        act.deliver(c, ctx);
                    }
                    if more {
                        act.poll(ctx);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries"),
            }
        }));
    }

    fn deliver(&mut self, c: Claimed, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let (db, client, secrets, settings, clock) =
            (self.db.clone(), self.client.clone(), self.secrets.clone(), self.settings.clone(), self.clock.clone());
        let fut = async move {
            let outcome = delivery::send(&client, &secrets, settings.allow_private_targets, &c, clock.now()).await;
            // A failure to record leaves the lease to lapse: the attempt is
            // retried (at least once, never lost).
            match db.get().await {
                Ok(mut conn) => {
                    if let Err(e) = delivery::record(&mut conn, &c, &outcome, clock.now(), &settings).await {
                        tracing::warn!(error = %e, delivery = %c.delivery_id, "recording webhook attempt");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "recording webhook attempt"),
            }
        };
        ctx.spawn(fut.into_actor(self).map(|_, act, ctx| {
            act.in_flight -= 1;
            // Refill in batches (half the slots at a time): one lease query
            // for many deliveries rather than one per delivery.
            if act.in_flight <= act.settings.concurrency / 2 {
                act.poll(ctx);
            }
        }));
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
