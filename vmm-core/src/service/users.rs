//! Users, sign-in and tokens: `impl Vmm` for the users area. Every call but
//! [`Vmm::login`] and [`Vmm::authenticate`] is made as an [`Actor`] and asks the rules
//! ([`crate::users::decide`]) first.
//!
//! Passwords are hashed with Argon2id at OWASP's parameters and rehashed at a sign-in when
//! the parameters changed. A token is `vmm_` and 64 hex digits (256 random bits); the store
//! keeps its first 12 digits to find it by and the SHA-256 of the whole, compared in
//! constant time.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use subtle::ConstantTimeEq;

use super::Vmm;
use crate::error::{Error, Result};
use crate::id::{TokenId, UserId};
use crate::page::{Page, PageRequest};
use crate::secret::Secret;
use crate::users::{
    normalize_email, Access, Actor, ApiToken, Area, AuthSource, Role, TokenKind, TokenSpec, User, UserPatch,
    UserSpec, UserState,
};

/// What every token starts with, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "vmm_";
/// Hex digits of a token after [`TOKEN_PREFIX`] (256 bits).
const TOKEN_HEX: usize = 64;
/// Hex digits the store finds a token by.
const LOOKUP_HEX: usize = 12;

/// A sign-in: the session token (shown this once), its record and the user.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token to present as `Authorization: Bearer …`.
    pub token: Secret,
    /// Its record.
    pub record: ApiToken,
    /// Who signed in.
    pub user: User,
}

/// Argon2id at OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_password(password: &Secret) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| Error::backend("random source", e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::backend("argon2", e.to_string()))?;
    argon2()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::backend("argon2", e.to_string()))
}

/// Whether `password` matches `hash`, and whether the hash was made with other parameters
/// than today's (it is then made again).
fn verify_password(password: &Secret, hash: &str) -> (bool, bool) {
    let Ok(parsed) = PasswordHash::new(hash) else { return (false, false) };
    let ok = argon2().verify_password(password.expose().as_bytes(), &parsed).is_ok();
    let current = argon2();
    let now = current.params();
    let stale = parsed.algorithm.as_str() != "argon2id"
        || Params::try_from(&parsed).map_or(true, |p| {
            (p.m_cost(), p.t_cost(), p.p_cost()) != (now.m_cost(), now.t_cost(), now.p_cost())
        });
    (ok, stale)
}

/// A hash no password matches, checked against when the email is unknown so that the
/// answer takes as long as for a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&Secret::new("no user has this password")).unwrap_or_default())
}

fn token_hash(token: &str) -> String {
    crate::secret::sha256_hex(token)
}

/// A fresh token and its lookup prefix.
fn new_token() -> Result<(Secret, String)> {
    let hex = crate::secret::random_hex(TOKEN_HEX / 2)?;
    let lookup = hex[..LOOKUP_HEX].to_owned();
    Ok((Secret::new(format!("{TOKEN_PREFIX}{hex}")), lookup))
}

/// The lookup prefix of a presented token, if it has the shape of one.
fn lookup_of(token: &str) -> Option<&str> {
    let hex = token.strip_prefix(TOKEN_PREFIX)?;
    (hex.len() == TOKEN_HEX && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| &hex[..LOOKUP_HEX])
}

const BAD_LOGIN: Error = Error::Unauthenticated { reason: "wrong email or password" };
const BAD_TOKEN: Error = Error::Unauthenticated { reason: "the token is not valid" };

impl Vmm {
    /// The first admin, made if missing: the bootstrap admin token acts as them. They have
    /// no password until one is set.
    pub async fn bootstrap_admin(&self, email: &str) -> Result<User> {
        let email = normalize_email(email)?;
        if let Some((user, _)) = self.inner.store.user_by_email(&email).await? {
            return Ok(user);
        }
        let user = User {
            id: UserId::new(),
            email,
            role: Role::Admin,
            state: UserState::Active,
            auth: AuthSource::Local,
            quota: Default::default(),
            created_at: self.now(),
        };
        match self.inner.store.create_user(&user, None).await {
            Ok(()) => Ok(user),
            // Made by another vmmd in between.
            Err(Error::Conflict { .. }) => self
                .inner
                .store
                .user_by_email(&user.email)
                .await?
                .map(|(u, _)| u)
                .ok_or(Error::UserNotFound { id: user.id }),
            Err(e) => Err(e),
        }
    }

    /// Checks an email and password; a session token on success. A local user's password
    /// is checked against their hash; an LDAP user's (or, with a directory configured, an
    /// unknown email's) by the directory, which makes the user on their first sign-in and
    /// sets their role from their groups at each. An unknown email, a wrong password, a
    /// disabled user and a directory user in no mapped group all get the same answer.
    pub async fn login(&self, email: &str, password: &Secret) -> Result<Session> {
        let Ok(email) = normalize_email(email) else {
            verify_password(password, dummy_hash());
            return Err(BAD_LOGIN);
        };
        let found = self.inner.store.user_by_email(&email).await?;
        let user = match found {
            Some((user, Some(hash))) if user.auth == AuthSource::Local => {
                let (ok, stale) = verify_password(password, &hash);
                if !ok || user.state != UserState::Active {
                    return Err(BAD_LOGIN);
                }
                if stale {
                    let rehashed = hash_password(password)?;
                    self.inner.store.update_user(user.id, &UserPatch::default(), Some(&rehashed)).await?;
                }
                user
            }
            Some((user, _)) if user.auth == AuthSource::Ldap => {
                self.directory_login(&email, password, Some(user)).await?
            }
            None if self.inner.directory.is_some() => self.directory_login(&email, password, None).await?,
            _ => {
                verify_password(password, dummy_hash());
                return Err(BAD_LOGIN);
            }
        };
        let now = self.now();
        let ttl =
            chrono::Duration::from_std(self.inner.config.session_ttl).unwrap_or(chrono::Duration::hours(12));
        let record = ApiToken {
            id: TokenId::new(),
            user_id: user.id,
            name: "session".into(),
            kind: TokenKind::Session,
            role: None,
            expires_at: Some(now + ttl),
            created_at: now,
        };
        let token = self.store_token(&record).await?;
        Ok(Session { token, record, user })
    }

    /// Signs a directory user in: the directory checks the password and names the role;
    /// the user is made on their first sign-in, their role follows their groups after.
    async fn directory_login(&self, email: &str, password: &Secret, known: Option<User>) -> Result<User> {
        let Some(directory) = &self.inner.directory else { return Err(BAD_LOGIN) };
        if password.expose().is_empty() {
            // An empty password would be an anonymous bind, which many directories accept.
            return Err(BAD_LOGIN);
        }
        let Some(found) = directory.authenticate(email, password).await? else { return Err(BAD_LOGIN) };
        let Some(role) = found.role else { return Err(BAD_LOGIN) };
        match known {
            Some(user) if user.state != UserState::Active => Err(BAD_LOGIN),
            Some(user) if user.role == role => Ok(user),
            // Only the role is written, to the user as they are now (not as read before the
            // directory answered: an admin may have disabled them meanwhile).
            Some(user) => {
                let patch = UserPatch { role: Some(role), ..UserPatch::default() };
                let user = self.inner.store.update_user(user.id, &patch, None).await?;
                if user.state != UserState::Active {
                    return Err(BAD_LOGIN);
                }
                Ok(user)
            }
            None => {
                let user = User {
                    id: UserId::new(),
                    email: email.to_owned(),
                    role,
                    state: UserState::Active,
                    auth: AuthSource::Ldap,
                    quota: Default::default(),
                    created_at: self.now(),
                };
                match self.inner.store.create_user(&user, None).await {
                    Ok(()) => Ok(user),
                    // Made by a sign-in in between.
                    Err(Error::Conflict { .. }) => {
                        self.inner.store.user_by_email(email).await?.map(|(u, _)| u).ok_or(BAD_LOGIN)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Keeps `record` with a fresh token; the token, to be shown once.
    async fn store_token(&self, record: &ApiToken) -> Result<Secret> {
        // 48 bits of lookup prefix: a clash is rare, and a second draw settles it.
        for _ in 0..3 {
            let (token, lookup) = new_token()?;
            match self.inner.store.create_token(record, &lookup, &token_hash(token.expose())).await {
                Err(Error::Conflict { .. }) => continue,
                other => return other.map(|()| token),
            }
        }
        Err(Error::conflict("could not draw an unused token"))
    }

    /// Who presents `token`: its user, with the token's role. Refused (all alike) for a
    /// token that is malformed, unknown, revoked or expired, of a disabled user, or that
    /// asks for more than its user now holds.
    pub async fn authenticate(&self, token: &str) -> Result<Actor> {
        let lookup = lookup_of(token).ok_or(BAD_TOKEN)?;
        let stored = self.inner.store.token_by_prefix(lookup).await?.ok_or(BAD_TOKEN)?;
        let matches: bool = token_hash(token).as_bytes().ct_eq(stored.hash.as_bytes()).into();
        let live = stored.token.expires_at.is_none_or(|at| at > self.now());
        if !matches || !live || stored.user.state != UserState::Active {
            return Err(BAD_TOKEN);
        }
        Actor::new(&stored.user, Some(&stored.token)).ok_or(BAD_TOKEN)
    }

    /// The actor for the user with `email`, with their own role: for an embedding program
    /// that holds the database already and acts on a user's behalf. Refused for an unknown
    /// or disabled user.
    pub async fn actor_for_email(&self, email: &str) -> Result<Actor> {
        let email = normalize_email(email)?;
        let (user, _) = self
            .inner
            .store
            .user_by_email(&email)
            .await?
            .ok_or(Error::Unauthenticated { reason: "no active user with this email" })?;
        if user.state != UserState::Active {
            return Err(Error::Unauthenticated { reason: "no active user with this email" });
        }
        Actor::new(&user, None).ok_or(BAD_TOKEN)
    }

    /// The actor of the bootstrap admin token: the first admin.
    pub async fn bootstrap_actor(&self, admin: UserId) -> Result<Actor> {
        let user = self.inner.store.get_user(admin).await?;
        if user.state != UserState::Active {
            return Err(BAD_TOKEN);
        }
        Actor::new(&user, None).ok_or(BAD_TOKEN)
    }

    /// Ends the session (or revokes the token) the actor presented.
    pub async fn logout(&self, actor: &Actor) -> Result<()> {
        match actor.token_id {
            Some(id) => self.inner.store.delete_token(id).await,
            // The bootstrap token lives in vmmd's configuration, not here.
            None => Err(Error::conflict(
                "the bootstrap admin token cannot be signed out; change it in vmmd's configuration",
            )),
        }
    }

    /// Adds a user (admins only).
    pub async fn create_user(&self, actor: &Actor, spec: UserSpec) -> Result<User> {
        actor.may(Area::Users, Access::Write)?;
        let user = User::from_spec(&spec, self.now())?;
        let hash = spec.password.as_ref().map(hash_password).transpose()?;
        self.inner.store.create_user(&user, hash.as_deref()).await?;
        Ok(user)
    }

    /// One user: yourself, or anyone for those who see all users.
    pub async fn get_user(&self, actor: &Actor, id: UserId) -> Result<User> {
        actor.check(Area::Users, Access::Read, actor.target(id), || Error::UserNotFound { id })?;
        self.inner.store.get_user(id).await
    }

    /// Users, newest first (admins and read-only).
    pub async fn list_users(&self, actor: &Actor, page: &PageRequest) -> Result<Page<User>> {
        actor.may(Area::Users, Access::Read)?;
        self.inner.store.list_users(page).await
    }

    /// Changes a user's role, state, password or quota (admins only). An admin cannot
    /// disable or demote themselves: someone must be left to undo it.
    pub async fn update_user(&self, actor: &Actor, id: UserId, patch: UserPatch) -> Result<User> {
        actor.check(Area::Users, Access::Write, actor.target(id), || Error::UserNotFound { id })?;
        // Checked on the user as read now for a clear answer; the store applies the patch
        // again to the user as they are in its transaction (and checks a new quota there).
        let mut user = self.inner.store.get_user(id).await?;
        user.apply(&patch)?;
        if id == actor.user_id && (user.role != Role::Admin || user.state != UserState::Active) {
            return Err(Error::conflict("an admin cannot demote or disable themselves"));
        }
        let hash = patch.password.as_ref().map(hash_password).transpose()?;
        self.inner.store.update_user(id, &patch, hash.as_deref()).await
    }

    /// Removes a user and their tokens (admins only; not themselves).
    pub async fn delete_user(&self, actor: &Actor, id: UserId) -> Result<()> {
        actor.check(Area::Users, Access::Write, actor.target(id), || Error::UserNotFound { id })?;
        if id == actor.user_id {
            return Err(Error::conflict("an admin cannot delete themselves"));
        }
        self.inner.store.delete_user(id).await
    }

    /// A named token for the actor's user, with a role no higher than the actor's and an
    /// optional expiry; returned with the token, shown this once.
    pub async fn create_token(&self, actor: &Actor, spec: TokenSpec) -> Result<(ApiToken, Secret)> {
        actor.may(Area::Tokens, Access::Write)?;
        crate::names::check_name(&spec.name)?;
        let name = spec.name.as_str();
        if let Some(role) = spec.role {
            if !actor.role.may_grant(role) {
                return Err(Error::invalid(
                    "role",
                    format!("a {} may not hand out a {role} token", actor.role),
                ));
            }
        }
        let now = self.now();
        if spec.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("expires_at", "must be in the future"));
        }
        // A token made with a narrower token carries at most that token's role.
        let role = spec.role.or((actor.token_id.is_some()).then_some(actor.role));
        let record = ApiToken {
            id: TokenId::new(),
            user_id: actor.user_id,
            name: name.to_owned(),
            kind: TokenKind::Api,
            role,
            expires_at: spec.expires_at,
            created_at: now,
        };
        let token = self.store_token(&record).await?;
        Ok((record, token))
    }

    /// Tokens: the actor's own, or everyone's for those who see all.
    pub async fn list_tokens(&self, actor: &Actor, page: &PageRequest) -> Result<Page<ApiToken>> {
        actor.may(Area::Tokens, Access::Read)?;
        let whose = (!crate::users::sees_all(actor.role, Area::Tokens)).then_some(actor.user_id);
        self.inner.store.list_tokens(whose, page).await
    }

    /// Revokes a token: it stops working on the next request.
    pub async fn delete_token(&self, actor: &Actor, id: TokenId) -> Result<()> {
        let token = match self.inner.store.get_token(id).await {
            Ok(t) => t,
            Err(Error::TokenNotFound { .. }) => return Err(Error::TokenNotFound { id }),
            Err(e) => return Err(e),
        };
        actor.check(Area::Tokens, Access::Write, actor.target(token.user_id), || Error::TokenNotFound {
            id,
        })?;
        self.inner.store.delete_token(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_users_are_made_at_their_first_sign_in_and_follow_their_groups() {
        futures::executor::block_on(async {
            let directory = std::sync::Arc::new(crate::InMemoryDirectory::default());
            directory.set("dana@example.com", "directory password", Some(Role::Operator));
            let vmm = Vmm::builder().with_directory(directory.clone()).build();
            let pw = Secret::new("directory password");
            assert!(matches!(
                vmm.login("dana@example.com", &Secret::new("wrong")).await,
                Err(Error::Unauthenticated { .. })
            ));
            let first = vmm.login("Dana@Example.com", &pw).await.unwrap();
            assert_eq!((first.user.auth, first.user.role), (AuthSource::Ldap, Role::Operator));
            directory.set("dana@example.com", "directory password", Some(Role::User));
            let again = vmm.login("dana@example.com", &pw).await.unwrap();
            assert_eq!(
                (again.user.id, again.user.role),
                (first.user.id, Role::User),
                "the role follows the groups"
            );
            assert_eq!(vmm.authenticate(again.token.expose()).await.unwrap().role, Role::User);
            directory.set("dana@example.com", "directory password", None);
            assert!(vmm.login("dana@example.com", &pw).await.is_err(), "in no mapped group: no sign-in");
            assert!(vmm.login("dana@example.com", &Secret::new("")).await.is_err(), "no anonymous bind");
            assert!(vmm.login("nobody@example.com", &pw).await.is_err());
            // A local user is never checked against the directory, nor a directory user locally.
            let admin = vmm.bootstrap_admin("admin@localhost").await.unwrap();
            directory.set("admin@localhost", "directory password", Some(Role::Admin));
            assert!(vmm.login(&admin.email, &pw).await.is_err());
        });
    }

    #[test]
    fn tokens_have_their_shape_and_only_that_shape_is_looked_up() {
        let (token, lookup) = new_token().unwrap();
        assert_eq!(token.expose().len(), TOKEN_PREFIX.len() + TOKEN_HEX);
        assert_eq!(lookup_of(token.expose()), Some(lookup.as_str()));
        for bad in ["", "vmm_", "vmm_xyz", &token.expose().to_uppercase(), &format!("{}0", token.expose())] {
            assert_eq!(lookup_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_password_hash_verifies_and_older_parameters_are_stale() {
        let pw = Secret::new("correct horse battery");
        let hash = hash_password(&pw).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert_eq!(verify_password(&pw, &hash), (true, false));
        assert!(!verify_password(&Secret::new("wrong horse battery"), &hash).0);
        let weak =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).unwrap());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let old = weak.hash_password(pw.expose().as_bytes(), &salt).unwrap().to_string();
        assert_eq!(verify_password(&pw, &old), (true, true), "right password, stale parameters");
        assert_eq!(verify_password(&pw, "not a hash"), (false, false));
    }
}
