//! Time is UTC and injectable: tests move it forward through `Clock::advance`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, SubsecRound, Utc};

#[derive(Clone, Default)]
pub struct Clock {
    offset_secs: Arc<AtomicI64>,
}

impl Clock {
    /// Now, to the microsecond (PostgreSQL's precision), so that a value
    /// read back equals the value written.
    pub fn now(&self) -> DateTime<Utc> {
        (Utc::now() + Duration::seconds(self.offset_secs.load(Ordering::Relaxed))).trunc_subsecs(6)
    }

    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::Relaxed);
    }
}
