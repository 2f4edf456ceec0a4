//! /api/v1/reservations

use crate::json_body::Json;
use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{capacity, dates};
use crate::audit::{self, ClientInfo};
use crate::auth::Principal;
use crate::billing::ledger;
use crate::billing::money::Money;
use crate::currency::money::{Converter, DisplayMoney, converter};
use crate::db::schema::{gpu_types, reservations, teams};
use crate::error::{ApiError, ApiResult};
use crate::rbac::effective::TeamFilter;
use crate::rbac::permission::{Action, Permission, Resource};
use crate::startup::AppState;

const fn perm(a: Action) -> Permission {
    Permission::new(Resource::Reservations, a)
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = reservations)]
struct Row {
    id: Uuid,
    team_id: Option<Uuid>,
    gpu_type: String,
    quantity: i32,
    start_date: NaiveDate,
    end_date: NaiveDate,
    state: String,
    price_usd: Decimal,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reservation {
    pub id: Uuid,
    pub team_id: Option<Uuid>,
    pub gpu_type: String,
    pub quantity: i32,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    /// scheduled, active, completed or cancelled.
    pub state: String,
    /// quantity x hours x hourly price, in the caller's currency (with the USD base amount).
    pub price: DisplayMoney,
    pub created_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReservation {
    #[schema(example = "A100_40GB")]
    pub gpu_type: String,
    #[schema(example = 4)]
    pub quantity: i64,
    /// First day, UTC, inclusive.
    #[schema(example = "2024-02-01")]
    pub start_date: String,
    /// Last day, UTC, inclusive.
    #[schema(example = "2024-02-28")]
    pub end_date: String,
    /// The team the capacity is for; without one, an org-wide role is needed.
    pub team_id: Option<Uuid>,
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    pub state: Option<String>,
    pub gpu_type: Option<String>,
    pub team_id: Option<Uuid>,
}

fn view(conv: &Converter, r: Row) -> Reservation {
    Reservation {
        id: r.id,
        team_id: r.team_id,
        gpu_type: r.gpu_type,
        quantity: r.quantity,
        start_date: r.start_date,
        end_date: r.end_date,
        state: r.state,
        price: conv.money(r.price_usd),
        created_at: r.created_at,
    }
}

fn require(principal: &Principal, p: Permission, team: Option<Uuid>) -> ApiResult<()> {
    let ok = match team {
        Some(t) => principal.can(p, Some(t)),
        None => principal.perms.allows_org_level(p),
    };
    if ok { Ok(()) } else { Err(ApiError::forbidden(p.to_string())) }
}

/// Books `quantity` GPUs for whole UTC days `start_date..=end_date`, and
/// charges the org's balance for them.
#[utoipa::path(tag = "reservations", request_body = CreateReservation,
    responses((status = 201, body = Reservation), (status = 402), (status = 403), (status = 409), (status = 422)),
    security(("bearer" = ["reservations:create"])))]
#[post("/reservations")]
pub async fn create_reservation(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<CreateReservation>,
) -> ApiResult<HttpResponse> {
    crate::validate::single_line("gpu_type", &body.gpu_type)?;
    let start = dates::parse("start_date", &body.start_date)?;
    let end = dates::parse("end_date", &body.end_date)?;
    dates::check_range(start, end, "end_date")?;
    let now = state.clock.now();
    if start < now.date_naive() {
        return Err(ApiError::invalid("start_date", "must not be in the past (UTC)"));
    }
    if body.quantity <= 0 || body.quantity > 100_000 {
        return Err(ApiError::invalid("quantity", "must be a whole number from 1 to 100000"));
    }
    let quantity = body.quantity as i32;
    let org = principal.org_id;
    // Before booking: a missing exchange rate (503) must refuse, not follow,
    // the charge. (And before taking a connection: it takes its own.)
    let conv = converter(&state, principal.user_id).await?;
    let mut conn = state.conn().await?;
    if let Some(t) = body.team_id {
        let n: i64 =
            teams::table.filter(teams::id.eq(t).and(teams::org_id.eq(org))).count().get_result(&mut conn).await?;
        if n == 0 {
            return Err(ApiError::invalid("team_id", "no such team in this organization"));
        }
    }
    require(&principal, perm(Action::Create), body.team_id)?;
    let gpu_type = body.gpu_type.clone();
    let id = Uuid::now_v7();
    let row = conn
        .transaction(async |c| {
            // The capacity lock: bookings of this GPU type queue here, on every replica.
            let (total, hourly): (i32, Decimal) = gpu_types::table
                .find(&gpu_type)
                .select((gpu_types::total_capacity, gpu_types::hourly_price_usd))
                .for_update()
                .first(c)
                .await
                .optional()?
                .ok_or_else(|| ApiError::invalid("gpu_type", format!("unknown GPU type {gpu_type:?}")))?;
            let peak = capacity::peak_usage(c, &gpu_type, start, end).await?;
            let free = total as i64 - peak;
            if (quantity as i64) > free {
                return Err(ApiError::NoCapacity {
                    detail: format!("only {} {gpu_type} free on every day from {start} to {end}", free.max(0)),
                    available: free.max(0),
                });
            }
            let hours = Decimal::from(dates::days(start, end) * 24);
            // Hourly prices have 4 decimals; the charge is rounded to the cent
            // once, here, so what is debited, shown, audited and refunded agree.
            let price = (Decimal::from(quantity) * hours * hourly)
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            let change = ledger::debit(c, org, price, now).await?;
            let row: Row = diesel::insert_into(reservations::table)
                .values((
                    reservations::id.eq(id),
                    reservations::org_id.eq(org),
                    reservations::team_id.eq(body.team_id),
                    reservations::gpu_type.eq(&gpu_type),
                    reservations::quantity.eq(quantity),
                    reservations::start_date.eq(start),
                    reservations::end_date.eq(end),
                    reservations::state.eq("scheduled"),
                    reservations::price_usd.eq(price),
                    reservations::created_by.eq(principal.user_id),
                    reservations::created_at.eq(now),
                ))
                .returning(Row::as_returning())
                .get_result(c)
                .await
                .map_err(crate::rbac::teams::deleted_team("reservations_live_team_fkey"))?;
            let meta = serde_json::json!({"gpu_type": gpu_type, "quantity": quantity, "start_date": start, "end_date": end,
                                          "team_id": body.team_id, "price_usd": Money::usd(price).amount});
            audit::append(c, &principal.audit(&client, now, crate::events::RESERVATION_CREATE, "reservation", id, meta)).await?;
            let meta = serde_json::json!({"amount": Money::usd(price).amount, "currency": "USD", "reservation_id": id,
                "before": {"balance": Money::usd(change.before).amount}, "after": {"balance": Money::usd(change.after).amount}});
            audit::append(c, &principal.audit(&client, now, crate::events::BILLING_CHARGE, "billing_account", org, meta)).await?;
            Ok::<_, ApiError>(row)
        })
        .await?;
    state.kick_webhooks();
    Ok(HttpResponse::Created().json(view(&conv, row)))
}

async fn readable(conn: &mut AsyncPgConnection, principal: &Principal, id: Uuid) -> ApiResult<Row> {
    let r: Row = reservations::table
        .filter(reservations::id.eq(id).and(reservations::org_id.eq(principal.org_id)))
        .select(Row::as_select())
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| ApiError::not_found("reservation"))?;
    require(principal, perm(Action::Read), r.team_id).map_err(|_| ApiError::not_found("reservation"))?;
    Ok(r)
}

/// Reservations the caller may read, newest first.
#[utoipa::path(tag = "reservations", params(ListQuery),
    responses((status = 200, body = [Reservation]), (status = 400)),
    security(("bearer" = ["reservations:read"])))]
#[get("/reservations")]
pub async fn list_reservations(
    state: web::Data<AppState>,
    principal: Principal,
    q: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let mut query = reservations::table
        .filter(reservations::org_id.eq(principal.org_id))
        .select(Row::as_select())
        .order(reservations::created_at.desc())
        .limit(1000)
        .into_boxed();
    if let Some(s) = &q.state {
        if !["scheduled", "active", "completed", "cancelled"].contains(&s.as_str()) {
            return Err(ApiError::bad_field("state", "one of scheduled, active, completed, cancelled"));
        }
        query = query.filter(reservations::state.eq(s.clone()));
    }
    if let Some(g) = &q.gpu_type {
        if let Some(problem) = crate::validate::text_problem(g, false) {
            return Err(ApiError::bad_field("gpu_type", problem));
        }
        query = query.filter(reservations::gpu_type.eq(g.clone()));
    }
    if let Some(t) = q.team_id {
        query = query.filter(reservations::team_id.eq(t));
    }
    let read = perm(Action::Read);
    if let TeamFilter::Only(teams) = principal.perms.teams_allowing(read) {
        query = query.filter(reservations::team_id.eq_any(teams));
    }
    let conv = converter(&state, principal.user_id).await?;
    let mut conn = state.conn().await?;
    let rows = query.load::<Row>(&mut conn).await?;
    Ok(HttpResponse::Ok().json(rows.into_iter().map(|r| view(&conv, r)).collect::<Vec<_>>()))
}

/// One reservation.
#[utoipa::path(tag = "reservations", params(("id" = Uuid, Path)),
    responses((status = 200, body = Reservation), (status = 404)),
    security(("bearer" = ["reservations:read"])))]
#[get("/reservations/{id}")]
pub async fn get_reservation(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let conv = converter(&state, principal.user_id).await?;
    let mut conn = state.conn().await?;
    let r = readable(&mut conn, &principal, *id).await?;
    Ok(HttpResponse::Ok().json(view(&conv, r)))
}

/// Cancels a reservation before its start day: full refund, capacity freed
/// at once. From the start day on: 409 (the capacity was held for you).
#[utoipa::path(tag = "reservations", params(("id" = Uuid, Path)),
    responses((status = 200, body = Reservation), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = ["reservations:delete"])))]
#[post("/reservations/{id}/cancel")]
pub async fn cancel_reservation(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let now = state.clock.now();
    let today = now.date_naive();
    let org = principal.org_id;
    let conv = converter(&state, principal.user_id).await?;
    let mut conn = state.conn().await?;
    let r = readable(&mut conn, &principal, *id).await?;
    require(&principal, perm(Action::Delete), r.team_id)?;
    let row = conn
        .transaction(async |c| {
            let cur: Row = reservations::table.find(r.id).select(Row::as_select()).for_update().first(c).await?;
            if cur.state != "scheduled" || cur.start_date <= today {
                return Err(ApiError::Conflict(format!(
                    "only a scheduled reservation can be cancelled before its start day ({}); this one is {}",
                    cur.start_date, if cur.state == "scheduled" { "starting" } else { cur.state.as_str() }
                )));
            }
            let row: Row = diesel::update(reservations::table.find(cur.id))
                .set((reservations::state.eq("cancelled"), reservations::cancelled_at.eq(now)))
                .returning(Row::as_returning())
                .get_result(c)
                .await?;
            let change = ledger::credit(c, org, cur.price_usd, now).await?;
            let meta = serde_json::json!({"gpu_type": cur.gpu_type, "quantity": cur.quantity, "refund_usd": Money::usd(cur.price_usd).amount});
            audit::append(c, &principal.audit(&client, now, crate::events::RESERVATION_CANCEL, "reservation", cur.id, meta)).await?;
            let meta = serde_json::json!({"amount": Money::usd(cur.price_usd).amount, "currency": "USD", "reservation_id": cur.id,
                "before": {"balance": Money::usd(change.before).amount}, "after": {"balance": Money::usd(change.after).amount}});
            audit::append(c, &principal.audit(&client, now, crate::events::BILLING_REFUND, "billing_account", org, meta)).await?;
            Ok::<_, ApiError>(row)
        })
        .await?;
    Ok(HttpResponse::Ok().json(view(&conv, row)))
}
