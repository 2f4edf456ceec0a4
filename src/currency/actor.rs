//! The currency actor owns the rate schedule: a refresh every
//! `currency.refresh_secs` (and on `Refresh`), and a poll every
//! `currency.poll_secs` that installs a snapshot another replica stored.
//! Request handlers never message it for a rate: they read the board.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::refresh::{Outcome, Refresher};

pub struct CurrencyActor {
    pub refresher: Arc<Refresher>,
}

/// Fetch now. `force: false` lets a replica skip when another one fetched
/// recently (the timer); the internal route and the CLI force.
#[derive(Message)]
#[rtype(result = "Outcome")]
pub struct Refresh {
    pub force: bool,
}

impl CurrencyActor {
    fn poll(&self, ctx: &mut Context<Self>) {
        let r = self.refresher.clone();
        ctx.spawn(
            async move {
                if let Err(e) = r.sync().await {
                    tracing::debug!(error = %e, "exchange-rate poll failed");
                }
            }
            .into_actor(self),
        );
    }

    fn scheduled_refresh(&self, ctx: &mut Context<Self>) {
        let r = self.refresher.clone();
        ctx.spawn(
            async move {
                // Install what is stored first, so a restart serves rates at
                // once and a fresh store spares a fetch.
                let _ = r.sync().await;
                r.run(false).await;
            }
            .into_actor(self),
        );
    }
}

impl Actor for CurrencyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let settings = &self.refresher.settings;
        let (refresh, poll) = (settings.refresh_secs.max(1), settings.poll_secs.max(1));
        self.scheduled_refresh(ctx);
        ctx.run_interval(Duration::from_secs(refresh), |act, ctx| act.scheduled_refresh(ctx));
        ctx.run_interval(Duration::from_secs(poll), |act, ctx| act.poll(ctx));
    }
}

impl Handler<Refresh> for CurrencyActor {
    type Result = ResponseFuture<Outcome>;

    fn handle(&mut self, msg: Refresh, _: &mut Self::Context) -> Self::Result {
        let r = self.refresher.clone();
        Box::pin(async move { r.run(msg.force).await })
    }
}
