//! The Vmm service on the in-memory fakes: every action, the create saga with a failure
//! injected at each step (and nothing leaked after), crash recovery through expired leases,
//! cancellation, conflicts, and concurrent use.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use futures::channel::oneshot;
use futures::executor::block_on;
use one_writer::OneWriter;
use vmm_core::memory::{HypervisorCall, InMemoryConnector, InMemoryHypervisor, InMemoryStore};
use vmm_core::{
    Error, Hypervisor, IpPool, IpPoolSpec, ManualClock, Node, NodePatch, NodeSpec, NodeState, NodeUriPolicy,
    PageRequest, PowerAction, PowerState, TaskFilter, TaskState, TaskStore, Usage, VmAction, VmPatch, VmSpec,
    VmState, Vmm, VmmConfig,
};

#[path = "support/one_writer.rs"]
mod one_writer;

struct Fixture {
    vmm: Vmm,
    store: Arc<InMemoryStore>,
    clock: Arc<ManualClock>,
    hv: Arc<InMemoryHypervisor>,
    node: Node,
    pool: IpPool,
}

const NODE_URI: &str = "memory://n1?cpus=4&memory_mib=8192&storage_gib=100";

async fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
    let connector = Arc::new(InMemoryConnector::new());
    let config = VmmConfig {
        worker_id: "test-worker".into(),
        node_uris: NodeUriPolicy::for_tests(),
        ..VmmConfig::default()
    };
    let vmm = Vmm::builder()
        .with_store(store.clone())
        .with_connector(connector.clone())
        .with_clock(clock.clone())
        .with_config(config)
        .build();
    let node = vmm.create_node(NodeSpec::new("n1", NODE_URI)).await.unwrap();
    let hv = connector.get(NODE_URI).unwrap();
    let pool = vmm.create_ip_pool(IpPoolSpec::new("public", "192.0.2.0/28")).await.unwrap();
    Fixture { vmm, store, clock, hv, node, pool }
}

impl Fixture {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        vmm_core::Clock::now(self.clock.as_ref())
    }

    fn spec(&self) -> VmSpec {
        VmSpec { ip_pool_id: Some(self.pool.id), ..VmSpec::new("web <1>", 1, 1024, 10) }
    }

    /// Claims the next task as a worker that will never finish it.
    async fn claim_and_die(&self, worker: &str) -> vmm_core::Task {
        self.store.claim_task(worker, self.now(), Duration::from_secs(30)).await.unwrap().expect("a task")
    }

    /// Nothing of any VM is left: no domain, no volume, no lease, no VM, no active task,
    /// no capacity taken.
    async fn assert_nothing_leaked(&self) {
        assert_eq!(self.hv.domain_count(), 0, "domains left");
        assert_eq!(self.hv.volume_count(), 0, "volumes left");
        let leases = self.vmm.list_leases(self.pool.id, &PageRequest::default()).await.unwrap();
        assert!(leases.items.is_empty(), "leases left: {:?}", leases.items);
        assert!(
            self.vmm
                .list_vms(&vmm_core::VmFilter::default(), &PageRequest::default())
                .await
                .unwrap()
                .items
                .is_empty(),
            "VMs left"
        );
        for state in [TaskState::Queued, TaskState::Running] {
            let filter = TaskFilter { state: Some(state), ..TaskFilter::default() };
            let page = self.vmm.list_tasks(&filter, &PageRequest::default()).await.unwrap();
            assert!(page.items.is_empty(), "{state} tasks left");
        }
        assert_eq!(self.vmm.get_node(self.node.id).await.unwrap().allocated, Usage::default());
    }
}

#[test]
fn a_vm_lives_through_every_action() {
    block_on(async {
        let f = fixture().await;
        let (vm, task) = f.vmm.create_vm(f.spec()).await.unwrap();
        assert_eq!((vm.state, vm.node_id), (VmState::Creating, f.node.id));
        assert_eq!(vm.addresses, ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(f.vmm.run_until_idle().await.unwrap(), 1);
        let task = f.vmm.get_task(task.id).await.unwrap();
        assert_eq!((task.state, task.progress, task.attempts), (TaskState::Succeeded, 100, 1));
        assert!(task.finished_at.is_some() && task.lease.is_none());
        assert!(task.steps.iter().any(|s| s.message.contains("defining")));
        let domain = f.hv.domain(vm.id).await.unwrap().unwrap();
        assert_eq!((domain.state, domain.title.as_str()), (PowerState::Running, "web <1>"));

        let expect = [
            (PowerAction::Suspend, VmState::Paused, PowerState::Paused),
            (PowerAction::Resume, VmState::Running, PowerState::Running),
            (PowerAction::Reboot, VmState::Running, PowerState::Running),
            (PowerAction::Shutdown, VmState::Stopped, PowerState::Shutoff),
            (PowerAction::Start, VmState::Running, PowerState::Running),
            (PowerAction::Stop, VmState::Stopped, PowerState::Shutoff),
        ];
        for (action, state, power) in expect {
            let t = f.vmm.power_vm(vm.id, action).await.unwrap();
            f.vmm.run_until_idle().await.unwrap();
            assert_eq!(f.vmm.get_task(t.id).await.unwrap().state, TaskState::Succeeded, "{action}");
            assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().state, state, "{action}");
            assert_eq!(f.hv.domain(vm.id).await.unwrap().unwrap().state, power, "{action}");
        }

        let patch = VmPatch {
            name: Some("web-2".into()),
            vcpus: Some(2),
            memory_mib: Some(2048),
            disk_gib: Some(20),
            owner_id: None,
        };
        let t = f.vmm.update_vm(vm.id, patch).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(t.id).await.unwrap().state, TaskState::Succeeded);
        let got = f.vmm.get_vm(vm.id).await.unwrap();
        assert_eq!((got.name.as_str(), got.vcpus, got.memory_mib, got.disk_gib), ("web-2", 2, 2048, 20));
        let d = f.hv.domain(vm.id).await.unwrap().unwrap();
        assert_eq!((d.title.as_str(), d.vcpus, d.memory_mib), ("web-2", 2, 2048));
        assert_eq!(f.hv.volume(vm.id).await.unwrap().unwrap().capacity_gib, 20);
        let usage = f.vmm.get_node(f.node.id).await.unwrap().allocated;
        assert_eq!((usage.vms, usage.vcpus, usage.memory_mib, usage.storage_gib), (1, 2, 2048, 20));

        let t = f.vmm.delete_vm(vm.id).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(t.id).await.unwrap().state, TaskState::Succeeded);
        assert!(matches!(f.vmm.get_vm(vm.id).await, Err(Error::VmNotFound { .. })));
        f.assert_nothing_leaked().await;
    });
}

#[test]
fn a_failure_at_any_create_step_leaves_nothing_behind() {
    let steps = [
        HypervisorCall::Volume,
        HypervisorCall::CreateVolume,
        HypervisorCall::DefineDomain,
        HypervisorCall::Domain,
        HypervisorCall::Start,
    ];
    for step in steps {
        block_on(async {
            let f = fixture().await;
            f.hv.fail_next(step);
            let (vm, task) = f.vmm.create_vm(f.spec()).await.unwrap();
            f.vmm.run_until_idle().await.unwrap();
            let task = f.vmm.get_task(task.id).await.unwrap();
            assert_eq!(
                (task.state, task.error_code.as_deref()),
                (TaskState::Failed, Some("internal")),
                "{step:?}"
            );
            let error = task.error.unwrap();
            assert!(
                error.contains("failed") && !error.contains("injected"),
                "the cause stays in the log: {error}"
            );
            assert!(f.hv.calls().contains(&step), "{step:?} was reached");
            assert!(matches!(f.vmm.get_vm(vm.id).await, Err(Error::VmNotFound { .. })));
            f.assert_nothing_leaked().await;
        });
    }
}

#[test]
fn a_failed_update_gives_the_capacity_back() {
    block_on(async {
        let f = fixture().await;
        let (vm, _) = f.vmm.create_vm(f.spec()).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        f.hv.fail_next(HypervisorCall::ResizeVolume);
        let patch = VmPatch { vcpus: Some(4), disk_gib: Some(50), ..Default::default() };
        let t = f.vmm.update_vm(vm.id, patch).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(t.id).await.unwrap().state, TaskState::Failed);
        let usage = f.vmm.get_node(f.node.id).await.unwrap().allocated;
        assert_eq!((usage.vcpus, usage.storage_gib), (1, 10));
        let d = f.hv.domain(vm.id).await.unwrap().unwrap();
        assert_eq!(d.vcpus, 1, "the old definition is back");
    });
}

#[test]
fn a_failed_undo_leaves_the_vm_in_error_with_its_lease_until_deleted() {
    block_on(async {
        let f = fixture().await;
        f.hv.fail_next(HypervisorCall::Start);
        f.hv.fail_always(HypervisorCall::UndefineDomain);
        let (vm, task) = f.vmm.create_vm(f.spec()).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        let task = f.vmm.get_task(task.id).await.unwrap();
        assert_eq!(task.state, TaskState::Failed);
        assert!(task.error.as_deref().unwrap().contains("undoing it failed"), "{:?}", task.error);
        // Nothing orphaned: the VM is still recorded, in error, holding its lease.
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().state, VmState::Error);
        assert_eq!(f.vmm.list_leases(f.pool.id, &PageRequest::default()).await.unwrap().items.len(), 1);
        f.hv.heal();
        let del = f.vmm.delete_vm(vm.id).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(del.id).await.unwrap().state, TaskState::Succeeded);
        f.assert_nothing_leaked().await;
    });
}

#[test]
fn a_task_whose_worker_died_is_resumed_after_its_lease_expires() {
    block_on(async {
        let f = fixture().await;
        let (vm, task) = f.vmm.create_vm(f.spec()).await.unwrap();
        // A worker claims the task, makes the disk, and dies.
        let claimed = f.claim_and_die("dead-worker").await;
        assert_eq!(claimed.id, task.id);
        f.hv.create_volume(vm.id, 10).await.unwrap();
        // Before the lease runs out nobody may take it.
        assert_eq!(f.vmm.run_until_idle().await.unwrap(), 0);
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Running);
        f.clock.advance(chrono::Duration::seconds(31));
        assert_eq!(f.vmm.run_until_idle().await.unwrap(), 1);
        let task = f.vmm.get_task(task.id).await.unwrap();
        assert_eq!((task.state, task.attempts), (TaskState::Succeeded, 2));
        assert!(task.steps.iter().any(|s| s.message.contains("recovered by test-worker")));
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().state, VmState::Running);
        assert_eq!((f.hv.domain_count(), f.hv.volume_count()), (1, 1), "the disk is not made twice");
        // The dead worker, back from the dead, can no longer write to it.
        assert!(matches!(f.store.save_task(&claimed, claimed.fence()).await, Err(Error::LeaseLost { .. })));
    });
}

#[test]
fn a_task_that_keeps_killing_its_workers_is_undone_and_failed() {
    block_on(async {
        let f = fixture().await;
        let (vm, task) = f.vmm.create_vm(f.spec()).await.unwrap();
        f.hv.create_volume(vm.id, 10).await.unwrap();
        for attempt in 1..=3 {
            assert_eq!(f.claim_and_die(&format!("dead-{attempt}")).await.attempts, attempt);
            f.clock.advance(chrono::Duration::seconds(31));
        }
        f.vmm.run_until_idle().await.unwrap();
        let task = f.vmm.get_task(task.id).await.unwrap();
        assert_eq!((task.state, task.attempts), (TaskState::Failed, 4));
        assert!(task.error.as_deref().unwrap().contains("gave up after 3 attempts"));
        f.assert_nothing_leaked().await;
    });
}

#[test]
fn cancelling_a_create_undoes_it() {
    block_on(async {
        // Queued: cancelled at once, the reservation given back.
        let f = fixture().await;
        let (_, task) = f.vmm.create_vm(f.spec()).await.unwrap();
        let cancelled = f.vmm.cancel_task(task.id).await.unwrap();
        assert_eq!(cancelled.state, TaskState::Cancelled);
        f.assert_nothing_leaked().await;
        assert!(matches!(f.vmm.cancel_task(task.id).await, Err(Error::Conflict { .. })));

        // Running (its worker gone quiet): the next worker sees the request and undoes it.
        let (vm, task) = f.vmm.create_vm(f.spec()).await.unwrap();
        f.claim_and_die("slow-worker").await;
        f.hv.create_volume(vm.id, 10).await.unwrap();
        let asked = f.vmm.cancel_task(task.id).await.unwrap();
        assert_eq!((asked.state, asked.cancel_requested), (TaskState::Running, true));
        f.clock.advance(chrono::Duration::seconds(31));
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Cancelled);
        f.assert_nothing_leaked().await;
    });
}

#[test]
fn conflicts_and_bad_input_change_nothing() {
    block_on(async {
        let f = fixture().await;
        let (vm, create) = f.vmm.create_vm(f.spec()).await.unwrap();
        match f.vmm.start_vm(vm.id).await {
            Err(Error::ActiveTask { vm: v, task }) => assert_eq!((v, task), (vm.id, create.id)),
            other => panic!("expected ActiveTask, got {other:?}"),
        }
        f.vmm.run_until_idle().await.unwrap();
        assert!(matches!(
            f.vmm.resume_vm(vm.id).await,
            Err(Error::InvalidState { state: VmState::Running, action: VmAction::Resume, .. })
        ));
        let shrink = VmPatch { disk_gib: Some(1), ..Default::default() };
        assert!(matches!(f.vmm.update_vm(vm.id, shrink).await, Err(Error::Invalid { .. })));
        assert!(matches!(f.vmm.update_vm(vm.id, VmPatch::default()).await, Err(Error::Invalid { .. })));
        match f.vmm.update_vm(vm.id, VmPatch { vcpus: Some(64), ..Default::default() }).await {
            Err(Error::NoCapacity { rejections }) => assert_eq!(rejections[0].node_id, f.node.id),
            other => panic!("expected NoCapacity, got {other:?}"),
        }
        assert!(matches!(f.vmm.create_vm(VmSpec::new("", 1, 1024, 1)).await, Err(Error::Invalid { .. })));
        assert!(matches!(
            f.vmm.create_vm(VmSpec::new("huge", 64, 1024, 1)).await,
            Err(Error::NoCapacity { .. })
        ));
        assert!(matches!(f.vmm.start_vm(vmm_core::VmId::new()).await, Err(Error::VmNotFound { .. })));
        assert!(matches!(f.vmm.delete_ip_pool(f.pool.id).await, Err(Error::Conflict { .. })));
        assert!(matches!(f.vmm.delete_node(f.node.id).await, Err(Error::Conflict { .. })));
        let tasks = f.vmm.list_tasks(&TaskFilter::default(), &PageRequest::default()).await.unwrap();
        assert_eq!(tasks.items.len(), 1, "only the create task exists");
        assert_eq!(
            f.vmm
                .list_vms(&vmm_core::VmFilter::default(), &PageRequest::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
    });
}

#[test]
fn a_failed_power_action_records_what_the_node_shows() {
    block_on(async {
        let f = fixture().await;
        let (vm, _) = f.vmm.create_vm(f.spec()).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        f.hv.fail_next_as(HypervisorCall::Suspend, vmm_core::memory::Failure::Unsupported);
        let t = f.vmm.suspend_vm(vm.id).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        let t = f.vmm.get_task(t.id).await.unwrap();
        assert_eq!((t.state, t.error_code.as_deref()), (TaskState::Failed, Some("unsupported")));
        assert!(t.error.unwrap().contains("Suspend"));
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().state, VmState::Running);
    });
}

#[test]
fn nodes_pools_and_leases_by_hand() {
    block_on(async {
        let f = fixture().await;
        assert!(matches!(
            f.vmm.create_node(NodeSpec::new("n1", "memory://other")).await,
            Err(Error::Conflict { .. })
        ));
        assert!(matches!(
            f.vmm.create_node(NodeSpec::new("x", "ftp://nope")).await,
            Err(Error::Invalid { .. })
        ));
        let maintenance = NodePatch { state: Some(NodeState::Maintenance), ..Default::default() };
        assert_eq!(f.vmm.update_node(f.node.id, maintenance).await.unwrap().state, NodeState::Maintenance);
        match f.vmm.create_vm(f.spec()).await {
            Err(Error::NoCapacity { rejections }) => {
                assert_eq!(rejections[0].to_string(), "n1: node is in maintenance")
            }
            other => panic!("{other:?}"),
        }
        let online = NodePatch { state: Some(NodeState::Online), ..Default::default() };
        f.vmm.update_node(f.node.id, online).await.unwrap();
        let lease = f.vmm.create_lease(f.pool.id, Some("192.0.2.9".parse().unwrap())).await.unwrap();
        assert_eq!(lease.vm_id, None);
        assert!(matches!(
            f.vmm.create_lease(f.pool.id, Some("192.0.2.9".parse().unwrap())).await,
            Err(Error::AddressInUse { .. })
        ));
        f.vmm.delete_lease(f.pool.id, lease.address).await.unwrap();
        let other = f.vmm.create_node(NodeSpec::new("n2", "memory://n2")).await.unwrap();
        assert_eq!(f.vmm.list_nodes(&PageRequest::default()).await.unwrap().items.len(), 2);
        f.vmm.delete_node(other.id).await.unwrap();
        assert!(matches!(f.vmm.get_node(other.id).await, Err(Error::NodeNotFound { .. })));
        f.vmm.delete_ip_pool(f.pool.id).await.unwrap();
        assert!(f.vmm.list_ip_pools(&PageRequest::default()).await.unwrap().items.is_empty());
    });
}

/// A worker loop on its own thread, stopped and joined on drop.
struct Worker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

fn spawn_worker(vmm: Vmm) -> Worker {
    let (tx, rx) = oneshot::channel::<()>();
    let thread = thread::spawn(move || {
        block_on(vmm.run_workers(async {
            rx.await.ok();
        }))
    });
    Worker { stop: Some(tx), thread: Some(thread) }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("worker thread");
        }
    }
}

#[test]
fn concurrent_creates_get_distinct_addresses_and_all_finish() {
    let vmm = Vmm::in_memory();
    let pool = block_on(async {
        vmm.create_node(NodeSpec::new("big", "memory://big?cpus=64&memory_mib=262144&storage_gib=10000"))
            .await
            .unwrap();
        vmm.create_ip_pool(IpPoolSpec::new("p", "198.51.100.0/24")).await.unwrap()
    });
    let worker = spawn_worker(vmm.clone());
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let vmm = vmm.clone();
            thread::spawn(move || {
                block_on(async {
                    let mut tasks = Vec::new();
                    for j in 0..10 {
                        let spec = VmSpec {
                            ip_pool_id: Some(pool.id),
                            ..VmSpec::new(format!("vm-{i}-{j}"), 1, 256, 1)
                        };
                        tasks.push(vmm.create_vm(spec).await.unwrap().1.id);
                    }
                    for t in tasks {
                        let done = vmm.wait_task(t, Duration::from_secs(30)).await.unwrap();
                        assert_eq!(done.state, TaskState::Succeeded, "{:?}", done.error);
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(worker);
    let vms =
        block_on(vmm.list_vms(&vmm_core::VmFilter::default(), &PageRequest::first(1000))).unwrap().items;
    assert_eq!(vms.len(), 80);
    assert!(vms.iter().all(|v| v.state == VmState::Running));
    let addresses: HashSet<_> = vms.iter().flat_map(|v| v.addresses.clone()).collect();
    assert_eq!(addresses.len(), 80, "every VM has its own address");
}

#[test]
fn wait_returns_the_task_as_it_is_when_the_time_is_up() {
    block_on(async {
        let f = fixture().await;
        let (_, task) = f.vmm.create_vm(f.spec()).await.unwrap();
        let waited = f.vmm.wait_task(task.id, Duration::from_millis(50)).await.unwrap();
        assert_eq!(waited.state, TaskState::Queued);
        let worker = spawn_worker(f.vmm.clone());
        let waited = f.vmm.wait_task(task.id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(waited.state, TaskState::Succeeded);
        drop(worker);
        let missing = f.vmm.wait_task(vmm_core::TaskId::new(), Duration::ZERO).await;
        assert!(matches!(missing, Err(Error::TaskNotFound { .. })));
    });
}

/// Regression: the worker loop once awaited a claim without polling its running tasks; with
/// a store that holds a lock across awaits, the claim waited for a lock held by a task that
/// was never polled again.
#[test]
fn workers_keep_running_tasks_moving_while_they_claim() {
    let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    let vmm = Vmm::builder().with_store(Arc::new(OneWriter::default())).with_config(config).build();
    block_on(vmm.create_node(NodeSpec::new("n", "memory://n?cpus=64&memory_mib=262144"))).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| block_on(vmm.create_vm(VmSpec::new(format!("vm-{i}"), 1, 256, 1))).unwrap().1.id)
        .collect();
    let worker = spawn_worker(vmm.clone());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = vmm.clone();
    thread::spawn(move || {
        for t in tasks {
            let task = block_on(waiter.wait_task(t, Duration::from_secs(20))).unwrap();
            done_tx.send(task.state).unwrap();
        }
    });
    let states: Vec<_> = (0..20).map_while(|_| done_rx.recv_timeout(Duration::from_secs(30)).ok()).collect();
    if states.len() < 20 {
        // The worker is stuck: leave its thread behind rather than join it.
        std::mem::forget(worker);
        panic!("the workers stopped making progress after {} tasks", states.len());
    }
    assert!(states.iter().all(|s| *s == TaskState::Succeeded), "{states:?}");
    drop(worker);
}

/// Runs `n` creates through a worker on `store` with `config`; each must succeed after one
/// run.
fn creates_succeed_once(store: Arc<OneWriter>, config: VmmConfig, n: usize) {
    let vmm = Vmm::builder().with_store(store).with_config(config).build();
    block_on(vmm.create_node(NodeSpec::new("n", "memory://n?cpus=64&memory_mib=262144"))).unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|i| block_on(vmm.create_vm(VmSpec::new(format!("vm-{i}"), 1, 256, 1))).unwrap().1.id)
        .collect();
    let worker = spawn_worker(vmm.clone());
    for t in tasks {
        let task = block_on(vmm.wait_task(t, Duration::from_secs(20))).unwrap();
        assert_eq!((task.state, task.attempts), (TaskState::Succeeded, 1), "{:?}", task.steps);
    }
    drop(worker);
}

/// When a store call that records ends fails as a whole, each end is recorded alone: every
/// task ends, each after one run.
#[test]
fn ends_are_recorded_alone_when_their_batch_fails() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(OneWriter::default());
    store.failing_batches.store(3, SeqCst);
    let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    creates_succeed_once(store.clone(), config, 6);
    assert_eq!(store.failing_batches.load(SeqCst), 0, "three batches failed");
}

/// An end that waits for a slow store call longer than a lease keeps its lease: it is
/// recorded, and its task does not run again.
#[test]
fn an_end_keeps_its_lease_while_it_waits_to_be_recorded() {
    use std::sync::atomic::Ordering::SeqCst;
    let store = Arc::new(OneWriter::default());
    store.slow_batches.store(2, SeqCst);
    let lease = Duration::from_millis(300);
    let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), lease, ..VmmConfig::default() };
    creates_succeed_once(store.clone(), config, 3);
    assert_eq!(store.slow_batches.load(SeqCst), 0, "two calls were slow");
}
