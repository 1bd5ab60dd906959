//! vmm-backends: the real implementations of vmm-core's traits.
//!
//! Planned implementations (the backends issue): a libvirt [`Hypervisor`] (feature
//! `libvirt`) and a sqlx [`Store`] for SQLite and PostgreSQL (features `sqlite`, `postgres`),
//! opened by URI. Until then this crate re-exports the in-memory ones.
//!
//! [`Hypervisor`]: vmm_core::Hypervisor
//! [`Store`]: vmm_core::Store

pub use vmm_core::memory::{MemoryConnector, MemoryStore};
