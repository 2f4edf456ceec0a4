//! GET /healthz, /readyz, /api/v1/openapi.json; internal GET /metrics.

use actix_web::{HttpResponse, get, web};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::startup::AppState;

/// Alive: the process answers.
#[utoipa::path(tag = "ops", responses((status = 200)), security(()))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// "ok" or "down"; the server cannot serve without PostgreSQL (503).
    pub postgres: &'static str,
    /// "ok" or "down"; without Redis the server still serves, degraded.
    pub redis: &'static str,
    /// "ready", "degraded" (Redis down) or "unavailable" (PostgreSQL down).
    pub status: &'static str,
    /// Exchange rates: "ok", "stale" (some rate has not been confirmed by a
    /// provider for `currency.stale_after_secs`) or "none" (non-USD amounts
    /// answer 503).
    /// Informational: it does not change the status code.
    pub exchange_rates: &'static str,
}

/// Ready: PostgreSQL reachable (503 otherwise); Redis state reported.
#[utoipa::path(tag = "ops", responses((status = 200, body = Readiness), (status = 503, body = Readiness)), security(()))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pg = match state.db.get().await {
        Ok(mut c) => diesel::sql_query("SELECT 1").execute(&mut c).await.is_ok(),
        Err(_) => false,
    };
    let redis = state.cache.ping().await;
    let exchange_rates = match state.currency.board.load() {
        None => "none",
        Some(s) if s.is_stale(state.clock.now(), state.settings.currency.stale_after_secs) => "stale",
        Some(_) => "ok",
    };
    let body = Readiness {
        exchange_rates,
        postgres: if pg { "ok" } else { "down" },
        redis: if redis { "ok" } else { "down" },
        status: match (pg, redis) {
            (false, _) => "unavailable",
            (true, false) => "degraded",
            (true, true) => "ready",
        },
    };
    if pg { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// This document.
#[utoipa::path(tag = "ops", responses((status = 200)), security(()))]
#[get("/openapi.json")]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.openapi_json.clone())
}

/// Prometheus metrics (internal listener).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
