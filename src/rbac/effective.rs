//! A user's effective permissions, and the scope rule:
//! - team-scoped resources (instances, reservations, jobs, finetune): from the
//!   user's role in that team, or from their org-wide role;
//! - org-wide resources (billing, team, admin): from any of their roles.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::permission::{ACTIONS, PermSet, Permission, RESOURCES};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Effective {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    /// The org-wide role's permissions (applies in every team).
    pub org_role: PermSet,
    /// The role held in each team.
    pub teams: Vec<(Uuid, PermSet)>,
}

/// Which teams a listing may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamFilter {
    All,
    Only(Vec<Uuid>),
}

fn mask(team_scoped: bool) -> PermSet {
    let mut bits = PermSet::EMPTY;
    for r in RESOURCES.into_iter().filter(|r| r.is_team_scoped() == team_scoped) {
        for a in ACTIONS {
            if let Ok(p) = PermSet::parse_all(&[format!("{}:{}", r.as_str(), a.as_str())]) {
                bits = bits.union(p);
            }
        }
    }
    bits
}

impl Effective {
    /// Everything held anywhere in the org.
    pub fn any(&self) -> PermSet {
        self.teams.iter().fold(self.org_role, |acc, (_, p)| acc.union(*p))
    }

    fn in_team(&self, team: Uuid) -> PermSet {
        self.teams.iter().filter(|(t, _)| *t == team).fold(self.org_role, |acc, (_, p)| acc.union(*p))
    }

    /// `team`: the team owning the resource, for team-scoped permissions;
    /// `None` asks whether the permission is held in some scope.
    pub fn allows(&self, p: Permission, team: Option<Uuid>) -> bool {
        match team {
            Some(t) if p.resource.is_team_scoped() => self.in_team(t).contains(p),
            _ => self.any().contains(p),
        }
    }

    /// The permissions this user could hand out in `team` (or org-wide):
    /// the basis of the no-escalation rule.
    pub fn grantable(&self, team: Option<Uuid>) -> PermSet {
        let team_part = match team {
            Some(t) => self.in_team(t),
            None => self.org_role,
        };
        self.any().intersect(mask(false)).union(team_part.intersect(mask(true)))
    }

    /// For a team-scoped resource that belongs to no team (an org-level
    /// reservation): only the org-wide role grants it.
    pub fn allows_org_level(&self, p: Permission) -> bool {
        self.org_role.contains(p)
    }

    pub fn teams_allowing(&self, p: Permission) -> TeamFilter {
        if self.org_role.contains(p) {
            TeamFilter::All
        } else {
            TeamFilter::Only(self.teams.iter().filter(|(_, s)| s.contains(p)).map(|(t, _)| *t).collect())
        }
    }

    /// An API key's view: its owner's permissions, cut down to its scopes.
    pub fn restricted_to(&self, scopes: PermSet) -> Effective {
        Effective {
            user_id: self.user_id,
            org_id: self.org_id,
            email: self.email.clone(),
            org_role: self.org_role.intersect(scopes),
            teams: self.teams.iter().map(|(t, p)| (*t, p.intersect(scopes))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::permission::{Action, Resource};

    fn set(p: &[&str]) -> PermSet {
        PermSet::parse_all(p).unwrap()
    }

    #[test]
    fn team_resources_come_from_that_team_or_the_org_role() {
        let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
        let e = Effective {
            user_id: Uuid::nil(),
            org_id: Uuid::nil(),
            email: String::new(),
            org_role: PermSet::EMPTY,
            teams: vec![(t1, set(&["instances:*", "billing:read"])), (t2, set(&["instances:read"]))],
        };
        let create = Permission::new(Resource::Instances, Action::Create);
        assert!(e.allows(create, Some(t1)));
        assert!(!e.allows(create, Some(t2)));
        assert!(e.allows(create, None));
        // org-wide resources: from any role
        assert!(e.allows(Permission::new(Resource::Billing, Action::Read), Some(t2)));
        assert_eq!(e.teams_allowing(create), TeamFilter::Only(vec![t1]));
        assert!(!e.grantable(Some(t2)).contains(create));
        assert!(!e.grantable(None).contains(create));
        let key = e.restricted_to(set(&["instances:read"]));
        assert!(!key.allows(create, Some(t1)));
        assert!(key.allows(Permission::new(Resource::Instances, Action::Read), Some(t2)));
    }
}
