//! RBAC: permissions, default and custom roles, teams and their members,
//! the route table that makes every route declare what it needs.

pub mod actor;
pub mod authorizer;
pub mod builtin;
pub mod check;
pub mod effective;
pub mod members;
pub mod model;
pub mod permission;
pub mod roles;
pub mod route_table;
pub mod teams;
