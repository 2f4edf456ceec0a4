//! Webhooks: signed (Standard Webhooks), durable (transactional outbox),
//! at-least-once delivery of platform events, in order per resource.

pub mod actor;
pub mod delivery;
pub mod outbox;
pub mod routes;
pub mod schedule;
pub mod signature;
pub mod ssrf;
