//! The idempotency area of the [`Store`](super::Store).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::idempotency::{IdempotencyBegin, StoredResponse};

/// What the first try of each idempotency key answered.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Decides, in one transaction, what a request with `hash` under `(scope, key)` does
    /// ([`begin`](crate::idempotency::begin)); when it proceeds, records it as running
    /// until `now + ttl`. Of concurrent requests with one key, one proceeds.
    async fn begin_request(
        &self,
        scope: &str,
        key: &str,
        hash: &str,
        now: DateTime<Utc>,
        stale_after: Duration,
        ttl: Duration,
    ) -> Result<IdempotencyBegin>;
    /// Keeps the answer of the request running under `(scope, key)`.
    async fn finish_request(&self, scope: &str, key: &str, response: &StoredResponse) -> Result<()>;
    /// Forgets `(scope, key)`, so that the request may be tried again (it failed on the
    /// server's side).
    async fn forget_request(&self, scope: &str, key: &str) -> Result<()>;
    /// Forgets the keys that expired before `now`; returns how many.
    async fn prune_requests(&self, now: DateTime<Utc>) -> Result<u64>;
}
