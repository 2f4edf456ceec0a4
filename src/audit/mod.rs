//! The audit log: records written in the same transaction as the change they
//! describe, chained per org by SHA-256 so that an edited row is detectable;
//! searched, exported, verified, and trimmed by retention.

pub mod actor;
pub mod chain;
pub mod context;
pub mod ingest;
pub mod query;
pub mod record;
pub mod retention;
pub mod routes;
pub mod verify;

pub use chain::{AuditEntry, append};
pub use context::ClientInfo;
