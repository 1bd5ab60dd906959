//! The audit log: who changed what, from where, with what outcome. Every change asked of
//! the API is recorded, refused ones and failed sign-ins included. The entry is written
//! before the change is made and completed with its outcome after, so that no change
//! goes unrecorded: one cut short by a crash keeps outcome 0 (unknown).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{AuditId, TokenId, UserId};

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// The id; entries sort by it in the order they were written.
    pub id: AuditId,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (none for a sign-in that failed).
    pub actor_id: Option<UserId>,
    /// With which token (none for the bootstrap admin token and sign-ins).
    pub token_id: Option<TokenId>,
    /// What: the method and the route (`POST /api/v1/vms/{id}/stop`).
    pub action: String,
    /// The object it named or made, if any (for a sign-in, the email given).
    pub target_id: Option<String>,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    /// The client's address.
    pub client: Option<String>,
    /// The HTTP status answered; 0 while the request runs (or if it never ended).
    pub outcome: u16,
}

/// How a recorded request ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditOutcome {
    /// The HTTP status answered.
    pub status: u16,
    /// The object it made, if the entry named none.
    pub target_id: Option<String>,
    /// The user it turned out to be about (a sign-in), if the entry named none.
    pub actor_id: Option<UserId>,
}

impl AuditEntry {
    /// Sets the outcome, and the object and actor where the entry has none yet.
    pub fn complete(&mut self, outcome: &AuditOutcome) {
        self.outcome = outcome.status;
        if self.target_id.is_none() {
            self.target_id.clone_from(&outcome.target_id);
        }
        if self.actor_id.is_none() {
            self.actor_id = outcome.actor_id;
        }
    }
}

/// Which entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Only this actor's.
    pub actor_id: Option<UserId>,
    /// Only those naming this object.
    pub target_id: Option<String>,
}
