//! The users area of the [`Store`](super::Store): users with their password hashes, and
//! tokens kept as a lookup prefix and a hash.

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{TokenId, UserId};
use crate::page::{Page, PageRequest};
use crate::users::{ApiToken, User, UserPatch, UserUsage};

/// A token's record as the store keeps it, with its user, for a sign-in check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The record.
    pub token: ApiToken,
    /// The SHA-256 of the whole token, hex.
    pub hash: String,
    /// Its user, as they are now.
    pub user: User,
}

/// Users and their tokens.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Adds a user with their password hash (none for LDAP users and for the bootstrap
    /// admin). A duplicate email is a conflict.
    async fn create_user(&self, user: &User, password_hash: Option<&str>) -> Result<()>;
    /// One user.
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// The user with this (lower-cased) email, and their password hash.
    async fn user_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>>;
    /// Users, newest first.
    async fn list_users(&self, page: &PageRequest) -> Result<Page<User>>;
    /// Applies `patch` to the user as they are now ([`User::apply`]), and sets their
    /// password hash when one is given, in one transaction with their row locked: a new
    /// quota must admit what they hold then. Returns the user as saved.
    async fn update_user(&self, id: UserId, patch: &UserPatch, password_hash: Option<&str>) -> Result<User>;
    /// What the user's VMs hold.
    async fn user_usage(&self, id: UserId) -> Result<UserUsage>;
    /// Removes a user and every token of theirs; a conflict while they own VMs.
    async fn delete_user(&self, id: UserId) -> Result<()>;
    /// Adds a token with its lookup prefix and hash. A prefix in use is a conflict.
    async fn create_token(&self, token: &ApiToken, prefix: &str, hash: &str) -> Result<()>;
    /// The token with this lookup prefix, with its hash and its user.
    async fn token_by_prefix(&self, prefix: &str) -> Result<Option<StoredToken>>;
    /// One token.
    async fn get_token(&self, id: TokenId) -> Result<ApiToken>;
    /// Tokens, newest first: `user`'s, or everyone's.
    async fn list_tokens(&self, user: Option<UserId>, page: &PageRequest) -> Result<Page<ApiToken>>;
    /// Removes a token; it stops working on the next request.
    async fn delete_token(&self, id: TokenId) -> Result<()>;
}
