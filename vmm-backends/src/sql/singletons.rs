//! [`SingletonStore`] on SQL: one row per name, taken over by one statement when it is the
//! holder's own or has run out by the database's clock.

use std::time::Duration;

use async_trait::async_trait;
use vmm_core::{Result, SingletonStore};

use super::SqlStore;

#[async_trait]
impl SingletonStore for SqlStore {
    async fn acquire_singleton(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = self.dialect.now_us();
        let sql = format!(
            "INSERT INTO singletons (name, holder, until_us) VALUES ($1, $2, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, until_us = {now} + $3 \
             WHERE singletons.holder = $2 OR singletons.until_us <= {now}"
        );
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(holder)
            .bind(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX))
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }
}
