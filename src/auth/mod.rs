//! Authentication: passwords, sessions, tokens, the route guard.

pub mod credential;
pub mod guard;
pub mod password;
pub mod principal;
pub mod rate_limit;
pub mod routes;
pub mod sessions;
pub mod tokens;

pub use principal::{Credential, Principal};
