//! [`BackupStore`] on SQL. A target's JSON holds its settings and its S3 secret is a
//! column of its own that no listing reads; a backup's JSON holds the record, with the
//! columns lists filter on.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::backup::BackupSchedule;
use vmm_core::{
    Backup, BackupFilter, BackupId, BackupStore, BackupTargetConfig, BackupTargetId, Error, Event, Page,
    PageRequest, Result, ScheduleId, Secret, Task, UserId,
};

use super::users::is_foreign_key_violation;
use super::{first, from_json, is_unique_violation, to_json, ts, Columns, SqlStore, Tx};

impl SqlStore {
    /// Writes a backup's columns and JSON: inserted when new, updated when known.
    async fn write_backup(&self, tx: &mut Tx, b: &Backup, insert: bool) -> Result<bool> {
        let sql = if insert {
            "INSERT INTO backups (id, vm_id, owner_id, target_id, state, record) VALUES ($1, $2, $3, $4, $5, $6)"
        } else {
            "UPDATE backups SET vm_id = $2, owner_id = $3, target_id = $4, state = $5, record = $6 WHERE id = $1"
        };
        let done = sqlx::query(sql)
            .bind(b.id.to_string())
            .bind(b.vm_id.to_string())
            .bind(b.owner_id.map(|o| o.to_string()))
            .bind(b.target_id.to_string())
            .bind(b.state.to_string())
            .bind(to_json(b)?)
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::BackupTargetNotFound { id: b.target_id }
                } else {
                    self.err(e)
                }
            })?;
        Ok(done.rows_affected() > 0)
    }
}

impl SqlStore {
    /// Writes a schedule's columns and JSON: inserted when new, updated when known.
    async fn write_schedule(&self, tx: &mut Tx, x: &BackupSchedule, insert: bool) -> Result<bool> {
        let sql = if insert {
            "INSERT INTO backup_schedules (id, owner_id, target_id, enabled, next_run_at, record) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        } else {
            "UPDATE backup_schedules SET owner_id = $2, target_id = $3, enabled = $4, next_run_at = $5, \
             record = $6 WHERE id = $1"
        };
        let done = sqlx::query(sql)
            .bind(x.id.to_string())
            .bind(x.owner_id.map(|o| o.to_string()))
            .bind(x.target_id.to_string())
            .bind(i64::from(x.enabled))
            .bind(ts(x.next_run_at))
            .bind(to_json(x)?)
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::BackupTargetNotFound { id: x.target_id }
                } else {
                    self.err(e)
                }
            })?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl BackupStore for SqlStore {
    async fn create_backup_target(&self, target: &BackupTargetConfig) -> Result<()> {
        let secret = target.s3.as_ref().map(|s| s.secret_access_key.expose().to_owned());
        sqlx::query("INSERT INTO backup_targets (id, name, secret, record) VALUES ($1, $2, $3, $4)")
            .bind(target.id.to_string())
            .bind(&target.name)
            .bind(secret)
            .bind(to_json(target)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("a backup target named {:?} exists", target.name))
                } else {
                    self.err(e)
                }
            })
    }

    async fn get_backup_target(&self, id: BackupTargetId) -> Result<BackupTargetConfig> {
        let query =
            sqlx::query("SELECT record, secret FROM backup_targets WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::BackupTargetNotFound { id }).await?;
        let mut target: BackupTargetConfig = from_json(&row.text("record")?)?;
        if let (Some(s3), Some(secret)) = (&mut target.s3, row.opt_text("secret")?) {
            s3.secret_access_key = Secret::new(secret);
        }
        Ok(target)
    }

    async fn list_backup_targets(&self, page: &PageRequest) -> Result<Page<BackupTargetConfig>> {
        self.records("backup_targets", &[], page).await
    }

    async fn delete_backup_target(&self, id: BackupTargetId) -> Result<()> {
        let done = sqlx::query("DELETE FROM backup_targets WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::conflict(format!("backup target {id} still holds backups or schedules"))
                } else {
                    self.err(e)
                }
            })?;
        if done.rows_affected() == 0 {
            return Err(Error::BackupTargetNotFound { id });
        }
        Ok(())
    }

    async fn enqueue_backup_task(&self, backup: &Backup, task: &Task) -> Result<()> {
        let mut tx = self.begin().await?;
        let known = sqlx::query("SELECT id FROM backups WHERE id = $1")
            .bind(backup.id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.write_backup(&mut tx, backup, known.is_empty()).await?;
        if self.enqueue_in(&mut tx, task, None).await? {
            self.commit(tx).await
        } else {
            drop(tx);
            Err(self.duplicate(task).await)
        }
    }

    async fn get_backup(&self, id: BackupId) -> Result<Backup> {
        let query = sqlx::query("SELECT record FROM backups WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::BackupNotFound { id }).await?;
        from_json(&row.text("record")?)
    }

    async fn list_backups(&self, filter: &BackupFilter, page: &PageRequest) -> Result<Page<Backup>> {
        let only: Vec<_> = [
            filter.vm_id.map(|v| ("vm_id", v.to_string())),
            filter.owner_id.map(|o| ("owner_id", o.to_string())),
            filter.target_id.map(|t| ("target_id", t.to_string())),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.records("backups", &only, page).await
    }

    async fn update_backup(&self, backup: &Backup, event: Option<Event>) -> Result<()> {
        let mut tx = self.begin().await?;
        if !self.write_backup(&mut tx, backup, false).await? {
            return Err(Error::BackupNotFound { id: backup.id });
        }
        self.emit(&mut tx, event.into_iter().collect()).await?;
        self.commit(tx).await
    }

    async fn delete_backup(&self, id: BackupId, event: Option<Event>) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM backups WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::BackupNotFound { id });
        }
        self.emit(&mut tx, event.into_iter().collect()).await?;
        self.commit(tx).await
    }

    async fn create_schedule(&self, schedule: &BackupSchedule) -> Result<()> {
        let mut tx = self.begin().await?;
        self.write_schedule(&mut tx, schedule, true).await?;
        self.commit(tx).await
    }

    async fn get_schedule(&self, id: ScheduleId) -> Result<BackupSchedule> {
        let query = sqlx::query("SELECT record FROM backup_schedules WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::ScheduleNotFound { id }).await?;
        from_json(&row.text("record")?)
    }

    async fn list_schedules(
        &self,
        owner: Option<UserId>,
        page: &PageRequest,
    ) -> Result<Page<BackupSchedule>> {
        let only: Vec<_> = owner.map(|o| ("owner_id", o.to_string())).into_iter().collect();
        self.records("backup_schedules", &only, page).await
    }

    async fn update_schedule(&self, schedule: &BackupSchedule) -> Result<()> {
        let mut tx = self.begin().await?;
        if !self.write_schedule(&mut tx, schedule, false).await? {
            return Err(Error::ScheduleNotFound { id: schedule.id });
        }
        self.commit(tx).await
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<()> {
        let done = sqlx::query("DELETE FROM backup_schedules WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::ScheduleNotFound { id });
        }
        Ok(())
    }

    async fn claim_due_schedule(&self, now: DateTime<Utc>) -> Result<Option<BackupSchedule>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT record FROM backup_schedules WHERE enabled = 1 AND next_run_at <= $1 \
             ORDER BY next_run_at LIMIT 1{}",
            self.dialect.skip_locked()
        );
        let row =
            sqlx::query(&sql).bind(ts(now)).fetch_all(&mut *tx).await.map(first).map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let due: BackupSchedule = from_json(&row.text("record")?)?;
        let ran = due.ran(now)?;
        self.write_schedule(&mut tx, &ran, false).await?;
        self.commit(tx).await?;
        Ok(Some(ran))
    }
}
