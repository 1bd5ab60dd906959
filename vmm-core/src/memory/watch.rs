//! Lifecycle watches of an [`InMemoryHypervisor`](super::InMemoryHypervisor): callbacks
//! called on every change of a domain, each until its watch is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::lock;
use crate::hypervisor::{LifecycleCallback, LifecycleWatch};

/// The callbacks of live watches, by watch number.
#[derive(Clone, Default)]
pub(super) struct Watchers(Arc<Mutex<BTreeMap<u64, LifecycleCallback>>>);

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} lifecycle watches", lock(&self.0).len())
    }
}

impl Watchers {
    /// A new watch calling `wake`.
    pub(super) fn add(&self, wake: LifecycleCallback) -> MemoryWatch {
        let mut watchers = lock(&self.0);
        let number = watchers.keys().next_back().map_or(0, |n| n + 1);
        watchers.insert(number, wake);
        MemoryWatch { watchers: self.clone(), number }
    }

    /// Tells every watch that a domain changed (outside the lock: a callback may add or
    /// drop watches).
    pub(super) fn wake_all(&self) {
        let callbacks: Vec<LifecycleCallback> = lock(&self.0).values().cloned().collect();
        for wake in callbacks {
            wake();
        }
    }
}

/// A watch of an in-memory node's domains; dropping it ends it.
pub(super) struct MemoryWatch {
    watchers: Watchers,
    number: u64,
}

impl std::fmt::Debug for MemoryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryWatch").field("number", &self.number).finish()
    }
}

impl LifecycleWatch for MemoryWatch {
    fn is_alive(&self) -> bool {
        true
    }
}

impl Drop for MemoryWatch {
    fn drop(&mut self) {
        lock(&self.watchers.0).remove(&self.number);
    }
}
