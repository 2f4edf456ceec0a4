//! The audit log: records written in the same transaction as the change they
//! describe, chained per org by SHA-256 so that an edited row is detectable.

pub mod chain;
pub mod context;

pub use chain::{AuditEntry, append};
pub use context::ClientInfo;
