//! [`Directory`]: where users whose auth source is LDAP are checked. The implementation
//! against an LDAP server is in `vmm-backends`; [`InMemoryDirectory`] is the fake.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::Result;
use crate::secret::Secret;
use crate::users::Role;

/// Who a directory says a user is, once their password checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The role their groups map to; `None` when no group of theirs is mapped (they may
    /// not sign in).
    pub role: Option<Role>,
}

/// A directory of users, checked by a bind with their own password.
#[async_trait]
pub trait Directory: Send + Sync + Debug {
    /// Checks `password` for the user with `email` (lower-cased). `Ok(None)` when the
    /// directory knows no such user or the password is wrong; an error when the directory
    /// cannot be reached.
    async fn authenticate(&self, email: &str, password: &Secret) -> Result<Option<DirectoryUser>>;
}

/// A directory in memory: email → (password, role).
#[derive(Debug, Default)]
pub struct InMemoryDirectory {
    users: Mutex<HashMap<String, (String, Option<Role>)>>,
}

impl InMemoryDirectory {
    /// Adds or replaces a user.
    pub fn set(&self, email: &str, password: &str, role: Option<Role>) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(email.to_owned(), (password.to_owned(), role));
    }
}

#[async_trait]
impl Directory for InMemoryDirectory {
    async fn authenticate(&self, email: &str, password: &Secret) -> Result<Option<DirectoryUser>> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        Ok(users
            .get(email)
            .filter(|(p, _)| !p.is_empty() && p == password.expose())
            .map(|(_, role)| DirectoryUser { role: *role }))
    }
}
