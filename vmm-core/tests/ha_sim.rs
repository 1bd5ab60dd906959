//! HA, simulated in the style of Proxmox's HA simulator: three nodes of in-memory fakes on
//! a manual clock, scripted failures (a power loss, a failing fence agent, network splits,
//! nodes coming back), one HA pass every 5 simulated seconds, and the event log compared
//! with a golden file (`tests/golden/ha_sim.log`; `UPDATE_GOLDEN=1` rewrites it after a
//! change that is meant). After every pass the test also checks the rule that matters
//! most: no VM ever runs on two nodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::executor::block_on;
use vmm_core::ha::{Fence, NodeHealth};
use vmm_core::memory::{InMemoryConnector, InMemoryFencer, InMemoryHypervisor, InMemoryStore};
use vmm_core::{
    Clock, EventFilter, ManualClock, NodeSpec, NodeUriPolicy, VmId, VmSpec, VmState, Vmm, VmmConfig,
};

const TICK: i64 = 5;

struct Sim {
    vmm: Vmm,
    clock: Arc<ManualClock>,
    start: DateTime<Utc>,
    nodes: Vec<(String, vmm_core::NodeId, Arc<InMemoryHypervisor>)>,
    vms: HashMap<VmId, String>,
    log: Vec<String>,
    seen: u64,
}

impl Sim {
    fn new() -> Self {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let connector = Arc::new(InMemoryConnector::new());
        let fencer = Arc::new(InMemoryFencer::new());
        let config = VmmConfig {
            worker_id: "sim".into(),
            node_uris: NodeUriPolicy::for_tests(),
            shared_storage: true,
            node_lease: Duration::from_secs(30),
            fence_agents: vmm_core::ha::FenceAgents([("ipmi".to_owned(), vec!["ipmi".to_owned()])].into()),
            ..VmmConfig::default()
        };
        let vmm = Vmm::builder()
            .with_store(Arc::new(InMemoryStore::with_clock(clock.clone())))
            .with_connector(connector.clone())
            .with_clock(clock.clone())
            .with_fencer(fencer.clone())
            .with_config(config)
            .build();
        let mut nodes = Vec::new();
        // Sizes differ so that placement's choice never rests on a tie.
        for (name, cpus, fence) in [
            ("n1", 16, Fence::Manual),
            ("n2", 12, Fence::Agent { agent: "ipmi".into() }),
            ("n3", 8, Fence::Manual),
        ] {
            let uri = format!("memory://{name}?cpus={cpus}&memory_mib=32768&storage_gib=500");
            let spec = NodeSpec { fence, ..NodeSpec::new(name, &uri) };
            let node = block_on(vmm.create_node(spec)).unwrap();
            let hv = connector.get(&uri).unwrap();
            fencer.add(name, hv.clone());
            nodes.push((name.to_owned(), node.id, hv));
        }
        fencer.fail("ipmi", 1);
        Self { vmm, clock, start, nodes, vms: HashMap::new(), log: Vec::new(), seen: 0 }
    }

    fn hv(&self, name: &str) -> &Arc<InMemoryHypervisor> {
        &self.nodes.iter().find(|n| n.0 == name).unwrap().2
    }

    fn node_name(&self, id: vmm_core::NodeId) -> &str {
        &self.nodes.iter().find(|n| n.1 == id).unwrap().0
    }

    /// A VM on `node`, its disk on the shared storage (every node sees it).
    fn vm(&mut self, name: &str, node: &str, ha: bool, start: bool) -> VmId {
        let node_id = self.nodes.iter().find(|n| n.0 == node).unwrap().1;
        let spec = VmSpec { node_id: Some(node_id), ha, start, ..VmSpec::new(name, 2, 2048, 20) };
        let (vm, _) = block_on(self.vmm.create_vm(spec)).unwrap();
        block_on(self.vmm.run_until_idle()).unwrap();
        for other in &self.nodes {
            if other.0 != node {
                assert!(self.hv(node).share_volume_with(&other.2, vm.id));
            }
        }
        self.vms.insert(vm.id, name.to_owned());
        vm.id
    }

    /// Runs HA passes (and the tasks they queue) until `until` seconds, logging events.
    fn run_to(&mut self, until: i64) {
        loop {
            let now = (self.clock.now() - self.start).num_seconds();
            if now >= until {
                return;
            }
            self.clock.advance(chrono::Duration::seconds(TICK));
            block_on(self.vmm.ha_tick()).unwrap();
            block_on(self.vmm.run_until_idle()).unwrap();
            self.record();
            self.check_one_copy();
        }
    }

    fn record(&mut self) {
        let filter = EventFilter { after: self.seen, ..EventFilter::default() };
        let events = block_on(self.vmm.list_events(&filter, 1000)).unwrap();
        for e in events {
            self.seen = e.id;
            let t = (e.at - self.start).num_seconds();
            let kind = e.kind.to_string();
            let line = if kind.starts_with("node.") && !matches!(kind.as_str(), "node.created") {
                let extra = match kind.as_str() {
                    "node.fenced" | "node.fencing" => {
                        format!(" by {}", e.data["by"].as_str().or(e.data["agent"].as_str()).unwrap_or("?"))
                    }
                    "node.lease_expired" => format!(" holding {}", e.data["ha_vms"]),
                    _ => String::new(),
                };
                format!("{t:>4}s {kind} {}{extra}", self.node_name(e.node_id.unwrap()))
            } else if matches!(kind.as_str(), "vm.migrated" | "vm.recovered") {
                let vm = e.vm_id.and_then(|v| self.vms.get(&v)).cloned().unwrap_or_default();
                let on = e.node_id.map(|n| format!(" on {}", self.node_name(n))).unwrap_or_default();
                format!("{t:>4}s {kind} {vm}{on}")
            } else if kind == "task.failed" {
                format!("{t:>4}s {kind} {}", e.data["kind"].as_str().unwrap_or("?"))
            } else {
                continue;
            };
            self.log.push(line);
        }
    }

    /// The rule above all: a VM runs on one node at most.
    fn check_one_copy(&self) {
        for (vm, name) in &self.vms {
            let running: Vec<&str> =
                self.nodes.iter().filter(|n| n.2.runs(*vm)).map(|n| n.0.as_str()).collect();
            assert!(running.len() <= 1, "{name} runs on {running:?}");
        }
    }

    fn placed(&self, vm: VmId) -> (String, VmState, bool) {
        let got = block_on(self.vmm.get_vm(vm)).unwrap();
        let node = self.node_name(got.node_id).to_owned();
        let runs = self.hv(&node).runs(vm);
        (node, got.state, runs)
    }

    fn note(&mut self, what: &str) {
        let t = (self.clock.now() - self.start).num_seconds();
        self.log.push(format!("{t:>4}s -- {what}"));
    }
}

#[test]
fn ha_rules_over_scripted_failures_match_the_golden_log() {
    let mut sim = Sim::new();
    let web = sim.vm("web", "n2", true, true);
    let db = sim.vm("db", "n2", true, false);
    let batch = sim.vm("batch", "n2", false, true);
    let app = sim.vm("app", "n3", true, true);
    sim.run_to(30);

    // n2 loses power. Its lease runs out; its agent fails once, then fences it; its HA
    // VMs come up elsewhere (the stopped one defined, not started); the other stays.
    sim.note("n2 loses power");
    sim.hv("n2").power_off();
    sim.run_to(120);
    assert_eq!(sim.placed(web), ("n1".into(), VmState::Running, true));
    assert_eq!(sim.placed(db), ("n1".into(), VmState::Stopped, false));
    assert_eq!(sim.placed(batch).0, "n2", "a VM without HA waits for its node");

    // n3 is cut off, its VM still running there. It has no agent: nothing moves until an
    // operator confirms, however long it takes. Then the split mends: n3 is alive again.
    sim.note("n3 is cut off");
    sim.hv("n3").cut();
    sim.run_to(240);
    assert_eq!(sim.placed(app), ("n3".into(), VmState::Running, true), "never started twice");
    let lease = block_on(sim.vmm.node_lease(sim.nodes[2].1)).unwrap().unwrap();
    assert_eq!(lease.health, NodeHealth::Expired);
    sim.note("n3's link mends");
    sim.hv("n3").reconnect();
    sim.run_to(260);
    assert_eq!(sim.placed(app), ("n3".into(), VmState::Running, true));

    // n2 is powered on again: the stale definitions of the VMs that left go.
    sim.note("n2 is powered on");
    sim.hv("n2").reconnect();
    sim.run_to(280);
    let n2 = sim.hv("n2").clone();
    assert!(n2.domain_spec(web).is_none() && n2.domain_spec(db).is_none(), "stale definitions removed");
    assert!(n2.domain_spec(batch).is_some(), "its own VM stays");

    // n3 is cut again, and an operator confirms it is off (too early is refused).
    sim.note("n3 is cut off again");
    sim.hv("n3").cut();
    assert!(block_on(sim.vmm.confirm_fenced(sim.nodes[2].1)).is_err(), "its lease still holds");
    sim.run_to(330);
    sim.note("the operator powers n3 off and confirms");
    sim.hv("n3").power_off();
    block_on(sim.vmm.confirm_fenced(sim.nodes[2].1)).unwrap();
    sim.record();
    sim.run_to(360);
    let (node, state, runs) = sim.placed(app);
    assert!(node != "n3" && state == VmState::Running && runs, "{node} {state} {runs}");

    // vmmd itself cut off from every node: it fences nothing.
    sim.note("every node is cut off");
    for n in ["n1", "n2", "n3"] {
        sim.hv(n).cut();
    }
    sim.run_to(480);

    let log = sim.log.join("\n") + "\n";
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ha_sim.log");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &log).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(log, want, "the HA event log differs from {} (UPDATE_GOLDEN=1 rewrites it)", golden.display());
}
