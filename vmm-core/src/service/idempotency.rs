//! Idempotency keys: each user's keys, the first answer kept for
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
        let scope = actor.user_id.to_string();
        self.inner
            .store
            .begin_request(&scope, key, hash, self.now(), config.idempotency_stale, config.idempotency_ttl)
            .await
    }

    /// Keeps the answer to `actor`'s request with `key`.
    pub async fn finish_idempotent(&self, actor: &Actor, key: &str, response: &StoredResponse) -> Result<()> {
        self.inner.store.finish_request(&actor.user_id.to_string(), key, response).await
    }

    /// Forgets `actor`'s `key`, so that the request may be tried again.
    pub async fn forget_idempotent(&self, actor: &Actor, key: &str) -> Result<()> {
        self.inner.store.forget_request(&actor.user_id.to_string(), key).await
    }
}
