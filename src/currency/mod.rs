//! Multi-currency: the supported currencies, exchange rates fetched from the
//! ECB (with a JSON fallback) by one replica at a time, and amounts shown in
//! each user's preferred currency.

pub mod actor;
pub mod catalogue;
pub mod money;
pub mod preferences;
pub mod provider;
pub mod refresh;
pub mod routes;
pub mod snapshot;

use std::sync::Arc;

use actix::Addr;

/// The currency side of `AppState`.
pub struct CurrencyService {
    /// Read by handlers on every conversion.
    pub board: Arc<snapshot::Board>,
    pub actor: Addr<actor::CurrencyActor>,
}

/// Starts the currency actor (it fetches at once when nothing recent is
/// stored, then on its timer).
pub fn start(
    settings: &crate::config::Settings,
    db: crate::db::DbPool,
    cache: crate::cache::Cache,
    clock: crate::clock::Clock,
) -> anyhow::Result<CurrencyService> {
    use actix::Actor;
    let board = Arc::new(snapshot::Board::default());
    let refresher = refresh::Refresher::new(db, cache, clock, settings.currency.clone(), board.clone())?;
    let actor = actor::CurrencyActor { refresher: Arc::new(refresher) }.start();
    Ok(CurrencyService { board, actor })
}

/// One forced refresh outside a server (`dumont rates refresh`). Running
/// servers pick the stored snapshot up within `currency.poll_secs`.
pub async fn refresh_once(settings: &crate::config::Settings) -> anyhow::Result<refresh::Outcome> {
    let pool = crate::db::build_pool(&settings.database.url, 1, std::time::Duration::from_secs(5))?;
    let cache = crate::cache::Cache::connect(
        &settings.redis.url,
        &settings.redis.key_prefix,
        std::time::Duration::from_millis(settings.redis.timeout_ms),
    )?;
    let board = Arc::new(snapshot::Board::default());
    let refresher =
        refresh::Refresher::new(pool, cache, crate::clock::Clock::default(), settings.currency.clone(), board)?;
    Ok(refresher.run(true).await)
}
