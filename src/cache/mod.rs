//! Redis as a cache, never the only copy. Every call has a short timeout and
//! reports failure as `None`/`false`, so callers fall back to PostgreSQL.
//! When Redis is unreachable at start-up a background task keeps trying.

mod coalesce;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ArcSwapOption<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    /// The coalescing reader of `mget` (absent for a disconnected cache).
    reads: OnceLock<tokio::sync::mpsc::UnboundedSender<coalesce::Read>>,
}

impl Inner {
    async fn run<T, F>(&self, f: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conn.load_full().map(|c| (*c).clone())?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis command failed");
                None
            }
            Err(_) => {
                tracing::debug!("redis command timed out");
                None
            }
        }
    }
}

const DECR_EXISTING: &str =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end return 0";

/// Sets KEYS[1] to ARGV[1] unless it already holds a larger number, so a
/// slow writer can never move a version counter backwards.
const SET_MAX: &str = r"
local cur = redis.call('GET', KEYS[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0";

impl Cache {
    /// Connects in the background; the returned cache works (degraded) at once.
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Cache> {
        let client = redis::Client::open(url)?;
        let cache = Cache {
            inner: Arc::new(Inner {
                conn: ArcSwapOption::empty(),
                prefix: prefix.to_string(),
                timeout,
                reads: OnceLock::new(),
            }),
        };
        let _ = cache.inner.reads.set(coalesce::start(Arc::downgrade(&cache.inner)));
        let inner = cache.inner.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(2);
            let mut warned = false;
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(conn) => {
                        inner.conn.store(Some(Arc::new(conn)));
                        tracing::info!("connected to Redis");
                        return;
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "Redis unreachable; serving from PostgreSQL and retrying");
                            warned = true;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(cache)
    }

    /// A cache that never connects (Redis disabled).
    pub fn disconnected(prefix: &str) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                conn: ArcSwapOption::empty(),
                prefix: prefix.to_string(),
                timeout: Duration::from_millis(1),
                reads: OnceLock::new(),
            }),
        }
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{}", self.inner.prefix, suffix)
    }

    async fn run<T, F>(&self, f: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.inner.run(f).await
    }

    pub async fn ping(&self) -> bool {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await.is_some()
    }

    /// GET of several keys, as fresh as a direct read: concurrent callers
    /// share one MGET (see `coalesce`). `None`: Redis unavailable.
    pub async fn mget(&self, keys: &[String]) -> Option<Vec<Option<String>>> {
        // Not connected: answer at once rather than queue behind a timeout.
        self.inner.conn.load().as_ref()?;
        let reads = self.inner.reads.get()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        reads.send(coalesce::Read { keys: keys.to_vec(), reply }).ok()?;
        // The batch's own command has the cache timeout; this bounds the wait
        // for a batch ahead of ours as well.
        tokio::time::timeout(self.inner.timeout * 2, answer).await.ok()?.ok()?
    }

    pub async fn get(&self, key: &str) -> Option<Option<String>> {
        let key = key.to_string();
        self.run(|mut c| async move { c.get::<_, Option<String>>(key).await }).await
    }

    /// SET with expiry. Returns whether Redis took it.
    pub async fn set_ex(&self, key: &str, value: &str, ttl_secs: u64) -> bool {
        let (key, value) = (key.to_string(), value.to_string());
        self.run(|mut c| async move { c.set_ex::<_, _, ()>(key, value, ttl_secs).await }).await.is_some()
    }

    /// SET NX with expiry: fills a cache entry without overwriting a newer one.
    pub async fn set_nx_ex(&self, key: &str, value: &str, ttl_secs: u64) -> bool {
        let (key, value) = (key.to_string(), value.to_string());
        self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("NX")
                .arg("EX")
                .arg(ttl_secs)
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .is_some()
    }

    /// Raises a numeric key to `value` (never lowers it).
    pub async fn set_max(&self, key: &str, value: i64, ttl_secs: u64) -> bool {
        let key = key.to_string();
        self.run(|mut c| async move {
            redis::Script::new(SET_MAX).key(key).arg(value).arg(ttl_secs).invoke_async::<i64>(&mut c).await
        })
        .await
        .is_some()
    }

    /// INCR with an expiry set on first use; returns the new count and the TTL left.
    pub async fn incr_window(&self, key: &str, window_secs: u64) -> Option<(u64, u64)> {
        let key = key.to_string();
        self.run(|mut c| async move {
            let (count, ttl): (u64, i64) = redis::pipe()
                .atomic()
                .incr(&key, 1u64)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(window_secs)
                .arg("NX")
                .ignore()
                .ttl(&key)
                .query_async(&mut c)
                .await?;
            Ok((count, ttl.max(0) as u64))
        })
        .await
    }

    /// Takes one off a counter that still exists (an expired window stays
    /// gone rather than coming back as -1 with no expiry).
    pub async fn decr_existing(&self, key: &str) -> bool {
        let key = key.to_string();
        self.run(|mut c| async move { redis::Script::new(DECR_EXISTING).key(key).invoke_async::<i64>(&mut c).await })
            .await
            .is_some()
    }

    /// Current count and TTL of a counter (0 when absent).
    pub async fn counter(&self, key: &str) -> Option<(u64, u64)> {
        let key = key.to_string();
        self.run(|mut c| async move {
            let (count, ttl): (Option<u64>, i64) = redis::pipe().get(&key).ttl(&key).query_async(&mut c).await?;
            Ok((count.unwrap_or(0), ttl.max(0) as u64))
        })
        .await
    }

    pub async fn del(&self, key: &str) -> bool {
        let key = key.to_string();
        self.run(|mut c| async move { c.del::<_, ()>(key).await }).await.is_some()
    }
}
