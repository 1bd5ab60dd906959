//! The rules of who may do what: the [`Actor`] a call is made as, and the one table of
//! what each role may do to whose objects ([`decide`]). Pure code: the service asks it,
//! and HTTP, the CLI and Python therefore enforce the same thing.

use serde::{Deserialize, Serialize};

use super::{ApiToken, Role, User};
use crate::error::{Error, Result};
use crate::id::{TokenId, UserId};

/// Who a call is made as: a user, with the role the presented token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user.
    pub user_id: UserId,
    /// The role in force: the token's, never more than the user's.
    pub role: Role,
    /// The token presented, if any.
    pub token_id: Option<TokenId>,
}

impl Actor {
    /// The program that holds the database (an embedding program, a migration): an admin
    /// who is no user.
    pub fn system() -> Self {
        Self { user_id: UserId::from_uuid(uuid::Uuid::nil()), role: Role::Admin, token_id: None }
    }

    /// The actor for `user` presenting `token` (`None` for the bootstrap admin token): the
    /// token's narrower role if it has one, else the user's own. `None` when the token
    /// asks for more than the user now holds (the user's role was lowered since): such a
    /// token stops working rather than outrank its user.
    pub fn new(user: &User, token: Option<&ApiToken>) -> Option<Self> {
        let role = match token.and_then(|t| t.role) {
            Some(narrower) if user.role.may_grant(narrower) => narrower,
            Some(_) => return None,
            None => user.role,
        };
        Some(Self { user_id: user.id, role, token_id: token.map(|t| t.id) })
    }
}

/// The areas whose objects the rules speak of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum Area {
    /// VMs.
    Vms,
    /// Tasks (a task is its VM's, or its maker's).
    Tasks,
    /// Nodes.
    Nodes,
    /// IP pools and leases.
    IpPools,
    /// Networks.
    Networks,
    /// Images.
    Images,
    /// Recipes.
    Recipes,
    /// Users.
    Users,
    /// API tokens.
    Tokens,
    /// SSH keys.
    SshKeys,
    /// The audit log.
    Audit,
    /// Webhook subscriptions.
    Webhooks,
}

impl Area {
    /// Whether the area's objects belong to users (another user's are hidden).
    pub fn is_owned(self) -> bool {
        matches!(
            self,
            Area::Vms
                | Area::Tasks
                | Area::Users
                | Area::Tokens
                | Area::SshKeys
                | Area::Audit
                | Area::Webhooks
        )
    }
}

/// Reading, or changing (create, update, delete, any action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum Access {
    /// Get or list.
    Read,
    /// Anything else.
    Write,
}

/// Whose object an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// No one's in particular: a list, a create, an object of the platform (a node).
    Any,
    /// The actor's own.
    Own,
    /// Another user's.
    Other,
}

/// What the rules say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Go ahead (a list shows only what [`sees_all`] allows).
    Allow,
    /// The actor sees the object but may not do this: 403.
    Forbidden,
    /// The actor may not know the object exists: answered as not found, 404.
    Hidden,
}

/// Whether `role` sees every object of `area` in lists (others see only their own).
pub fn sees_all(role: Role, area: Area) -> bool {
    match role {
        Role::Admin | Role::Readonly => true,
        Role::Operator => matches!(area, Area::Vms | Area::Tasks),
        Role::User => false,
    }
}

/// The rules: may `role` have `access` to an object of `area` that is `target`'s?
pub fn decide(role: Role, area: Area, access: Access, target: Target) -> Decision {
    use {Access::*, Decision::*};
    // Owned areas first: another user's object is visible only to those who see them all.
    if area.is_owned() && target == Target::Other && !sees_all(role, area) {
        return Hidden;
    }
    let read_only = if access == Read { Allow } else { Forbidden };
    let read_own = if access == Read && target == Target::Own { Allow } else { Forbidden };
    match role {
        Role::Admin => Allow,
        // Reads everything; changes only their own credentials (a sign-in ends, a token is
        // made or revoked).
        Role::Readonly if access == Read || (area == Area::Tokens && target != Target::Other) => Allow,
        Role::Readonly => Forbidden,
        Role::Operator => match area {
            Area::Users => read_own,
            // Their own rows only (lists are filtered).
            Area::Audit => read_only,
            _ => Allow,
        },
        Role::User => match area {
            Area::Vms | Area::Tasks | Area::Tokens | Area::SshKeys | Area::Webhooks => Allow,
            Area::Images | Area::Recipes | Area::Audit => read_only,
            Area::Users => read_own,
            Area::Nodes | Area::IpPools | Area::Networks => Forbidden,
        },
    }
}

impl Actor {
    /// Whose `owner`'s object is, from this actor's side.
    pub fn target(&self, owner: UserId) -> Target {
        if owner == self.user_id {
            Target::Own
        } else {
            Target::Other
        }
    }

    /// Whether this actor may have `access` to an area as a whole: list or create in it,
    /// or act on an object of the platform (a node, a pool, an image).
    pub fn may(&self, area: Area, access: Access) -> Result<()> {
        // Nothing is hidden when no one's object is named; refuse, should that change.
        self.check(area, access, Target::Any, || Error::Forbidden { reason: format!("{area} is not yours") })
    }

    /// The rules for this actor, as an error: `not_found` for what they may not know of,
    /// `forbidden` for what they see but may not do.
    pub fn check(
        &self,
        area: Area,
        access: Access,
        target: Target,
        not_found: impl FnOnce() -> Error,
    ) -> Result<()> {
        match decide(self.role, area, access, target) {
            Decision::Allow => Ok(()),
            Decision::Hidden => Err(not_found()),
            Decision::Forbidden => {
                Err(Error::Forbidden { reason: format!("a {} token may not {access} {area}", self.role) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::{AuthSource, Quota, TokenKind, UserState};
    use chrono::Utc;
    use strum::IntoEnumIterator;

    /// Every area × access × target, and what admin, operator, user and readonly get:
    /// A(llow), F(orbidden: 403), H(idden: 404). Written out by hand from the roles in
    /// DESIGN.md, not computed: a change to the rules must change this table.
    const RULES: &str = "
        vms       read  any   A A A A
        vms       read  own   A A A A
        vms       read  other A A H A
        vms       write any   A A A F
        vms       write own   A A A F
        vms       write other A A H F
        tasks     read  any   A A A A
        tasks     read  own   A A A A
        tasks     read  other A A H A
        tasks     write any   A A A F
        tasks     write own   A A A F
        tasks     write other A A H F
        nodes     read  any   A A F A
        nodes     read  own   A A F A
        nodes     read  other A A F A
        nodes     write any   A A F F
        nodes     write own   A A F F
        nodes     write other A A F F
        ip_pools  read  any   A A F A
        ip_pools  read  own   A A F A
        ip_pools  read  other A A F A
        ip_pools  write any   A A F F
        ip_pools  write own   A A F F
        ip_pools  write other A A F F
        networks  read  any   A A F A
        networks  read  own   A A F A
        networks  read  other A A F A
        networks  write any   A A F F
        networks  write own   A A F F
        networks  write other A A F F
        images    read  any   A A A A
        images    read  own   A A A A
        images    read  other A A A A
        images    write any   A A F F
        images    write own   A A F F
        images    write other A A F F
        recipes   read  any   A A A A
        recipes   read  own   A A A A
        recipes   read  other A A A A
        recipes   write any   A A F F
        recipes   write own   A A F F
        recipes   write other A A F F
        users     read  any   A F F A
        users     read  own   A A A A
        users     read  other A H H A
        users     write any   A F F F
        users     write own   A F F F
        users     write other A H H F
        tokens    read  any   A A A A
        tokens    read  own   A A A A
        tokens    read  other A H H A
        tokens    write any   A A A A
        tokens    write own   A A A A
        tokens    write other A H H F
        ssh_keys  read  any   A A A A
        ssh_keys  read  own   A A A A
        ssh_keys  read  other A H H A
        ssh_keys  write any   A A A F
        ssh_keys  write own   A A A F
        ssh_keys  write other A H H F
        audit     read  any   A A A A
        audit     read  own   A A A A
        audit     read  other A H H A
        audit     write any   A F F F
        audit     write own   A F F F
        audit     write other A H H F
        webhooks  read  any   A A A A
        webhooks  read  own   A A A A
        webhooks  read  other A H H A
        webhooks  write any   A A A F
        webhooks  write own   A A A F
        webhooks  write other A H H F
    ";

    #[test]
    fn every_operation_for_every_role_on_own_and_other_objects_follows_the_table() {
        let roles = [Role::Admin, Role::Operator, Role::User, Role::Readonly];
        let mut seen = 0;
        for line in RULES.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let area = Area::iter().find(|a| a.to_string() == cols[0]).expect(cols[0]);
            let access = Access::iter().find(|a| a.to_string() == cols[1]).expect(cols[1]);
            let target = match cols[2] {
                "any" => Target::Any,
                "own" => Target::Own,
                _ => Target::Other,
            };
            for (role, want) in roles.iter().zip(&cols[3..]) {
                let want = match *want {
                    "A" => Decision::Allow,
                    "F" => Decision::Forbidden,
                    _ => Decision::Hidden,
                };
                assert_eq!(decide(*role, area, access, target), want, "{role} {line}");
            }
            seen += 1;
        }
        assert_eq!(seen, Area::iter().count() * Access::iter().count() * 3, "the table covers every case");
    }

    #[test]
    fn a_token_never_outranks_its_user() {
        for user in Role::iter() {
            for asked in Role::iter() {
                let u = User {
                    id: UserId::new(),
                    email: "a@example.com".into(),
                    role: user,
                    state: UserState::Active,
                    auth: AuthSource::Local,
                    quota: Quota::default(),
                    created_at: Utc::now(),
                };
                let t = ApiToken {
                    id: TokenId::new(),
                    user_id: u.id,
                    name: "t".into(),
                    kind: TokenKind::Api,
                    role: Some(asked),
                    expires_at: None,
                    created_at: Utc::now(),
                };
                let actor = Actor::new(&u, Some(&t));
                // What the token may do is what its user may do, or less.
                for area in Area::iter() {
                    for access in Access::iter() {
                        for target in [Target::Any, Target::Own, Target::Other] {
                            let Some(a) = actor else { continue };
                            if decide(a.role, area, access, target) == Decision::Allow {
                                assert_eq!(
                                    decide(user, area, access, target),
                                    Decision::Allow,
                                    "{asked} token of a {user}: {area} {access} {target:?}"
                                );
                            }
                        }
                    }
                }
                assert_eq!(actor.is_some(), user.may_grant(asked), "{user} granting {asked}");
            }
        }
    }
}
