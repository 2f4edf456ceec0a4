//! /api/v1/billing

use crate::json_body::Json;
use actix_web::{HttpResponse, get, patch, post, web};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ledger;
use super::money::{Money, parse_usd};
use crate::audit::{self, ClientInfo};
use crate::auth::Principal;
use crate::currency::money::{Converter, DisplayMoney, converter};
use crate::db::schema::billing_accounts;
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::startup::AppState;

/// Amounts in the caller's preferred currency (`GET/PUT
/// /api/v1/users/me/preferences`), converted from the USD they are held in.
#[derive(Serialize, ToSchema)]
pub struct Billing {
    pub balance: DisplayMoney,
    pub low_balance_threshold: DisplayMoney,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBilling {
    pub low_balance_threshold: Money,
}

fn view(conv: &Converter, (balance, threshold): (Decimal, Decimal)) -> Billing {
    Billing { balance: conv.money(balance), low_balance_threshold: conv.money(threshold) }
}

/// The org's balance and low-balance threshold.
#[utoipa::path(tag = "billing", responses((status = 200, body = Billing), (status = 503)),
    security(("bearer" = ["billing:read"])))]
#[get("/billing")]
pub async fn get_billing(state: web::Data<AppState>, principal: Principal) -> ApiResult<HttpResponse> {
    let conv = converter(&state, principal.user_id).await?;
    let mut conn = state.conn().await?;
    Ok(HttpResponse::Ok().json(view(&conv, ledger::account(&mut conn, principal.org_id, false).await?)))
}

/// Sets the low-balance threshold.
#[utoipa::path(tag = "billing", request_body = UpdateBilling,
    responses((status = 200, body = Billing), (status = 422), (status = 503)),
    security(("bearer" = ["billing:update"])))]
#[patch("/billing")]
pub async fn update_billing(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<UpdateBilling>,
) -> ApiResult<HttpResponse> {
    let threshold = parse_usd("low_balance_threshold", &body.low_balance_threshold)?;
    if threshold < Decimal::ZERO {
        return Err(ApiError::invalid("low_balance_threshold.amount", "must not be negative"));
    }
    // Before the change: a missing rate (503) must refuse the request, not
    // follow a committed change.
    let conv = converter(&state, principal.user_id).await?;
    let now = state.clock.now();
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let after = conn
        .transaction(async |c| {
            let (balance, before) = ledger::account(c, org, true).await?;
            diesel::update(billing_accounts::table.find(org))
                .set((billing_accounts::low_balance_threshold.eq(threshold), billing_accounts::updated_at.eq(now)))
                .execute(c)
                .await?;
            if balance >= before && balance < threshold {
                ledger::announce_low_balance(c, org, balance, threshold, now).await?;
            }
            let meta = serde_json::json!({"before": {"low_balance_threshold": Money::usd(before).amount},
                                          "after": {"low_balance_threshold": Money::usd(threshold).amount}});
            audit::append(c, &principal.audit(&client, now, events::BILLING_UPDATE, "billing_account", org, meta))
                .await?;
            Ok::<_, ApiError>((balance, threshold))
        })
        .await?;
    Ok(HttpResponse::Ok().json(view(&conv, after)))
}

/// Adds funds to the org's balance.
#[utoipa::path(tag = "billing", request_body = Money,
    responses((status = 201, body = Billing), (status = 422), (status = 503)),
    security(("bearer" = ["billing:create"])))]
#[post("/billing/credits")]
pub async fn add_credits(
    state: web::Data<AppState>,
    principal: Principal,
    client: ClientInfo,
    body: Json<Money>,
) -> ApiResult<HttpResponse> {
    let amount = parse_usd("body", &body)?;
    if amount <= Decimal::ZERO {
        return Err(ApiError::invalid("amount", "must be greater than zero"));
    }
    let conv = converter(&state, principal.user_id).await?;
    let now = state.clock.now();
    let org = principal.org_id;
    let mut conn = state.conn().await?;
    let after = conn
        .transaction(async |c| {
            let ledger::Change { before: balance, after: new_balance, threshold } =
                ledger::credit(c, org, amount, now).await?;
            let meta = serde_json::json!({"amount": Money::usd(amount).amount, "currency": "USD",
                                          "before": {"balance": Money::usd(balance).amount},
                                          "after": {"balance": Money::usd(new_balance).amount}});
            audit::append(c, &principal.audit(&client, now, events::BILLING_CREDIT, "billing_account", org, meta))
                .await?;
            Ok::<_, ApiError>((new_balance, threshold))
        })
        .await?;
    Ok(HttpResponse::Created().json(view(&conv, after)))
}
