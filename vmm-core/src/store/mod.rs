//! The [`Store`]: persistence, with the atomic operations correctness needs. It is the sum
//! of one sub-trait per area ([`NodeStore`], [`IpamStore`], [`VmStore`], [`TaskStore`],
//! [`ImageStore`], [`RecipeStore`], [`PlacementGroupStore`], [`MigrationStore`], [`NetworkStore`], [`UserStore`], [`EventStore`], [`IdempotencyStore`], [`BackupStore`]…);
//! an implementation implements each, and `Store` comes with them. Each method is one
//! transaction. Implementations: [`InMemoryStore`](crate::memory::InMemoryStore) here,
//! SQLite and PostgreSQL in `vmm-backends`.

mod audit;
mod backups;
mod consoles;
mod events;
mod ha;
mod idempotency;
mod images;
mod ipam;
mod migrations;
mod networks;
mod nodes;
mod placement_groups;
mod recipes;
mod singletons;
mod snapshots;
mod ssh_keys;
mod tasks;
mod usage;
mod users;
mod vms;
mod webhooks;

use std::fmt::Debug;

pub use audit::AuditStore;
pub use backups::BackupStore;
pub use consoles::ConsoleStore;
pub use events::EventStore;
pub use ha::HaStore;
pub use idempotency::IdempotencyStore;
pub use images::{ImageStore, NodeImage};
pub use ipam::IpamStore;
pub use migrations::{MigrationRequest, MigrationStore};
pub use networks::NetworkStore;
pub use nodes::NodeStore;
pub use placement_groups::PlacementGroupStore;
pub use recipes::RecipeStore;
pub use singletons::SingletonStore;
pub use snapshots::SnapshotStore;
pub use ssh_keys::SshKeyStore;
pub use tasks::{Finished, TaskStore};
pub use usage::UsageStore;
pub use users::{StoredToken, UserStore};
pub use vms::{PlacementRequest, VmFilter, VmGuest, VmStore};
pub use webhooks::WebhookStore;

/// Persistence for vmm: every area's store. Implemented for anything that implements all
/// of them.
pub trait Store:
    NodeStore
    + IpamStore
    + VmStore
    + TaskStore
    + ImageStore
    + RecipeStore
    + PlacementGroupStore
    + MigrationStore
    + HaStore
    + NetworkStore
    + UserStore
    + SshKeyStore
    + AuditStore
    + EventStore
    + IdempotencyStore
    + WebhookStore
    + SingletonStore
    + ConsoleStore
    + UsageStore
    + BackupStore
    + SnapshotStore
    + Send
    + Sync
    + Debug
{
}

impl<T> Store for T where
    T: NodeStore
        + IpamStore
        + VmStore
        + TaskStore
        + ImageStore
        + RecipeStore
        + PlacementGroupStore
        + MigrationStore
        + HaStore
        + NetworkStore
        + UserStore
        + SshKeyStore
        + AuditStore
        + EventStore
        + IdempotencyStore
        + WebhookStore
        + SingletonStore
        + ConsoleStore
        + UsageStore
        + BackupStore
        + SnapshotStore
        + Send
        + Sync
        + Debug
{
}
