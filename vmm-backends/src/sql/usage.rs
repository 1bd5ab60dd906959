//! [`UsageStore`] on SQL: one table of points keyed by subject, resolution and time; a
//! rollup is one `INSERT … SELECT … GROUP BY` upsert, the same SQL on both databases.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::usage::{UsagePoint, UsageSubject, RAW};
use vmm_core::{Result, UsageStore};

use super::statement::{Bound, Statement};
use super::{Columns, SqlStore};

/// Points written by one statement at most (9 values each).
const POINTS_PER_STATEMENT: usize = 500;

const METRICS: [&str; 6] =
    ["cpu_percent", "memory_used_mib", "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps"];

fn upsert_tail() -> String {
    let set: Vec<String> = METRICS.iter().map(|m| format!("{m} = excluded.{m}")).collect();
    format!(" ON CONFLICT (subject, resolution, t) DO UPDATE SET {}", set.join(", "))
}

#[async_trait]
impl UsageStore for SqlStore {
    async fn add_usage(&self, points: &[(UsageSubject, UsagePoint)]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for chunk in points.chunks(POINTS_PER_STATEMENT) {
            let mut insert = Statement::default();
            insert
                .sql(&format!("INSERT INTO usage_points (subject, resolution, t, {}) ", METRICS.join(", ")));
            insert.values(chunk.iter().map(|(subject, p)| {
                let values: Vec<Bound> = vec![
                    subject.key().into(),
                    i64::from(RAW).into(),
                    p.t.timestamp().into(),
                    p.cpu_percent.into(),
                    p.memory_used_mib.into(),
                    p.disk_read_bps.into(),
                    p.disk_write_bps.into(),
                    p.net_rx_bps.into(),
                    p.net_tx_bps.into(),
                ];
                values
            }));
            insert.sql(&upsert_tail());
            insert.execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        self.commit(tx).await
    }

    async fn roll_up_usage(&self, resolution: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<()> {
        let averages: Vec<String> = METRICS.iter().map(|m| format!("AVG({m})")).collect();
        let sql = format!(
            "INSERT INTO usage_points (subject, resolution, t, {metrics}) \
             SELECT subject, $1, (t / $2) * $2 AS bucket, {averages} FROM usage_points \
             WHERE resolution = 0 AND t >= $3 AND t < $4 GROUP BY subject, bucket{tail}",
            metrics = METRICS.join(", "),
            averages = averages.join(", "),
            tail = upsert_tail(),
        );
        sqlx::query(&sql)
            .bind(i64::from(resolution))
            .bind(i64::from(resolution.max(1)))
            .bind(from.timestamp())
            .bind(to.timestamp())
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    async fn prune_usage(&self, resolution: u32, before: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM usage_points WHERE resolution = $1 AND t < $2")
            .bind(i64::from(resolution))
            .bind(before.timestamp())
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }

    async fn usage(
        &self,
        subject: UsageSubject,
        resolution: u32,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<UsagePoint>> {
        let sql = format!(
            "SELECT t, {} FROM usage_points WHERE subject = $1 AND resolution = $2 AND t >= $3 AND t < $4 ORDER BY t",
            METRICS.join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(subject.key())
            .bind(i64::from(resolution))
            .bind(from.timestamp())
            .bind(to.timestamp())
            .fetch_all(&self.read)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(UsagePoint {
                    t: DateTime::from_timestamp(r.int("t")?, 0).unwrap_or_default(),
                    cpu_percent: r.float("cpu_percent")?,
                    memory_used_mib: r.float("memory_used_mib")?,
                    disk_read_bps: r.float("disk_read_bps")?,
                    disk_write_bps: r.float("disk_write_bps")?,
                    net_rx_bps: r.float("net_rx_bps")?,
                    net_tx_bps: r.float("net_tx_bps")?,
                })
            })
            .collect()
    }

    async fn count_usage(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM usage_points")
            .fetch_one(&self.read)
            .await
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(row.int("n")?).unwrap_or(0))
    }
}
