//! One refresh: under a PostgreSQL advisory lock (one replica at a time),
//! fetch every provider, merge their rates over the last good ones, store
//! the snapshot in PostgreSQL and Redis, and publish it. And the poll by
//! which every replica picks up a snapshot another one stored.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;

use super::provider::{Kind, Provider, Quote};
use super::snapshot::{Board, Snapshot, Stored};
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::CurrencySettings;
use crate::db::DbPool;
use crate::db::schema::exchange_rate_snapshots as ers;
use crate::error::ApiError;

/// Key of the transaction-scoped advisory lock held while one replica
/// fetches ("currency" in ASCII).
const LOCK_KEY: i64 = 0x6375_7272_656e_6379;
/// Snapshots in Redis live this long; PostgreSQL keeps them for ever.
const REDIS_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// New rates stored and published.
    Updated,
    /// Another replica holds the refresh lock: it is fetching.
    Busy,
    /// A scheduled refresh found rates stored less than half a period ago.
    Fresh,
    /// No provider gave usable rates; the last good rates stay.
    Failed,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderOutcome {
    pub name: &'static str,
    pub ok: bool,
    pub error: Option<String>,
    pub currencies: usize,
    pub as_of: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
    /// The snapshot now current (stored id), if any.
    pub version: Option<i64>,
    pub as_of: Option<NaiveDate>,
    pub currencies: usize,
    /// Currencies no provider confirmed this time: their earlier rates (and
    /// dates) were kept.
    pub kept: Vec<&'static str>,
    pub providers: Vec<ProviderOutcome>,
}

impl Outcome {
    fn new(status: Status, detail: impl Into<String>, current: Option<&Snapshot>) -> Outcome {
        Outcome {
            status,
            detail: detail.into(),
            version: current.map(|s| s.version),
            as_of: current.map(|s| s.as_of),
            currencies: current.map_or(0, Snapshot::len),
            kept: Vec::new(),
            providers: Vec::new(),
        }
    }
}

/// Everything a refresh needs; shared by the actor and `dumont rates refresh`.
pub struct Refresher {
    pub db: DbPool,
    pub cache: Cache,
    pub clock: Clock,
    pub settings: CurrencySettings,
    pub board: Arc<Board>,
    client: reqwest::Client,
    /// Serializes this replica's refreshes (the advisory lock would make a
    /// second one report `Busy` against its own replica).
    local: tokio::sync::Mutex<()>,
}

impl Refresher {
    pub fn new(
        db: DbPool,
        cache: Cache,
        clock: Clock,
        settings: CurrencySettings,
        board: Arc<Board>,
    ) -> anyhow::Result<Refresher> {
        let timeout = Duration::from_millis(settings.http_timeout_ms);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("dumont/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Refresher { db, cache, clock, settings, board, client, local: tokio::sync::Mutex::new(()) })
    }

    /// Providers in priority order: the ECB first, the JSON fallback second.
    pub fn providers(&self) -> Vec<Provider> {
        [(Kind::Ecb, &self.settings.ecb_url), (Kind::Json, &self.settings.fallback_url)]
            .into_iter()
            .filter(|(_, url)| !url.trim().is_empty())
            .map(|(kind, url)| Provider { kind, url: url.trim().to_string() })
            .collect()
    }

    /// Runs one refresh. `force`: fetch even when rates were stored recently
    /// (the operator asked); the timer passes false so that of N replicas
    /// only the first fetches per period.
    pub async fn run(&self, force: bool) -> Outcome {
        let _one = self.local.lock().await;
        match self.run_locked(force).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(error = %e, "exchange-rate refresh failed");
                Outcome::new(Status::Failed, format!("refresh failed: {e}"), self.board.load().as_deref())
            }
        }
    }

    async fn run_locked(&self, force: bool) -> Result<Outcome, ApiError> {
        let providers = self.providers();
        if providers.is_empty() {
            return Ok(Outcome::new(Status::Failed, "no rate provider configured", self.board.load().as_deref()));
        }
        let mut conn = self.db.get().await?;
        let outcome = conn
            .transaction(async |c| {
                let got: LockResult = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                    .bind::<diesel::sql_types::BigInt, _>(LOCK_KEY)
                    .get_result(c)
                    .await?;
                let latest = latest(c).await?;
                if !got.locked {
                    return Ok::<_, ApiError>((
                        Outcome::new(Status::Busy, "another replica is refreshing", None),
                        None,
                    ));
                }
                let now = self.clock.now();
                if let Some(l) = &latest
                    && !force
                    && (now - l.fetched_at).num_seconds() < (self.settings.refresh_secs / 2) as i64
                {
                    return Ok((Outcome::new(Status::Fresh, "rates were refreshed recently", Some(l)), latest));
                }
                let (snapshot, providers) = self.fetch(&providers, now).await;
                let mut outcome = match over_last_good(snapshot, latest.as_ref()) {
                    Some((mut s, kept)) => {
                        s.version = insert(c, &s).await?;
                        let mut o = Outcome::new(Status::Updated, updated_detail(&s, &kept), Some(&s));
                        o.kept = kept;
                        (o, Some(s))
                    }
                    None => {
                        let why = "no provider returned usable rates; keeping the last good ones";
                        (Outcome::new(Status::Failed, why, latest.as_ref()), latest)
                    }
                };
                outcome.0.providers = providers;
                Ok(outcome)
            })
            .await?;
        let (mut outcome, current) = outcome;
        if outcome.status == Status::Busy {
            // Report what this replica serves while the other one works.
            outcome = Outcome::new(Status::Busy, outcome.detail, self.board.load().as_deref());
        }
        if let Some(s) = current {
            if outcome.status == Status::Updated {
                self.cache_put(&s).await;
                tracing::info!(version = s.version, as_of = %s.as_of, providers = %s.providers, "new exchange rates");
            }
            self.board.publish(s);
        }
        if outcome.status == Status::Failed {
            tracing::warn!(detail = %outcome.detail, "exchange-rate refresh kept the last good rates");
        }
        Ok(outcome)
    }

    /// Fetches every provider at once; each fails on its own.
    async fn fetch(&self, providers: &[Provider], now: DateTime<Utc>) -> (Option<Snapshot>, Vec<ProviderOutcome>) {
        let timeout = Duration::from_millis(self.settings.http_timeout_ms);
        let results = futures_util::future::join_all(providers.iter().map(|p| p.fetch(&self.client, timeout))).await;
        let mut quotes: Vec<(&str, Quote)> = Vec::new();
        let mut report = Vec::new();
        for (p, r) in providers.iter().zip(results) {
            match r {
                Ok(q) => {
                    report.push(ProviderOutcome {
                        name: p.name(),
                        ok: true,
                        error: None,
                        currencies: q.rates.len(),
                        as_of: Some(q.as_of),
                    });
                    quotes.push((p.name(), q));
                }
                Err(e) => {
                    tracing::warn!(provider = p.name(), error = %e, "rate provider failed");
                    report.push(ProviderOutcome {
                        name: p.name(),
                        ok: false,
                        error: Some(e.to_string()),
                        currencies: 0,
                        as_of: None,
                    });
                }
            }
        }
        let refs: Vec<(&str, &Quote)> = quotes.iter().map(|(n, q)| (*n, q)).collect();
        (Snapshot::merge(&refs, now), report)
    }

    async fn cache_put(&self, s: &Snapshot) {
        if let Ok(json) = serde_json::to_string(&s.to_stored()) {
            self.cache
                .set_ex(&self.cache.key(&format!("currency:snapshot:{}", s.version)), &json, REDIS_TTL_SECS)
                .await;
        }
    }

    /// Picks up a snapshot another replica stored: a primary-key lookup of
    /// the newest id, and only when it changed, the body from Redis (or
    /// PostgreSQL when Redis misses).
    pub async fn sync(&self) -> anyhow::Result<bool> {
        let mut conn = self.db.get().await?;
        let newest: Option<i64> = ers::table.select(ers::id).order(ers::id.desc()).first(&mut conn).await.optional()?;
        let Some(id) = newest.filter(|id| *id > self.board.version()) else { return Ok(false) };
        let key = self.cache.key(&format!("currency:snapshot:{id}"));
        let cached = self
            .cache
            .get(&key)
            .await
            .flatten()
            .and_then(|j| serde_json::from_str::<Stored>(&j).ok())
            .and_then(|s| Snapshot::from_stored(&s));
        let snapshot = match cached {
            Some(s) => Some(s),
            None => {
                let s = by_id(&mut conn, id).await?;
                if let Some(s) = &s {
                    self.cache_put(s).await;
                }
                s
            }
        };
        Ok(snapshot.is_some_and(|s| self.board.publish(s)))
    }
}

/// The new rates over the last good ones, currency by currency: a provider
/// that failed or stopped publishing a currency must neither make it vanish
/// (users whose currency it is would get 503s) nor hold back the rates the
/// other providers did confirm. None when no provider gave usable rates.
fn over_last_good(new: Option<Snapshot>, latest: Option<&Snapshot>) -> Option<(Snapshot, Vec<&'static str>)> {
    let mut new = new?;
    let kept = latest.map(|old| new.keep_unconfirmed(old)).unwrap_or_default();
    Some((new, kept))
}

fn updated_detail(s: &Snapshot, kept: &[&str]) -> String {
    if kept.is_empty() {
        return format!("stored rates from {}", s.providers);
    }
    format!(
        "stored rates from {}; kept the earlier rates of {} currencies no provider confirmed ({})",
        s.providers,
        kept.len(),
        kept.join(", ")
    )
}

#[derive(diesel::QueryableByName)]
struct LockResult {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

type Row = (i64, NaiveDate, DateTime<Utc>, String, serde_json::Value, serde_json::Value);

fn from_row((version, as_of, fetched_at, providers, rates, dates): Row) -> Option<Snapshot> {
    let rates = serde_json::from_value(rates).ok()?;
    let dates = serde_json::from_value(dates).ok()?;
    let s = Snapshot::from_stored(&Stored { version, as_of, fetched_at, providers, rates, dates });
    if s.is_none() {
        tracing::error!(version, "stored exchange-rate snapshot is unreadable; skipping it");
    }
    s
}

async fn latest(c: &mut AsyncPgConnection) -> QueryResult<Option<Snapshot>> {
    let row: Option<Row> = ers::table
        .select((ers::id, ers::as_of, ers::fetched_at, ers::providers, ers::rates, ers::rate_dates))
        .order(ers::id.desc())
        .first(c)
        .await
        .optional()?;
    Ok(row.and_then(from_row))
}

async fn by_id(c: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Snapshot>> {
    let row: Option<Row> = ers::table
        .find(id)
        .select((ers::id, ers::as_of, ers::fetched_at, ers::providers, ers::rates, ers::rate_dates))
        .first(c)
        .await
        .optional()?;
    Ok(row.and_then(from_row))
}

async fn insert(c: &mut AsyncPgConnection, s: &Snapshot) -> Result<i64, ApiError> {
    let stored = s.to_stored();
    let rates = serde_json::to_value(&stored.rates).map_err(anyhow::Error::from)?;
    let dates = serde_json::to_value(&stored.dates).map_err(anyhow::Error::from)?;
    Ok(diesel::insert_into(ers::table)
        .values((
            ers::as_of.eq(s.as_of),
            ers::fetched_at.eq(s.fetched_at),
            ers::providers.eq(&s.providers),
            ers::rates.eq(rates),
            ers::rate_dates.eq(dates),
        ))
        .returning(ers::id)
        .get_result(c)
        .await?)
}
