//! Dumont Cloud enterprise control plane.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod bootstrap;
pub mod cache;
pub mod clock;
pub mod config;
pub mod currency;
pub mod db;
pub mod error;
pub mod events;
pub mod instances;
pub mod json_body;
pub mod ops;
pub mod rbac;
pub mod reservations;
pub mod secrets;
pub mod startup;
pub mod telemetry;
pub mod users;
pub mod validate;
pub mod webhooks;
