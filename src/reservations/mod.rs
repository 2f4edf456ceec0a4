//! GPU reservations: capacity booked ahead by whole UTC days, never
//! overbooked, charged at booking and refunded on cancellation.

pub mod actor;
pub mod capacity;
pub mod catalogue;
pub mod dates;
pub mod routes;
