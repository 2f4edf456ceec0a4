//! An immutable set of exchange rates, and the board that publishes the
//! current one. Handlers read the board (an `ArcSwap` load: no lock, no
//! mailbox); only the currency actor and the poller replace it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::catalogue;
use super::provider::Quote;

/// Decimal places kept of a rate per USD (or a cross rate). Rates are
/// quotients (6.00 / 1.08) and would otherwise carry 28 digits; 18 places
/// keep the error of any amount below 10^9 under 10^-9 of a minor unit.
pub const RATE_DP: u32 = 18;

/// One currency's rate and how current it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Units per 1 USD.
    pub per_usd: Decimal,
    /// Publication date of the document the rate came from.
    pub as_of: NaiveDate,
    /// The fetch in which a provider last published it.
    pub confirmed_at: DateTime<Utc>,
}

impl Rate {
    /// Stale: no provider has confirmed this rate for `stale_after_secs`.
    pub fn is_stale(&self, now: DateTime<Utc>, stale_after_secs: u64) -> bool {
        (now - self.confirmed_at).num_seconds() > i64::try_from(stale_after_secs).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stored row's id: a larger one is newer.
    pub version: i64,
    /// The oldest publication date among its rates.
    pub as_of: NaiveDate,
    /// When this snapshot was fetched.
    pub fetched_at: DateTime<Utc>,
    /// Which providers contributed to this fetch, e.g. "ecb+fallback".
    pub providers: String,
    /// Aligned with `catalogue::all()`.
    rates: Vec<Option<Rate>>,
}

/// The stored form (PostgreSQL row and Redis value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub version: i64,
    pub as_of: NaiveDate,
    pub fetched_at: DateTime<Utc>,
    pub providers: String,
    /// Code -> units per 1 USD, as decimal strings.
    pub rates: BTreeMap<String, String>,
    /// Code -> when that rate was published and confirmed. Absent from rows
    /// stored before rates were dated one by one: those take the row's.
    #[serde(default)]
    pub dates: BTreeMap<String, RateDates>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateDates {
    pub as_of: NaiveDate,
    pub confirmed_at: DateTime<Utc>,
}

impl Snapshot {
    /// Merges quotes, the first one winning for a currency they share. Each
    /// quote is crossed to USD through its own base: per_usd(X) = X / USD,
    /// both per unit of the base.
    pub fn merge(quotes: &[(&str, &Quote)], fetched_at: DateTime<Utc>) -> Option<Snapshot> {
        let mut rates = vec![None; catalogue::all().len()];
        let mut names = Vec::new();
        for (name, q) in quotes {
            if merge_quote(&mut rates, q, fetched_at) {
                names.push(*name);
            }
        }
        Snapshot::from_rates(0, fetched_at, names.join("+"), rates)
    }

    fn from_rates(
        version: i64,
        fetched_at: DateTime<Utc>,
        providers: String,
        rates: Vec<Option<Rate>>,
    ) -> Option<Snapshot> {
        Some(Snapshot { version, as_of: oldest(&rates)?, fetched_at, providers, rates })
    }

    /// Keeps the rates of `older` for the currencies no provider confirmed
    /// this time (a provider down or no longer publishing one), each with
    /// its own dates so that it turns stale by its own age. Returns their
    /// codes.
    pub fn keep_unconfirmed(&mut self, older: &Snapshot) -> Vec<&'static str> {
        let mut kept = Vec::new();
        for ((slot, old), c) in self.rates.iter_mut().zip(&older.rates).zip(catalogue::all()) {
            if slot.is_none() && old.is_some() {
                *slot = *old;
                kept.push(c.code);
            }
        }
        self.as_of = oldest(&self.rates).unwrap_or(self.as_of);
        kept
    }

    pub fn rate(&self, code: &str) -> Option<&Rate> {
        self.rates.get(catalogue::index(code)?)?.as_ref()
    }

    /// Units of `code` per 1 USD.
    pub fn per_usd(&self, code: &str) -> Option<Decimal> {
        self.rate(code).map(|r| r.per_usd)
    }

    /// Units of `code` per 1 `base`.
    pub fn cross(&self, base: &str, code: &str) -> Option<Decimal> {
        let (b, c) = (self.per_usd(base)?, self.per_usd(code)?);
        c.checked_div(b).map(|d| d.round_dp(RATE_DP).normalize())
    }

    /// Codes with a rate, in catalogue order.
    pub fn codes(&self) -> impl Iterator<Item = &'static str> + '_ {
        catalogue::all().iter().zip(&self.rates).filter(|(_, r)| r.is_some()).map(|(c, _)| c.code)
    }

    pub fn len(&self) -> usize {
        self.rates.iter().flatten().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stale: some rate has not been confirmed for `stale_after_secs`.
    pub fn is_stale(&self, now: DateTime<Utc>, stale_after_secs: u64) -> bool {
        self.rates.iter().flatten().any(|r| r.is_stale(now, stale_after_secs))
    }

    pub fn to_stored(&self) -> Stored {
        let entries =
            || catalogue::all().iter().zip(&self.rates).filter_map(|(c, r)| Some((c.code.to_string(), (*r)?)));
        Stored {
            version: self.version,
            as_of: self.as_of,
            fetched_at: self.fetched_at,
            providers: self.providers.clone(),
            rates: entries().map(|(c, r)| (c, r.per_usd.to_string())).collect(),
            dates: entries().map(|(c, r)| (c, RateDates { as_of: r.as_of, confirmed_at: r.confirmed_at })).collect(),
        }
    }

    /// Codes outside the catalogue (a currency dropped since) are skipped;
    /// a value that is not a positive decimal makes the whole row unusable.
    pub fn from_stored(s: &Stored) -> Option<Snapshot> {
        let mut rates = vec![None; catalogue::all().len()];
        for (code, v) in &s.rates {
            let per_usd: Decimal = v.parse().ok().filter(|d: &Decimal| *d > Decimal::ZERO)?;
            let dates = s.dates.get(code).copied().unwrap_or(RateDates { as_of: s.as_of, confirmed_at: s.fetched_at });
            if let Some(i) = catalogue::index(code) {
                rates[i] = Some(Rate { per_usd, as_of: dates.as_of, confirmed_at: dates.confirmed_at });
            }
        }
        Snapshot::from_rates(s.version, s.fetched_at, s.providers.clone(), rates)
    }
}

fn oldest(rates: &[Option<Rate>]) -> Option<NaiveDate> {
    rates.iter().flatten().map(|r| r.as_of).min()
}

/// Adds the rates of `q` that no earlier quote supplied; true if it added any.
fn merge_quote(rates: &mut [Option<Rate>], q: &Quote, fetched_at: DateTime<Utc>) -> bool {
    let Some(usd) = q.rates.get("USD").copied().filter(|d| !d.is_zero()) else { return false };
    let mut used = false;
    for (code, r) in &q.rates {
        let Some(i) = catalogue::index(code) else { continue };
        if rates[i].is_none()
            && let Some(per_usd) = r.checked_div(usd).map(|d| d.round_dp(RATE_DP).normalize())
        {
            rates[i] = Some(Rate { per_usd, as_of: q.as_of, confirmed_at: fetched_at });
            used = true;
        }
    }
    used
}

/// The current snapshot of this replica.
#[derive(Default)]
pub struct Board {
    current: ArcSwapOption<Snapshot>,
}

impl Board {
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    pub fn version(&self) -> i64 {
        self.current.load().as_ref().map_or(0, |s| s.version)
    }

    /// Installs `s` unless the board already holds it or a newer one (the
    /// poller and a refresh may race).
    pub fn publish(&self, s: Snapshot) -> bool {
        let s = Arc::new(s);
        let mut installed = false;
        self.current.rcu(|cur| match cur {
            Some(c) if c.version >= s.version => {
                installed = false;
                Some(c.clone())
            }
            _ => {
                installed = true;
                Some(s.clone())
            }
        });
        installed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    fn quote(base: &'static str, rates: &[(&'static str, &str)]) -> Quote {
        quote_of(day(2), base, rates)
    }

    fn quote_of(as_of: NaiveDate, base: &'static str, rates: &[(&'static str, &str)]) -> Quote {
        Quote { base, as_of, rates: rates.iter().map(|(c, r)| (*c, r.parse().unwrap())).collect() }
    }

    #[test]
    fn crosses_through_the_base_and_merges_by_priority() {
        let ecb = quote("EUR", &[("EUR", "1"), ("USD", "1.08"), ("BRL", "6.00")]);
        let json = quote("USD", &[("USD", "1"), ("BRL", "9.99"), ("KWD", "0.307")]);
        let s = Snapshot::merge(&[("ecb", &ecb), ("fallback", &json)], Utc::now()).unwrap();
        assert_eq!(s.per_usd("USD"), Some(Decimal::ONE));
        assert_eq!(s.per_usd("BRL"), Some("5.555555555555555556".parse().unwrap()));
        assert_eq!(s.per_usd("EUR"), Some("0.925925925925925926".parse().unwrap()));
        assert_eq!(s.per_usd("KWD"), Some("0.307".parse().unwrap()));
        assert_eq!(s.cross("BRL", "EUR"), Some("0.166666666666666667".parse().unwrap()));
        assert_eq!(s.providers, "ecb+fallback");
        assert_eq!(s.len(), 4);
        let back = Snapshot::from_stored(&s.to_stored()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn the_board_never_goes_back_to_an_older_version() {
        let q = quote("USD", &[("USD", "1")]);
        let mut a = Snapshot::merge(&[("x", &q)], Utc::now()).unwrap();
        a.version = 2;
        let mut b = a.clone();
        b.version = 1;
        let board = Board::default();
        assert!(board.publish(a));
        assert!(!board.publish(b));
        assert_eq!(board.version(), 2);
    }

    #[test]
    fn unconfirmed_currencies_keep_their_rate_and_dates() {
        let t0 = Utc::now();
        let ecb = quote("EUR", &[("EUR", "1"), ("USD", "1.08"), ("BRL", "6.00")]);
        let json = quote("USD", &[("USD", "1"), ("KWD", "0.307")]);
        let old = Snapshot::merge(&[("ecb", &ecb), ("fallback", &json)], t0).unwrap();
        let t1 = t0 + chrono::Duration::hours(1);
        let next = quote_of(day(3), "EUR", &[("EUR", "1"), ("USD", "1.10"), ("BRL", "6.05")]);
        let mut new = Snapshot::merge(&[("ecb", &next)], t1).unwrap();
        assert_eq!(new.keep_unconfirmed(&old), ["KWD"]);
        assert_eq!(
            new.rate("BRL").map(|r| (r.per_usd, r.as_of, r.confirmed_at)),
            Some(("5.5".parse().unwrap(), day(3), t1))
        );
        assert_eq!(
            new.rate("KWD").map(|r| (r.per_usd, r.as_of, r.confirmed_at)),
            Some(("0.307".parse().unwrap(), day(2), t0))
        );
        assert_eq!(new.as_of, day(2), "the oldest rate's date");
        // Only the kept rate ages past the limit.
        let later = t0 + chrono::Duration::seconds(3601 + 100);
        assert!(new.rate("KWD").unwrap().is_stale(later, 3600));
        assert!(!new.rate("BRL").unwrap().is_stale(later, 3600));
        assert!(new.is_stale(later, 3600));
        assert_eq!(Snapshot::from_stored(&new.to_stored()).unwrap(), new);
    }

    #[test]
    fn rows_stored_without_dates_take_the_rows_dates() {
        let t0 = Utc::now();
        let stored = Stored {
            version: 7,
            as_of: day(2),
            fetched_at: t0,
            providers: "ecb".into(),
            rates: [("USD".to_string(), "1".to_string()), ("BRL".to_string(), "5.5".to_string())].into(),
            dates: BTreeMap::new(),
        };
        let s = Snapshot::from_stored(&stored).unwrap();
        assert_eq!(s.rate("BRL").map(|r| (r.as_of, r.confirmed_at)), Some((day(2), t0)));
        let json = serde_json::json!({"version": 7, "as_of": "2026-12-02", "fetched_at": t0, "providers": "ecb",
            "rates": {"USD": "1"}});
        assert!(serde_json::from_value::<Stored>(json).is_ok(), "a Redis value written before dates existed");
    }
}
