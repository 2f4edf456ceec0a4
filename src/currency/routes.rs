//! /api/v1/currencies, /api/v1/exchange-rates, /api/v1/users/me/preferences,
//! and the internal POST /internal/v1/rates/refresh.

use crate::json_body::Json;
use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, put, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::actor::Refresh;
use super::catalogue;
use super::preferences::{self, Preferences, UpdatePreferences};
use super::refresh::Outcome;
use crate::audit::ClientInfo;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

#[derive(Serialize, ToSchema)]
pub struct CurrencyView {
    #[schema(example = "BRL")]
    pub code: &'static str,
    #[schema(example = "Brazilian real")]
    pub name: String,
    /// Digits after the decimal point (ISO 4217).
    pub minor_units: u32,
    /// Units per 1 USD; null until a provider has published one.
    #[schema(value_type = Option<String>, example = "5.555555555555555556")]
    pub rate_per_usd: Option<String>,
    /// Publication date of this currency's rate (currencies can differ: a
    /// rate no provider confirmed lately keeps its date).
    pub as_of: Option<NaiveDate>,
    /// This rate has not been confirmed by a provider for `currency.stale_after_secs`.
    pub stale: bool,
}

/// The supported currencies with their current rates.
#[utoipa::path(tag = "currency", responses((status = 200, body = [CurrencyView])),
    security(("bearer" = [])))]
#[get("/currencies")]
pub async fn list_currencies(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let snapshot = state.currency.board.load();
    let (now, stale_after) = (state.clock.now(), state.settings.currency.stale_after_secs);
    let list: Vec<CurrencyView> = catalogue::all()
        .iter()
        .map(|c| {
            let rate = snapshot.as_ref().and_then(|s| s.rate(c.code));
            CurrencyView {
                code: c.code,
                name: c.name.clone(),
                minor_units: c.minor_units,
                rate_per_usd: rate.map(|r| r.per_usd.normalize().to_string()),
                as_of: rate.map(|r| r.as_of),
                stale: rate.is_some_and(|r| r.is_stale(now, stale_after)),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Deserialize, IntoParams)]
pub struct RatesQuery {
    /// ISO 4217 code the rates are per unit of (default USD).
    pub base: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ExchangeRates {
    pub base: &'static str,
    /// The oldest publication date among the rates listed.
    pub as_of: NaiveDate,
    /// Some rate listed is stale (see `GET /currencies` for which).
    pub stale: bool,
    /// Units of each currency per 1 `base`, as decimal strings.
    #[schema(value_type = BTreeMap<String, String>)]
    pub rates: BTreeMap<&'static str, String>,
}

/// Current exchange rates, crossed to `base`. 503 until rates are known.
#[utoipa::path(tag = "currency", params(RatesQuery),
    responses((status = 200, body = ExchangeRates), (status = 400), (status = 503)),
    security(("bearer" = [])))]
#[get("/exchange-rates")]
pub async fn exchange_rates(state: web::Data<AppState>, q: web::Query<RatesQuery>) -> ApiResult<HttpResponse> {
    let raw = q.base.as_deref().unwrap_or("USD").trim().to_ascii_uppercase();
    let base = catalogue::find(&raw).ok_or_else(|| {
        ApiError::bad_field("base", format!("unsupported currency {raw:?}; see GET /api/v1/currencies"))
    })?;
    let snapshot = state.currency.board.load().ok_or_else(|| ApiError::Unavailable("no exchange rates yet".into()))?;
    if snapshot.per_usd(base.code).is_none() {
        return Err(ApiError::Unavailable(format!("no exchange rate for {} yet", base.code)));
    }
    let rates = snapshot.codes().filter_map(|c| Some((c, snapshot.cross(base.code, c)?.to_string()))).collect();
    Ok(HttpResponse::Ok().json(ExchangeRates {
        base: base.code,
        as_of: snapshot.as_of,
        stale: snapshot.is_stale(state.clock.now(), state.settings.currency.stale_after_secs),
        rates,
    }))
}

/// The caller's preferences.
#[utoipa::path(tag = "users", responses((status = 200, body = Preferences)),
    security(("bearer" = [])))]
#[get("/users/me/preferences")]
pub async fn get_preferences(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(preferences::get(&state, &principal).await?))
}

/// Sets the caller's preferences: the currency amounts are shown in.
#[utoipa::path(tag = "users", request_body = UpdatePreferences,
    responses((status = 200, body = Preferences), (status = 422)),
    security(("bearer" = [])))]
#[put("/users/me/preferences")]
pub async fn put_preferences(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<UpdatePreferences>,
) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(preferences::set(&state, &principal, &client, &body).await?))
}

/// Internal: POST /internal/v1/rates/refresh. Fetches now and answers the
/// outcome (200 whatever it is: `status` says whether rates changed).
pub async fn refresh(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let outcome: Outcome = state
        .currency
        .actor
        .send(Refresh { force: true })
        .await
        .map_err(|e| ApiError::Unavailable(format!("currency actor: {e}")))?;
    Ok(HttpResponse::Ok().json(outcome))
}
