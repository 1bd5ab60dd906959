//! [`IdempotencyStore`] in memory.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::InMemoryStore;
use crate::error::Result;
use crate::idempotency::{begin, IdempotencyBegin, IdempotencyRecord, StoredResponse};
use crate::store::IdempotencyStore;

#[async_trait]
impl IdempotencyStore for InMemoryStore {
    async fn begin_request(
        &self,
        scope: &str,
        key: &str,
        hash: &str,
        now: DateTime<Utc>,
        stale_after: Duration,
        ttl: Duration,
    ) -> Result<IdempotencyBegin> {
        let mut s = self.state();
        let id = (scope.to_owned(), key.to_owned());
        let decision = begin(s.idempotency.get(&id), hash, now, stale_after);
        if decision == IdempotencyBegin::Proceed {
            let record = IdempotencyRecord {
                scope: id.0.clone(),
                key: id.1.clone(),
                request_hash: hash.to_owned(),
                created_at: now,
                expires_at: now + crate::service::chrono_duration(ttl),
                response: None,
            };
            s.idempotency.insert(id, record);
        }
        Ok(decision)
    }

    async fn finish_request(&self, scope: &str, key: &str, response: &StoredResponse) -> Result<()> {
        if let Some(record) = self.state().idempotency.get_mut(&(scope.to_owned(), key.to_owned())) {
            record.response = Some(response.clone());
        }
        Ok(())
    }

    async fn forget_request(&self, scope: &str, key: &str) -> Result<()> {
        self.state().idempotency.remove(&(scope.to_owned(), key.to_owned()));
        Ok(())
    }

    async fn prune_requests(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut s = self.state();
        let before = s.idempotency.len();
        s.idempotency.retain(|_, r| r.expires_at > now);
        Ok((before - s.idempotency.len()) as u64)
    }
}
