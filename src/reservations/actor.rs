//! The reservations actor runs the lifecycle on a timer: scheduled -> active
//! on the start day, -> completed after the end day (UTC).

use std::time::Duration;

use actix::prelude::*;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::clock::Clock;
use crate::db::DbPool;
use crate::db::schema::reservations;

pub struct ReservationActor {
    pub db: DbPool,
    pub clock: Clock,
}

/// Run the transitions now; answers (activated, completed).
#[derive(Message)]
#[rtype(result = "Result<(usize, usize), String>")]
pub struct Tick;

impl ReservationActor {
    fn run(&self) -> impl Future<Output = Result<(usize, usize), String>> + 'static {
        let (db, today) = (self.db.clone(), self.clock.now().date_naive());
        async move {
            let mut c = db.get().await.map_err(|e| e.to_string())?;
            let completed = diesel::update(
                reservations::table
                    .filter(reservations::state.eq_any(["scheduled", "active"]))
                    .filter(reservations::end_date.lt(today)),
            )
            .set(reservations::state.eq("completed"))
            .execute(&mut c)
            .await
            .map_err(|e| e.to_string())?;
            let activated = diesel::update(
                reservations::table
                    .filter(reservations::state.eq("scheduled"))
                    .filter(reservations::start_date.le(today)),
            )
            .set(reservations::state.eq("active"))
            .execute(&mut c)
            .await
            .map_err(|e| e.to_string())?;
            Ok((activated, completed))
        }
    }
}

impl Actor for ReservationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(60), |act, ctx| {
            ctx.spawn(act.run().into_actor(act).map(|res, _, _| {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "reservation lifecycle");
                }
            }));
        });
    }
}

impl Handler<Tick> for ReservationActor {
    type Result = ResponseFuture<Result<(usize, usize), String>>;

    fn handle(&mut self, _: Tick, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.run())
    }
}
