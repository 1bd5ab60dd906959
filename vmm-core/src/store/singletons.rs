//! The singletons area of the [`Store`](super::Store): loops that run once per cluster.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// Named leases for loops that must run in one process of a cluster at a time (the
/// reconciler, pruning). A holder renews its lease each round; when it dies, another
/// process takes the lease over once it has run out (by the store's clock).
#[async_trait]
pub trait SingletonStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` for `ttl`; `false` while another
    /// holder's lease runs.
    async fn acquire_singleton(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
}
