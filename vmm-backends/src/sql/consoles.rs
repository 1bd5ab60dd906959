//! [`ConsoleStore`] on SQL: taking a ticket deletes its row, so two takers cannot both have
//! it; the open event is written in the same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::event::{console_event, EventType};
use vmm_core::{ConsoleStore, ConsoleTicket, Error, Result};

use super::{first, from_json, to_json, Columns, SqlStore};

/// The one answer for a token that is unknown, used up or expired.
fn refused() -> Error {
    Error::Unauthenticated { reason: "the console token is not valid" }
}

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
        let mut tx = self.begin().await?;
        let rows = sqlx::query("DELETE FROM console_tickets WHERE token_hash = $1 RETURNING record")
            .bind(token_hash)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let ticket: ConsoleTicket = from_json(&first(rows).ok_or_else(refused)?.text("record")?)?;
        let vm = match self.vm_in(&mut tx, ticket.vm_id).await {
            Ok(vm) => vm,
            Err(Error::VmNotFound { .. }) => return Err(refused()),
            Err(e) => return Err(e),
        };
        if ticket.expires_at <= now {
            // Used up all the same: the expired row goes.
            self.commit(tx).await?;
            return Err(refused());
        }
        self.emit(&mut tx, vec![console_event(EventType::VmConsoleOpened, &vm, &ticket, now)]).await?;
        self.commit(tx).await?;
        Ok(ticket)
    }

    async fn console_closed(&self, ticket: &ConsoleTicket, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin().await?;
        match self.vm_in(&mut tx, ticket.vm_id).await {
            Ok(vm) => {
                self.emit(&mut tx, vec![console_event(EventType::VmConsoleClosed, &vm, ticket, at)]).await?
            }
            Err(Error::VmNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        self.commit(tx).await
    }
}
