//! Consoles: a VM's screen (VNC) or serial console, reached through its node's hypervisor
//! and handed to a browser by a single-use [`ConsoleTicket`]. The ticket's token is shown
//! once; the store keeps only its hash, with the VM, the user and the kind it is good for
//! and until when. Taking it (opening the console) uses it up.

use chrono::{DateTime, Utc};
use futures::channel::mpsc;
use serde::{Deserialize, Serialize};

use crate::id::{UserId, VmId};

/// Which console.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConsoleKind {
    /// The screen, as RFB (VNC) bytes.
    Vnc,
    /// The first serial port, as terminal bytes.
    Serial,
}

/// An open console: bytes to the guest go into `to_guest`, the guest's come out of
/// `from_guest`. Dropping `to_guest` closes the console; `from_guest` ends when the guest's
/// side closes (the domain stopped, the node went away).
#[derive(Debug)]
pub struct ConsoleStream {
    /// Bytes for the guest (keystrokes, RFB client messages).
    pub to_guest: mpsc::Sender<Vec<u8>>,
    /// Bytes from the guest (terminal output, RFB server messages).
    pub from_guest: mpsc::Receiver<Vec<u8>>,
}

/// What the store keeps of a console token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleTicket {
    /// The SHA-256 of the token, in hex.
    pub token_hash: String,
    /// The VM it opens.
    pub vm_id: VmId,
    /// The user it was given to.
    pub user_id: UserId,
    /// The console it opens.
    pub kind: ConsoleKind,
    /// When it stops being good.
    pub expires_at: DateTime<Utc>,
}

/// The hash a console token is kept and looked up by.
pub fn console_token_hash(token: &str) -> String {
    crate::secret::sha256_hex(token)
}

/// The one answer for a console token that is unknown, used up or expired (every store
/// gives it).
pub fn refused() -> crate::Error {
    crate::Error::Unauthenticated { reason: "the console token is not valid" }
}
