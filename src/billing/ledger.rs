//! Balance changes inside a caller's transaction: the account row is locked,
//! so concurrent charges and credits of one org apply one after the other.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::money::Money;
use crate::db::schema::billing_accounts;
use crate::error::{ApiError, ApiResult};
use crate::webhooks::outbox;

#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub before: Decimal,
    pub after: Decimal,
    pub threshold: Decimal,
}

/// The org's (balance, threshold), creating a zero account if missing;
/// `lock` holds the row until the transaction ends.
pub async fn account(conn: &mut AsyncPgConnection, org: Uuid, lock: bool) -> QueryResult<(Decimal, Decimal)> {
    diesel::insert_into(billing_accounts::table)
        .values(billing_accounts::org_id.eq(org))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    let q =
        billing_accounts::table.find(org).select((billing_accounts::balance, billing_accounts::low_balance_threshold));
    if lock { q.for_update().first(conn).await } else { q.first(conn).await }
}

async fn apply(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    delta: Decimal,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Change> {
    let (before, threshold) = account(conn, org, true).await?;
    let after = before + delta;
    if delta < Decimal::ZERO && after < Decimal::ZERO {
        return Err(ApiError::PaymentRequired(format!(
            "the balance ({} USD) does not cover {} USD; add credits with POST /api/v1/billing/credits",
            Money::usd(before).amount,
            Money::usd(-delta).amount
        )));
    }
    diesel::update(billing_accounts::table.find(org))
        .set((billing_accounts::balance.eq(after), billing_accounts::updated_at.eq(now)))
        .execute(conn)
        .await?;
    let change = Change { before, after, threshold };
    // Crossing below the threshold (not staying below it) fires the event.
    if before >= threshold && after < threshold {
        announce_low_balance(conn, org, after, threshold, now).await?;
    }
    Ok(change)
}

/// `billing.low_balance`, in the caller's transaction. Fired when the
/// balance falls below the threshold, or the threshold is raised above the
/// balance: each time the account goes from "not low" to "low".
pub async fn announce_low_balance(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    balance: Decimal,
    threshold: Decimal,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<()> {
    let data = serde_json::json!({
        "balance": Money::usd(balance),
        "low_balance_threshold": Money::usd(threshold),
    });
    outbox::enqueue(conn, org, "billing.low_balance", &format!("billing:{org}"), data, now).await?;
    Ok(())
}

/// Takes `amount` from the balance; 402 when it does not cover it.
pub async fn debit(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    amount: Decimal,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Change> {
    apply(conn, org, -amount, now).await
}

pub async fn credit(
    conn: &mut AsyncPgConnection,
    org: Uuid,
    amount: Decimal,
    now: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Change> {
    apply(conn, org, amount, now).await
}
