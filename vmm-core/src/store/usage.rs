//! The usage area of the [`Store`](super::Store): usage points of VMs and nodes at three
//! resolutions (raw, 5-minute and hourly averages).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::usage::{UsagePoint, UsageSubject};

/// Usage series. A resolution is a bucket length in seconds, [`RAW`](crate::usage::RAW)
/// (0) for points as sampled.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds raw points (a point already stored for the subject at that time is replaced).
    async fn add_usage(&self, points: &[(UsageSubject, UsagePoint)]) -> Result<()>;

    /// Averages the raw points with `from <= t < to` into buckets of `resolution` seconds
    /// (aligned to the Unix epoch), replacing those buckets; a bucket only partly in the
    /// range is averaged from its raw points in the range.
    async fn roll_up_usage(&self, resolution: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()>;

    /// Deletes the points of `resolution` older than `before`; how many went.
    async fn prune_usage(&self, resolution: u32, before: DateTime<Utc>) -> Result<u64>;

    /// The points of `subject` at `resolution` with `from <= t < to`, oldest first.
    async fn usage(
        &self,
        subject: UsageSubject,
        resolution: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsagePoint>>;

    /// How many points are stored, all subjects and resolutions.
    async fn count_usage(&self) -> Result<u64>;
}
