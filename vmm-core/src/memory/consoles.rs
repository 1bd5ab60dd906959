//! [`ConsoleStore`] in memory.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::InMemoryStore;
use crate::console::{refused, ConsoleTicket};
use crate::error::Result;
use crate::event::{console_event, EventType};
use crate::store::ConsoleStore;

#[async_trait]
impl ConsoleStore for InMemoryStore {
    async fn add_console_ticket(&self, ticket: &ConsoleTicket, now: DateTime<Utc>) -> Result<()> {
        let mut s = self.state();
        s.console_tickets.retain(|_, t| t.expires_at > now);
        s.console_tickets.insert(ticket.token_hash.clone(), ticket.clone());
        Ok(())
    }

    async fn take_console_ticket(&self, token_hash: &str, now: DateTime<Utc>) -> Result<ConsoleTicket> {
        let mut s = self.state();
        let ticket = s.console_tickets.remove(token_hash).ok_or_else(refused)?;
        if ticket.expires_at <= now || !s.vms.contains_key(&ticket.vm_id) {
            return Err(refused());
        }
        Ok(ticket)
    }

    async fn record_console(&self, ticket: &ConsoleTicket, kind: EventType, at: DateTime<Utc>) -> Result<()> {
        let mut s = self.state();
        if let Some(vm) = s.vms.get(&ticket.vm_id).cloned() {
            s.emit(console_event(kind, &vm, ticket, at));
        }
        Ok(())
    }
}
