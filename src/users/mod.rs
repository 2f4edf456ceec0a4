//! Users of an organization.

pub mod model;
pub mod routes;
