//! When to try again: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
//! (Svix's schedule), each with ±10 % jitter so that retries of a burst do
//! not arrive together; an endpoint's Retry-After is honoured up to a cap.

use rand::Rng;

const DELAYS_SECS: [i64; 7] = [5, 300, 1800, 7200, 18000, 36000, 36000];

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i32 = DELAYS_SECS.len() as i32 + 1;

/// Delay before the next attempt after `attempts` failed ones, or `None`
/// when the delivery is given up.
pub fn next_delay_secs(attempts: i32, retry_after: Option<i64>, cap: i64) -> Option<i64> {
    let base = *DELAYS_SECS.get(usize::try_from(attempts - 1).ok()?)?;
    let jittered = (base as f64 * rand::rng().random_range(0.9..=1.1)).round() as i64;
    Some(match retry_after {
        Some(r) if r > jittered => r.min(cap),
        _ => jittered.max(1),
    })
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
}
