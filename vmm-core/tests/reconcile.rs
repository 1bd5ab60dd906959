//! The reconciler on the fakes: a VM stopped or undefined behind vmm's back is seen with a
//! `vm.drifted` event; a VM a task holds is left alone; orphans are reported by a dry run
//! and removed only when asked; a node that stops answering goes offline and comes back.

use std::collections::HashMap;
use std::sync::Arc;

use futures::executor::block_on;
use vmm_core::memory::{HypervisorCall, InMemoryConnector, InMemoryHypervisor};
use vmm_core::reconcile::ObservedState;
use vmm_core::{
    EventPattern, Hypervisor, NodeSpec, NodeState, NodeUriPolicy, Task, TaskState, VmId, VmSpec, VmState,
    Vmm, VmmConfig,
};

fn service() -> (Vmm, Arc<InMemoryConnector>) {
    let connector = Arc::new(InMemoryConnector::new());
    let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    (Vmm::builder().with_connector(connector.clone()).with_config(config).build(), connector)
}

/// A service with node `n1` and a running VM `web` on it, and that node's fake.
async fn one_running_vm() -> (Vmm, Arc<InMemoryHypervisor>, vmm_core::Vm) {
    let (vmm, connector) = service();
    vmm.create_node(NodeSpec::new("n1", "memory://n1")).await.unwrap();
    let (vm, _) = vmm.create_vm(VmSpec::new("web", 1, 128, 1)).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    let hv = connector.get("memory://n1").unwrap();
    (vmm, hv, vm)
}

async fn drift_events(vmm: &Vmm) -> Vec<vmm_core::Event> {
    let filter = vmm_core::EventFilter {
        types: EventPattern::parse_list("vm.drifted").unwrap(),
        ..Default::default()
    };
    vmm.list_events(&filter, 100).await.unwrap()
}

#[test]
fn drift_is_recorded_once_with_its_event_and_missing_vms_are_kept() {
    block_on(async {
        let (vmm, hv, vm) = one_running_vm().await;

        let report = vmm.reconcile(true).await.unwrap();
        assert!(report.nodes[0].reachable && report.nodes[0].drift.is_empty(), "{report:?}");
        assert_eq!(vmm.get_vm(vm.id).await.unwrap().observed_state, Some(ObservedState::Running));

        // Powered off behind vmm's back.
        hv.stop(vm.id).await.unwrap();
        let report = vmm.reconcile(true).await.unwrap();
        assert_eq!(report.nodes[0].drift[0].observed_state, ObservedState::Stopped);
        let seen = vmm.get_vm(vm.id).await.unwrap();
        assert_eq!((seen.state, seen.observed_state), (VmState::Running, Some(ObservedState::Stopped)));
        assert!(seen.state_reason.unwrap().contains("should be running"));
        vmm.reconcile(true).await.unwrap();
        let events = drift_events(&vmm).await;
        assert_eq!(events.len(), 1, "once per change, not per pass");
        assert_eq!(events[0].data["observed_state"], "stopped");

        // Undefined behind vmm's back: missing, never deleted.
        hv.undefine_domain(vm.id).await.unwrap();
        vmm.reconcile(true).await.unwrap();
        let seen = vmm.get_vm(vm.id).await.unwrap();
        assert_eq!(seen.observed_state, Some(ObservedState::Missing));
        assert_eq!(drift_events(&vmm).await.len(), 2);
    });
}

#[test]
fn a_vm_a_task_holds_is_left_to_its_task() {
    block_on(async {
        let (vmm, connector) = service();
        vmm.create_node(NodeSpec::new("n1", "memory://n1")).await.unwrap();
        let (vm, _) = vmm.create_vm(VmSpec::new("web", 1, 128, 1)).await.unwrap();
        vmm.run_until_idle().await.unwrap();
        connector.get("memory://n1").unwrap().stop(vm.id).await.unwrap();
        let task: Task = vmm.power_vm(vm.id, vmm_core::PowerAction::Stop).await.unwrap();
        let report = vmm.reconcile(true).await.unwrap();
        assert_eq!(report.nodes[0].busy, vec![vm.id]);
        assert!(vmm.get_vm(vm.id).await.unwrap().observed_state.is_none());
        vmm.run_until_idle().await.unwrap();
        assert_eq!(vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        vmm.reconcile(true).await.unwrap();
        let seen = vmm.get_vm(vm.id).await.unwrap();
        assert_eq!(
            (seen.state, seen.observed_state, seen.state_reason),
            (VmState::Stopped, Some(ObservedState::Stopped), None)
        );
        assert!(drift_events(&vmm).await.is_empty());
    });
}

#[test]
fn orphans_are_reported_by_a_dry_run_and_removed_only_when_asked() {
    block_on(async {
        let (vmm, hv, vm) = one_running_vm().await;
        // A domain and a volume of vmm's that belong to no VM.
        let ghost = VmId::new();
        hv.create_volume(ghost, 1).await.unwrap();
        let mut spec = hv.domain_spec(vm.id).unwrap();
        spec.vm_id = ghost;
        hv.define_domain(&spec).await.unwrap();
        let stray = VmId::new();
        hv.create_volume(stray, 1).await.unwrap();

        let task = vmm.reconcile_task(true).await;
        let dry: vmm_core::reconcile::ReconcileReport = serde_json::from_value(task.result.unwrap()).unwrap();
        assert_eq!(dry.nodes[0].orphan_domains, vec![ghost]);
        assert_eq!(dry.nodes[0].orphan_volumes, vec![ghost.volume_name(), stray.volume_name()]);
        assert!(dry.nodes[0].removed.is_empty());
        assert!(hv.domain(ghost).await.unwrap().is_some() && hv.volume(stray).await.unwrap().is_some());

        let task = vmm.reconcile_task(false).await;
        let done: vmm_core::reconcile::ReconcileReport =
            serde_json::from_value(task.result.unwrap()).unwrap();
        assert_eq!(done.nodes[0].removed.len(), 2);
        assert!(hv.domain(ghost).await.unwrap().is_none() && hv.volume(stray).await.unwrap().is_none());
        // The VM of vmm's is untouched.
        assert!(hv.domain(vm.id).await.unwrap().is_some() && hv.volume(vm.id).await.unwrap().is_some());
    });
}

#[test]
fn a_node_that_stops_answering_goes_offline_and_comes_back() {
    block_on(async {
        let (vmm, connector) = service();
        let node = vmm.create_node(NodeSpec::new("n1", "memory://n1")).await.unwrap();
        let hv = connector.get("memory://n1").unwrap();
        let mut failures = HashMap::new();
        hv.fail_always(HypervisorCall::NodeInfo);
        for probe in 1..=3 {
            vmm.probe_nodes(&mut failures).await.unwrap();
            let state = vmm.get_node(node.id).await.unwrap().state;
            assert_eq!(
                state,
                if probe < 3 { NodeState::Online } else { NodeState::Offline },
                "probe {probe}"
            );
        }
        hv.heal();
        vmm.probe_nodes(&mut failures).await.unwrap();
        assert_eq!(vmm.get_node(node.id).await.unwrap().state, NodeState::Online);
        let filter = vmm_core::EventFilter {
            types: EventPattern::parse_list("node.offline,node.online").unwrap(),
            ..Default::default()
        };
        let kinds: Vec<String> =
            vmm.list_events(&filter, 10).await.unwrap().iter().map(|e| e.kind.to_string()).collect();
        assert_eq!(kinds, ["node.offline", "node.online"]);
    });
}

trait ReconcileTask {
    async fn reconcile_task(&self, dry_run: bool) -> Task;
}

impl ReconcileTask for Vmm {
    /// A reconcile queued as the admin would, run to its end.
    async fn reconcile_task(&self, dry_run: bool) -> Task {
        let admin = vmm_core::Actor::system();
        let task = self.reconcile_for(&admin, dry_run).await.unwrap();
        self.run_until_idle().await.unwrap();
        let task = self.get_task(task.id).await.unwrap();
        assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
        task
    }
}

/// Waits (up to ten seconds) until the VM's observed state is `want`.
async fn observed(vmm: &Vmm, vm: VmId, want: ObservedState) {
    for _ in 0..1000 {
        if vmm.get_vm(vm).await.unwrap().observed_state == Some(want) {
            return;
        }
        futures_timer::Delay::new(std::time::Duration::from_millis(10)).await;
    }
    panic!("{vm} was never seen {want:?}");
}

#[test]
fn a_lifecycle_event_brings_a_pass_long_before_the_interval() {
    block_on(async {
        let (vmm, hv, vm) = one_running_vm().await;
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        // An interval no test waits for: only the node's lifecycle event can bring the
        // second pass.
        let reconciler = vmm.run_reconciler(std::time::Duration::from_secs(3600), async {
            let _ = stopped.await;
        });
        let check = async {
            observed(&vmm, vm.id, ObservedState::Running).await;
            hv.stop(vm.id).await.unwrap();
            observed(&vmm, vm.id, ObservedState::Stopped).await;
            assert_eq!(drift_events(&vmm).await.len(), 1);
            stop.send(()).unwrap();
        };
        futures::join!(reconciler, check);
    });
}
