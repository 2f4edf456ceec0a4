//! When to try again: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
//! (Svix's schedule), each with ±10 % jitter so that retries of a burst do
//! not arrive together; an endpoint's Retry-After is honoured up to a cap.
//! Retry-After can only push an attempt later, never sooner: the delay is
//! `max(schedule, min(retry_after, cap))`.

use rand::Rng;

const DELAYS_SECS: [i64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i32 = DELAYS_SECS.len() as i32 + 1;

/// Delay before the next attempt after `attempts` failed ones, or `None`
/// when the delivery is given up.
pub fn next_delay_secs(attempts: i32, retry_after: Option<i64>, cap: i64) -> Option<i64> {
    let base = *DELAYS_SECS.get(usize::try_from(attempts - 1).ok()?)?;
    let jittered = (base as f64 * rand::rng().random_range(0.9..=1.1)).round() as i64;
    // Capped first, then compared: a Retry-After above the cap still counts
    // (as the cap), but never shortens the schedule.
    let asked = retry_after.map_or(0, |r| r.min(cap));
    Some(jittered.max(asked).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_with_jitter_and_gives_up() {
        let d = next_delay_secs(1, None, 3600).unwrap();
        assert!((4..=6).contains(&d), "{d}");
        let d = next_delay_secs(2, None, 3600).unwrap();
        assert!((270..=330).contains(&d), "{d}");
        assert_eq!(next_delay_secs(1, Some(120), 3600), Some(120));
        assert_eq!(next_delay_secs(1, Some(999_999), 3600), Some(3600));
        assert!(next_delay_secs(MAX_ATTEMPTS - 1, None, 3600).is_some());
        assert_eq!(next_delay_secs(MAX_ATTEMPTS, None, 3600), None);
    }

    #[test]
    fn retry_after_never_shortens_the_schedule() {
        // delay = max(jittered schedule, min(retry_after, cap)), for every attempt.
        for attempts in 1..MAX_ATTEMPTS {
            let base = DELAYS_SECS[(attempts - 1) as usize];
            let (lo, hi) = ((base as f64 * 0.9).floor() as i64, (base as f64 * 1.1).ceil() as i64);
            for (retry_after, cap) in [
                (None, 3600),
                (Some(0), 3600),
                (Some(1), 3600),
                (Some(999_999), 3),
                (Some(999_999), 0),
                (Some(120), 60),
            ] {
                let d = next_delay_secs(attempts, retry_after, cap).unwrap();
                let asked = retry_after.map_or(0, |r: i64| r.min(cap));
                assert!(d >= asked, "attempt {attempts}, {retry_after:?} cap {cap}: {d}");
                if asked < lo {
                    // The schedule wins: jittered around the base, not cut to the cap.
                    assert!((lo..=hi).contains(&d), "attempt {attempts}, {retry_after:?} cap {cap}: {d}");
                } else if asked > hi {
                    assert_eq!(d, asked, "attempt {attempts}, {retry_after:?} cap {cap}");
                }
            }
        }
        // A huge Retry-After with a small cap: the 5 min step stays 5 min.
        let d = next_delay_secs(2, Some(999_999), 10).unwrap();
        assert!((270..=330).contains(&d), "{d}");
        // Above the schedule and the cap: the cap.
        assert_eq!(next_delay_secs(1, Some(999_999), 600), Some(600));
        // Above the schedule, under the cap: Retry-After itself.
        assert_eq!(next_delay_secs(2, Some(1000), 3600), Some(1000));
        // Under the schedule: the schedule.
        let d = next_delay_secs(3, Some(60), 3600).unwrap();
        assert!((1620..=1980).contains(&d), "{d}");
    }
}
