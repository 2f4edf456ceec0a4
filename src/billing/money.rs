//! Money on the wire: a decimal string and an ISO 4217 code, never a float.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// Decimal string, e.g. "100.00".
    #[schema(value_type = String, example = "100.00")]
    pub amount: String,
    #[schema(example = "USD")]
    pub currency: String,
}

impl Money {
    /// USD rounded to cents, half away from zero (banker's rounding is for
    /// aggregates; a displayed balance rounds like a receipt).
    pub fn usd(d: Decimal) -> Money {
        let mut r = d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        r.rescale(2);
        Money { amount: r.to_string(), currency: "USD".into() }
    }
}

/// Parses a decimal amount in USD with at most two decimals.
pub fn parse_usd(field: &str, m: &Money) -> ApiResult<Decimal> {
    if m.currency != "USD" {
        return Err(ApiError::invalid(format!("{field}.currency"), "only USD is accepted for now"));
    }
    let d: Decimal = m
        .amount
        .trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("{field}.amount"), "must be a decimal string such as \"100.00\""))?;
    if d.scale() > 2 {
        return Err(ApiError::invalid(format!("{field}.amount"), "at most two decimal places"));
    }
    if d > Decimal::from(1_000_000_000i64) {
        return Err(ApiError::invalid(format!("{field}.amount"), "too large"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_always_shows_cents_and_rounds_half_away_from_zero() {
        assert_eq!(Money::usd(Decimal::from(20)).amount, "20.00");
        assert_eq!(Money::usd("0.005".parse().unwrap()).amount, "0.01");
        assert_eq!(Money::usd("-0.005".parse().unwrap()).amount, "-0.01");
        assert_eq!(Money::usd("1.234".parse().unwrap()).amount, "1.23");
    }
}
