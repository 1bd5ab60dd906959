//! The conformance suites on the in-memory fakes.

use std::sync::Arc;

use futures::executor::block_on;
use vmm_core::conformance;
use vmm_core::memory::{InMemoryHypervisor, InMemoryStore};
use vmm_core::{Store, VirtType};

#[test]
fn memory_store_passes_the_store_suite() {
    block_on(conformance::store::run(|| async { Arc::new(InMemoryStore::new()) as Arc<dyn Store> }));
}

#[test]
fn memory_hypervisor_passes_the_hypervisor_suite() {
    block_on(conformance::hypervisor::run(&InMemoryHypervisor::new("memory://suite"), VirtType::Kvm));
}

#[test]
fn memory_target_passes_the_backup_target_suite() {
    block_on(conformance::backups::backup_target(&vmm_core::memory::InMemoryTarget::new("suite")));
}
