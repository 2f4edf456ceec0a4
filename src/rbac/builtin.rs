//! The seed's default roles. Their rows are inserted by the first migration
//! with these ids; they cannot be edited or deleted.

use uuid::Uuid;

pub const ADMIN_ROLE_ID: Uuid = Uuid::from_u128(0xa001);
pub const BUILTIN_NAMES: [&str; 4] = ["admin", "developer", "billing", "viewer"];

pub fn is_builtin_name(name: &str) -> bool {
    BUILTIN_NAMES.contains(&name)
}
