//! [`UsageStore`] in memory.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::InMemoryStore;
use crate::error::Result;
use crate::store::UsageStore;
use crate::usage::{UsagePoint, UsageSubject, RAW};

#[async_trait]
impl UsageStore for InMemoryStore {
    async fn add_usage(&self, points: &[(UsageSubject, UsagePoint)]) -> Result<()> {
        let mut s = self.state();
        for (subject, point) in points {
            s.usage.insert((subject.key(), RAW, point.t.timestamp()), *point);
        }
        Ok(())
    }

    async fn roll_up_usage(&self, resolution: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
        let mut s = self.state();
        let step = i64::from(resolution.max(1));
        let mut buckets: BTreeMap<(String, i64), Vec<UsagePoint>> = BTreeMap::new();
        for ((key, res, t), p) in &s.usage {
            if *res == RAW && *t >= from.timestamp() && *t < to.timestamp() {
                buckets.entry((key.clone(), t.div_euclid(step) * step)).or_default().push(*p);
            }
        }
        for ((key, start), points) in buckets {
            let at = DateTime::from_timestamp(start, 0).unwrap_or_default();
            if let Some(avg) = UsagePoint::average(at, &points) {
                s.usage.insert((key, resolution, start), avg);
            }
        }
        Ok(())
    }

    async fn prune_usage(&self, resolution: u32, before: DateTime<Utc>) -> Result<u64> {
        let mut s = self.state();
        let n = s.usage.len();
        s.usage.retain(|(_, res, t), _| *res != resolution || *t >= before.timestamp());
        Ok((n - s.usage.len()) as u64)
    }

    async fn usage(
        &self,
        subject: UsageSubject,
        resolution: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsagePoint>> {
        let key = subject.key();
        let s = self.state();
        let range = (key.clone(), resolution, from.timestamp())..(key, resolution, to.timestamp());
        Ok(s.usage.range(range).map(|(_, p)| *p).collect())
    }

    async fn count_usage(&self) -> Result<u64> {
        Ok(self.state().usage.len() as u64)
    }
}
