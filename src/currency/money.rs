//! Money shown to a user: a USD amount converted to their preferred
//! currency.
//!
//! Rounding rule: the USD amount is multiplied by the full-precision rate
//! (units per 1 USD, 18 decimal places) and the product is rounded once, to
//! the currency's ISO 4217 minor units, half away from zero (0.005 -> 0.01,
//! -0.005 -> -0.01; for JPY 0.5 -> 1; for KWD 0.0005 -> 0.001). Nothing
//! intermediate is rounded, so a displayed amount is never off by more than
//! half a minor unit. `base_amount` is the USD amount in cents, rounded the
//! same way.

use std::sync::Arc;

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::catalogue::{self, Currency};
use super::snapshot::Snapshot;
use crate::db::schema::users;
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

/// An amount in the caller's currency, with what it was converted from.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct DisplayMoney {
    /// Decimal string with the currency's minor units, e.g. "555.56".
    #[schema(value_type = String, example = "555.56")]
    pub amount: String,
    #[schema(example = "BRL")]
    pub currency: String,
    /// The amount as held, in `base_currency`.
    #[schema(value_type = String, example = "100.00")]
    pub base_amount: String,
    #[schema(example = "USD")]
    pub base_currency: String,
    /// Units of `currency` per 1 `base_currency`, as used.
    #[schema(value_type = String, example = "5.555555555555555556")]
    pub rate: String,
    /// Publication date of the rate; null when none was needed (USD).
    pub rates_as_of: Option<NaiveDate>,
}

/// Rounds to `minor_units` places, half away from zero, always showing them.
pub fn round(amount: Decimal, minor_units: u32) -> String {
    let mut r = amount.round_dp_with_strategy(minor_units, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(minor_units);
    r.to_string()
}

/// Converts USD amounts to one currency with one snapshot, so that several
/// amounts in one response share a rate.
#[derive(Debug, Clone)]
pub struct Converter {
    currency: &'static Currency,
    rate: Decimal,
    as_of: Option<NaiveDate>,
}

impl Converter {
    /// 503 when `currency` is not USD and `snapshot` has no rate for it.
    pub fn new(currency: &'static Currency, snapshot: Option<&Snapshot>) -> ApiResult<Converter> {
        if currency.code == "USD" {
            return Ok(Converter { currency, rate: Decimal::ONE, as_of: None });
        }
        let snapshot = snapshot.ok_or_else(|| {
            ApiError::Unavailable(format!("no exchange rates yet to show amounts in {}", currency.code))
        })?;
        let rate = snapshot
            .rate(currency.code)
            .ok_or_else(|| ApiError::Unavailable(format!("no exchange rate for {} yet", currency.code)))?;
        Ok(Converter { currency, rate: rate.per_usd, as_of: Some(rate.as_of) })
    }

    pub fn money(&self, usd: Decimal) -> DisplayMoney {
        let converted = usd.checked_mul(self.rate).unwrap_or(Decimal::MAX);
        DisplayMoney {
            amount: round(converted, self.currency.minor_units),
            currency: self.currency.code.to_string(),
            base_amount: round(usd, 2),
            base_currency: "USD".into(),
            rate: self.rate.normalize().to_string(),
            rates_as_of: self.as_of,
        }
    }
}

/// The user's preferred currency (USD for a code no longer offered).
pub async fn preferred(state: &AppState, user_id: Uuid) -> ApiResult<&'static Currency> {
    let mut conn = state.conn().await?;
    let code: String = users::table.find(user_id).select(users::currency).first(&mut conn).await?;
    Ok(catalogue::find(&code).unwrap_or_else(catalogue::usd))
}

/// A converter to `user_id`'s preferred currency from the current snapshot.
/// Take it before a write, so that a missing rate refuses the request
/// before anything changes.
pub async fn converter(state: &AppState, user_id: Uuid) -> ApiResult<Converter> {
    let currency = preferred(state, user_id).await?;
    let snapshot: Option<Arc<Snapshot>> = state.currency.board.load();
    Converter::new(currency, snapshot.as_deref())
}

/// One USD amount shown in `user_id`'s preferred currency.
pub async fn display(state: &AppState, user_id: Uuid, usd: Decimal) -> ApiResult<DisplayMoney> {
    Ok(converter(state, user_id).await?.money(usd))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::currency::provider::Quote;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn snapshot(rates: &[(&'static str, &str)]) -> Snapshot {
        let q = Quote {
            base: "EUR",
            as_of: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            rates: rates.iter().map(|(c, r)| (*c, d(r))).collect(),
        };
        Snapshot::merge(&[("ecb", &q)], Utc::now()).unwrap()
    }

    fn show(code: &str, s: &Snapshot, usd: &str) -> String {
        Converter::new(catalogue::find(code).unwrap(), Some(s)).unwrap().money(d(usd)).amount
    }

    #[test]
    fn the_issue_example_brl() {
        let s = snapshot(&[("EUR", "1"), ("USD", "1.08"), ("BRL", "6.00")]);
        let m = Converter::new(catalogue::find("BRL").unwrap(), Some(&s)).unwrap().money(d("100.00"));
        assert_eq!(m.amount, "555.56");
        assert_eq!(m.base_amount, "100.00");
        assert_eq!(m.rate, "5.555555555555555556");
        assert_eq!(m.rates_as_of, NaiveDate::from_ymd_opt(2026, 12, 2));
    }

    #[test]
    fn rounds_once_to_minor_units_half_away_from_zero() {
        assert_eq!(round(d("0.005"), 2), "0.01");
        assert_eq!(round(d("-0.005"), 2), "-0.01");
        assert_eq!(round(d("0.0049999"), 2), "0.00");
        assert_eq!(round(d("2.5"), 0), "3");
        assert_eq!(round(d("-2.5"), 0), "-3");
        assert_eq!(round(d("1.0005"), 3), "1.001");
        assert_eq!(round(d("7"), 3), "7.000");
        // USD 1 = JPY 150.5 (EUR 1 = USD 1, JPY 150.5): 1.00 USD -> 151 JPY.
        let s = snapshot(&[("EUR", "1"), ("USD", "1"), ("JPY", "150.5"), ("KWD", "0.3075"), ("BHD", "0.37605")]);
        assert_eq!(show("JPY", &s, "1.00"), "151");
        assert_eq!(show("JPY", &s, "0.01"), "2");
        assert_eq!(show("KWD", &s, "1.00"), "0.308");
        assert_eq!(show("KWD", &s, "10.00"), "3.075");
        assert_eq!(show("BHD", &s, "1.00"), "0.376");
        assert_eq!(show("USD", &s, "1.005"), "1.01");
    }

    #[test]
    fn rounding_happens_once_not_per_step() {
        // Rounding the rate to cents first would give 1.23 * 3 = 3.69.
        let s = snapshot(&[("EUR", "1"), ("USD", "1"), ("GBP", "1.2345")]);
        assert_eq!(show("GBP", &s, "3.00"), "3.70");
    }

    #[test]
    fn usd_needs_no_rates_and_others_do() {
        let usd = Converter::new(catalogue::usd(), None).unwrap().money(d("12.5"));
        assert_eq!((usd.amount.as_str(), usd.rate.as_str(), usd.rates_as_of), ("12.50", "1", None));
        assert!(matches!(Converter::new(catalogue::find("BRL").unwrap(), None), Err(ApiError::Unavailable(_))));
        let s = snapshot(&[("EUR", "1"), ("USD", "1.08")]);
        assert!(matches!(Converter::new(catalogue::find("BRL").unwrap(), Some(&s)), Err(ApiError::Unavailable(_))));
    }
}
