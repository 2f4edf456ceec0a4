//! Operations: health, readiness, metrics, the OpenAPI document.

pub mod metrics;
pub mod request_span;
pub mod routes;
