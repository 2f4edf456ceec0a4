//! A user's preferences: for now, the currency amounts are shown in.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalogue::{self, Currency};
use crate::audit::{self, ClientInfo};
use crate::auth::Principal;
use crate::db::schema::users;
use crate::error::{ApiError, ApiResult};
use crate::events;
use crate::startup::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Preferences {
    /// ISO 4217 code of the currency amounts are shown in.
    #[schema(example = "BRL")]
    pub currency: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePreferences {
    #[schema(example = "BRL")]
    pub currency: String,
}

pub async fn get(state: &AppState, principal: &Principal) -> ApiResult<Preferences> {
    Ok(Preferences { currency: super::money::preferred(state, principal.user_id).await?.code.to_string() })
}

/// Sets the currency; an unsupported code, or one with no known rate yet, is
/// refused (422) and changes nothing. Codes are matched case-insensitively
/// and stored upper-case.
pub async fn set(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    body: &UpdatePreferences,
) -> ApiResult<Preferences> {
    let code = body.currency.trim().to_ascii_uppercase();
    let currency = catalogue::find(&code).ok_or_else(|| {
        ApiError::invalid("currency", format!("unsupported currency {:?}; see GET /api/v1/currencies", body.currency))
    })?;
    ensure_rate_known(state, currency)?;
    let now = state.clock.now();
    let user = principal.user_id;
    let mut conn = state.conn().await?;
    conn.transaction(async |c| {
        let before: String = users::table.find(user).select(users::currency).for_update().first(c).await?;
        if before != currency.code {
            diesel::update(users::table.find(user))
                .set((users::currency.eq(currency.code), users::updated_at.eq(now)))
                .execute(c)
                .await?;
            let meta = serde_json::json!({"before": {"currency": before}, "after": {"currency": currency.code}});
            audit::append(c, &principal.audit(client, now, events::USER_PREFERENCES_UPDATE, "user", user, meta))
                .await?;
        }
        Ok::<_, ApiError>(())
    })
    .await?;
    Ok(Preferences { currency: currency.code.to_string() })
}

/// Without a rate every amount shown to the user would answer 503, so such a
/// choice is refused up front. USD needs none. Rates, once known, are kept
/// (refreshes carry them over), so an accepted choice stays convertible.
fn ensure_rate_known(state: &AppState, currency: &Currency) -> ApiResult<()> {
    if currency.code == "USD" || state.currency.board.load().is_some_and(|s| s.rate(currency.code).is_some()) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "currency",
        format!(
            "no exchange rate is known for {} yet, so amounts cannot be shown in it; \
             GET /api/v1/currencies lists the currencies with a rate",
            currency.code
        ),
    ))
}
