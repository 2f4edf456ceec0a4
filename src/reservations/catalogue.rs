//! GET /api/v1/gpu-types (with availability over a range) and the
//! operators' PUT /internal/v1/gpu-types/{gpu_type}.

use crate::json_body::Json;
use actix_web::{HttpResponse, get, web};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{capacity, dates};
use crate::auth::Principal;
use crate::currency::money::{DisplayMoney, converter};
use crate::db::schema::gpu_types;
use crate::error::{ApiError, ApiResult};
use crate::startup::AppState;

#[derive(Deserialize, IntoParams)]
pub struct AvailabilityQuery {
    /// First day (YYYY-MM-DD); with `to`, adds the quantity still free.
    pub from: Option<String>,
    /// Last day, inclusive.
    pub to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct GpuType {
    pub gpu_type: String,
    /// Price of one GPU for one hour, in the caller's currency.
    pub hourly_price: DisplayMoney,
    pub total_capacity: i32,
    /// Units free on every day of `from..=to` (only with both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
}

/// The GPU catalogue, and with `from` and `to` what is still free then.
#[utoipa::path(tag = "reservations", params(AvailabilityQuery),
    responses((status = 200, body = [GpuType]), (status = 400)),
    security(("bearer" = [])))]
#[get("/gpu-types")]
pub async fn list_gpu_types(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<AvailabilityQuery>,
) -> ApiResult<HttpResponse> {
    let range = match (&q.from, &q.to) {
        (Some(f), Some(t)) => {
            let bad = |field: &'static str| move |e: ApiError| ApiError::bad_field(field, e.to_string());
            let (from, to) = (dates::parse("from", f).map_err(bad("from"))?, dates::parse("to", t).map_err(bad("to"))?);
            dates::check_range(from, to, "to").map_err(bad("to"))?;
            Some((from, to))
        }
        (None, None) => None,
        _ => return Err(ApiError::bad_field(if q.from.is_none() { "from" } else { "to" }, "give both from and to")),
    };
    let conv = converter(&state, principal.user_id).await?;
    let mut conn = state.conn().await?;
    let rows: Vec<(String, i32, Decimal)> = gpu_types::table
        .select((gpu_types::gpu_type, gpu_types::total_capacity, gpu_types::hourly_price_usd))
        .order(gpu_types::gpu_type.asc())
        .load(&mut conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (gpu_type, total_capacity, price) in rows {
        let available = match range {
            Some((f, t)) => Some(total_capacity as i64 - capacity::peak_usage(&mut conn, &gpu_type, f, t).await?),
            None => None,
        };
        out.push(GpuType { gpu_type, hourly_price: conv.money(price), total_capacity, available });
    }
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutGpuType {
    pub total_capacity: i32,
    /// Decimal string (or number) of USD per GPU-hour.
    pub hourly_price_usd: serde_json::Value,
}

/// Internal: sets a GPU type's capacity and price. Lowering capacity below
/// what is already booked on some future day: 409.
pub async fn put_gpu_type(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Json<PutGpuType>,
) -> ApiResult<HttpResponse> {
    let gpu_type = path.into_inner();
    if gpu_type.is_empty()
        || gpu_type.len() > 64
        || !gpu_type.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::invalid("gpu_type", "1-64 characters: letters, digits, '_' or '-'"));
    }
    if body.total_capacity < 0 {
        return Err(ApiError::invalid("total_capacity", "must not be negative"));
    }
    let price: Decimal = match &body.hourly_price_usd {
        serde_json::Value::String(s) => s.trim().parse().ok(),
        serde_json::Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
    .filter(|p: &Decimal| *p >= Decimal::ZERO && p.scale() <= 4)
    .ok_or_else(|| {
        ApiError::invalid("hourly_price_usd", "a non-negative decimal with at most 4 places, e.g. \"2.5000\"")
    })?;
    let today = state.clock.now().date_naive();
    let now = state.clock.now();
    let cap = body.total_capacity;
    let mut conn = state.conn().await?;
    conn.transaction(async |c| {
        // Locked like a booking, so no booking slips in during the check. A
        // type that does not exist yet has no bookings to check.
        let exists = gpu_types::table
            .find(&gpu_type)
            .select(gpu_types::total_capacity)
            .for_update()
            .first::<i32>(c)
            .await
            .optional()?;
        if exists.is_some()
            && let Some(last) = capacity::last_booked_day(c, &gpu_type).await?
            && last >= today
        {
            let peak = capacity::peak_usage(c, &gpu_type, today, last).await?;
            if peak > cap as i64 {
                return Err(ApiError::Conflict(format!(
                    "{peak} units are booked on some day ahead; capacity cannot go below that"
                )));
            }
        }
        diesel::insert_into(gpu_types::table)
            .values((
                gpu_types::gpu_type.eq(&gpu_type),
                gpu_types::total_capacity.eq(cap),
                gpu_types::hourly_price_usd.eq(price),
                gpu_types::updated_at.eq(now),
            ))
            .on_conflict(gpu_types::gpu_type)
            .do_update()
            .set((
                gpu_types::total_capacity.eq(excluded(gpu_types::total_capacity)),
                gpu_types::hourly_price_usd.eq(excluded(gpu_types::hourly_price_usd)),
                gpu_types::updated_at.eq(excluded(gpu_types::updated_at)),
            ))
            .execute(c)
            .await?;
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "gpu_type": gpu_type, "total_capacity": cap, "hourly_price_usd": price.to_string(),
    })))
}
