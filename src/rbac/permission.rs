//! Permissions are `resource:action` strings; a set of them is a bit mask
//! (7 resources x 4 actions), so checking one is a single AND.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Instances,
    Reservations,
    Billing,
    Team,
    Admin,
    Jobs,
    Finetune,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
}

pub const RESOURCES: [Resource; 7] = [
    Resource::Instances,
    Resource::Reservations,
    Resource::Billing,
    Resource::Team,
    Resource::Admin,
    Resource::Jobs,
    Resource::Finetune,
];
pub const ACTIONS: [Action; 4] = [Action::Create, Action::Read, Action::Update, Action::Delete];

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Instances => "instances",
            Resource::Reservations => "reservations",
            Resource::Billing => "billing",
            Resource::Team => "team",
            Resource::Admin => "admin",
            Resource::Jobs => "jobs",
            Resource::Finetune => "finetune",
        }
    }

    fn parse(s: &str) -> Option<Resource> {
        RESOURCES.into_iter().find(|r| r.as_str() == s)
    }

    /// Team-scoped resources belong to one team; the rest are org-wide.
    pub fn is_team_scoped(self) -> bool {
        matches!(self, Resource::Instances | Resource::Reservations | Resource::Jobs | Resource::Finetune)
    }

    fn index(self) -> u32 {
        self as u32
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        ACTIONS.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permission {
    pub resource: Resource,
    pub action: Action,
}

impl Permission {
    pub const fn new(resource: Resource, action: Action) -> Self {
        Permission { resource, action }
    }

    fn bit(self) -> u32 {
        1 << (self.resource.index() * 4 + self.action as u32)
    }

    /// Parses one exact permission (no wildcard), e.g. `team:create`.
    pub fn parse(s: &str) -> Option<Permission> {
        let (r, a) = s.split_once(':')?;
        Some(Permission::new(Resource::parse(r)?, Action::parse(a)?))
    }
}

/// Every permission's name, by resource then action (in `RESOURCES` and
/// `ACTIONS` order): listing a set costs no formatting.
const NAMES: [[&str; 4]; 7] = [
    ["instances:create", "instances:read", "instances:update", "instances:delete"],
    ["reservations:create", "reservations:read", "reservations:update", "reservations:delete"],
    ["billing:create", "billing:read", "billing:update", "billing:delete"],
    ["team:create", "team:read", "team:update", "team:delete"],
    ["admin:create", "admin:read", "admin:update", "admin:delete"],
    ["jobs:create", "jobs:read", "jobs:update", "jobs:delete"],
    ["finetune:create", "finetune:read", "finetune:update", "finetune:delete"],
];

impl Permission {
    pub fn as_str(self) -> &'static str {
        NAMES[self.resource.index() as usize][self.action as usize]
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize)]
pub struct PermSet(pub u32);

/// A permission string that is not `resource:action` with known parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPermission(pub String);

impl PermSet {
    pub const EMPTY: PermSet = PermSet(0);

    /// Parses `resource:action` entries, where action may be `*`.
    pub fn parse_all<S: AsRef<str>>(entries: &[S]) -> Result<PermSet, BadPermission> {
        let mut set = PermSet::EMPTY;
        for e in entries {
            set = set.union(Self::parse_one(e.as_ref()).ok_or_else(|| BadPermission(e.as_ref().to_string()))?);
        }
        Ok(set)
    }

    fn parse_one(entry: &str) -> Option<PermSet> {
        let (r, a) = entry.split_once(':')?;
        let resource = Resource::parse(r)?;
        if a == "*" {
            Some(PermSet(ACTIONS.iter().fold(0, |m, &a| m | Permission::new(resource, a).bit())))
        } else {
            Some(PermSet(Permission::new(resource, Action::parse(a)?).bit()))
        }
    }

    /// Stored role permissions were validated on the way in; an entry that no
    /// longer parses grants nothing rather than failing the request.
    pub fn parse_lossy<S: AsRef<str>>(entries: &[S]) -> PermSet {
        entries.iter().filter_map(|e| Self::parse_one(e.as_ref())).fold(PermSet::EMPTY, PermSet::union)
    }

    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    pub fn union(self, other: PermSet) -> PermSet {
        PermSet(self.0 | other.0)
    }

    pub fn intersect(self, other: PermSet) -> PermSet {
        PermSet(self.0 & other.0)
    }

    pub fn is_subset_of(self, other: PermSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The permissions in `self` that `other` lacks.
    pub fn minus(self, other: PermSet) -> PermSet {
        PermSet(self.0 & !other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        RESOURCES
            .into_iter()
            .flat_map(|r| ACTIONS.into_iter().map(move |a| Permission::new(r, a)))
            .filter(move |p| self.contains(*p))
    }

    /// Exact permission strings, sorted in catalogue order.
    pub fn to_strings(self) -> Vec<String> {
        self.iter().map(|p| p.to_string()).collect()
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_resource_colon_action() {
        for r in RESOURCES {
            for a in ACTIONS {
                assert_eq!(Permission::new(r, a).as_str(), format!("{}:{}", r.as_str(), a.as_str()));
            }
        }
    }

    #[test]
    fn wildcards_expand_to_every_action() {
        let s = PermSet::parse_all(&["instances:*"]).unwrap();
        for a in ACTIONS {
            assert!(s.contains(Permission::new(Resource::Instances, a)));
        }
        assert!(!s.contains(Permission::new(Resource::Billing, Action::Read)));
    }

    #[test]
    fn rejects_unknown_entries_by_name() {
        for bad in ["instances", "instances:fly", "gpus:read", "*:*", "", "instances:read:x", "Instances:read"] {
            assert_eq!(PermSet::parse_all(&["team:read", bad]), Err(BadPermission(bad.to_string())), "{bad}");
        }
    }

    #[test]
    fn subset_and_minus() {
        let admin = PermSet::parse_all(&["team:*", "billing:read"]).unwrap();
        let want = PermSet::parse_all(&["team:create", "billing:update"]).unwrap();
        assert!(!want.is_subset_of(admin));
        assert_eq!(want.minus(admin).to_strings(), vec!["billing:update"]);
    }
}
