//! The consoles area of the [`Store`](super::Store): single-use console tickets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::console::ConsoleTicket;
use crate::error::Result;

/// Console tickets, kept by their token's hash until taken or expired.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Keeps a new ticket (and drops tickets that expired before `now`).
    async fn add_console_ticket(&self, ticket: &ConsoleTicket, now: DateTime<Utc>) -> Result<()>;

    /// Takes the ticket with `token_hash` if it is still good at `now`, so that it cannot be
    /// taken again, and records a `vm.console_opened` event in the same transaction.
    /// [`Error::Unauthenticated`](crate::Error::Unauthenticated) when there is no such
    /// ticket, it was taken or it expired (one answer for all three), or its VM is gone.
    async fn take_console_ticket(&self, token_hash: &str, now: DateTime<Utc>) -> Result<ConsoleTicket>;

    /// Records that the console `ticket` opened was closed (a `vm.console_closed` event).
    async fn console_closed(&self, ticket: &ConsoleTicket, at: DateTime<Utc>) -> Result<()>;
}
