//! The RBAC actor owns cache maintenance: a version announcement or a
//! credential revocation that Redis refused (it was down) is retried until it
//! lands, so replicas that read Redis never keep trusting an old entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use super::authorizer::Authorizer;

pub struct RbacActor {
    authorizer: Arc<Authorizer>,
    pending: HashMap<Uuid, i64>,
    pending_sets: HashMap<String, (String, u64)>,
}

impl RbacActor {
    pub fn new(authorizer: Arc<Authorizer>) -> Self {
        RbacActor { authorizer, pending: HashMap::new(), pending_sets: HashMap::new() }
    }
}

/// An org's authorization version that could not be published.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetryAnnounce {
    pub org: Uuid,
    pub version: i64,
}

/// A cache entry that must replace what Redis holds (a revocation).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetrySet {
    pub key: String,
    pub value: String,
    pub ttl_secs: u64,
}

impl Actor for RbacActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            if act.pending.is_empty() && act.pending_sets.is_empty() {
                return;
            }
            let pending = std::mem::take(&mut act.pending);
            let sets = std::mem::take(&mut act.pending_sets);
            let authorizer = act.authorizer.clone();
            let fut = async move {
                let mut failed = HashMap::new();
                for (org, version) in pending {
                    if !authorizer.announce(org, version).await {
                        failed.insert(org, version);
                    }
                }
                let mut failed_sets = HashMap::new();
                for (key, (value, ttl)) in sets {
                    if !authorizer.cache().set_ex(&key, &value, ttl).await {
                        failed_sets.insert(key, (value, ttl));
                    }
                }
                (failed, failed_sets)
            };
            ctx.spawn(fut.into_actor(act).map(|(failed, failed_sets), act, _| {
                for (org, v) in failed {
                    let e = act.pending.entry(org).or_insert(v);
                    *e = (*e).max(v);
                }
                for (k, v) in failed_sets {
                    act.pending_sets.entry(k).or_insert(v);
                }
            }));
        });
    }
}

impl Handler<RetryAnnounce> for RbacActor {
    type Result = ();

    fn handle(&mut self, msg: RetryAnnounce, _: &mut Self::Context) {
        let e = self.pending.entry(msg.org).or_insert(msg.version);
        *e = (*e).max(msg.version);
    }
}

impl Handler<RetrySet> for RbacActor {
    type Result = ();

    fn handle(&mut self, msg: RetrySet, _: &mut Self::Context) {
        self.pending_sets.insert(msg.key, (msg.value, msg.ttl_secs));
    }
}
