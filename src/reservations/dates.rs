//! Reservation dates: whole UTC days, both inclusive.

use chrono::NaiveDate;

use crate::error::{ApiError, ApiResult};

/// The longest range one reservation (or availability query) may span.
pub const MAX_DAYS: i64 = 366;

pub fn parse(field: &str, s: &str) -> ApiResult<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, format!("{s:?} is not a date (YYYY-MM-DD)")))
}

/// Days in `[start, end]`, both inclusive.
pub fn days(start: NaiveDate, end: NaiveDate) -> i64 {
    (end - start).num_days() + 1
}

/// Checks the order and length of a range.
pub fn check_range(start: NaiveDate, end: NaiveDate, end_field: &str) -> ApiResult<()> {
    if end < start {
        return Err(ApiError::invalid(end_field, "must not be before the start date"));
    }
    if days(start, end) > MAX_DAYS {
        return Err(ApiError::invalid(end_field, format!("a range may span at most {MAX_DAYS} days")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_example_is_28_days() {
        let (s, e) = (parse("s", "2024-02-01").unwrap(), parse("e", "2024-02-28").unwrap());
        assert_eq!(days(s, e), 28);
        assert_eq!(days(s, s), 1);
        assert!(check_range(e, s, "end_date").is_err());
        assert!(parse("s", "2024-02-30").is_err());
    }
}
