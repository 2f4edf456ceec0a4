//! Scoped API keys: hashed at rest, revocable at once on every replica.

pub mod actor;
pub mod format;
pub mod routes;
pub mod store;
