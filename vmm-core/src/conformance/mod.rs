//! One conformance suite per trait (feature `conformance`). Every implementation runs the
//! same suite: the in-memory fakes here, libvirt and SQL in `vmm-backends`. A failed check
//! panics with what it saw.

pub mod backups;
pub mod events;
pub mod hypervisor;
pub mod idempotency;
pub mod observe;
pub mod placement;
pub mod store;
pub mod users;
