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
    fn flush(&self, ctx: &mut Context<Self>) {
        let batch = self.store.take_last_used();
        if batch.is_empty() {
            return;
        }
        let db = self.db.clone();
        let store = self.store.clone();
        ctx.wait(
            async move {
                let Ok(mut conn) = db.get().await else {
                    // Put them back for the next round.
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
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for ApiKeyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.flush_every, |act, ctx| act.flush(ctx));
    }
}

impl Handler<Flush> for ApiKeyActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.flush(ctx);
    }
}
