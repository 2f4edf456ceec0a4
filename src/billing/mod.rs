//! The org's billing account: balance, low-balance threshold, credits.

pub mod ledger;
pub mod money;
pub mod routes;
