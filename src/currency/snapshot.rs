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

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stored row's id: a larger one is newer.
    pub version: i64,
    /// The oldest publication date among the providers that contributed.
    pub as_of: NaiveDate,
    /// When a provider last confirmed these rates (the fetch).
    pub fetched_at: DateTime<Utc>,
    /// Which providers contributed, e.g. "ecb+fallback".
    pub providers: String,
    /// Units per 1 USD, aligned with `catalogue::all()`.
    per_usd: Vec<Option<Decimal>>,
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
}

impl Snapshot {
    /// Merges quotes, the first one winning for a currency they share. Each
    /// quote is crossed to USD through its own base: per_usd(X) = X / USD,
    /// both per unit of the base.
    pub fn merge(quotes: &[(&str, &Quote)], fetched_at: DateTime<Utc>) -> Option<Snapshot> {
        let mut per_usd = vec![None; catalogue::all().len()];
        let mut names = Vec::new();
        let mut as_of: Option<NaiveDate> = None;
        for (name, q) in quotes {
            let Some(usd) = q.rates.get("USD").copied().filter(|d| !d.is_zero()) else { continue };
            let mut used = false;
            for (code, r) in &q.rates {
                let Some(i) = catalogue::index(code) else { continue };
                if per_usd[i].is_none() {
                    per_usd[i] = r.checked_div(usd).map(|d| d.round_dp(RATE_DP).normalize());
                    used = true;
                }
            }
            if used {
                names.push(*name);
                as_of = Some(as_of.map_or(q.as_of, |a| a.min(q.as_of)));
            }
        }
        Some(Snapshot { version: 0, as_of: as_of?, fetched_at, providers: names.join("+"), per_usd })
    }

    /// Units of `code` per 1 USD.
    pub fn per_usd(&self, code: &str) -> Option<Decimal> {
        self.per_usd.get(catalogue::index(code)?).copied().flatten()
    }

    /// Units of `code` per 1 `base`.
    pub fn cross(&self, base: &str, code: &str) -> Option<Decimal> {
        let (b, c) = (self.per_usd(base)?, self.per_usd(code)?);
        c.checked_div(b).map(|d| d.round_dp(RATE_DP).normalize())
    }

    /// Codes with a rate, in catalogue order.
    pub fn codes(&self) -> impl Iterator<Item = &'static str> + '_ {
        catalogue::all().iter().zip(&self.per_usd).filter(|(_, r)| r.is_some()).map(|(c, _)| c.code)
    }

    pub fn len(&self) -> usize {
        self.per_usd.iter().filter(|r| r.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Codes this snapshot has and `other` lacks.
    pub fn missing_from(&self, other: &Snapshot) -> Vec<&'static str> {
        self.codes().filter(|c| other.per_usd(c).is_none()).collect()
    }

    /// Stale: no provider has confirmed these rates for `stale_after_secs`.
    pub fn is_stale(&self, now: DateTime<Utc>, stale_after_secs: u64) -> bool {
        (now - self.fetched_at).num_seconds() > i64::try_from(stale_after_secs).unwrap_or(i64::MAX)
    }

    pub fn to_stored(&self) -> Stored {
        Stored {
            version: self.version,
            as_of: self.as_of,
            fetched_at: self.fetched_at,
            providers: self.providers.clone(),
            rates: self.codes().filter_map(|c| Some((c.to_string(), self.per_usd(c)?.to_string()))).collect(),
        }
    }

    /// Codes outside the catalogue (a currency dropped since) are skipped;
    /// a value that is not a positive decimal makes the whole row unusable.
    pub fn from_stored(s: &Stored) -> Option<Snapshot> {
        let mut per_usd = vec![None; catalogue::all().len()];
        for (code, v) in &s.rates {
            let d: Decimal = v.parse().ok().filter(|d: &Decimal| *d > Decimal::ZERO)?;
            if let Some(i) = catalogue::index(code) {
                per_usd[i] = Some(d);
            }
        }
        Some(Snapshot {
            version: s.version,
            as_of: s.as_of,
            fetched_at: s.fetched_at,
            providers: s.providers.clone(),
            per_usd,
        })
    }
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

    fn quote(base: &'static str, rates: &[(&'static str, &str)]) -> Quote {
        Quote {
            base,
            as_of: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            rates: rates.iter().map(|(c, r)| (*c, r.parse().unwrap())).collect(),
        }
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
}
