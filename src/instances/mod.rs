//! Instances: team-owned records of GPU machines (the provider behind them
//! is out of scope), with the state machine the role matrix guards.

pub mod routes;
pub mod state;
