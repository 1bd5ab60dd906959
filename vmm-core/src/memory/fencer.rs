//! [`InMemoryFencer`]: fence agents for tests, which power the fake nodes off.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{lock, InMemoryHypervisor};
use crate::error::{Error, Result};
use crate::ha::Fencer;
use crate::node::Node;

/// Fences fake nodes: a fence powers the node's [`InMemoryHypervisor`] off. A test may
/// make an agent fail a number of times first.
#[derive(Debug, Default)]
pub struct InMemoryFencer {
    nodes: Mutex<HashMap<String, Arc<InMemoryHypervisor>>>,
    failures: Mutex<BTreeMap<String, u32>>,
    fenced: Mutex<Vec<String>>,
}

impl InMemoryFencer {
    /// A fencer that knows no node yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node named `name` is `hv`.
    pub fn add(&self, name: &str, hv: Arc<InMemoryHypervisor>) {
        lock(&self.nodes).insert(name.to_owned(), hv);
    }

    /// The next `times` fences with `agent` fail.
    pub fn fail(&self, agent: &str, times: u32) {
        lock(&self.failures).insert(agent.to_owned(), times);
    }

    /// The nodes fenced so far, by name, in order.
    pub fn fenced(&self) -> Vec<String> {
        lock(&self.fenced).clone()
    }
}

#[async_trait]
impl Fencer for InMemoryFencer {
    async fn fence(&self, agent: &str, node: &Node) -> Result<()> {
        if let Some(left) = lock(&self.failures).get_mut(agent).filter(|n| **n > 0) {
            *left -= 1;
            return Err(Error::unavailable(format!("fence agent {agent}"), "the BMC did not answer"));
        }
        let hv = lock(&self.nodes).get(&node.name).cloned();
        let Some(hv) = hv else {
            return Err(Error::invalid("fence", format!("no fake node named {}", node.name)));
        };
        hv.power_off();
        lock(&self.fenced).push(node.name.clone());
        Ok(())
    }
}
