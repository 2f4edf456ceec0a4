//! Failed-login throttling per e-mail and per client address. Counted in
//! Redis so that all replicas share one count; in process while Redis is down.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cache::Cache;

/// The counters one login attempt was counted in (Redis or in process).
#[must_use]
pub struct Attempt {
    taken: Vec<(String, bool)>,
}

pub struct LoginLimiter {
    cache: Cache,
    local: moka::sync::Cache<String, Arc<(AtomicU32, Instant)>>,
    max_per_email: u32,
    max_per_ip: u32,
    window_secs: u64,
}

impl LoginLimiter {
    pub fn new(cache: Cache, max_per_email: u32, max_per_ip: u32, window_secs: u64) -> Self {
        LoginLimiter {
            cache,
            local: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(window_secs))
                .build(),
            max_per_email,
            max_per_ip,
            window_secs,
        }
    }

    fn keys(&self, email: &str, ip: Option<IpAddr>) -> Vec<(String, u32)> {
        let mut k = vec![(self.cache.key(&format!("login:fail:email:{}", email.to_lowercase())), self.max_per_email)];
        if let Some(ip) = ip {
            k.push((self.cache.key(&format!("login:fail:ip:{ip}")), self.max_per_ip));
        }
        k
    }

    /// Takes this attempt's place in the per-e-mail and per-address
    /// counters before the password is checked, so that parallel attempts
    /// cannot all pass a check made before any of them failed: each counts
    /// at once, and those past the limit are refused (`Err(retry_after_secs)`)
    /// without counting. Settle with [`Self::succeeded`] or
    /// [`Self::not_a_failure`] (the server could not check); a failure keeps
    /// its count.
    pub async fn begin(&self, email: &str, ip: Option<IpAddr>) -> Result<Attempt, u64> {
        let mut attempt = Attempt { taken: Vec::new() };
        for (key, max) in self.keys(email, ip) {
            let (count, ttl, remote) = match self.cache.incr_window(&key, self.window_secs).await {
                Some((count, ttl)) => (count, ttl, true),
                None => {
                    let (count, ttl) = self.local_incr(&key);
                    (count, ttl, false)
                }
            };
            attempt.taken.push((key, remote));
            if count > max as u64 {
                self.release(attempt).await;
                return Err(ttl.max(1));
            }
        }
        Ok(attempt)
    }

    /// A successful login: it was no failure, and it clears the e-mail's
    /// count (the address keeps the failures of others behind it).
    pub async fn succeeded(&self, attempt: Attempt, email: &str) {
        self.release(attempt).await;
        self.clear_email(email).await;
    }

    /// The attempt could not be judged (database unavailable, ...): it is
    /// not held against the account.
    pub async fn not_a_failure(&self, attempt: Attempt) {
        self.release(attempt).await;
    }

    async fn release(&self, attempt: Attempt) {
        for (key, remote) in attempt.taken {
            if remote {
                self.cache.decr_existing(&key).await;
            } else if let Some(e) = self.local.get(&key) {
                let _ = e.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }

    fn local_incr(&self, key: &str) -> (u64, u64) {
        let entry = self.local.get_with(key.to_string(), || Arc::new((AtomicU32::new(0), Instant::now())));
        let count = entry.0.fetch_add(1, Ordering::Relaxed) as u64 + 1;
        (count, self.window_secs.saturating_sub(entry.1.elapsed().as_secs()))
    }

    pub async fn clear_email(&self, email: &str) {
        let key = self.cache.key(&format!("login:fail:email:{}", email.to_lowercase()));
        self.cache.del(&key).await;
        self.local.invalidate(&key);
    }
}
