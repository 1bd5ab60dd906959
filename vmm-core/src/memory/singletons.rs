//! [`SingletonStore`] in memory, by the store's clock.

use std::time::Duration;

use async_trait::async_trait;

use super::InMemoryStore;
use crate::error::Result;
use crate::store::SingletonStore;

#[async_trait]
impl SingletonStore for InMemoryStore {
    async fn acquire_singleton(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = self.clock.now();
        let mut s = self.state();
        let free = s.singletons.get(name).is_none_or(|(h, until)| h == holder || *until <= now);
        if free {
            s.singletons
                .insert(name.to_owned(), (holder.to_owned(), now + crate::service::chrono_duration(ttl)));
        }
        Ok(free)
    }
}
