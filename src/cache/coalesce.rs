//! Read coalescing for the request path's Redis reads.
//!
//! Every authenticated request reads two keys (the org's authorization
//! version and the credential's state). Under load, one MGET per request
//! spends most of the request's time in Redis round trips. Instead, readers
//! queue their keys here and one task sends them as a single MGET, then the
//! next batch, one batch in flight at a time.
//!
//! Freshness is unchanged: a reader's keys are taken off the queue, and so
//! sent, only after the reader queued them. The MGET therefore executes in
//! Redis after the request arrived, and sees every write (a revocation, a
//! role change) that completed before it, exactly as an individual GET would.
//! Joining a batch that was already in flight would break that, which is why
//! a batch is closed when it is sent.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Inner;

/// Upper bound on readers per MGET (keeps one reply a bounded size).
const MAX_READERS: usize = 256;

pub type Reply = Option<Vec<Option<String>>>;

pub struct Read {
    pub keys: Vec<String>,
    pub reply: oneshot::Sender<Reply>,
}

/// Starts the batching task on the current runtime; reads go through the
/// returned sender.
pub fn start(inner: std::sync::Weak<Inner>) -> mpsc::UnboundedSender<Read> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(inner, rx));
    tx
}

async fn run(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Read>) {
    let mut batch: Vec<Read> = Vec::new();
    while rx.recv_many(&mut batch, MAX_READERS).await > 0 {
        // The cache was dropped (its app shut down): nothing left to serve.
        let Some(inner) = inner.upgrade() else { return };
        send(&inner, std::mem::take(&mut batch)).await;
    }
}

async fn send(inner: &Arc<Inner>, batch: Vec<Read>) {
    let keys: Vec<String> = batch.iter().flat_map(|r| r.keys.iter().cloned()).collect();
    let values = inner
        .run(|mut c| async move { redis::cmd("MGET").arg(&keys).query_async::<Vec<Option<String>>>(&mut c).await })
        .await;
    let mut values = values.map(Vec::into_iter);
    for read in batch {
        let answer = match values.as_mut() {
            Some(it) => {
                let mine: Vec<Option<String>> = it.by_ref().take(read.keys.len()).collect();
                (mine.len() == read.keys.len()).then_some(mine)
            }
            None => None,
        };
        // A reader that gave up (timed out) no longer listens: fine.
        let _ = read.reply.send(answer);
    }
}
