//! Migration on the in-memory fakes: live and offline moves, the capacity held on the
//! target and given back, the rollback of a failed or cancelled move, placement's choice
//! and its explanation. (The same saga on two real libvirt nodes, with `kill -9` at each
//! phase, is `tests/tests/migration.rs`.)

use std::sync::Arc;

use futures::executor::block_on;

use vmm_core::memory::{HypervisorCall, InMemoryConnector, InMemoryHypervisor, InMemoryStore};
use vmm_core::{
    Error, EventFilter, EventPattern, GroupPolicy, MigrateSpec, Node, NodeSpec, NodeUriPolicy,
    PlacementGroupSpec, PowerState, TaskParams, TaskState, Usage, Vm, VmSpec, VmState, Vmm, VmmConfig,
};

const N1: &str = "memory://n1?cpus=4&memory_mib=8192&storage_gib=100";
const N2: &str = "memory://n2?cpus=4&memory_mib=8192&storage_gib=100";
const N3: &str = "memory://n3?cpus=4&memory_mib=8192&storage_gib=100";

struct Fixture {
    vmm: Vmm,
    nodes: Vec<(Node, Arc<InMemoryHypervisor>)>,
}

async fn fixture(uris: &[&str]) -> Fixture {
    let connector = Arc::new(InMemoryConnector::new());
    let config =
        VmmConfig { worker_id: "w".into(), node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    let vmm = Vmm::builder()
        .with_store(Arc::new(InMemoryStore::new()))
        .with_connector(connector.clone())
        .with_config(config)
        .build();
    let mut nodes = Vec::new();
    for (i, uri) in uris.iter().enumerate() {
        let node = vmm.create_node(NodeSpec::new(format!("n{}", i + 1), *uri)).await.unwrap();
        nodes.push((node, connector.get(uri).unwrap()));
    }
    Fixture { vmm, nodes }
}

impl Fixture {
    /// A VM made on node `i`, running or stopped, its disk holding `content`.
    async fn vm_on(&self, i: usize, start: bool, content: &str) -> Vm {
        let spec = VmSpec { node_id: Some(self.nodes[i].0.id), start, ..VmSpec::new("a", 1, 512, 10) };
        let (vm, _) = self.vmm.create_vm(spec).await.unwrap();
        self.vmm.run_until_idle().await.unwrap();
        assert!(self.nodes[i].1.set_volume_content(vm.id, content));
        self.vmm.get_vm(vm.id).await.unwrap()
    }

    async fn allocated(&self, i: usize) -> Usage {
        self.vmm.get_node(self.nodes[i].0.id).await.unwrap().allocated
    }

    async fn power(&self, i: usize, vm: &Vm) -> Option<PowerState> {
        let hv: &dyn vmm_core::Hypervisor = self.nodes[i].1.as_ref();
        hv.domain(vm.id).await.unwrap().map(|d| d.state)
    }
}

#[test]
fn a_running_vm_moves_live_with_its_disk_and_capacity() {
    block_on(async {
        let f = fixture(&[N1, N2]).await;
        let vm = f.vm_on(0, true, "the data").await;
        let task = f.vmm.migrate_vm(vm.id, MigrateSpec::default()).await.unwrap();
        let TaskParams::Migrate { from, to, live, .. } = task.params else { panic!("{:?}", task.params) };
        assert_eq!(
            (from, to, live),
            (f.nodes[0].0.id, f.nodes[1].0.id, true),
            "placement chose the other node"
        );
        assert!(task.steps[0].message.contains("placed on n2"), "{:?}", task.steps);
        assert!(task.steps[0].message.contains("n1: the VM is on this node"), "{:?}", task.steps);
        // Held on both while it moves.
        assert_eq!(f.allocated(0).await.vms, 1);
        assert_eq!(f.allocated(1).await.vms, 1);
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().migrating_to, Some(to));

        f.vmm.run_until_idle().await.unwrap();
        let done = f.vmm.get_task(task.id).await.unwrap();
        assert_eq!(done.state, TaskState::Succeeded, "{:?}", done);
        let moved = f.vmm.get_vm(vm.id).await.unwrap();
        assert_eq!((moved.node_id, moved.migrating_to, moved.state), (to, None, VmState::Running));
        assert_eq!(f.power(1, &vm).await, Some(PowerState::Running));
        assert_eq!(f.power(0, &vm).await, None, "the source keeps no definition");
        assert_eq!(f.nodes[0].1.leftovers(), 0, "nor disk, seed or log");
        assert_eq!(f.nodes[1].1.volume_of(vm.id).unwrap().content, "the data");
        assert_eq!(f.allocated(0).await, Usage::default());
        assert_eq!(f.allocated(1).await.vms, 1);
        let events = f
            .vmm
            .list_events(
                &EventFilter {
                    types: EventPattern::parse_list("vm.migrated").unwrap(),
                    ..Default::default()
                },
                10,
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].node_id, Some(to));
    });
}

#[test]
fn a_stopped_vm_moves_offline_to_the_node_asked_for() {
    block_on(async {
        let f = fixture(&[N1, N2, N3]).await;
        let vm = f.vm_on(0, false, "cold data").await;
        let to = f.nodes[2].0.id;
        let task = f.vmm.migrate_vm(vm.id, MigrateSpec { node_id: Some(to), live: None }).await.unwrap();
        assert!(matches!(task.params, TaskParams::Migrate { live: false, .. }));
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        let moved = f.vmm.get_vm(vm.id).await.unwrap();
        assert_eq!((moved.node_id, moved.state), (to, VmState::Stopped));
        assert_eq!(f.power(2, &vm).await, Some(PowerState::Shutoff));
        assert_eq!(f.nodes[2].1.volume_of(vm.id).unwrap().content, "cold data");
        assert!(f.nodes[2].1.seed(vm.id).is_none() || f.nodes[0].1.seed(vm.id).is_none());
        assert_eq!(f.nodes[0].1.leftovers(), 0);
        assert_eq!(f.nodes[1].1.leftovers(), 0, "the node not asked for saw nothing");
    });
}

#[test]
fn a_failed_transfer_leaves_the_vm_where_it_was() {
    block_on(async {
        let f = fixture(&[N1, N2]).await;
        let vm = f.vm_on(0, true, "keep me").await;
        f.nodes[0].1.fail_next(HypervisorCall::Migrate);
        let task = f.vmm.migrate_vm(vm.id, MigrateSpec::default()).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        let failed = f.vmm.get_task(task.id).await.unwrap();
        assert_eq!(failed.state, TaskState::Failed);
        let stayed = f.vmm.get_vm(vm.id).await.unwrap();
        assert_eq!(
            (stayed.node_id, stayed.migrating_to, stayed.state),
            (f.nodes[0].0.id, None, VmState::Running)
        );
        assert_eq!(f.power(0, &vm).await, Some(PowerState::Running));
        assert_eq!(f.nodes[0].1.volume_of(vm.id).unwrap().content, "keep me");
        assert_eq!(f.nodes[1].1.leftovers(), 0, "the target's disk and seed are gone");
        assert_eq!(f.allocated(1).await, Usage::default(), "the held capacity went back");
        // And it can be tried again.
        let again = f.vmm.migrate_vm(vm.id, MigrateSpec::default()).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(again.id).await.unwrap().state, TaskState::Succeeded);
    });
}

#[test]
fn a_cancelled_migration_gives_the_capacity_back() {
    block_on(async {
        let f = fixture(&[N1, N2]).await;
        let vm = f.vm_on(0, true, "x").await;
        let task = f.vmm.migrate_vm(vm.id, MigrateSpec::default()).await.unwrap();
        assert_eq!(f.allocated(1).await.vms, 1);
        f.vmm.cancel_task(task.id).await.unwrap();
        assert_eq!(f.allocated(1).await, Usage::default());
        assert_eq!(f.vmm.get_vm(vm.id).await.unwrap().migrating_to, None);
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.nodes[1].1.leftovers(), 0);
    });
}

#[test]
fn bad_requests_change_nothing() {
    block_on(async {
        let f = fixture(&[N1, N2]).await;
        let running = f.vm_on(0, true, "x").await;
        let here = Some(f.nodes[0].0.id);
        let err = f.vmm.migrate_vm(running.id, MigrateSpec { node_id: here, live: None }).await.unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
        let err =
            f.vmm.migrate_vm(running.id, MigrateSpec { node_id: None, live: Some(false) }).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
        let missing = vmm_core::NodeId::new();
        let err = f
            .vmm
            .migrate_vm(running.id, MigrateSpec { node_id: Some(missing), live: None })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NodeNotFound { .. }), "{err:?}");
        assert_eq!(f.allocated(1).await, Usage::default());
        // One node only: nowhere to go, and every node says why.
        let lonely = fixture(&[N1]).await;
        let vm = lonely.vm_on(0, false, "x").await;
        match lonely.vmm.migrate_vm(vm.id, MigrateSpec::default()).await.unwrap_err() {
            Error::NoCapacity { rejections } => {
                assert_eq!(rejections.len(), 1);
                assert_eq!(rejections[0].reasons, vec![vmm_core::RejectReason::Source]);
            }
            other => panic!("{other:?}"),
        }
        assert!(lonely.vmm.get_vm(vm.id).await.unwrap().migrating_to.is_none());
    });
}

#[test]
fn a_migration_keeps_an_anti_affinity_group_apart() {
    block_on(async {
        let f = fixture(&[N1, N2, N3]).await;
        let group = f
            .vmm
            .create_placement_group(&PlacementGroupSpec {
                name: "g".into(),
                policy: GroupPolicy::AntiAffinity,
            })
            .await
            .unwrap();
        let mut vms = Vec::new();
        for i in 0..2 {
            let spec = VmSpec {
                node_id: Some(f.nodes[i].0.id),
                placement_group_id: Some(group.id),
                ..VmSpec::new(format!("g{i}"), 1, 512, 10)
            };
            vms.push(f.vmm.create_vm(spec).await.unwrap().0);
        }
        f.vmm.run_until_idle().await.unwrap();
        // n2 holds the other member: only n3 will do.
        let task = f.vmm.migrate_vm(vms[0].id, MigrateSpec::default()).await.unwrap();
        assert!(matches!(task.params, TaskParams::Migrate { to, .. } if to == f.nodes[2].0.id));
        assert!(task.steps[0].message.contains("anti-affinity"), "{:?}", task.steps[0]);
        let err =
            f.vmm.migrate_vm(vms[1].id, MigrateSpec { node_id: Some(f.nodes[0].0.id), live: None }).await;
        assert!(err.is_err(), "the active task and the group both refuse: {err:?}");
    });
}
