//! The consoles area of the [`Store`](super::Store): single-use console tickets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::console::ConsoleTicket;
use crate::error::Result;
use crate::event::EventType;

/// Console tickets, kept by their token's hash until taken or expired.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Keeps a new ticket (and drops tickets that expired before `now`).
    async fn add_console_ticket(&self, ticket: &ConsoleTicket, now: DateTime<Utc>) -> Result<()>;

    /// Takes the ticket with `token_hash` if it is still good at `now`, so that it cannot be
    /// taken again. [`Error::Unauthenticated`](crate::Error::Unauthenticated) when there is
    /// no such ticket, it was taken or it expired (one answer for all three), or its VM is
    /// gone (the ticket goes all the same).
    async fn take_console_ticket(&self, token_hash: &str, now: DateTime<Utc>) -> Result<ConsoleTicket>;

    /// Records that the console `ticket` opened was opened or closed (`kind` is
    /// `vm.console_opened` or `vm.console_closed`), as an event of its VM if it still exists.
    async fn record_console(&self, ticket: &ConsoleTicket, kind: EventType, at: DateTime<Utc>) -> Result<()>;
}
