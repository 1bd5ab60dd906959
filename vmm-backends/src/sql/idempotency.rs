//! [`IdempotencyStore`] on SQL: one row per key, read and written in one transaction (the
//! row locked on PostgreSQL; SQLite has one writer). Two first tries of a new key both
//! insert: the primary key lets one in, and the other decides again over its row.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::idempotency::{begin, IdempotencyBegin, IdempotencyRecord, StoredResponse};
use vmm_core::{IdempotencyStore, Result};

use super::{from_json, is_unique_violation, to_json, ts, Columns, SqlStore, Tx};

impl SqlStore {
    async fn idempotency_record(
        &self,
        tx: &mut Tx,
        scope: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let sql =
            format!("SELECT record FROM idempotency WHERE scope = $1 AND key = $2{}", self.dialect.lock());
        let rows =
            sqlx::query(&sql).bind(scope).bind(key).fetch_all(&mut **tx).await.map_err(|e| self.err(e))?;
        rows.first().map(|r| from_json(&r.text("record")?)).transpose()
    }

    async fn try_begin(
        &self,
        scope: &str,
        key: &str,
        hash: &str,
        now: DateTime<Utc>,
        stale_after: Duration,
        ttl: Duration,
    ) -> Result<std::result::Result<IdempotencyBegin, sqlx::Error>> {
        let mut tx = self.begin().await?;
        let existing = self.idempotency_record(&mut tx, scope, key).await?;
        let decision = begin(existing.as_ref(), hash, now, stale_after);
        if decision != IdempotencyBegin::Proceed {
            return Ok(Ok(decision));
        }
        let record = IdempotencyRecord {
            scope: scope.to_owned(),
            key: key.to_owned(),
            request_hash: hash.to_owned(),
            created_at: now,
            expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            response: None,
        };
        let sql = if existing.is_some() {
            "UPDATE idempotency SET record = $3, expires_at = $4 WHERE scope = $1 AND key = $2"
        } else {
            "INSERT INTO idempotency (scope, key, record, expires_at) VALUES ($1, $2, $3, $4)"
        };
        let written = sqlx::query(sql)
            .bind(scope)
            .bind(key)
            .bind(to_json(&record)?)
            .bind(ts(record.expires_at))
            .execute(&mut *tx)
            .await;
        match written {
            Ok(_) => {
                self.commit(tx).await?;
                Ok(Ok(IdempotencyBegin::Proceed))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

#[async_trait]
impl IdempotencyStore for SqlStore {
    async fn begin_request(
        &self,
        scope: &str,
        key: &str,
        hash: &str,
        now: DateTime<Utc>,
        stale_after: Duration,
        ttl: Duration,
    ) -> Result<IdempotencyBegin> {
        match self.try_begin(scope, key, hash, now, stale_after, ttl).await? {
            Ok(decision) => Ok(decision),
            // Another first try inserted the key meanwhile: decide again over its row.
            Err(e) if is_unique_violation(&e) => {
                match self.try_begin(scope, key, hash, now, stale_after, ttl).await? {
                    Ok(decision) => Ok(decision),
                    Err(e) => Err(self.err(e)),
                }
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn finish_request(&self, scope: &str, key: &str, response: &StoredResponse) -> Result<()> {
        let mut tx = self.begin().await?;
        let Some(mut record) = self.idempotency_record(&mut tx, scope, key).await? else {
            return self.commit(tx).await;
        };
        record.response = Some(response.clone());
        sqlx::query("UPDATE idempotency SET record = $3 WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .bind(to_json(&record)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await
    }

    async fn forget_request(&self, scope: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }

    async fn prune_requests(&self, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency WHERE expires_at < $1")
            .bind(ts(now))
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }
}
