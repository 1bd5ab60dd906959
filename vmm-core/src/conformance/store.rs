//! The [`Store`](crate::Store) suite. Leases expire by the store's own clock, which the
//! suite cannot move: checks that need an expired lease renew it for a millisecond and wait
//! (with a deadline) until the store says it is claimable.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, Utc};
use futures_timer::Delay;

use crate::{
    Capacity, Demand, Error, IpPool, IpPoolSpec, Node, NodeSpec, NodeState, PageRequest, PlacementRequest,
    Store, Strategy, Task, TaskFilter, TaskKind, TaskParams, TaskState, Usage, Vm, VmAction, VmFilter, VmId,
    VmNic, VmState,
};

const LEASE: StdDuration = StdDuration::from_secs(60);

/// Runs every check, each on a fresh store from `new_store`.
pub async fn run<F, Fut>(mut new_store: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    nodes(new_store().await.as_ref()).await;
    pools_and_leases(new_store().await.as_ref()).await;
    create_places_leases_and_queues(new_store().await.as_ref()).await;
    create_is_all_or_nothing(new_store().await.as_ref()).await;
    super::placement::placement_groups(new_store().await.as_ref()).await;
    super::placement::migrations(new_store().await.as_ref()).await;
    super::placement::node_leases(new_store().await.as_ref()).await;
    one_active_task_per_vm(new_store().await.as_ref()).await;
    claims_leases_and_recovery(new_store().await.as_ref()).await;
    batch_claims(new_store().await.as_ref(), 4).await;
    finish_and_claim(new_store().await.as_ref()).await;
    a_reclaimed_task_fences_its_earlier_run(new_store().await.as_ref()).await;
    leases_expire_by_the_store_clock(new_store().await.as_ref()).await;
    cancel(new_store().await.as_ref()).await;
    paging(new_store().await.as_ref()).await;
    resize_respects_capacity(new_store().await.as_ref()).await;
    delete_vm_releases_its_leases(new_store().await.as_ref()).await;
    usage_follows_every_change(new_store().await.as_ref()).await;
    super::users::users_and_tokens(new_store().await.as_ref()).await;
    super::users::owners(new_store().await.as_ref()).await;
    super::users::quotas(new_store().await.as_ref()).await;
    super::users::ssh_keys(new_store().await.as_ref()).await;
    super::users::audit(new_store().await.as_ref()).await;
    super::users::quota_race(new_store().await.as_ref(), 32).await;
    super::events::events_follow_changes(new_store().await.as_ref()).await;
    super::events::concurrent_writers_never_hide_an_event(new_store().await.as_ref(), 24).await;
    super::events::pruning_keeps_ids_growing(new_store().await.as_ref()).await;
    super::idempotency::one_try_per_key(new_store().await.as_ref(), 16).await;
    super::events::webhook_claims(new_store().await.as_ref()).await;
    super::events::observed_states(new_store().await.as_ref()).await;
    singletons(new_store().await.as_ref()).await;
    super::observe::console_tickets(new_store().await.as_ref(), 8).await;
    super::observe::usage_points(new_store().await.as_ref()).await;
    super::backups::backup_records(new_store().await.as_ref()).await;
    super::backups::schedules(new_store().await.as_ref()).await;
    super::backups::snapshot_records(new_store().await.as_ref()).await;
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A node with `cpus` CPUs (ratio 1), 8 GiB and 100 GiB.
pub fn node(name: &str, cpus: u32) -> Node {
    let spec = NodeSpec { cpu_overcommit: Some(1.0), ..NodeSpec::new(name, format!("memory://{name}")) };
    Node::from_spec(&spec, Capacity { cpus, memory_mib: 8192, storage_gib: 100 }, Utc::now())
}

fn pool(name: &str, cidr: &str) -> IpPool {
    IpPool::from_spec(&IpPoolSpec::new(name, cidr), Utc::now()).expect("test pool")
}

/// A VM awaiting creation, of 1 vCPU, 1 GiB and 10 GiB.
pub fn new_vm(pool: Option<&IpPool>) -> (Vm, Task) {
    let now = Utc::now();
    let vm = Vm {
        id: VmId::new(),
        name: "vm <&>".into(),
        vcpus: 1,
        memory_mib: 1024,
        disk_gib: 10,
        node_id: crate::NodeId::from_uuid(uuid::Uuid::nil()),
        ip_pool_id: pool.map(|p| p.id),
        state: VmState::Creating,
        addresses: vec![],
        created_at: now,
        image_id: None,
        hostname: None,
        nics: vec![],
        owner_id: None,
        observed_state: None,
        state_reason: None,
        placement_group_id: None,
        migrating_to: None,
        ha: false,
    };
    let vm = Vm { nics: pool.map(|p| vec![VmNic::new(vm.id, 0, Some(p.id))]).unwrap_or_default(), ..vm };
    let task =
        Task::new(TaskKind::CreateVm, Some(vm.id), TaskParams::Create { start: true, image_id: None }, now);
    (vm, task)
}

pub(super) const ANY: &PlacementRequest =
    &PlacementRequest { pinned: None, strategy: Strategy::Spread, only: None, group: None };

/// Creates a VM and ends its create task, as a worker would.
pub(crate) async fn created_vm(s: &dyn Store, pool: Option<&IpPool>) -> Vm {
    let (vm, task) = new_vm(pool);
    let mut vm = s.create_vm(&vm, &task, ANY, None).await.expect("create_vm");
    finish(s, task.id).await;
    vm.state = VmState::Stopped;
    s.update_vm(&vm).await.expect("update_vm");
    vm
}

/// Claims tasks until `id` is claimed (ending the others) and ends it as succeeded.
pub(crate) async fn finish(s: &dyn Store, id: crate::TaskId) {
    let now = Utc::now();
    let mut task = loop {
        let t = s.claim_task("conformance", now, LEASE).await.unwrap().expect("a task to claim");
        if t.id == id {
            break t;
        }
        let mut other = t;
        other.state = TaskState::Succeeded;
        s.save_task(&other, other.fence()).await.unwrap();
    };
    task.state = TaskState::Succeeded;
    task.finished_at = Some(now);
    s.save_task(&task, task.fence()).await.expect("save_task");
}

/// Makes the lease of the run holding `fence` run out, and waits until the store agrees.
async fn expire(s: &dyn Store, id: crate::TaskId, fence: u64) {
    s.renew_lease(id, fence, StdDuration::from_millis(1)).await.expect("renew to a short lease");
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        let task = s.get_task(id).await.unwrap();
        if task.lease.as_ref().is_some_and(|l| l.expires_at < Utc::now()) {
            // The store's clock may trail ours a little: let it pass the expiry too.
            Delay::new(StdDuration::from_millis(20)).await;
            return;
        }
        assert!(Instant::now() < deadline, "the lease of {id} never expired");
        Delay::new(StdDuration::from_millis(5)).await;
    }
}

/// Claims with a deadline, for a lease that has just expired by the store's clock.
async fn claim_when_expired(s: &dyn Store, owner: &str) -> Task {
    let deadline = Instant::now() + StdDuration::from_secs(10);
    loop {
        if let Some(t) = s.claim_task(owner, Utc::now(), LEASE).await.unwrap() {
            return t;
        }
        assert!(Instant::now() < deadline, "an expired task was never claimable");
        Delay::new(StdDuration::from_millis(10)).await;
    }
}

/// Nodes: create, unique names and URIs, update, usage, delete refused while VMs live there.
pub async fn nodes(s: &dyn Store) {
    let a = node("a", 4);
    s.create_node(&a).await.expect("create node");
    assert_eq!(s.get_node(a.id).await.unwrap().name, "a");
    let dup = node("a", 2);
    assert!(matches!(s.create_node(&dup).await, Err(Error::Conflict { .. })), "duplicate node name");
    let same_host = Node { name: "a-again".into(), ..node("x", 2) };
    let same_host = Node { uri: a.uri.clone(), ..same_host };
    assert!(
        matches!(s.create_node(&same_host).await, Err(Error::Conflict { .. })),
        "one host registered twice would count its capacity twice"
    );
    let b = node("b", 2);
    s.create_node(&b).await.unwrap();
    let names: Vec<_> =
        s.list_nodes(&PageRequest::default()).await.unwrap().items.into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["b", "a"], "newest first");
    let first = s.list_nodes(&PageRequest::first(1)).await.unwrap();
    assert_eq!((first.items.len(), first.items[0].name.as_str()), (1, "b"));
    let rest = s.list_nodes(&PageRequest { limit: Some(1), cursor: first.next_cursor }).await.unwrap();
    assert_eq!((rest.items[0].name.as_str(), rest.next_cursor), ("a", None));
    let mut renamed = b.clone();
    renamed.name = "a".into();
    assert!(matches!(s.update_node(&renamed).await, Err(Error::Conflict { .. })));
    renamed.name = "b2".into();
    renamed.state = NodeState::Maintenance;
    renamed.cpu_overcommit = 3.0;
    s.update_node(&renamed).await.unwrap();
    let got = s.get_node(b.id).await.unwrap();
    assert_eq!((got.name.as_str(), got.state, got.cpu_overcommit), ("b2", NodeState::Maintenance, 3.0));
    assert!(matches!(s.get_node(crate::NodeId::new()).await, Err(Error::NodeNotFound { .. })));

    let vm = created_vm(s, None).await;
    assert_eq!(vm.node_id, a.id, "maintenance node b is skipped");
    let usage = s.get_node(a.id).await.unwrap().allocated;
    assert_eq!((usage.vms, usage.vcpus, usage.memory_mib, usage.storage_gib), (1, 1, 1024, 10));
    assert!(matches!(s.delete_node(a.id).await, Err(Error::Conflict { .. })), "node with VMs");
    s.delete_node(b.id).await.unwrap();
    assert!(matches!(s.delete_node(b.id).await, Err(Error::NodeNotFound { .. })));
}

/// Pools and leases: next free, given address, exhaustion, release, reuse, delete.
pub async fn pools_and_leases(s: &dyn Store) {
    let p = pool("p", "192.0.2.0/29"); // .1 to .6 usable
    s.create_pool(&p).await.unwrap();
    assert!(matches!(s.create_pool(&pool("p", "198.51.100.0/24")).await, Err(Error::Conflict { .. })));
    let got = s.get_pool(p.id).await.unwrap();
    assert_eq!(got.cidr, p.cidr);
    assert_eq!(s.list_pools(&PageRequest::default()).await.unwrap().items.len(), 1);
    let now = Utc::now();
    let first = s.allocate_lease(p.id, None, None, now).await.unwrap();
    assert_eq!(first.address, ip("192.0.2.1"));
    let given = s.allocate_lease(p.id, Some(ip("192.0.2.5")), None, now).await.unwrap();
    assert_eq!(given.address, ip("192.0.2.5"));
    assert!(matches!(
        s.allocate_lease(p.id, Some(ip("192.0.2.5")), None, now).await,
        Err(Error::AddressInUse { .. })
    ));
    for bad in ["192.0.2.0", "192.0.2.7", "198.51.100.1"] {
        assert!(
            matches!(s.allocate_lease(p.id, Some(ip(bad)), None, now).await, Err(Error::Invalid { .. })),
            "{bad} must be refused"
        );
    }
    let mut rest = Vec::new();
    for _ in 0..4 {
        rest.push(s.allocate_lease(p.id, None, None, now).await.unwrap().address);
    }
    assert_eq!(rest, [ip("192.0.2.2"), ip("192.0.2.3"), ip("192.0.2.4"), ip("192.0.2.6")]);
    assert!(
        matches!(s.allocate_lease(p.id, None, None, now).await, Err(Error::PoolExhausted { pool }) if pool == p.id)
    );
    assert!(matches!(s.delete_pool(p.id).await, Err(Error::Conflict { .. })), "pool with leases");
    s.release_lease(p.id, ip("192.0.2.3")).await.unwrap();
    assert!(matches!(s.release_lease(p.id, ip("192.0.2.3")).await, Err(Error::LeaseNotFound { .. })));
    assert_eq!(s.allocate_lease(p.id, None, None, now).await.unwrap().address, ip("192.0.2.3"), "reuse");
    let page = s.list_leases(p.id, &PageRequest::first(4)).await.unwrap();
    assert_eq!(page.items.len(), 4);
    let next = PageRequest { limit: Some(4), cursor: page.next_cursor.clone() };
    let page2 = s.list_leases(p.id, &next).await.unwrap();
    assert_eq!(page2.items.len(), 2);
    assert!(page2.next_cursor.is_none());
    for a in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"] {
        s.release_lease(p.id, ip(a)).await.unwrap();
    }
    s.delete_pool(p.id).await.unwrap();
    assert!(matches!(s.get_pool(p.id).await, Err(Error::PoolNotFound { .. })));

    let v6 = pool("v6", "2001:db8::/64");
    s.create_pool(&v6).await.unwrap();
    assert_eq!(s.allocate_lease(v6.id, None, None, now).await.unwrap().address, ip("2001:db8::1"));
    let top = ip("2001:db8::ffff:ffff:ffff:ffff");
    assert_eq!(s.allocate_lease(v6.id, Some(top), None, now).await.unwrap().address, top);
}

/// `create_vm` places the VM, leases its address and queues its task.
pub async fn create_places_leases_and_queues(s: &dyn Store) {
    let n = node("n", 4);
    s.create_node(&n).await.unwrap();
    let p = pool("p", "198.51.100.0/24");
    s.create_pool(&p).await.unwrap();
    let (vm, task) = new_vm(Some(&p));
    let created = s.create_vm(&vm, &task, ANY, None).await.unwrap();
    assert_eq!(created.node_id, n.id);
    assert_eq!(created.addresses, [ip("198.51.100.1")]);
    let stored = s.get_vm(vm.id).await.unwrap();
    assert_eq!(stored.addresses, created.addresses);
    assert_eq!(stored.name, "vm <&>");
    assert_eq!(stored.state, VmState::Creating);
    let queued = s.get_task(task.id).await.unwrap();
    assert_eq!((queued.state, queued.vm_id), (TaskState::Queued, Some(vm.id)));
    let explained: Vec<_> = queued.steps.iter().map(|s| s.message.as_str()).collect();
    assert_eq!(explained, ["placed on n (score 1.625)"], "the task records placement's explanation");
    let leases = s.list_leases(p.id, &PageRequest::default()).await.unwrap().items;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].vm_id, Some(vm.id));
    assert!(
        matches!(s.release_lease(p.id, leases[0].address).await, Err(Error::Conflict { .. })),
        "a VM's lease"
    );
    // Pinning to a node that does not exist.
    let (vm2, task2) = new_vm(None);
    let pinned = PlacementRequest {
        pinned: Some(crate::NodeId::new()),
        strategy: Strategy::Spread,
        only: None,
        group: None,
    };
    assert!(matches!(s.create_vm(&vm2, &task2, &pinned, None).await, Err(Error::NodeNotFound { .. })));
}

/// A create that cannot place or lease changes nothing; a refusal names every reason.
pub async fn create_is_all_or_nothing(s: &dyn Store) {
    let n = node("n", 2);
    s.create_node(&n).await.unwrap();
    let p = pool("tiny", "192.0.2.0/30"); // two addresses
    s.create_pool(&p).await.unwrap();
    s.allocate_lease(p.id, None, None, Utc::now()).await.unwrap();
    s.allocate_lease(p.id, None, None, Utc::now()).await.unwrap();
    let (vm, task) = new_vm(Some(&p));
    assert!(matches!(s.create_vm(&vm, &task, ANY, None).await, Err(Error::PoolExhausted { .. })));
    assert!(matches!(s.get_vm(vm.id).await, Err(Error::VmNotFound { .. })), "no VM after a failed create");
    assert!(
        matches!(s.get_task(task.id).await, Err(Error::TaskNotFound { .. })),
        "no task after a failed create"
    );
    assert_eq!(s.get_node(n.id).await.unwrap().allocated, Usage::default());

    let (mut big, task) = new_vm(None);
    big.vcpus = 3;
    big.disk_gib = 500;
    match s.create_vm(&big, &task, ANY, None).await {
        Err(Error::NoCapacity { rejections }) => {
            assert_eq!(rejections.len(), 1);
            assert_eq!(rejections[0].node_id, n.id);
            assert_eq!(rejections[0].reasons.len(), 2, "CPU and storage: {}", rejections[0]);
        }
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    assert!(s.list_vms(&VmFilter::default(), &PageRequest::default()).await.unwrap().items.is_empty());
    assert!(s.list_tasks(&TaskFilter::default(), &PageRequest::default()).await.unwrap().items.is_empty());
}

/// A second task on a VM is refused, naming the active one; an illegal action too.
pub async fn one_active_task_per_vm(s: &dyn Store) {
    s.create_node(&node("n", 4)).await.unwrap();
    let (vm, create) = new_vm(None);
    s.create_vm(&vm, &create, ANY, None).await.unwrap();
    let start = Task::new(TaskKind::StartVm, Some(vm.id), TaskParams::None, Utc::now());
    match s.enqueue_task(&start, None).await {
        Err(Error::ActiveTask { vm: v, task }) => assert_eq!((v, task), (vm.id, create.id)),
        other => panic!("expected ActiveTask, got {other:?}"),
    }
    finish(s, create.id).await;
    let mut vm = s.get_vm(vm.id).await.unwrap();
    vm.state = VmState::Stopped;
    s.update_vm(&vm).await.unwrap();
    let suspend = Task::new(TaskKind::SuspendVm, Some(vm.id), TaskParams::None, Utc::now());
    assert!(matches!(
        s.enqueue_task(&suspend, Some(VmAction::Suspend)).await,
        Err(Error::InvalidState { .. })
    ));
    s.enqueue_task(&start, Some(VmAction::Start)).await.unwrap();
    let stop = Task::new(TaskKind::StopVm, Some(vm.id), TaskParams::None, Utc::now());
    assert!(
        matches!(s.enqueue_task(&stop, None).await, Err(Error::ActiveTask { task, .. }) if task == start.id)
    );
    let ghost = Task::new(TaskKind::StartVm, Some(VmId::new()), TaskParams::None, Utc::now());
    assert!(matches!(s.enqueue_task(&ghost, None).await, Err(Error::VmNotFound { .. })));
    finish(s, start.id).await;
    s.enqueue_task(&stop, None).await.expect("a new task once the last one ended");
}

/// Claims are exclusive; leases renew and expire; an expired task is recovered by another
/// worker and its first run can no longer save it or renew its lease.
pub async fn claims_leases_and_recovery(s: &dyn Store) {
    s.create_node(&node("n", 4)).await.unwrap();
    let (vm, task) = new_vm(None);
    s.create_vm(&vm, &task, ANY, None).await.unwrap();
    let mut claimed = s.claim_task("w1", Utc::now(), LEASE).await.unwrap().expect("claim");
    assert_eq!((claimed.id, claimed.state, claimed.attempts), (task.id, TaskState::Running, 1));
    let lease = claimed.lease.clone().expect("a lease");
    assert_eq!(lease.owner, "w1");
    assert!(lease.expires_at > Utc::now() + Duration::seconds(30), "the lease runs from the store's now");
    assert!(s.claim_task("w2", Utc::now(), LEASE).await.unwrap().is_none(), "claimed twice");
    s.renew_lease(task.id, claimed.fence(), LEASE).await.unwrap();
    claimed.progress = 40;
    claimed.log(Utc::now(), "step");
    s.save_task(&claimed, claimed.fence()).await.unwrap();
    assert_eq!(s.get_task(task.id).await.unwrap().progress, 40);
    // w1 goes quiet; its lease runs out.
    expire(s, task.id, claimed.fence()).await;
    let recovered = claim_when_expired(s, "w2").await;
    assert_eq!((recovered.id, recovered.attempts, recovered.progress), (task.id, 2, 40));
    assert!(recovered.fence() > claimed.fence());
    assert!(matches!(s.save_task(&claimed, claimed.fence()).await, Err(Error::LeaseLost { .. })));
    assert!(matches!(s.renew_lease(task.id, claimed.fence(), LEASE).await, Err(Error::LeaseLost { .. })));
    let mut done = recovered;
    done.state = TaskState::Succeeded;
    done.finished_at = Some(Utc::now());
    s.save_task(&done, done.fence()).await.unwrap();
    let stored = s.get_task(task.id).await.unwrap();
    assert_eq!(stored.state, TaskState::Succeeded);
    assert!(stored.lease.is_none());
    assert!(matches!(s.save_task(&done, done.fence()).await, Err(Error::LeaseLost { .. })), "an ended task");
    assert!(s.claim_task("w3", Utc::now(), LEASE).await.unwrap().is_none(), "ended tasks stay ended");
}

/// Queues `n` tasks of no VM, oldest first.
async fn queue_tasks(s: &dyn Store, n: usize) -> Vec<Task> {
    let mut queued = Vec::with_capacity(n);
    for _ in 0..n {
        let t =
            Task::new(TaskKind::Reconcile, None, crate::TaskParams::Reconcile { dry_run: true }, Utc::now());
        s.enqueue_task(&t, None).await.unwrap();
        queued.push(t);
    }
    queued
}

/// How many events of `kind` the store holds (of its first thousand).
async fn events_of(s: &dyn Store, kind: crate::EventType) -> usize {
    let events = s.list_events(&crate::EventFilter::default(), 1000).await.unwrap();
    events.into_iter().filter(|e| e.kind == kind).count()
}

/// Claims of several tasks at once: each claim takes the oldest claimable tasks up to its
/// limit, each with its own lease, fence and `task.started` event; `claimers` concurrent
/// claimers split the queue between them with no task claimed twice or left behind.
pub async fn batch_claims(s: &dyn Store, claimers: usize) {
    let queued = queue_tasks(s, 40).await;
    assert!(s.claim_tasks("w0", Utc::now(), LEASE, 0).await.unwrap().is_empty(), "a claim of none");
    let first = s.claim_tasks("w0", Utc::now(), LEASE, 3).await.unwrap();
    let ids: Vec<_> = first.iter().map(|t| t.id).collect();
    assert_eq!(ids, queued[..3].iter().map(|t| t.id).collect::<Vec<_>>(), "the oldest, oldest first");
    for t in &first {
        assert_eq!((t.state, t.attempts, t.fence()), (TaskState::Running, 1, 1));
        assert_eq!(s.get_task(t.id).await.unwrap().lease.expect("a lease").owner, "w0");
    }
    let claims = (0..claimers).map(|c| async move {
        let owner = format!("w{}", c + 1);
        let mut mine = Vec::new();
        loop {
            let batch = s.claim_tasks(&owner, Utc::now(), LEASE, 5).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            for mut t in batch {
                mine.push(t.id);
                t.state = TaskState::Succeeded;
                t.finished_at = Some(Utc::now());
                s.save_task(&t, t.fence()).await.unwrap();
            }
        }
    });
    let mut all: Vec<_> = futures::future::join_all(claims).await.into_iter().flatten().collect();
    all.extend(ids);
    all.sort();
    let mut expected: Vec<_> = queued.iter().map(|t| t.id).collect();
    expected.sort();
    assert_eq!(all, expected, "every task claimed exactly once");
    assert_eq!(events_of(s, crate::EventType::TaskStarted).await, queued.len(), "one task.started per claim");
}

/// Recording ends and claiming in one go: each end is recorded and the oldest claimable
/// tasks claimed, never one ended in the same call (even when its lease has run out); a run
/// that lost its lease, or whose task is gone, fails alone and records nothing.
pub async fn finish_and_claim(s: &dyn Store) {
    let queued = queue_tasks(s, 5).await;
    let end = |t: &Task, fence: u64| {
        let mut t = t.clone();
        t.state = TaskState::Succeeded;
        t.finished_at = Some(Utc::now());
        (t, fence)
    };
    let first = s.claim_tasks("w", Utc::now(), LEASE, 2).await.unwrap();
    assert_eq!(first.iter().map(|t| t.id).collect::<Vec<_>>(), [queued[0].id, queued[1].id]);
    // The same run saved twice in one call: both recorded, the last one kept.
    let at = |p: u8| {
        let mut t = first[0].clone();
        t.progress = p;
        (t, first[0].fence())
    };
    let twice = s.finish_and_claim(&[at(10), at(20)], "w", Utc::now(), LEASE, 0).await.unwrap();
    assert!(twice.saved.iter().all(Result::is_ok) && twice.claimed.is_empty(), "{twice:?}");
    assert_eq!(s.get_task(first[0].id).await.unwrap().progress, 20);
    let gone = Task::new(TaskKind::Reconcile, None, TaskParams::Reconcile { dry_run: true }, Utc::now());
    let ends = [end(&first[0], first[0].fence()), end(&first[1], first[1].fence() + 1), end(&gone, 1)];
    let done = s.finish_and_claim(&ends, "w", Utc::now(), LEASE, 2).await.unwrap();
    assert!(done.saved[0].is_ok(), "{:?}", done.saved);
    assert!(matches!(done.saved[1], Err(Error::LeaseLost { .. })), "{:?}", done.saved);
    assert!(matches!(done.saved[2], Err(Error::TaskNotFound { .. })), "{:?}", done.saved);
    let claimed: Vec<_> = done.claimed.iter().map(|t| (t.id, t.state, t.attempts)).collect();
    assert_eq!(claimed, [(queued[2].id, TaskState::Running, 1), (queued[3].id, TaskState::Running, 1)]);
    assert_eq!(s.get_task(first[0].id).await.unwrap().state, TaskState::Succeeded);
    assert_eq!(
        s.get_task(first[1].id).await.unwrap().state,
        TaskState::Running,
        "the stale end recorded nothing"
    );
    assert_eq!(s.get_task(queued[2].id).await.unwrap().lease.expect("a lease").owner, "w");
    // Ends alone, with nothing to claim.
    let ends = [end(&first[1], first[1].fence()), end(&done.claimed[0], done.claimed[0].fence())];
    let alone = s.finish_and_claim(&ends, "w", Utc::now(), LEASE, 0).await.unwrap();
    assert!(alone.saved.iter().all(Result::is_ok) && alone.claimed.is_empty(), "{alone:?}");
    assert_eq!(s.get_task(queued[4].id).await.unwrap().state, TaskState::Queued, "nothing claimed");
    // The last claimable task; then none is left.
    let ends = [end(&done.claimed[1], done.claimed[1].fence())];
    let last = s.finish_and_claim(&ends, "w", Utc::now(), LEASE, 3).await.unwrap();
    assert_eq!(last.claimed.iter().map(|t| t.id).collect::<Vec<_>>(), [queued[4].id]);
    // An end whose lease has run out is not recorded, nor claimed again by its own call.
    let lapsed = &last.claimed[0];
    expire(s, lapsed.id, lapsed.fence()).await;
    let ends = [end(lapsed, lapsed.fence())];
    let late = s.finish_and_claim(&ends, "w", Utc::now(), LEASE, 3).await.unwrap();
    assert!(matches!(late.saved[0], Err(Error::LeaseLost { .. })), "{late:?}");
    assert!(late.claimed.is_empty(), "{late:?}");
    let again = s.claim_tasks("w", Utc::now(), LEASE, 3).await.unwrap();
    assert_eq!(
        again.iter().map(|t| (t.id, t.attempts)).collect::<Vec<_>>(),
        [(lapsed.id, 2)],
        "recovered later"
    );
    let ends = [end(&again[0], again[0].fence())];
    let none = s.finish_and_claim(&ends, "w", Utc::now(), LEASE, 3).await.unwrap();
    assert!(none.saved[0].is_ok() && none.claimed.is_empty(), "nothing left to claim: {none:?}");
    for t in &queued {
        assert_eq!(s.get_task(t.id).await.unwrap().state, TaskState::Succeeded);
    }
    let ended = events_of(s, crate::EventType::TaskSucceeded).await;
    assert_eq!(ended, queued.len(), "one task.succeeded per end recorded");
}

/// The same worker claiming a task again after its lease lapsed gets a new fence, and the
/// earlier run, still acting, can change nothing: owner names do not decide who holds a task.
pub async fn a_reclaimed_task_fences_its_earlier_run(s: &dyn Store) {
    s.create_node(&node("n", 4)).await.unwrap();
    let (vm, task) = new_vm(None);
    s.create_vm(&vm, &task, ANY, None).await.unwrap();
    let first = s.claim_task("worker", Utc::now(), LEASE).await.unwrap().expect("claim");
    expire(s, task.id, first.fence()).await;
    let second = claim_when_expired(s, "worker").await;
    assert_eq!(second.id, task.id);
    let mut stale = first.clone();
    stale.progress = 99;
    stale.state = TaskState::Succeeded;
    assert!(matches!(s.save_task(&stale, first.fence()).await, Err(Error::LeaseLost { .. })));
    assert!(matches!(s.renew_lease(task.id, first.fence(), LEASE).await, Err(Error::LeaseLost { .. })));
    let stored = s.get_task(task.id).await.unwrap();
    assert_eq!((stored.state, stored.progress), (TaskState::Running, 0), "the stale run saved nothing");
    s.save_task(&second, second.fence()).await.expect("the current run saves");
}

/// A worker whose clock runs ahead cannot take a task whose lease is live by the store's
/// clock: the `now` a worker passes only stamps the log.
pub async fn leases_expire_by_the_store_clock(s: &dyn Store) {
    s.create_node(&node("n", 4)).await.unwrap();
    let (vm, task) = new_vm(None);
    s.create_vm(&vm, &task, ANY, None).await.unwrap();
    let held = s.claim_task("w1", Utc::now(), LEASE).await.unwrap().expect("claim");
    let skewed = Utc::now() + Duration::hours(1);
    assert!(s.claim_task("w2", skewed, LEASE).await.unwrap().is_none(), "a fast clock stole a live task");
    s.save_task(&held, held.fence()).await.expect("the holder keeps its task");
}

/// Cancelling: queued at once, running by request, ended refused.
pub async fn cancel(s: &dyn Store) {
    s.create_node(&node("n", 4)).await.unwrap();
    let (vm, task) = new_vm(None);
    s.create_vm(&vm, &task, ANY, None).await.unwrap();
    let cancelled = s.cancel_task(task.id, Utc::now()).await.unwrap();
    assert_eq!(cancelled.state, TaskState::Cancelled);
    assert!(cancelled.finished_at.is_some());
    assert!(matches!(s.cancel_task(task.id, Utc::now()).await, Err(Error::Conflict { .. })));
    let t = Task::new(TaskKind::DeleteVm, Some(vm.id), TaskParams::None, Utc::now());
    s.enqueue_task(&t, None).await.expect("the cancelled task is no longer active");
    let now = Utc::now();
    let running = s.claim_task("w", now, LEASE).await.unwrap().unwrap();
    let asked = s.cancel_task(running.id, now).await.unwrap();
    assert_eq!((asked.state, asked.cancel_requested), (TaskState::Running, true));
    // A save by the worker does not clear the request.
    s.save_task(&running, running.fence()).await.unwrap();
    assert!(s.get_task(running.id).await.unwrap().cancel_requested);
    assert!(matches!(s.cancel_task(crate::TaskId::new(), now).await, Err(Error::TaskNotFound { .. })));
}

/// Lists are newest first, paged by cursor, with filters.
pub async fn paging(s: &dyn Store) {
    s.create_node(&Node {
        capacity: Capacity { cpus: 64, memory_mib: 1 << 20, storage_gib: 10_000 },
        ..node("n", 64)
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(created_vm(s, None).await.id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut req = PageRequest::first(3);
    loop {
        let page = s.list_vms(&VmFilter::default(), &req).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|v| v.id));
        match page.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids, "newest first, each once");

    // Filters, paged: three of the seven run, one of them renamed.
    let mut running = Vec::new();
    for id in [ids[1], ids[3], ids[5]] {
        let mut vm = s.get_vm(id).await.unwrap();
        vm.state = VmState::Running;
        if id == ids[3] {
            vm.name = "the-one".into();
        }
        s.update_vm(&vm).await.unwrap();
        running.push(id);
    }
    let by_state = VmFilter { state: Some(VmState::Running), ..VmFilter::default() };
    let first = s.list_vms(&by_state, &PageRequest::first(2)).await.unwrap();
    let rest =
        s.list_vms(&by_state, &PageRequest { limit: Some(2), cursor: first.next_cursor }).await.unwrap();
    let got: Vec<_> = first.items.iter().chain(&rest.items).map(|v| v.id).collect();
    assert_eq!(got, running, "running VMs, newest first, over two pages");
    assert!(rest.next_cursor.is_none());
    let node_id = s.get_vm(ids[0]).await.unwrap().node_id;
    let on_node = VmFilter { node_id: Some(node_id), ..VmFilter::default() };
    assert_eq!(s.list_vms(&on_node, &PageRequest::default()).await.unwrap().items.len(), 7);
    let elsewhere = VmFilter { node_id: Some(crate::NodeId::new()), ..VmFilter::default() };
    assert!(s.list_vms(&elsewhere, &PageRequest::default()).await.unwrap().items.is_empty());
    let named = VmFilter { name: Some("the-one".into()), ..by_state.clone() };
    let found = s.list_vms(&named, &PageRequest::default()).await.unwrap().items;
    assert_eq!(found.iter().map(|v| v.id).collect::<Vec<_>>(), [ids[3]]);
    let stopped_named = VmFilter { state: Some(VmState::Stopped), ..named };
    assert!(
        s.list_vms(&stopped_named, &PageRequest::default()).await.unwrap().items.is_empty(),
        "every filter must match"
    );
    let tasks = s
        .list_tasks(&TaskFilter { vm_id: Some(ids[0]), ..TaskFilter::default() }, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(tasks.items.len(), 1);
    let queued = TaskFilter { state: Some(TaskState::Queued), ..TaskFilter::default() };
    assert!(s.list_tasks(&queued, &PageRequest::default()).await.unwrap().items.is_empty());
    let creates = TaskFilter { kind: Some(TaskKind::CreateVm), ..TaskFilter::default() };
    let page = s.list_tasks(&creates, &PageRequest::first(1000)).await.unwrap().items;
    assert!(!page.is_empty() && page.iter().all(|t| t.kind == TaskKind::CreateVm), "by kind");
    let deletes = TaskFilter { kind: Some(TaskKind::DeleteVm), ..TaskFilter::default() };
    assert!(s.list_tasks(&deletes, &PageRequest::default()).await.unwrap().items.is_empty());
    let all = s.list_tasks(&TaskFilter::default(), &PageRequest::first(5)).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert!(all.items.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert!(matches!(
        s.list_vms(&VmFilter::default(), &PageRequest::first(0)).await,
        Err(Error::Invalid { .. })
    ));
    let bad = PageRequest { limit: None, cursor: Some("garbage".into()) };
    assert!(matches!(s.list_vms(&VmFilter::default(), &bad).await, Err(Error::Invalid { .. })));
}

/// Resizing checks the node's room, counting the VM's own share as free.
pub async fn resize_respects_capacity(s: &dyn Store) {
    let n = node("n", 4);
    s.create_node(&n).await.unwrap();
    let vm = created_vm(s, None).await;
    let target = Demand { vcpus: 4, memory_mib: 2048, disk_gib: 20 };
    let grown = s.resize_vm(vm.id, target).await.unwrap();
    assert_eq!(grown.demand(), target);
    assert_eq!(s.resize_vm(vm.id, target).await.unwrap().demand(), target, "resizing again is harmless");
    assert!(matches!(s.resize_vm(vm.id, Demand { vcpus: 5, ..target }).await, Err(Error::NoCapacity { .. })));
    assert_eq!(s.get_vm(vm.id).await.unwrap().vcpus, 4, "a refused resize changes nothing");
    let usage = s.get_node(n.id).await.unwrap().allocated;
    assert_eq!((usage.vms, usage.vcpus, usage.memory_mib, usage.storage_gib), (1, 4, 2048, 20));
    let mut renamed = s.get_vm(vm.id).await.unwrap();
    renamed.name = "new name".into();
    renamed.state = VmState::Running;
    s.update_vm(&renamed).await.unwrap();
    let got = s.get_vm(vm.id).await.unwrap();
    assert_eq!((got.name.as_str(), got.state), ("new name", VmState::Running));
}

/// Deleting a VM releases its leases and capacity.
pub async fn delete_vm_releases_its_leases(s: &dyn Store) {
    let n = node("n", 4);
    s.create_node(&n).await.unwrap();
    let p = pool("p", "192.0.2.0/30");
    s.create_pool(&p).await.unwrap();
    let vm = created_vm(s, Some(&p)).await;
    s.delete_vm(vm.id).await.unwrap();
    assert!(matches!(s.get_vm(vm.id).await, Err(Error::VmNotFound { .. })));
    assert!(s.list_leases(p.id, &PageRequest::default()).await.unwrap().items.is_empty());
    assert_eq!(s.get_node(n.id).await.unwrap().allocated, Usage::default());
    assert_eq!(s.allocate_lease(p.id, None, None, Utc::now()).await.unwrap().address, ip("192.0.2.1"));
    assert!(matches!(s.delete_vm(vm.id).await, Err(Error::VmNotFound { .. })));
}

/// A node's usage is the sum over its VMs after any mix of creates, resizes and deletes.
pub async fn usage_follows_every_change(s: &dyn Store) {
    let a =
        Node { capacity: Capacity { cpus: 64, memory_mib: 1 << 20, storage_gib: 10_000 }, ..node("a", 64) };
    let b = Node { capacity: a.capacity, ..node("b", 64) };
    s.create_node(&a).await.unwrap();
    s.create_node(&b).await.unwrap();
    let mut vms = Vec::new();
    for _ in 0..6 {
        vms.push(created_vm(s, None).await);
    }
    s.resize_vm(vms[0].id, Demand { vcpus: 3, memory_mib: 3000, disk_gib: 30 }).await.unwrap();
    s.resize_vm(vms[1].id, Demand { vcpus: 2, memory_mib: 2000, disk_gib: 20 }).await.unwrap();
    s.delete_vm(vms[2].id).await.unwrap();
    let mut expected: std::collections::HashMap<crate::NodeId, Usage> = Default::default();
    let mut page = PageRequest::first(100);
    loop {
        let got = s.list_vms(&VmFilter::default(), &page).await.unwrap();
        for vm in &got.items {
            let u = expected.entry(vm.node_id).or_default();
            *u = u.with(&vm.demand());
        }
        match got.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    for n in [a.id, b.id] {
        let stored = s.get_node(n).await.unwrap().allocated;
        assert_eq!(stored, expected.get(&n).copied().unwrap_or_default(), "node {n}");
    }
    let listed: Vec<_> = s.list_nodes(&PageRequest::default()).await.unwrap().items;
    for n in listed {
        assert_eq!(n.allocated, expected.get(&n.id).copied().unwrap_or_default(), "listed node {}", n.name);
    }
}

/// A singleton lease: its holder renews it, no one else takes it until it runs out.
pub async fn singletons(s: &dyn Store) {
    assert!(s.acquire_singleton("loop", "a", StdDuration::from_millis(300)).await.unwrap());
    assert!(s.acquire_singleton("loop", "a", StdDuration::from_millis(300)).await.unwrap(), "renewed");
    assert!(!s.acquire_singleton("loop", "b", StdDuration::from_secs(60)).await.unwrap(), "held");
    assert!(s.acquire_singleton("other", "b", StdDuration::from_secs(60)).await.unwrap(), "names apart");
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while !s.acquire_singleton("loop", "b", StdDuration::from_secs(60)).await.unwrap() {
        assert!(Instant::now() < deadline, "a lapsed lease was never taken over");
        Delay::new(StdDuration::from_millis(20)).await;
    }
    assert!(!s.acquire_singleton("loop", "a", StdDuration::from_secs(60)).await.unwrap(), "b holds it now");
}
