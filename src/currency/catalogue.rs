//! The currencies users may choose: the ISO 4217 codes that the configured
//! providers publish. Names and minor units come from ISO 4217 (the
//! `iso_currency` crate), not from a hand-kept table.

use std::sync::LazyLock;

/// The ECB's ~30 (plus EUR itself) and a dozen more that the JSON provider
/// supplies. Sorted, so lookups are a binary search.
const CODES: [&str; 45] = [
    "AED", "ARS", "AUD", "BGN", "BHD", "BRL", "CAD", "CHF", "CLP", "CNY", "COP", "CZK", "DKK", "EGP", "EUR", "GBP",
    "HKD", "HUF", "IDR", "ILS", "INR", "ISK", "JOD", "JPY", "KRW", "KWD", "MXN", "MYR", "NGN", "NOK", "NZD", "OMR",
    "PEN", "PHP", "PLN", "RON", "SAR", "SEK", "SGD", "THB", "TRY", "TWD", "USD", "VND", "ZAR",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    pub name: String,
    /// Digits after the decimal point (ISO 4217 "exponent").
    pub minor_units: u32,
}

static CATALOGUE: LazyLock<Vec<Currency>> = LazyLock::new(|| {
    CODES
        .iter()
        .filter_map(|code| {
            let c = iso_currency::Currency::from_code(code)?;
            Some(Currency { code: c.code(), name: c.name().to_string(), minor_units: u32::from(c.exponent()?) })
        })
        .collect()
});

/// Every supported currency, sorted by code.
pub fn all() -> &'static [Currency] {
    &CATALOGUE
}

/// Position of `code` in `all()`; snapshots index their rates by it.
pub fn index(code: &str) -> Option<usize> {
    CATALOGUE.binary_search_by(|c| c.code.cmp(code)).ok()
}

pub fn find(code: &str) -> Option<&'static Currency> {
    index(code).map(|i| &CATALOGUE[i])
}

/// USD, the currency amounts are held in and rates are stored per.
pub fn usd() -> &'static Currency {
    // The catalogue always has USD (a test checks); the fallback only
    // spares an unwrap.
    static USD: LazyLock<Currency> =
        LazyLock::new(|| Currency { code: "USD", name: "United States dollar".into(), minor_units: 2 });
    find("USD").unwrap_or(&USD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_iso_4217_and_sorted() {
        assert_eq!(all().len(), CODES.len(), "a code is not ISO 4217 or has no minor units");
        assert!(CODES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(usd().code, "USD");
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        for (code, units) in
            [("USD", 2), ("BRL", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("ISK", 0), ("KWD", 3), ("BHD", 3)]
        {
            assert_eq!(find(code).map(|c| c.minor_units), Some(units), "{code}");
        }
        assert!(find("XYZ").is_none());
        assert!(find("usd").is_none());
    }
}
