//! Idempotency keys: each token's keys (the bootstrap admin token's, each API and session
//! token's), the first answer kept for
//! [`VmmConfig::idempotency_ttl`](super::VmmConfig::idempotency_ttl).

use super::Vmm;
use crate::error::Result;
use crate::idempotency::{IdempotencyBegin, StoredResponse};
use crate::users::Actor;

impl Vmm {
    /// What `actor`'s request with `key` and `hash` does: run, replay the first answer,
    /// wait for the first try, or be refused for reusing the key.
    pub async fn begin_idempotent(&self, actor: &Actor, key: &str, hash: &str) -> Result<IdempotencyBegin> {
        let config = &self.inner.config;
        let scope = scope(actor);
        self.inner
            .store
            .begin_request(&scope, key, hash, self.now(), config.idempotency_stale, config.idempotency_ttl)
            .await
    }

    /// Keeps the answer to `actor`'s request with `key`.
    pub async fn finish_idempotent(&self, actor: &Actor, key: &str, response: &StoredResponse) -> Result<()> {
        self.inner.store.finish_request(&scope(actor), key, response).await
    }

    /// Forgets `actor`'s `key`, so that the request may be tried again.
    pub async fn forget_idempotent(&self, actor: &Actor, key: &str) -> Result<()> {
        self.inner.store.forget_request(&scope(actor), key).await
    }
}

/// Whose keys: the user's, through one token. A key used through another token of the same
/// user (perhaps a narrower one) is another key.
fn scope(actor: &Actor) -> String {
    match actor.token_id {
        Some(token) => format!("{}/{token}", actor.user_id),
        None => format!("{}/admin-token", actor.user_id),
    }
}
