//! The task engine under crashes, hangs, lapsed leases and cancels, on the in-memory fakes:
//! the regressions of the foundation issue (each failed on the code before it).

use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use futures::future::{select, Either};
use futures_timer::Delay;
use vmm_core::memory::{Failure, HypervisorCall, InMemoryConnector, InMemoryHypervisor, InMemoryStore};
use vmm_core::{
    Demand, Error, Hypervisor, ManualClock, NodeSpec, NodeUriPolicy, PageRequest, PowerState, TaskDeadlines,
    TaskState, TaskStore, Usage, Vm, VmPatch, VmSpec, VmState, VmStore, Vmm, VmmConfig,
};

const NODE_URI: &str = "memory://n1?cpus=4&memory_mib=8192&storage_gib=100";

struct Fixture {
    vmm: Vmm,
    store: Arc<InMemoryStore>,
    clock: Arc<ManualClock>,
    hv: Arc<InMemoryHypervisor>,
}

async fn fixture_with(config: VmmConfig) -> Fixture {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
    let connector = Arc::new(InMemoryConnector::new());
    let config = VmmConfig { worker_id: "w".into(), node_uris: NodeUriPolicy::for_tests(), ..config };
    let vmm = Vmm::builder()
        .with_store(store.clone())
        .with_connector(connector.clone())
        .with_clock(clock.clone())
        .with_config(config)
        .build();
    vmm.create_node(NodeSpec::new("n1", NODE_URI)).await.unwrap();
    let hv = connector.get(NODE_URI).unwrap();
    Fixture { vmm, store, clock, hv }
}

async fn fixture() -> Fixture {
    fixture_with(VmmConfig::default()).await
}

impl Fixture {
    /// A VM, created and running.
    async fn running_vm(&self, disk_gib: u64) -> Vm {
        let (vm, _) = self.vmm.create_vm(VmSpec::new("a", 1, 256, disk_gib)).await.unwrap();
        self.vmm.run_until_idle().await.unwrap();
        self.vmm.get_vm(vm.id).await.unwrap()
    }

    /// A worker claims the next task and is never heard from again.
    async fn claim_and_die(&self) {
        let now = vmm_core::Clock::now(self.clock.as_ref());
        self.store.claim_task("dead", now, Duration::from_secs(30)).await.unwrap().expect("a task");
    }

    /// Its lease runs out.
    fn lapse(&self) {
        self.clock.advance(chrono::Duration::seconds(31));
    }

    /// Runs the next task until it ends, or "crashes" the worker after `after` by dropping
    /// the run wherever it waits.
    async fn run_or_crash_after(&self, after: Duration) {
        let run = std::pin::pin!(self.vmm.run_next_task());
        if let Either::Right(_) = select(run, Delay::new(after)).await {
            // The worker died mid-task; its lease stays until it expires.
        }
    }
}

#[test]
fn a_resumed_resize_grows_the_disk_to_the_size_asked_for() {
    block_on(async {
        let f = fixture().await;
        let vm = f.running_vm(10).await;
        let t = f.vmm.update_vm(vm.id, VmPatch { disk_gib: Some(50), ..Default::default() }).await.unwrap();
        // The first run reserves the capacity, then its worker dies before the disk grows.
        f.claim_and_die().await;
        f.store.resize_vm(vm.id, Demand { disk_gib: 50, ..vm.demand() }).await.unwrap();
        f.lapse();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(t.id).await.unwrap().state, TaskState::Succeeded);
        assert_eq!(f.hv.volume(vm.id).await.unwrap().unwrap().capacity_gib, 50, "the disk grew");
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().disk_gib, 50);
    });
}

#[test]
fn a_vm_left_deleting_can_be_deleted_again() {
    block_on(async {
        let f = fixture().await;
        let mut vm = f.running_vm(1).await;
        vm.state = VmState::Deleting; // a delete whose last step failed
        f.store.update_vm(&vm).await.unwrap();
        let t = f.vmm.delete_vm(vm.id).await.expect("delete is retryable");
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(t.id).await.unwrap().state, TaskState::Succeeded);
        assert!(matches!(f.vmm.get_vm(vm.id).await, Err(Error::VmNotFound { .. })));
        assert_eq!(f.hv.domain_count() + f.hv.volume_count(), 0);
    });
}

#[test]
fn a_recovered_power_task_whose_work_was_done_succeeds_without_redoing_it() {
    block_on(async {
        let f = fixture().await;
        let vm = f.running_vm(1).await;
        let t = f.vmm.stop_vm(vm.id).await.unwrap();
        // The first run stopped the domain and recorded the state, then died before saving.
        f.claim_and_die().await;
        f.hv.stop(vm.id).await.unwrap();
        f.store.update_vm(&Vm { state: VmState::Stopped, ..vm.clone() }).await.unwrap();
        f.lapse();
        f.vmm.run_until_idle().await.unwrap();
        let t = f.vmm.get_task(t.id).await.unwrap();
        assert_eq!(t.state, TaskState::Succeeded, "{:?}", t.error);
        assert_eq!(f.hv.count(HypervisorCall::Stop), 1, "stopped once");
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().state, VmState::Stopped);
    });
}

#[test]
fn a_recovered_reboot_reboots_once() {
    block_on(async {
        let f = fixture().await;
        let vm = f.running_vm(1).await;
        let t = f.vmm.reboot_vm(vm.id).await.unwrap();
        // The reboot reaches the node, then the worker dies before hearing back.
        f.hv.fail_next_as(HypervisorCall::Reboot, Failure::HangAfter);
        f.run_or_crash_after(Duration::from_millis(200)).await;
        assert_eq!(f.hv.count(HypervisorCall::Reboot), 1);
        assert_eq!(f.vmm.get_task(t.id).await.unwrap().state, TaskState::Running);
        f.lapse();
        f.vmm.run_until_idle().await.unwrap();
        let t = f.vmm.get_task(t.id).await.unwrap();
        assert_eq!((t.state, t.attempts), (TaskState::Succeeded, 2), "{:?}", t.error);
        assert_eq!(f.hv.count(HypervisorCall::Reboot), 1, "rebooted once, not twice");
    });
}

#[test]
fn every_task_kind_observes_cancel_at_its_step_boundaries() {
    block_on(async {
        let f = fixture().await;
        let vm = f.running_vm(10).await;
        let usage = f.vmm.get_node(vm.node_id).await.unwrap().allocated;

        let stop = f.vmm.stop_vm(vm.id).await.unwrap();
        f.claim_and_die().await;
        f.vmm.cancel_task(stop.id).await.unwrap();
        f.lapse();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(stop.id).await.unwrap().state, TaskState::Cancelled);
        assert_eq!(f.hv.domain(vm.id).await.unwrap().unwrap().state, PowerState::Running, "not stopped");

        let grow = VmPatch { vcpus: Some(2), memory_mib: Some(512), ..Default::default() };
        let update = f.vmm.update_vm(vm.id, grow).await.unwrap();
        f.claim_and_die().await;
        f.vmm.cancel_task(update.id).await.unwrap();
        f.lapse();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(update.id).await.unwrap().state, TaskState::Cancelled);
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().vcpus, 1);
        assert_eq!(f.vmm.get_node(vm.node_id).await.unwrap().allocated, usage, "nothing stays reserved");

        let delete = f.vmm.delete_vm(vm.id).await.unwrap();
        f.claim_and_die().await;
        f.vmm.cancel_task(delete.id).await.unwrap();
        f.lapse();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(delete.id).await.unwrap().state, TaskState::Cancelled);
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().state, VmState::Running, "the VM is still there");
    });
}

#[test]
fn a_node_that_stops_answering_fails_the_task_at_its_deadline_and_undoes_it() {
    block_on(async {
        let config =
            VmmConfig { deadlines: TaskDeadlines::all(Duration::from_millis(300)), ..VmmConfig::default() };
        let f = fixture_with(config).await;
        f.hv.fail_next_as(HypervisorCall::DefineDomain, Failure::Hang);
        let (vm, t) = f.vmm.create_vm(VmSpec::new("a", 1, 256, 1)).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        let t = f.vmm.get_task(t.id).await.unwrap();
        assert_eq!((t.state, t.error_code.as_deref()), (TaskState::Failed, Some("timeout")), "{:?}", t.error);
        assert!(t.lease.is_none(), "no lease renewed forever");
        assert!(matches!(f.vmm.get_vm(vm.id).await, Err(Error::VmNotFound { .. })), "undone");
        assert_eq!(f.hv.volume_count(), 0, "the disk made before the hang is gone");
        assert_eq!(f.vmm.get_node(vm.node_id).await.unwrap().allocated, Usage::default());

        // Power tasks have deadlines too; the VM then shows what the node shows.
        let vm = f.running_vm(1).await;
        f.hv.fail_next_as(HypervisorCall::Suspend, Failure::Hang);
        let t = f.vmm.suspend_vm(vm.id).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(t.id).await.unwrap().error_code.as_deref(), Some("timeout"));
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().state, VmState::Running);
    });
}

#[test]
fn max_attempts_applies_to_every_kind() {
    block_on(async {
        let f = fixture().await;
        let vm = f.running_vm(1).await;
        let t = f.vmm.suspend_vm(vm.id).await.unwrap();
        for _ in 0..3 {
            f.claim_and_die().await;
            f.lapse();
        }
        f.vmm.run_until_idle().await.unwrap();
        let t = f.vmm.get_task(t.id).await.unwrap();
        assert_eq!((t.state, t.attempts), (TaskState::Failed, 4));
        assert!(t.error.unwrap().contains("gave up after 3 attempts"));
        assert_eq!(f.hv.count(HypervisorCall::Suspend), 0, "never acted on");
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().state, VmState::Running);
    });
}

#[test]
fn one_host_cannot_be_registered_twice() {
    block_on(async {
        let f = fixture().await;
        assert!(matches!(
            f.vmm.create_node(NodeSpec::new("n2", NODE_URI)).await,
            Err(Error::Conflict { .. })
        ));
        assert_eq!(f.vmm.list_nodes(&PageRequest::default()).await.unwrap().items.len(), 1);
    });
}

#[test]
fn fake_and_test_nodes_need_the_operator() {
    block_on(async {
        let vmm = Vmm::builder().build();
        for uri in ["memory://n", "test:///default"] {
            match vmm.create_node(NodeSpec::new("n", uri)).await {
                Err(Error::Invalid { field, reason }) => {
                    assert_eq!(field, "uri");
                    assert!(reason.contains("test nodes"), "{reason}");
                }
                other => panic!("{uri}: {other:?}"),
            }
        }
        assert!(Vmm::in_memory().create_node(NodeSpec::new("n", "memory://n")).await.is_ok());
    });
}
