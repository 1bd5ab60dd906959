//! [`WebhookStore`] on SQL. A subscription's JSON holds its settings and delivery state;
//! `enabled` and `next_attempt_at` are columns for the due list, the claim is two columns,
//! and the secret is a column of its own that no listing reads.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::webhook::{Delivery, Webhook};
use vmm_core::{Error, Event, Page, PageRequest, Result, Secret, UserId, WebhookId, WebhookStore};

use super::users::is_foreign_key_violation;
use super::{first, from_json, to_json, ts, Columns, SqlStore, Tx};

/// The `class` column: what a row is.
fn class(channel: bool) -> &'static str {
    if channel {
        "channel"
    } else {
        "webhook"
    }
}

impl SqlStore {
    /// The subscription, locked in `tx`, and who holds its claim.
    async fn webhook_in(&self, tx: &mut Tx, id: WebhookId) -> Result<(Webhook, Option<String>)> {
        let sql =
            format!("SELECT record, secret, claim_owner FROM webhooks WHERE id = $1{}", self.dialect.lock());
        let row = self
            .row(sqlx::query(&sql).bind(id.to_string()), &mut **tx, Error::WebhookNotFound { id })
            .await?;
        let mut hook: Webhook = from_json(&row.text("record")?)?;
        hook.secret = row.opt_text("secret")?.map(Secret::new);
        Ok((hook, row.opt_text("claim_owner")?))
    }

    /// Writes the subscription's JSON and columns (not the claim).
    async fn write_webhook(&self, tx: &mut Tx, hook: &Webhook) -> Result<()> {
        sqlx::query(
            "UPDATE webhooks SET record = $2, secret = $3, enabled = $4, next_attempt_at = $5 WHERE id = $1",
        )
        .bind(hook.id.to_string())
        .bind(to_json(hook)?)
        .bind(hook.secret.as_ref().map(|s| s.expose().to_owned()))
        .bind(i64::from(hook.enabled))
        .bind(ts(hook.next_attempt_at))
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(|e| self.err(e))
    }
}

#[async_trait]
impl WebhookStore for SqlStore {
    async fn create_webhook(&self, hook: &Webhook) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhooks (id, owner_id, secret, enabled, next_attempt_at, record, class) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hook.id.to_string())
        .bind(hook.owner_id.to_string())
        .bind(hook.secret.as_ref().map(|s| s.expose().to_owned()))
        .bind(i64::from(hook.enabled))
        .bind(ts(hook.next_attempt_at))
        .bind(to_json(hook)?)
        .bind(class(hook.channel.is_some()))
        .execute(&self.write)
        .await
        .map(drop)
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                Error::UserNotFound { id: hook.owner_id }
            } else {
                self.err(e)
            }
        })
    }

    async fn get_webhook(&self, id: WebhookId) -> Result<Webhook> {
        let query = sqlx::query("SELECT record, secret FROM webhooks WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::WebhookNotFound { id }).await?;
        let mut hook: Webhook = from_json(&row.text("record")?)?;
        hook.secret = row.opt_text("secret")?.map(Secret::new);
        Ok(hook)
    }

    async fn list_webhooks(
        &self,
        owner: Option<UserId>,
        channels: bool,
        page: &PageRequest,
    ) -> Result<Page<Webhook>> {
        let mut only: Vec<_> = owner.map(|o| ("owner_id", o.to_string())).into_iter().collect();
        only.push(("class", class(channels).to_owned()));
        self.records("webhooks", &only, page).await
    }

    async fn update_webhook(&self, hook: &Webhook) -> Result<()> {
        let mut tx = self.begin().await?;
        let (kept, _) = self.webhook_in(&mut tx, hook.id).await?;
        // The delivery state is the dispatcher's, but for what a re-enable resets.
        let hook = Webhook { last_event_id: kept.last_event_id, ..hook.clone() };
        self.write_webhook(&mut tx, &hook).await?;
        self.commit(tx).await
    }

    async fn delete_webhook(&self, id: WebhookId) -> Result<()> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::WebhookNotFound { id });
        }
        Ok(())
    }

    async fn claim_webhook(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Webhook>> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT id FROM webhooks WHERE enabled = 1 AND next_attempt_at <= $1 \
             AND (claim_until IS NULL OR claim_until <= $1) ORDER BY next_attempt_at LIMIT 1{}",
            self.dialect.skip_locked()
        );
        let row =
            sqlx::query(&sql).bind(ts(now)).fetch_all(&mut *tx).await.map(first).map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(None) };
        let id: WebhookId = row.parsed("id")?;
        let (hook, _) = self.webhook_in(&mut tx, id).await?;
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        sqlx::query("UPDATE webhooks SET claim_owner = $2, claim_until = $3 WHERE id = $1")
            .bind(id.to_string())
            .bind(worker)
            .bind(ts(until))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await?;
        Ok(Some(hook))
    }

    async fn finish_webhook_claim(
        &self,
        hook: &Webhook,
        worker: &str,
        delivery: Option<&Delivery>,
        events: Vec<Event>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let (mut kept, holder) = match self.webhook_in(&mut tx, hook.id).await {
            Ok(found) => found,
            // Deleted meanwhile: nothing to record.
            Err(Error::WebhookNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if holder.as_deref() != Some(worker) {
            return Ok(());
        }
        kept.take_delivery_state(hook);
        self.write_webhook(&mut tx, &kept).await?;
        sqlx::query("UPDATE webhooks SET claim_owner = NULL, claim_until = NULL WHERE id = $1")
            .bind(hook.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if let Some(d) = delivery {
            sqlx::query("INSERT INTO webhook_deliveries (id, webhook_id, record) VALUES ($1, $2, $3)")
                .bind(d.id.to_string())
                .bind(d.webhook_id.to_string())
                .bind(to_json(d)?)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        self.emit(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn list_deliveries(&self, id: WebhookId, page: &PageRequest) -> Result<Page<Delivery>> {
        self.get_webhook(id).await?;
        self.records("webhook_deliveries", &[("webhook_id", id.to_string())], page).await
    }
}
