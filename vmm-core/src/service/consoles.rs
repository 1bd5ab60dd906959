//! Consoles: a single-use ticket for whoever may operate a running VM, and the session it
//! opens through the VM's node, at most [`VmmConfig::console_sessions`] at once per VM in
//! this process. Opening and closing are events.

use chrono::{DateTime, Utc};

use super::{chrono_duration, Vmm};
use crate::console::{console_token_hash, refused, ConsoleKind, ConsoleStream, ConsoleTicket};
use crate::error::{Error, Result};
use crate::event::EventType;
use crate::id::VmId;
use crate::secret::Secret;
use crate::users::{Access, Actor};
use crate::vm::VmState;

/// The prefix of console tokens.
const CONSOLE_TOKEN_PREFIX: &str = "vmmc_";

/// A console ticket as given to its user: the token is shown this once.
#[derive(Debug, Clone)]
pub struct ConsoleGrant {
    /// The token that opens the console, once.
    pub token: Secret,
    /// The console it opens.
    pub kind: ConsoleKind,
    /// The VM.
    pub vm_id: VmId,
    /// Until when it can be used.
    pub expires_at: DateTime<Utc>,
}

/// An open console. Dropping it frees its place among the VM's sessions; [`Vmm::close_console`]
/// also records that it closed.
#[derive(Debug)]
pub struct ConsoleSession {
    /// The ticket that opened it: the VM, the user, the kind.
    pub ticket: ConsoleTicket,
    /// The bytes both ways.
    pub stream: ConsoleStream,
    slot: Slot,
}

/// A place among a VM's console sessions, given back on drop.
#[derive(Debug)]
struct Slot {
    vmm: Vmm,
    vm: VmId,
}

impl Slot {
    fn take(vmm: &Vmm, vm: VmId) -> Result<Slot> {
        let max = vmm.inner.config.console_sessions;
        let mut open = super::lock(&vmm.inner.consoles);
        let n = open.entry(vm).or_default();
        if *n >= max {
            return Err(Error::conflict(format!("the VM has {max} console sessions open already")));
        }
        *n += 1;
        Ok(Slot { vmm: vmm.clone(), vm })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = super::lock(&self.vmm.inner.consoles);
        if let Some(n) = open.get_mut(&self.vm) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.vm);
            }
        }
    }
}

impl Vmm {
    /// A single-use ticket to the console `kind` of the VM `id`, for `actor`, who must be
    /// allowed to operate it; the VM must be running.
    pub async fn console_ticket(&self, actor: &Actor, id: VmId, kind: ConsoleKind) -> Result<ConsoleGrant> {
        let vm = self.vm_for(actor, id, Access::Write).await?;
        if vm.state != VmState::Running {
            return Err(Error::conflict(format!("the VM is {}, not running", vm.state)));
        }
        let token = format!("{CONSOLE_TOKEN_PREFIX}{}", crate::secret::random_hex(32)?);
        let now = self.now();
        let ticket = ConsoleTicket {
            token_hash: console_token_hash(&token),
            vm_id: id,
            user_id: actor.user_id,
            kind,
            expires_at: now + chrono_duration(self.inner.config.console_ttl),
        };
        self.inner.store.add_console_ticket(&ticket, now).await?;
        Ok(ConsoleGrant { token: Secret::new(token), kind, vm_id: id, expires_at: ticket.expires_at })
    }

    /// Opens the console a ticket's `token` is for, using the ticket up, and records that
    /// it opened. [`Error::Unauthenticated`] for a token that is unknown, used or expired;
    /// [`Error::Conflict`] when the VM has its most sessions open already (the ticket is
    /// used up all the same: ask for another).
    pub async fn open_console(&self, token: &str) -> Result<ConsoleSession> {
        // A token that is not a console token's shape is refused without a store call.
        if !token.starts_with(CONSOLE_TOKEN_PREFIX) || token.len() != CONSOLE_TOKEN_PREFIX.len() + 64 {
            return Err(refused());
        }
        let ticket = self.inner.store.take_console_ticket(&console_token_hash(token), self.now()).await?;
        let slot = Slot::take(self, ticket.vm_id)?;
        let stream = self.console_stream(&ticket).await?;
        self.inner.store.record_console(&ticket, EventType::VmConsoleOpened, self.now()).await?;
        tracing::info!(vm = %ticket.vm_id, user = %ticket.user_id, kind = %ticket.kind, "console opened");
        Ok(ConsoleSession { ticket, stream, slot })
    }

    async fn console_stream(&self, ticket: &ConsoleTicket) -> Result<ConsoleStream> {
        let vm = self.inner.store.get_vm(ticket.vm_id).await?;
        let node = self.inner.store.get_node(vm.node_id).await?;
        self.hypervisor(&node).await?.open_console(vm.id, ticket.kind).await
    }

    /// Ends a console session and records that it closed.
    pub async fn close_console(&self, session: ConsoleSession) {
        let ConsoleSession { ticket, stream, slot } = session;
        drop(stream);
        if let Err(e) = self.inner.store.record_console(&ticket, EventType::VmConsoleClosed, self.now()).await
        {
            tracing::warn!(vm = %ticket.vm_id, error = %e, "recording a console's close failed");
        }
        drop(slot);
        tracing::info!(vm = %ticket.vm_id, user = %ticket.user_id, "console closed");
    }

    /// Console sessions open on the VM in this process.
    pub fn console_sessions(&self, vm: VmId) -> usize {
        super::lock(&self.inner.consoles).get(&vm).copied().unwrap_or(0)
    }
}

impl ConsoleSession {
    /// Takes the session's stream out (to move its halves apart); the session keeps a
    /// closed one.
    pub fn take_stream(&mut self) -> ConsoleStream {
        let (to_guest, from_guest) = futures::channel::mpsc::channel(0);
        std::mem::replace(&mut self.stream, ConsoleStream { to_guest, from_guest })
    }
}
