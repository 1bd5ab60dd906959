//! Placement groups: the [`PlacementGroupStore`](crate::PlacementGroupStore) part of every
//! store, and the group rule every store's create applies in its transaction.

use chrono::Utc;

use super::store::{new_vm, node, ANY};
use crate::error::Error;
use crate::page::PageRequest;
use crate::store::{PlacementRequest, Store, VmFilter};
use crate::{Strategy, Vm};

/// Placement groups: anti-affinity puts each VM on its own node and refuses one more than
/// there are nodes, naming the group for each; affinity keeps VMs on the first one's node;
/// a group with VMs cannot go, and a create cannot join a group that went.
pub async fn placement_groups(s: &dyn Store) {
    use crate::{GroupPolicy, PlacementGroup, PlacementGroupSpec, RejectReason};
    let nodes = [node("a", 8), node("b", 8), node("c", 8)];
    for n in &nodes {
        s.create_node(n).await.unwrap();
    }
    let group = |name: &str, policy| {
        PlacementGroup::from_spec(&PlacementGroupSpec { name: name.into(), policy }, Utc::now()).unwrap()
    };
    let (apart, together) = (group("db", GroupPolicy::AntiAffinity), group("web", GroupPolicy::Affinity));
    s.create_placement_group(&apart).await.unwrap();
    s.create_placement_group(&together).await.unwrap();
    assert!(matches!(
        s.create_placement_group(&group("db", GroupPolicy::Affinity)).await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(s.get_placement_group(apart.id).await.unwrap(), apart);
    let listed = s.list_placement_groups(&PageRequest::default()).await.unwrap().items;
    assert_eq!(listed, [together.clone(), apart.clone()], "newest first");

    // Packing would put every VM on one node: the group's rule is what spreads them.
    let join = |g: &PlacementGroup| PlacementRequest {
        group: Some(g.clone()),
        strategy: Strategy::Pack,
        ..ANY.clone()
    };
    let mut placed = Vec::new();
    for _ in 0..3 {
        let (vm, task) = new_vm(None);
        let vm = Vm { placement_group_id: Some(apart.id), ..vm };
        placed.push(s.create_vm(&vm, &task, &join(&apart), None).await.expect("a node of its own").node_id);
    }
    placed.sort();
    placed.dedup();
    assert_eq!(placed.len(), 3, "three VMs of an anti-affinity group on three nodes");
    let mut all: Vec<_> = nodes.iter().map(|n| n.id).collect();
    all.sort();
    assert_eq!(s.placement_group_nodes(apart.id).await.unwrap(), all);
    let (vm, task) = new_vm(None);
    match s.create_vm(&Vm { placement_group_id: Some(apart.id), ..vm }, &task, &join(&apart), None).await {
        Err(Error::NoCapacity { rejections }) => {
            assert_eq!(rejections.len(), 3);
            for r in rejections {
                assert_eq!(r.reasons, [RejectReason::AntiAffinity { group: "db".into() }], "{r}");
            }
        }
        other => panic!("a fourth member fits nowhere: {other:?}"),
    }

    let mut gathered = Vec::new();
    for _ in 0..3 {
        let (vm, task) = new_vm(None);
        let vm = Vm { placement_group_id: Some(together.id), ..vm };
        gathered.push(s.create_vm(&vm, &task, &join(&together), None).await.unwrap().node_id);
    }
    assert!(gathered.iter().all(|n| *n == gathered[0]), "one node for an affinity group: {gathered:?}");
    // A VM is placed by its own group's rule or none: a request that disagrees is refused.
    let (vm, task) = new_vm(None);
    let stray = s.create_vm(&Vm { placement_group_id: Some(apart.id), ..vm.clone() }, &task, ANY, None).await;
    assert!(matches!(stray, Err(Error::Invalid { .. })), "{stray:?}");
    let unjoined = s.create_vm(&vm, &task, &join(&apart), None).await;
    assert!(matches!(unjoined, Err(Error::Invalid { .. })), "{unjoined:?}");
    let stored =
        s.get_vm(s.list_vms(&VmFilter::default(), &PageRequest::default()).await.unwrap().items[0].id);
    assert_eq!(stored.await.unwrap().placement_group_id, Some(together.id), "the VM keeps its group");

    assert!(matches!(s.delete_placement_group(apart.id).await, Err(Error::Conflict { .. })), "it has VMs");
    let empty = group("empty", GroupPolicy::AntiAffinity);
    s.create_placement_group(&empty).await.unwrap();
    s.delete_placement_group(empty.id).await.unwrap();
    assert!(matches!(s.get_placement_group(empty.id).await, Err(Error::PlacementGroupNotFound { .. })));
    assert!(matches!(s.delete_placement_group(empty.id).await, Err(Error::PlacementGroupNotFound { .. })));
    assert!(matches!(s.placement_group_nodes(empty.id).await, Err(Error::PlacementGroupNotFound { .. })));
    let (vm, task) = new_vm(None);
    let joined =
        s.create_vm(&Vm { placement_group_id: Some(empty.id), ..vm }, &task, &join(&empty), None).await;
    assert!(matches!(joined, Err(Error::PlacementGroupNotFound { .. })), "{joined:?}");
}

/// Migrations: queueing holds the target's capacity (the VM counts on both nodes) and
/// stores the task with the target and placement's explanation; the source is never
/// chosen; the switch-over moves the VM and gives the source back, once; a rollback gives
/// the target back, once; a VM with an active task or in the wrong state is refused and
/// nothing changes.
pub async fn migrations(s: &dyn Store) {
    use super::store::{created_vm, finish};
    use crate::store::MigrationRequest;
    use crate::task::{Task, TaskKind, TaskParams};
    use crate::{EventFilter, EventPattern, RejectReason, Usage};
    let (a, b) = (node("a", 8), node("b", 8));
    s.create_node(&a).await.unwrap();
    let vm = created_vm(s, None).await;
    let new_task = || {
        let params = TaskParams::Migrate { from: vm.node_id, to: vm.node_id, live: false, shared: false };
        Task::new(TaskKind::MigrateVm, Some(vm.id), params, Utc::now())
    };
    let anywhere = MigrationRequest { placement: ANY.clone(), live: None, recover: false, shared: false };
    match s.queue_migration(vm.id, &new_task(), &anywhere).await {
        Err(Error::NoCapacity { rejections }) => assert_eq!(rejections[0].reasons, [RejectReason::Source]),
        other => panic!("one node: nowhere to go, got {other:?}"),
    }
    s.create_node(&b).await.unwrap();
    let live = MigrationRequest { live: Some(true), ..anywhere.clone() };
    assert!(matches!(s.queue_migration(vm.id, &new_task(), &live).await, Err(Error::Conflict { .. })));
    let task = s.queue_migration(vm.id, &new_task(), &anywhere).await.unwrap();
    assert_eq!(task.params, TaskParams::Migrate { from: a.id, to: b.id, live: false, shared: false });
    assert!(task.steps[0].message.starts_with("placed on b"), "{:?}", task.steps);
    assert_eq!(s.get_task(task.id).await.unwrap().params, task.params, "stored as answered");
    let held = s.get_vm(vm.id).await.unwrap();
    assert_eq!((held.node_id, held.migrating_to), (a.id, Some(b.id)));
    assert_eq!(s.get_node(a.id).await.unwrap().allocated, Usage::default().with(&vm.demand()));
    assert_eq!(s.get_node(b.id).await.unwrap().allocated, Usage::default().with(&vm.demand()));
    assert!(matches!(s.queue_migration(vm.id, &new_task(), &anywhere).await, Err(Error::ActiveTask { .. })));
    assert!(matches!(s.switch_migration(vm.id, a.id).await, Err(Error::Conflict { .. })));

    let moved = s.switch_migration(vm.id, b.id).await.unwrap();
    assert_eq!((moved.node_id, moved.migrating_to), (b.id, None));
    assert_eq!(s.switch_migration(vm.id, b.id).await.unwrap(), moved, "a second switch changes nothing");
    s.end_migration(vm.id, b.id).await.unwrap();
    assert_eq!(s.get_node(a.id).await.unwrap().allocated, Usage::default());
    assert_eq!(s.get_node(b.id).await.unwrap().allocated, Usage::default().with(&vm.demand()));
    assert_eq!(s.get_vm(vm.id).await.unwrap(), moved);
    let migrated =
        EventFilter { types: EventPattern::parse_list("vm.migrated").unwrap(), ..Default::default() };
    let events = s.list_events(&migrated, 10).await.unwrap();
    assert_eq!(events.len(), 1, "one event for one move");
    assert_eq!(events[0].node_id, Some(b.id));
    finish(s, task.id).await;

    // Back to a, rolled back: the hold on a goes, once.
    let back = s.queue_migration(vm.id, &new_task(), &anywhere).await.unwrap();
    assert!(matches!(back.params, TaskParams::Migrate { to, .. } if to == a.id));
    s.end_migration(vm.id, a.id).await.unwrap();
    s.end_migration(vm.id, a.id).await.unwrap();
    assert_eq!(s.get_node(a.id).await.unwrap().allocated, Usage::default());
    assert_eq!(s.get_node(b.id).await.unwrap().allocated, Usage::default().with(&vm.demand()));
    assert_eq!(s.get_vm(vm.id).await.unwrap().migrating_to, None);
}

/// Node leases: a renewal moves the expiry and keeps HA's state; a change of state holds
/// only if the node did not answer meanwhile, and records its event with it.
pub async fn node_leases(s: &dyn Store) {
    use crate::event::{Event, EventType};
    use crate::ha::{NodeHealth, NodeLease};
    use crate::{EventFilter, EventPattern};
    let n = node("a", 8);
    s.create_node(&n).await.unwrap();
    assert!(s.node_leases().await.unwrap().is_empty(), "a node that never answered has none");
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc);
    let lease = s.renew_node_lease(n.id, t0, t0 + chrono::Duration::seconds(30)).await.unwrap();
    assert_eq!((lease.health, lease.expires_at), (NodeHealth::Alive, t0 + chrono::Duration::seconds(30)));
    let expired = NodeLease { health: NodeHealth::Expired, operator_asked: true, ..lease.clone() };
    let event = Event::new(EventType::NodeLeaseExpired, t0).node(Some(n.id));
    assert!(s.set_node_health(&lease, &expired, Some(event)).await.unwrap());
    assert_eq!(s.node_leases().await.unwrap(), std::slice::from_ref(&expired));
    // The node answers: the expiry moves, the state stays for HA to revive.
    let renewed = s.renew_node_lease(n.id, t0, t0 + chrono::Duration::seconds(60)).await.unwrap();
    assert_eq!((renewed.health, renewed.operator_asked), (NodeHealth::Expired, true));
    // A change decided on the old expiry is refused, and its event not recorded.
    let fenced = NodeLease { health: NodeHealth::Fenced, ..expired.clone() };
    let late = Event::new(EventType::NodeFenced, t0).node(Some(n.id));
    assert!(!s.set_node_health(&expired, &fenced, Some(late)).await.unwrap());
    let types = EventPattern::parse_list("node.lease_expired,node.fenced").unwrap();
    let events = s.list_events(&EventFilter { types, ..Default::default() }, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventType::NodeLeaseExpired]);
    assert!(matches!(
        s.renew_node_lease(crate::NodeId::new(), t0, t0).await,
        Err(Error::NodeNotFound { .. })
    ));
    s.delete_node(n.id).await.unwrap();
    assert!(s.node_leases().await.unwrap().is_empty(), "a removed node's lease goes with it");
}
