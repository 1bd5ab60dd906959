//! The [`Store`]: persistence, with the atomic operations correctness needs. It is the sum
//! of one sub-trait per area ([`NodeStore`], [`IpamStore`], [`VmStore`], [`TaskStore`]);
//! an implementation implements each, and `Store` comes with them. Each method is one
//! transaction. Implementations: [`InMemoryStore`](crate::memory::InMemoryStore) here,
//! SQLite and PostgreSQL in `vmm-backends`.

mod ipam;
mod nodes;
mod tasks;
mod vms;

use std::fmt::Debug;

pub use ipam::IpamStore;
pub use nodes::NodeStore;
pub use tasks::TaskStore;
pub use vms::{PlacementRequest, VmStore};

/// Persistence for vmm: every area's store. Implemented for anything that implements all
/// of them.
pub trait Store: NodeStore + IpamStore + VmStore + TaskStore + Send + Sync + Debug {}

impl<T: NodeStore + IpamStore + VmStore + TaskStore + Send + Sync + Debug> Store for T {}
