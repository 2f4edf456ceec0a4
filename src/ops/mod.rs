//! Operations: health, readiness, metrics, the OpenAPI document.

pub mod metrics;
pub mod routes;
