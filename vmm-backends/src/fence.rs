//! Fence agents as commands: vmmd runs the agent a node names (its argument list from the
//! configuration, never through a shell), with the node's id, name and URI in its
//! environment; exit status 0 means the node is off. An agent that runs past its deadline
//! is killed and counts as failed.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use vmm_core::ha::Fencer;
use vmm_core::{Error, Node, Result};

/// Runs the configured fence agents. `Debug` names them only: their arguments may hold
/// a BMC's password.
#[derive(Clone)]
pub struct CommandFencer {
    agents: BTreeMap<String, Vec<String>>,
    timeout: Duration,
}

impl std::fmt::Debug for CommandFencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandFencer")
            .field("agents", &self.agents.keys())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl CommandFencer {
    /// Agents by name, each a command and its arguments; each may run for `timeout`.
    pub fn new(agents: BTreeMap<String, Vec<String>>, timeout: Duration) -> Self {
        Self { agents, timeout }
    }
}

#[async_trait]
impl Fencer for CommandFencer {
    async fn fence(&self, agent: &str, node: &Node) -> Result<()> {
        let Some((program, args)) = self.agents.get(agent).and_then(|argv| argv.split_first()) else {
            return Err(Error::invalid("fence", format!("no fence agent named {agent:?} is configured")));
        };
        let what = format!("fence agent {agent}");
        let child = tokio::process::Command::new(program)
            .args(args)
            .env("VMM_NODE_ID", node.id.to_string())
            .env("VMM_NODE_NAME", &node.name)
            .env("VMM_NODE_URI", &node.uri)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(self.timeout, child).await {
            Err(_) => return Err(Error::unavailable(what, format!("ran past {}s", self.timeout.as_secs()))),
            Ok(Err(e)) => return Err(Error::backend(what, e)),
            Ok(Ok(out)) => out,
        };
        if out.status.success() {
            tracing::info!(node = %node.name, agent, "fence agent says the node is off");
            Ok(())
        } else {
            // Its output stays out of errors and logs: an agent may echo its arguments.
            Err(Error::unavailable(what, format!("exited {}", out.status)))
        }
    }
}
