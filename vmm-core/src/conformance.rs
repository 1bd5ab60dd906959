//! One conformance suite per trait. Every implementation runs the same suite: the in-memory
//! fakes here, libvirt and SQL in `vmm-backends`. A failed check panics with what it saw.

/// The [`Store`](crate::Store) suite.
pub mod store {
    use std::future::Future;
    use std::net::IpAddr;
    use std::sync::Arc;

    use chrono::{Duration, Utc};

    use crate::{
        Capacity, Error, IpPool, IpPoolSpec, Node, NodeSpec, NodeState, PageRequest, PlacementRequest, Store,
        Strategy, Task, TaskFilter, TaskKind, TaskParams, TaskState, Vm, VmAction, VmId, VmState,
    };

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
        one_active_task_per_vm(new_store().await.as_ref()).await;
        claims_leases_and_recovery(new_store().await.as_ref()).await;
        cancel(new_store().await.as_ref()).await;
        paging(new_store().await.as_ref()).await;
        resize_respects_capacity(new_store().await.as_ref()).await;
        delete_vm_releases_its_leases(new_store().await.as_ref()).await;
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
        };
        let task = Task::new(TaskKind::CreateVm, Some(vm.id), TaskParams::Create { start: true }, now);
        (vm, task)
    }

    const ANY: PlacementRequest = PlacementRequest { pinned: None, strategy: Strategy::Spread };

    /// Creates a VM and ends its create task, as a worker would.
    async fn created_vm(s: &dyn Store, pool: Option<&IpPool>) -> Vm {
        let (vm, task) = new_vm(pool);
        let mut vm = s.create_vm(&vm, &task, ANY).await.expect("create_vm");
        finish(s, task.id).await;
        vm.state = VmState::Stopped;
        s.update_vm(&vm).await.expect("update_vm");
        vm
    }

    async fn finish(s: &dyn Store, id: crate::TaskId) {
        let now = Utc::now();
        let mut task = loop {
            let t = s
                .claim_task("conformance", now, now + Duration::seconds(60))
                .await
                .unwrap()
                .expect("a task to claim");
            if t.id == id {
                break t;
            }
            let mut other = t;
            other.state = TaskState::Succeeded;
            s.save_task(&other, "conformance", now).await.unwrap();
        };
        task.state = TaskState::Succeeded;
        task.finished_at = Some(now);
        s.save_task(&task, "conformance", now).await.expect("save_task");
    }

    /// Nodes: insert, unique names, update, usage, delete refused while VMs live there.
    pub async fn nodes(s: &dyn Store) {
        let a = node("a", 4);
        s.insert_node(&a).await.expect("insert node");
        assert_eq!(s.get_node(a.id).await.unwrap().name, "a");
        let dup = node("a", 2);
        assert!(matches!(s.insert_node(&dup).await, Err(Error::Conflict { .. })), "duplicate node name");
        let b = node("b", 2);
        s.insert_node(&b).await.unwrap();
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
        s.insert_pool(&p).await.unwrap();
        assert!(matches!(s.insert_pool(&pool("p", "198.51.100.0/24")).await, Err(Error::Conflict { .. })));
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
        let rest: Vec<IpAddr> = futures_collect(s, p.id, 4).await;
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
        s.insert_pool(&v6).await.unwrap();
        assert_eq!(s.allocate_lease(v6.id, None, None, now).await.unwrap().address, ip("2001:db8::1"));
        let top = ip("2001:db8::ffff:ffff:ffff:ffff");
        assert_eq!(s.allocate_lease(v6.id, Some(top), None, now).await.unwrap().address, top);
    }

    async fn futures_collect(s: &dyn Store, pool: crate::PoolId, n: usize) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(s.allocate_lease(pool, None, None, Utc::now()).await.unwrap().address);
        }
        out
    }

    /// `create_vm` places the VM, leases its address and queues its task.
    pub async fn create_places_leases_and_queues(s: &dyn Store) {
        let n = node("n", 4);
        s.insert_node(&n).await.unwrap();
        let p = pool("p", "198.51.100.0/24");
        s.insert_pool(&p).await.unwrap();
        let (vm, task) = new_vm(Some(&p));
        let created = s.create_vm(&vm, &task, ANY).await.unwrap();
        assert_eq!(created.node_id, n.id);
        assert_eq!(created.addresses, [ip("198.51.100.1")]);
        let stored = s.get_vm(vm.id).await.unwrap();
        assert_eq!(stored.addresses, created.addresses);
        assert_eq!(stored.name, "vm <&>");
        assert_eq!(stored.state, VmState::Creating);
        let queued = s.get_task(task.id).await.unwrap();
        assert_eq!((queued.state, queued.vm_id), (TaskState::Queued, Some(vm.id)));
        let leases = s.list_leases(p.id, &PageRequest::default()).await.unwrap().items;
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].vm_id, Some(vm.id));
        assert!(
            matches!(s.release_lease(p.id, leases[0].address).await, Err(Error::Conflict { .. })),
            "a VM's lease"
        );
        // Pinning to a node that does not exist.
        let (vm2, task2) = new_vm(None);
        let pinned = PlacementRequest { pinned: Some(crate::NodeId::new()), strategy: Strategy::Spread };
        assert!(matches!(s.create_vm(&vm2, &task2, pinned).await, Err(Error::NodeNotFound { .. })));
    }

    /// A create that cannot place or lease changes nothing.
    pub async fn create_is_all_or_nothing(s: &dyn Store) {
        let n = node("n", 2);
        s.insert_node(&n).await.unwrap();
        let p = pool("tiny", "192.0.2.0/30"); // two addresses
        s.insert_pool(&p).await.unwrap();
        s.allocate_lease(p.id, None, None, Utc::now()).await.unwrap();
        s.allocate_lease(p.id, None, None, Utc::now()).await.unwrap();
        let (vm, task) = new_vm(Some(&p));
        assert!(matches!(s.create_vm(&vm, &task, ANY).await, Err(Error::PoolExhausted { .. })));
        assert!(
            matches!(s.get_vm(vm.id).await, Err(Error::VmNotFound { .. })),
            "no VM after a failed create"
        );
        assert!(
            matches!(s.get_task(task.id).await, Err(Error::TaskNotFound { .. })),
            "no task after a failed create"
        );
        assert_eq!(s.get_node(n.id).await.unwrap().allocated.vms, 0);

        let (mut big, task) = new_vm(None);
        big.vcpus = 3;
        match s.create_vm(&big, &task, ANY).await {
            Err(Error::NoCapacity { rejections }) => {
                assert_eq!(rejections.len(), 1);
                assert_eq!(rejections[0].node_id, n.id);
            }
            other => panic!("expected NoCapacity, got {other:?}"),
        }
        assert!(s.list_vms(&PageRequest::default()).await.unwrap().items.is_empty());
        assert!(s
            .list_tasks(&TaskFilter::default(), &PageRequest::default())
            .await
            .unwrap()
            .items
            .is_empty());
    }

    /// A second task on a VM is refused, naming the active one; an illegal action too.
    pub async fn one_active_task_per_vm(s: &dyn Store) {
        s.insert_node(&node("n", 4)).await.unwrap();
        let (vm, create) = new_vm(None);
        s.create_vm(&vm, &create, ANY).await.unwrap();
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

    /// Claims are exclusive; leases renew and expire; an expired task is recovered by
    /// another worker and its first owner can no longer save it.
    pub async fn claims_leases_and_recovery(s: &dyn Store) {
        s.insert_node(&node("n", 4)).await.unwrap();
        let (vm, task) = new_vm(None);
        s.create_vm(&vm, &task, ANY).await.unwrap();
        let t0 = Utc::now();
        let lease = Duration::seconds(30);
        let mut claimed = s.claim_task("w1", t0, t0 + lease).await.unwrap().expect("claim");
        assert_eq!((claimed.id, claimed.state, claimed.attempts), (task.id, TaskState::Running, 1));
        assert_eq!(claimed.lease.as_ref().map(|l| l.owner.as_str()), Some("w1"));
        assert!(s.claim_task("w2", t0, t0 + lease).await.unwrap().is_none(), "claimed twice");
        let t1 = t0 + Duration::seconds(20);
        s.renew_lease(task.id, "w1", t1, t1 + lease).await.unwrap();
        assert!(s.claim_task("w2", t0 + lease, t0 + lease * 2).await.unwrap().is_none(), "renewed lease");
        claimed.progress = 40;
        claimed.log(t1, "step");
        s.save_task(&claimed, "w1", t1).await.unwrap();
        assert_eq!(s.get_task(task.id).await.unwrap().progress, 40);
        // w1 dies; its lease runs out.
        let t2 = t1 + lease + Duration::seconds(1);
        let recovered = s.claim_task("w2", t2, t2 + lease).await.unwrap().expect("recovery");
        assert_eq!((recovered.id, recovered.attempts, recovered.progress), (task.id, 2, 40));
        assert!(matches!(s.save_task(&claimed, "w1", t2).await, Err(Error::LeaseLost { .. })));
        assert!(matches!(s.renew_lease(task.id, "w1", t2, t2 + lease).await, Err(Error::LeaseLost { .. })));
        let mut done = recovered;
        done.state = TaskState::Succeeded;
        done.finished_at = Some(t2);
        s.save_task(&done, "w2", t2).await.unwrap();
        let stored = s.get_task(task.id).await.unwrap();
        assert_eq!(stored.state, TaskState::Succeeded);
        assert!(stored.lease.is_none());
        assert!(
            s.claim_task("w3", t2 + lease * 10, t2 + lease * 11).await.unwrap().is_none(),
            "ended tasks stay ended"
        );
    }

    /// Cancelling: queued at once, running by request, ended refused.
    pub async fn cancel(s: &dyn Store) {
        s.insert_node(&node("n", 4)).await.unwrap();
        let (vm, task) = new_vm(None);
        s.create_vm(&vm, &task, ANY).await.unwrap();
        let cancelled = s.cancel_task(task.id, Utc::now()).await.unwrap();
        assert_eq!(cancelled.state, TaskState::Cancelled);
        assert!(cancelled.finished_at.is_some());
        assert!(matches!(s.cancel_task(task.id, Utc::now()).await, Err(Error::Conflict { .. })));
        let t = Task::new(TaskKind::DeleteVm, Some(vm.id), TaskParams::None, Utc::now());
        s.enqueue_task(&t, None).await.expect("the cancelled task is no longer active");
        let now = Utc::now();
        let running = s.claim_task("w", now, now + Duration::seconds(30)).await.unwrap().unwrap();
        let asked = s.cancel_task(running.id, now).await.unwrap();
        assert_eq!((asked.state, asked.cancel_requested), (TaskState::Running, true));
        // A save by the worker does not clear the request.
        s.save_task(&running, "w", now).await.unwrap();
        assert!(s.get_task(running.id).await.unwrap().cancel_requested);
        assert!(matches!(s.cancel_task(crate::TaskId::new(), now).await, Err(Error::TaskNotFound { .. })));
    }

    /// Lists are newest first, paged by cursor, with filters.
    pub async fn paging(s: &dyn Store) {
        s.insert_node(&Node {
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
            let page = s.list_vms(&req).await.unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.iter().map(|v| v.id));
            match page.next_cursor {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, ids, "newest first, each once");
        let tasks = s
            .list_tasks(&TaskFilter { vm_id: Some(ids[0]), state: None }, &PageRequest::default())
            .await
            .unwrap();
        assert_eq!(tasks.items.len(), 1);
        let queued = TaskFilter { vm_id: None, state: Some(TaskState::Queued) };
        assert!(s.list_tasks(&queued, &PageRequest::default()).await.unwrap().items.is_empty());
        let all = s.list_tasks(&TaskFilter::default(), &PageRequest::first(5)).await.unwrap();
        assert_eq!(all.items.len(), 5);
        assert!(all.items.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        assert!(matches!(s.list_vms(&PageRequest::first(0)).await, Err(Error::Invalid { .. })));
        let bad = PageRequest { limit: None, cursor: Some("garbage".into()) };
        assert!(matches!(s.list_vms(&bad).await, Err(Error::Invalid { .. })));
    }

    /// Resizing checks the node's room, counting the VM's own share as free.
    pub async fn resize_respects_capacity(s: &dyn Store) {
        let n = node("n", 4);
        s.insert_node(&n).await.unwrap();
        let vm = created_vm(s, None).await;
        let grown = s.resize_vm(vm.id, 4, 2048, 20).await.unwrap();
        assert_eq!((grown.vcpus, grown.memory_mib, grown.disk_gib), (4, 2048, 20));
        assert!(matches!(s.resize_vm(vm.id, 5, 2048, 20).await, Err(Error::NoCapacity { .. })));
        assert_eq!(s.get_vm(vm.id).await.unwrap().vcpus, 4, "a refused resize changes nothing");
        let usage = s.get_node(n.id).await.unwrap().allocated;
        assert_eq!((usage.vcpus, usage.memory_mib, usage.storage_gib), (4, 2048, 20));
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
        s.insert_node(&n).await.unwrap();
        let p = pool("p", "192.0.2.0/30");
        s.insert_pool(&p).await.unwrap();
        let vm = created_vm(s, Some(&p)).await;
        s.delete_vm(vm.id).await.unwrap();
        assert!(matches!(s.get_vm(vm.id).await, Err(Error::VmNotFound { .. })));
        assert!(s.list_leases(p.id, &PageRequest::default()).await.unwrap().items.is_empty());
        assert_eq!(s.get_node(n.id).await.unwrap().allocated.vms, 0);
        assert_eq!(s.allocate_lease(p.id, None, None, Utc::now()).await.unwrap().address, ip("192.0.2.1"));
        assert!(matches!(s.delete_vm(vm.id).await, Err(Error::VmNotFound { .. })));
    }
}

/// The [`Hypervisor`](crate::Hypervisor) suite. It works on a live node, so each check makes
/// its own VM ids and removes what it made.
pub mod hypervisor {
    use crate::{DomainSpec, Error, Hypervisor, PowerState, VirtType, VmId};

    /// A domain spec for `vm` titled `title`: 1 vCPU, 128 MiB.
    pub fn spec(vm: VmId, title: &str, virt_type: VirtType) -> DomainSpec {
        DomainSpec {
            vm_id: vm,
            title: title.to_owned(),
            vcpus: 1,
            memory_mib: 128,
            virt_type,
            mac: vm.mac_address(),
            addresses: vec!["192.0.2.10".parse().expect("address")],
        }
    }

    /// Runs every check.
    pub async fn run(hv: &dyn Hypervisor, virt_type: VirtType) {
        node_info(hv).await;
        lifecycle(hv, virt_type).await;
        unknown_domains(hv).await;
        titles_round_trip(hv, virt_type).await;
    }

    /// The node reports some capacity.
    pub async fn node_info(hv: &dyn Hypervisor) {
        let info = hv.node_info().await.expect("node_info");
        assert!(info.capacity.cpus > 0 && info.capacity.memory_mib > 0, "{info:?}");
    }

    /// Volume, define, every power action the node supports, redefine, undefine, delete.
    pub async fn lifecycle(hv: &dyn Hypervisor, virt_type: VirtType) {
        let caps = hv.capabilities();
        let vm = VmId::new();
        let vol = hv.create_volume(vm, 1).await.expect("create_volume");
        assert_eq!((vol.name.as_str(), vol.capacity_gib), (vm.volume_name().as_str(), 1));
        assert!(matches!(hv.create_volume(vm, 1).await, Err(Error::Conflict { .. })), "volume twice");
        assert_eq!(hv.volume(vm).await.unwrap().map(|v| v.capacity_gib), Some(1));
        hv.define_domain(&spec(vm, "lifecycle", virt_type)).await.expect("define");
        let d = hv.domain(vm).await.unwrap().expect("defined domain");
        assert_eq!(
            (d.state, d.title.as_str(), d.vcpus, d.memory_mib),
            (PowerState::Shutoff, "lifecycle", 1, 128)
        );
        assert!(hv.list_domains().await.unwrap().iter().any(|d| d.vm_id == vm));
        hv.start(vm).await.expect("start");
        assert_eq!(hv.domain(vm).await.unwrap().unwrap().state, PowerState::Running);
        if caps.suspend {
            hv.suspend(vm).await.expect("suspend");
            assert_eq!(hv.domain(vm).await.unwrap().unwrap().state, PowerState::Paused);
            hv.resume(vm).await.expect("resume");
            assert_eq!(hv.domain(vm).await.unwrap().unwrap().state, PowerState::Running);
        } else {
            assert!(matches!(hv.suspend(vm).await, Err(Error::Unsupported { .. })));
        }
        if caps.reboot {
            hv.reboot(vm).await.expect("reboot");
        } else {
            assert!(matches!(hv.reboot(vm).await, Err(Error::Unsupported { .. })));
        }
        assert!(hv.undefine_domain(vm).await.is_err(), "undefining a running domain");
        hv.stop(vm).await.expect("stop");
        assert_eq!(hv.domain(vm).await.unwrap().unwrap().state, PowerState::Shutoff);
        let mut bigger = spec(vm, "renamed", virt_type);
        bigger.vcpus = 2;
        bigger.memory_mib = 256;
        hv.define_domain(&bigger).await.expect("redefine");
        let d = hv.domain(vm).await.unwrap().unwrap();
        assert_eq!((d.title.as_str(), d.vcpus, d.memory_mib), ("renamed", 2, 256));
        if caps.resize_volume {
            hv.resize_volume(vm, 2).await.expect("resize_volume");
            assert_eq!(hv.volume(vm).await.unwrap().map(|v| v.capacity_gib), Some(2));
        }
        hv.undefine_domain(vm).await.expect("undefine");
        assert!(hv.domain(vm).await.unwrap().is_none());
        hv.delete_volume(vm).await.expect("delete_volume");
        assert!(hv.volume(vm).await.unwrap().is_none());
    }

    /// Calls on a domain that does not exist say so.
    pub async fn unknown_domains(hv: &dyn Hypervisor) {
        let vm = VmId::new();
        assert!(hv.domain(vm).await.unwrap().is_none());
        assert!(hv.volume(vm).await.unwrap().is_none());
        assert!(matches!(hv.start(vm).await, Err(Error::VmNotFound { id }) if id == vm));
        assert!(matches!(hv.undefine_domain(vm).await, Err(Error::VmNotFound { .. })));
        assert!(matches!(hv.delete_volume(vm).await, Err(Error::VmNotFound { .. })));
    }

    /// Titles with markup, quotes and unicode come back byte for byte.
    pub async fn titles_round_trip(hv: &dyn Hypervisor, virt_type: VirtType) {
        for title in ["<b>&amp;</b>", "it's \"quoted\"", "]]> <!-- -->", "Ünïcødé 仮想マシン 🚀"] {
            let vm = VmId::new();
            hv.create_volume(vm, 1).await.expect("create_volume");
            let defined = hv.define_domain(&spec(vm, title, virt_type)).await;
            let got = hv.domain(vm).await.unwrap().map(|d| d.title);
            if defined.is_ok() {
                hv.undefine_domain(vm).await.expect("undefine");
            }
            hv.delete_volume(vm).await.expect("delete_volume");
            defined.expect("define");
            assert_eq!(got.as_deref(), Some(title));
        }
    }
}
