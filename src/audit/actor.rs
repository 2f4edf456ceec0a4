//! The audit actor owns retention: on a timer (hourly) it removes records
//! older than `audit.retention_days`. Writes never pass through it: they
//! happen in the transaction of the change they record.

use std::time::Duration;

use actix::prelude::*;

use crate::clock::Clock;
use crate::db::DbPool;

pub struct AuditActor {
    pub db: DbPool,
    pub clock: Clock,
    pub retention_days: u32,
}

/// Apply retention now; answers how many records were removed.
#[derive(Message)]
#[rtype(result = "Result<usize, String>")]
pub struct RunRetention;

impl AuditActor {
    fn run(&self) -> impl Future<Output = Result<usize, String>> + 'static {
        let (db, clock, days) = (self.db.clone(), self.clock.clone(), self.retention_days);
        async move {
            if days == 0 {
                return Ok(0);
            }
            let cutoff = clock.now() - chrono::Duration::days(days as i64);
            let mut conn = db.get().await.map_err(|e| e.to_string())?;
            let n = super::retention::apply(&mut conn, cutoff).await.map_err(|e| e.to_string())?;
            if n > 0 {
                tracing::info!(removed = n, %cutoff, "audit retention applied");
            }
            Ok(n)
        }
    }
}

impl Actor for AuditActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(3600), |act, ctx| {
            ctx.spawn(act.run().into_actor(act).map(|res, _, _| {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "audit retention failed; will retry");
                }
            }));
        });
    }
}

impl Handler<RunRetention> for AuditActor {
    type Result = ResponseFuture<Result<usize, String>>;

    fn handle(&mut self, _: RunRetention, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.run())
    }
}
