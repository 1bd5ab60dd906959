//! Who may do what: users with a role, a state and a quota; the [`Actor`] every call is made
//! as; and the one table of what each role may do to whose objects ([`decide`]). Pure code:
//! the service asks it, and HTTP, the CLI and Python therefore enforce the same thing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::{TokenId, UserId};
use crate::placement::Demand;
use crate::secret::Secret;
use crate::vm::Vm;

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in bytes (hashing cost must stay bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What a user may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Every VM, node, pool, network, image and recipe; not users.
    Operator,
    /// Their own VMs, tasks, SSH keys and tokens; reads images and recipes.
    User,
    /// Reads what an admin reads; changes nothing but their own tokens.
    Readonly,
}

impl Role {
    /// Whether a token of this role's holder may carry `narrower`: never more than the
    /// holder may do. An operator may hand out `user` tokens, nobody hands out more.
    pub fn may_grant(self, narrower: Role) -> bool {
        match self {
            Role::Admin => true,
            Role::Operator => matches!(narrower, Role::Operator | Role::User),
            Role::User => narrower == Role::User,
            Role::Readonly => narrower == Role::Readonly,
        }
    }
}

/// Whether a user may sign in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::EnumString,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum UserState {
    /// Signs in; their tokens work.
    Active,
    /// Cannot sign in; their tokens stop working at once.
    Disabled,
}

/// Where a user's password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, strum::Display)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AuthSource {
    /// By vmm, against an Argon2id hash.
    #[default]
    Local,
    /// By a bind to the configured LDAP directory.
    Ldap,
}

/// The most a user may take; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vms: Option<u32>,
    /// vCPUs over all their VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_vcpus: Option<u32>,
    /// Memory over all their VMs, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_mib: Option<u64>,
    /// Disk over all their VMs, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disk_gib: Option<u64>,
    /// IP addresses over all their VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_addresses: Option<u32>,
}

/// What a user holds, summed over their VMs (or what a change adds to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserUsage {
    /// VMs.
    pub vms: u64,
    /// vCPUs.
    pub vcpus: u64,
    /// Memory, in MiB.
    pub memory_mib: u64,
    /// Disk, in GiB.
    pub disk_gib: u64,
    /// IP addresses.
    pub addresses: u64,
}

impl UserUsage {
    /// What a new VM takes: itself, its size, and an address for each NIC on a pool.
    pub fn of_new(vm: &Vm) -> Self {
        Self {
            vms: 1,
            vcpus: u64::from(vm.vcpus),
            memory_mib: vm.memory_mib,
            disk_gib: vm.disk_gib,
            addresses: vm.nics.iter().filter(|n| n.pool_id.is_some()).count() as u64,
        }
    }

    /// What a resize from `from` to `to` adds (nothing for what shrinks).
    pub fn growth(from: &Demand, to: &Demand) -> Self {
        Self {
            vcpus: u64::from(to.vcpus.saturating_sub(from.vcpus)),
            memory_mib: to.memory_mib.saturating_sub(from.memory_mib),
            disk_gib: to.disk_gib.saturating_sub(from.disk_gib),
            ..Self::default()
        }
    }

    /// One more address.
    pub fn address() -> Self {
        Self { addresses: 1, ..Self::default() }
    }

    /// What `vm` holds.
    pub fn of(vm: &Vm) -> Self {
        let mut usage = Self::default();
        usage.add(vm);
        usage
    }

    /// Adds what `vm` holds.
    pub fn add(&mut self, vm: &Vm) {
        self.vms += 1;
        self.vcpus += u64::from(vm.vcpus);
        self.memory_mib += vm.memory_mib;
        self.disk_gib += vm.disk_gib;
        self.addresses += vm.addresses.len() as u64;
    }
}

impl Quota {
    fn limits(&self) -> [(&'static str, Option<u64>); 5] {
        [
            ("max_vms", self.max_vms.map(u64::from)),
            ("max_vcpus", self.max_vcpus.map(u64::from)),
            ("max_memory_mib", self.max_memory_mib),
            ("max_disk_gib", self.max_disk_gib),
            ("max_addresses", self.max_addresses.map(u64::from)),
        ]
    }

    /// Whether `adding` fits beside `usage`: [`Error::QuotaExceeded`] naming the first
    /// limit it would pass. What `adding` does not grow is never refused, so that a user
    /// over a lowered quota may still shrink.
    pub fn check(&self, usage: &UserUsage, adding: &UserUsage) -> Result<()> {
        let used = [usage.vms, usage.vcpus, usage.memory_mib, usage.disk_gib, usage.addresses];
        let more = [adding.vms, adding.vcpus, adding.memory_mib, adding.disk_gib, adding.addresses];
        for (((limit, max), used), more) in self.limits().into_iter().zip(used).zip(more) {
            if let Some(max) = max {
                let wanted = used.saturating_add(more);
                if more > 0 && wanted > max {
                    return Err(Error::QuotaExceeded { limit, max, wanted });
                }
            }
        }
        Ok(())
    }

    /// Whether `usage` is within the quota (a quota below what a user holds is refused).
    pub fn admits(&self, usage: &UserUsage) -> Result<()> {
        let used = [usage.vms, usage.vcpus, usage.memory_mib, usage.disk_gib, usage.addresses];
        for ((limit, max), used) in self.limits().into_iter().zip(used) {
            if max.is_some_and(|max| used > max) {
                return Err(Error::invalid(
                    "quota",
                    format!("{limit} is below what the user holds ({used})"),
                ));
            }
        }
        Ok(())
    }

    /// Whether the quota limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.limits().iter().all(|(_, max)| max.is_none())
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    /// The id.
    pub id: UserId,
    /// Their email address, lower-cased; unique.
    pub email: String,
    /// What they may do.
    pub role: Role,
    /// Whether they may sign in.
    pub state: UserState,
    /// Where their password is checked.
    pub auth: AuthSource,
    /// The most they may take.
    pub quota: Quota,
    /// When they were added.
    pub created_at: DateTime<Utc>,
}

/// What an admin gives to add a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Their email address.
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 254))]
    pub email: String,
    /// A password of 12 characters to 1,024 bytes (256 characters always fit); required for
    /// local users, refused for LDAP.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Password, min_length = 12, max_length = 256))]
    pub password: Option<Secret>,
    /// What they may do.
    pub role: Role,
    /// Where their password is checked (local by default).
    #[serde(default)]
    pub auth: AuthSource,
    /// The most they may take (no limit by default).
    #[serde(default)]
    pub quota: Quota,
}

/// A change to a user; what is absent stays.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// A new role.
    #[serde(default)]
    pub role: Option<Role>,
    /// Enable or disable them.
    #[serde(default)]
    pub state: Option<UserState>,
    /// A new password (local users).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Password, min_length = 12, max_length = 256))]
    pub password: Option<Secret>,
    /// A new quota.
    #[serde(default)]
    pub quota: Option<Quota>,
}

/// Lower-cases and checks an email address.
pub fn normalize_email(email: &str) -> Result<String> {
    let lowered = email.trim().to_lowercase();
    if lowered.len() > 254
        || lowered != email.trim().to_lowercase()
        || !email_address::EmailAddress::is_valid(&lowered)
    {
        return Err(Error::invalid("email", "must be an email address (name@domain)"));
    }
    // A display name (`Ann <ann@example.com>`) parses, but is not an address to store.
    if lowered.contains(['<', '>', ' ', '"']) {
        return Err(Error::invalid("email", "must be a bare address, name@domain"));
    }
    Ok(lowered)
}

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, not only spaces,
/// at most [`MAX_PASSWORD_BYTES`].
pub fn check_password(password: &Secret) -> Result<()> {
    let p = password.expose();
    if p.chars().count() < MIN_PASSWORD_CHARS || p.trim().is_empty() {
        return Err(Error::invalid("password", format!("must be at least {MIN_PASSWORD_CHARS} characters")));
    }
    if p.len() > MAX_PASSWORD_BYTES || p.contains('\0') {
        return Err(Error::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes, no NUL"),
        ));
    }
    Ok(())
}

impl User {
    /// Checks a spec and makes the user.
    pub fn from_spec(spec: &UserSpec, now: DateTime<Utc>) -> Result<Self> {
        let email = normalize_email(&spec.email)?;
        match (spec.auth, &spec.password) {
            (AuthSource::Local, Some(p)) => check_password(p)?,
            (AuthSource::Local, None) => return Err(Error::invalid("password", "a local user needs one")),
            (AuthSource::Ldap, Some(_)) => {
                return Err(Error::invalid("password", "the directory checks an LDAP user's password"))
            }
            (AuthSource::Ldap, None) => {}
        }
        Ok(Self {
            id: UserId::new(),
            email,
            role: spec.role,
            state: UserState::Active,
            auth: spec.auth,
            quota: spec.quota,
            created_at: now,
        })
    }

    /// Applies a patch (the password is the caller's: it is hashed, not kept here).
    pub fn apply(&mut self, patch: &UserPatch) -> Result<()> {
        if let Some(p) = &patch.password {
            if self.auth == AuthSource::Ldap {
                return Err(Error::invalid("password", "the directory keeps an LDAP user's password"));
            }
            check_password(p)?;
        }
        if let Some(role) = patch.role {
            self.role = role;
        }
        if let Some(state) = patch.state {
            self.state = state;
        }
        if let Some(quota) = patch.quota {
            self.quota = quota;
        }
        Ok(())
    }
}

/// Whether a token was made by a sign-in (ends at logout) or asked for by name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::EnumString,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TokenKind {
    /// From `POST /auth/login`.
    Session,
    /// From `POST /tokens`.
    Api,
}

/// A token's record; the token itself is shown once and kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    /// The id.
    pub id: TokenId,
    /// Whose it is.
    pub user_id: UserId,
    /// Its name.
    pub name: String,
    /// A sign-in or a named token.
    pub kind: TokenKind,
    /// A narrower role than its user's, if asked for; never more than the user's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// When it stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// What a user gives to get a named token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Its name.
    pub name: String,
    /// A role narrower than the user's.
    #[serde(default)]
    pub role: Option<Role>,
    /// When it stops working (never after that, however long the user lives).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

mod rules;

pub use rules::{decide, sees_all, Access, Actor, Area, Decision, Target};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_refuse_only_what_grows_past_a_limit() {
        let q = Quota { max_vms: Some(2), max_memory_mib: Some(1024), ..Quota::default() };
        let used = UserUsage { vms: 1, vcpus: 40, memory_mib: 512, disk_gib: 100, addresses: 9 };
        let vm = UserUsage { vms: 1, vcpus: 1, memory_mib: 512, ..UserUsage::default() };
        assert!(q.check(&used, &vm).is_ok(), "exactly at the limits; unlimited vCPUs");
        let more = UserUsage { memory_mib: 513, ..vm };
        match q.check(&used, &more) {
            Err(Error::QuotaExceeded { limit: "max_memory_mib", max: 1024, wanted: 1025 }) => {}
            other => panic!("{other:?}"),
        }
        let over = UserUsage { vms: 3, memory_mib: 4096, ..used };
        let shrink = UserUsage::growth(
            &Demand { vcpus: 2, memory_mib: 2048, disk_gib: 10 },
            &Demand { vcpus: 4, memory_mib: 1024, disk_gib: 10 },
        );
        assert_eq!(shrink, UserUsage { vcpus: 2, ..UserUsage::default() });
        assert!(
            q.check(&over, &shrink).is_ok(),
            "a user over a lowered quota may still change what it does not limit"
        );
        assert!(q.check(&over, &UserUsage::address()).is_ok());
        assert!(q.admits(&used).is_ok());
        assert!(q.admits(&over).is_err());
        assert!(Quota::default().is_unlimited() && !q.is_unlimited());
    }

    #[test]
    fn emails_and_passwords_are_checked() {
        assert_eq!(normalize_email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@example.com", "Ann <ann@example.com>", "a b@example.com"] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(check_password(&Secret::new("correct horse")).is_ok());
        for bad in ["short", "            ", "eleven char"] {
            assert!(check_password(&Secret::new(bad)).is_err(), "{bad:?}");
        }
        assert!(check_password(&Secret::new("x".repeat(MAX_PASSWORD_BYTES + 1))).is_err());
        let ldap_with_password = UserSpec {
            email: "l@example.com".into(),
            password: Some(Secret::new("a long password")),
            role: Role::User,
            auth: AuthSource::Ldap,
            quota: Quota::default(),
        };
        assert!(User::from_spec(&ldap_with_password, Utc::now()).is_err());
    }
}
