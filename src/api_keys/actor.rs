//! The API key actor owns the `last_used_at` buffer: requests record use in
//! memory, and the actor writes the batch every `api_keys.last_used_flush_secs`,
//! so a busy key costs no database write per request.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::store::KeyStore;
use crate::db::DbPool;
use crate::db::schema::api_keys;

pub struct ApiKeyActor {
    pub store: Arc<KeyStore>,
    pub db: DbPool,
    pub flush_every: Duration,
}

/// Write the buffered times now (tests, shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl ApiKeyActor {
    /// Writes the buffered times; what cannot be written goes back into the
    /// buffer for the next round (a later use of the same key wins there).
    fn flush(&self) -> impl Future<Output = ()> + 'static {
        let batch = self.store.take_last_used();
        let db = self.db.clone();
        let store = self.store.clone();
        async move {
            if batch.is_empty() {
                return;
            }
            let Ok(mut conn) = db.get().await else {
                for (id, at) in batch {
                    store.touch(id, at);
                }
                return;
            };
            for (id, at) in batch {
                let res = diesel::update(api_keys::table.find(id))
                    .filter(api_keys::last_used_at.is_null().or(api_keys::last_used_at.lt(at)))
                    .set(api_keys::last_used_at.eq(at))
                    .execute(&mut conn)
                    .await;
                if let Err(e) = res {
                    tracing::warn!(error = %e, "writing api key last_used_at");
                    store.touch(id, at);
                }
            }
        }
    }
}

impl Actor for ApiKeyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // `wait`: one timed flush at a time.
        ctx.run_interval(self.flush_every, |act, ctx| {
            ctx.wait(act.flush().into_actor(act));
        });
    }
}

/// Answers once the batch is written, so that shutdown can wait for it.
impl Handler<Flush> for ApiKeyActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.flush())
    }
}
