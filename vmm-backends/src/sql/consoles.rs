//! [`ConsoleStore`] on SQL: taking a ticket is one `DELETE … RETURNING`, so two takers
//! cannot both have it, and a ticket that turns out expired, or whose VM is gone, is gone
//! as well.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::console::refused;
use vmm_core::event::{console_event, EventType};
use vmm_core::{ConsoleStore, ConsoleTicket, Error, Result, VmStore};

use super::{first, from_json, to_json, Columns, SqlStore};

#[async_trait]
impl ConsoleStore for SqlStore {
    async fn add_console_ticket(&self, ticket: &ConsoleTicket, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM console_tickets WHERE expires_us <= $1")
            .bind(now.timestamp_micros())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query("INSERT INTO console_tickets (token_hash, expires_us, record) VALUES ($1, $2, $3)")
            .bind(&ticket.token_hash)
            .bind(ticket.expires_at.timestamp_micros())
            .bind(to_json(ticket)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await
    }

    async fn take_console_ticket(&self, token_hash: &str, now: DateTime<Utc>) -> Result<ConsoleTicket> {
        let rows = sqlx::query("DELETE FROM console_tickets WHERE token_hash = $1 RETURNING record")
            .bind(token_hash)
            .fetch_all(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        let ticket: ConsoleTicket = from_json(&first(rows).ok_or_else(refused)?.text("record")?)?;
        if ticket.expires_at <= now {
            return Err(refused());
        }
        match self.get_vm(ticket.vm_id).await {
            Ok(_) => Ok(ticket),
            Err(Error::VmNotFound { .. }) => Err(refused()),
            Err(e) => Err(e),
        }
    }

    async fn record_console(&self, ticket: &ConsoleTicket, kind: EventType, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        match self.vm_in(&mut tx, ticket.vm_id).await {
            Ok(vm) => self.emit(&mut tx, vec![console_event(kind, &vm, ticket, at)]).await?,
            Err(Error::VmNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.commit(tx).await
    }
}
