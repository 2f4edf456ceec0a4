//! Failed-login throttling per e-mail and per client address. Counted in
//! Redis so that all replicas share one count; in process while Redis is down.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::cache::Cache;

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

    /// `Err(retry_after_secs)` while either counter is over its limit.
    pub async fn check(&self, email: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        for (key, max) in self.keys(email, ip) {
            let (count, ttl) = match self.cache.counter(&key).await {
                Some(c) => c,
                None => self.local_count(&key),
            };
            if count >= max as u64 {
                return Err(ttl.max(1));
            }
        }
        Ok(())
    }

    pub async fn record_failure(&self, email: &str, ip: Option<IpAddr>) {
        for (key, _) in self.keys(email, ip) {
            if self.cache.incr_window(&key, self.window_secs).await.is_none() {
                let entry = self.local.get_with(key, || Arc::new((AtomicU32::new(0), Instant::now())));
                entry.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub async fn clear_email(&self, email: &str) {
        let key = self.cache.key(&format!("login:fail:email:{}", email.to_lowercase()));
        self.cache.del(&key).await;
        self.local.invalidate(&key);
    }

    fn local_count(&self, key: &str) -> (u64, u64) {
        match self.local.get(key) {
            Some(e) => {
                let elapsed = e.1.elapsed().as_secs();
                (e.0.load(Ordering::Relaxed) as u64, self.window_secs.saturating_sub(elapsed))
            }
            None => (0, 0),
        }
    }
}
