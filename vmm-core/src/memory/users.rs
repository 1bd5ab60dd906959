//! [`UserStore`] in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::event::{token_event, user_event, user_update_event, EventType};
use crate::id::{TokenId, UserId};
use crate::page::{Page, PageRequest};
use crate::store::{StoredToken, UserStore};
use crate::users::{ApiToken, User, UserPatch, UserUsage};

#[async_trait]
impl UserStore for InMemoryStore {
    async fn create_user(&self, user: &User, password_hash: Option<&str>) -> Result<()> {
        let mut s = self.state();
        if s.users.contains_key(&user.id) || s.users.values().any(|(u, _)| u.email == user.email) {
            return Err(Error::conflict(format!("a user with email {:?} exists", user.email)));
        }
        s.users.insert(user.id, (user.clone(), password_hash.map(str::to_owned)));
        s.emit(user_event(EventType::UserCreated, user, self.clock.now()));
        Ok(())
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        self.state().users.get(&id).map(|(u, _)| u.clone()).ok_or(Error::UserNotFound { id })
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>> {
        Ok(self.state().users.values().find(|(u, _)| u.email == email).cloned())
    }

    async fn list_users(&self, page: &PageRequest) -> Result<Page<User>> {
        super::page_of(&self.state().users, page, |_| true).map(|p| Page {
            items: p.items.into_iter().map(|(u, _)| u).collect(),
            next_cursor: p.next_cursor,
        })
    }

    async fn update_user(&self, id: UserId, patch: &UserPatch, password_hash: Option<&str>) -> Result<User> {
        let mut s = self.state();
        let (kept, _) = s.users.get(&id).ok_or(Error::UserNotFound { id })?;
        let mut user = kept.clone();
        user.apply(patch)?;
        if patch.quota.is_some() {
            user.quota.admits(&s.usage_of(id))?;
        }
        let (kept, hash) = s.users.get_mut(&id).expect("read above");
        *kept = user.clone();
        if let Some(h) = password_hash {
            *hash = Some(h.to_owned());
        }
        if let Some(e) = user_update_event(&user, patch, self.clock.now()) {
            s.emit(e);
        }
        Ok(user)
    }

    async fn user_usage(&self, id: UserId) -> Result<UserUsage> {
        let s = self.state();
        if !s.users.contains_key(&id) {
            return Err(Error::UserNotFound { id });
        }
        Ok(s.usage_of(id))
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        let mut s = self.state();
        if !s.users.contains_key(&id) {
            return Err(Error::UserNotFound { id });
        }
        if s.vms.values().any(|vm| vm.owner_id == Some(id)) {
            return Err(Error::conflict("the user owns VMs: delete them or give them to another user first"));
        }
        if let Some((user, _)) = s.users.remove(&id) {
            s.emit(user_event(EventType::UserDeleted, &user, self.clock.now()));
        }
        s.tokens.retain(|_, (t, _, _)| t.user_id != id);
        s.ssh_keys.retain(|_, k| k.owner_id != id);
        s.webhooks.retain(|_, h| h.owner_id() != id);
        Ok(())
    }

    async fn create_token(&self, token: &ApiToken, prefix: &str, hash: &str) -> Result<()> {
        let mut s = self.state();
        if !s.users.contains_key(&token.user_id) {
            return Err(Error::UserNotFound { id: token.user_id });
        }
        if s.tokens.values().any(|(_, p, _)| p == prefix) {
            return Err(Error::conflict("a token with this prefix exists"));
        }
        s.tokens.insert(token.id, (token.clone(), prefix.to_owned(), hash.to_owned()));
        if let Some(e) = token_event(EventType::TokenCreated, token, self.clock.now()) {
            s.emit(e);
        }
        Ok(())
    }

    async fn token_by_prefix(&self, prefix: &str) -> Result<Option<StoredToken>> {
        let s = self.state();
        let Some((token, _, hash)) = s.tokens.values().find(|(_, p, _)| p == prefix) else { return Ok(None) };
        let Some((user, _)) = s.users.get(&token.user_id) else { return Ok(None) };
        Ok(Some(StoredToken { token: token.clone(), hash: hash.clone(), user: user.clone() }))
    }

    async fn get_token(&self, id: TokenId) -> Result<ApiToken> {
        self.state().tokens.get(&id).map(|(t, _, _)| t.clone()).ok_or(Error::TokenNotFound { id })
    }

    async fn list_tokens(&self, user: Option<UserId>, page: &PageRequest) -> Result<Page<ApiToken>> {
        super::page_of(&self.state().tokens, page, |(t, _, _)| user.is_none_or(|u| t.user_id == u)).map(|p| {
            Page { items: p.items.into_iter().map(|(t, _, _)| t).collect(), next_cursor: p.next_cursor }
        })
    }

    async fn delete_token(&self, id: TokenId) -> Result<()> {
        let mut s = self.state();
        let (token, _, _) = s.tokens.remove(&id).ok_or(Error::TokenNotFound { id })?;
        if let Some(e) = token_event(EventType::TokenDeleted, &token, self.clock.now()) {
            s.emit(e);
        }
        Ok(())
    }
}
