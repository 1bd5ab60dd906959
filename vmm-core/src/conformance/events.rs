//! The event log part of the [`Store`](crate::Store) suite: changes append their events in
//! order, readers filter by type and by what they may see, ids only grow (under concurrent
//! writers too), and pruning never lowers them.

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};

use super::store::{new_vm, node};
use crate::event::{EventFilter, EventPattern, EventType};
use crate::users::Area;
use crate::{IpPool, IpPoolSpec, PlacementRequest, Store, Strategy, TaskState, UserId, VmId};

const ANY: &PlacementRequest =
    &PlacementRequest { pinned: None, strategy: Strategy::Spread, only: None, group: None };

/// A user of role `user`, kept in `s`.
async fn user(s: &dyn Store, id: UserId, email: &str) -> crate::users::User {
    let user = crate::users::User {
        id,
        email: email.into(),
        role: crate::Role::User,
        state: crate::UserState::Active,
        auth: crate::AuthSource::Local,
        quota: crate::Quota::default(),
        created_at: Utc::now(),
    };
    s.create_user(&user, None).await.unwrap();
    user
}

fn all() -> EventFilter {
    EventFilter::default()
}

async fn kinds(s: &dyn Store, filter: &EventFilter) -> Vec<EventType> {
    s.list_events(filter, 1000).await.unwrap().into_iter().map(|e| e.kind).collect()
}

/// A VM's life writes its events in order, with growing ids, and readers see what their
/// filter lets them.
pub async fn events_follow_changes(s: &dyn Store) {
    use EventType::*;
    assert_eq!(s.last_event_id().await.unwrap(), 0);
    s.create_node(&node("n", 4)).await.unwrap();
    let p = IpPool::from_spec(&IpPoolSpec::new("p", "192.0.2.0/29"), Utc::now()).unwrap();
    s.create_pool(&p).await.unwrap();
    let owner = UserId::new();
    let (mut vm, task) = new_vm(Some(&p));
    vm.name = "web <1>".into();
    user(s, owner, "events@example.com").await;
    vm.owner_id = Some(owner);
    s.create_vm(&vm, &task, ANY, None).await.unwrap();
    let mut run = s.claim_task("w", Utc::now(), StdDuration::from_secs(60)).await.unwrap().unwrap();
    run.progress = 50;
    s.save_task(&run, run.fence()).await.unwrap();
    run.state = TaskState::Succeeded;
    run.progress = 100;
    s.save_task(&run, run.fence()).await.unwrap();
    s.delete_vm(vm.id).await.unwrap();

    let events = s.list_events(&all(), 1000).await.unwrap();
    let got: Vec<EventType> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        got,
        [
            NodeCreated,
            UserCreated,
            LeaseTaken,
            TaskQueued,
            TaskStarted,
            TaskProgress,
            TaskSucceeded,
            VmCreated,
            LeaseReleased,
            VmDeleted
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id), "ids grow: {events:?}");
    let last = events.last().unwrap().id;
    assert_eq!(s.last_event_id().await.unwrap(), last);
    let created = &events[7];
    assert_eq!((created.vm_id, created.task_id, created.owner_id), (Some(vm.id), Some(task.id), Some(owner)));
    assert_eq!(created.data["vm_name"], "web <1>");
    assert_eq!(events[2].data["address"], "192.0.2.1");
    assert_eq!(events[9].data["vm_name"], "web <1>");

    // Resuming after any id gives exactly the rest.
    for (i, e) in events.iter().enumerate() {
        let rest = s.list_events(&EventFilter { after: e.id, ..all() }, 1000).await.unwrap();
        assert_eq!(rest, events[i + 1..].to_vec());
    }
    assert_eq!(s.list_events(&all(), 3).await.unwrap(), events[..3].to_vec());
    // By type and prefix.
    let types = EventPattern::parse_list("vm.*,task.succeeded").unwrap();
    assert_eq!(kinds(s, &EventFilter { types, ..all() }).await, [TaskSucceeded, VmCreated, VmDeleted]);
    // A user reads their own objects' events; an operator-like reader the areas it sees.
    let own = EventFilter { reader: Some((Vec::new(), owner)), ..all() };
    // Everything but the node's creation is about the user or their VM.
    assert_eq!(kinds(s, &own).await, got[1..].to_vec());
    let stranger = EventFilter { reader: Some((Vec::new(), UserId::new())), ..all() };
    assert!(kinds(s, &stranger).await.is_empty());
    let nodes_only = EventFilter { reader: Some((vec![Area::Nodes], UserId::new())), ..all() };
    assert_eq!(kinds(s, &nodes_only).await, [NodeCreated]);
}

/// Concurrent writers and a reader that polls after the last id it saw: the reader sees
/// every event exactly once, whatever order the writers commit in.
pub async fn concurrent_writers_never_hide_an_event(s: &dyn Store, writers: usize) {
    let capacity = crate::Capacity { cpus: 1024, memory_mib: 1 << 30, storage_gib: 1 << 20 };
    s.create_node(&crate::Node { capacity, ..node("big", 1024) }).await.unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let write = async {
        let creates = (0..writers).map(|_| async {
            let (vm, task) = new_vm(None);
            s.create_vm(&vm, &task, ANY, None).await.unwrap();
        });
        futures::future::join_all(creates).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let read = async {
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            let page = s.list_events(&EventFilter { after, ..all() }, 7).await.unwrap();
            if let Some(last) = page.last() {
                after = last.id;
            }
            let empty = page.is_empty();
            seen.extend(page.into_iter().map(|e| e.id));
            if finished && empty {
                return seen;
            }
            futures_timer::Delay::new(StdDuration::from_millis(1)).await;
        }
    };
    let ((), seen) = futures::future::join(write, read).await;
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was read twice");
    let everything: Vec<u64> = s.list_events(&all(), 1000).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(seen, everything, "the polling reader missed events");
    // A node and, per create, the task queued.
    assert_eq!(everything.len(), 1 + writers);
}

/// Pruning removes old events and never lowers the ids that follow.
pub async fn pruning_keeps_ids_growing(s: &dyn Store) {
    s.create_node(&node("a", 4)).await.unwrap();
    s.create_node(&node("b", 4)).await.unwrap();
    let last = s.last_event_id().await.unwrap();
    assert_eq!(s.list_events(&all(), 10).await.unwrap().len(), 2);
    assert_eq!(s.prune_events(Utc::now() - Duration::hours(1)).await.unwrap(), 0);
    assert_eq!(s.prune_events(Utc::now() + Duration::seconds(1)).await.unwrap(), 2);
    assert!(s.list_events(&all(), 10).await.unwrap().is_empty());
    assert_eq!(s.last_event_id().await.unwrap(), last);
    s.create_node(&node("c", 4)).await.unwrap();
    let after = s.list_events(&all(), 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert!(after[0].id > last, "{} after pruning {last}", after[0].id);
}

/// Webhook subscriptions: one claim at a time, delivery state saved only by the claim's
/// holder, attempts listed newest first, everything gone with the subscription's owner.
pub async fn webhook_claims(s: &dyn Store) {
    use crate::webhook::{Delivery, DeliveryStatus, Webhook, WebhookSpec};
    use crate::{DeliveryId, Secret};
    let user = user(s, UserId::new(), "hooks@example.com").await;
    let now = Utc::now();
    let spec = WebhookSpec {
        url: "https://hooks.example/a".into(),
        events: EventPattern::parse_list("vm.*").unwrap(),
        secret: Some(Secret::new("whsec_0123456789abcdef")),
    };
    let hook = Webhook::new(spec, user.id, crate::Role::User, 0, now);
    s.create_webhook(&hook).await.unwrap();
    let got = s.get_webhook(hook.id).await.unwrap();
    assert_eq!(got.secret.as_ref().map(Secret::expose), Some("whsec_0123456789abcdef"));
    let listed = s.list_webhooks(Some(user.id), false, &crate::PageRequest::default()).await.unwrap().items;
    assert!(s
        .list_webhooks(Some(user.id), true, &crate::PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(listed.len(), 1);
    assert!(s
        .list_webhooks(Some(UserId::new()), false, &crate::PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());

    let lease = StdDuration::from_secs(60);
    let mut claimed = s.claim_webhook("w1", now, lease).await.unwrap().expect("due");
    assert!(s.claim_webhook("w2", now, lease).await.unwrap().is_none(), "one claim at a time");
    // Another worker's finish changes nothing.
    let mut stolen = claimed.clone();
    stolen.last_event_id = 99;
    s.finish_webhook_claim(&stolen, "w2", None, Vec::new()).await.unwrap();
    assert_eq!(s.get_webhook(hook.id).await.unwrap().last_event_id, 0);
    claimed.last_event_id = 5;
    claimed.failures = 2;
    claimed.next_attempt_at = now + Duration::seconds(30);
    let delivery = Delivery {
        id: DeliveryId::new(),
        webhook_id: hook.id,
        event_id: 5,
        event_type: "vm.created".into(),
        attempt: 2,
        at: now,
        status: DeliveryStatus::Failed,
        response_code: Some(503),
        latency_ms: 12,
        error: Some("the receiver answered 503".into()),
    };
    s.finish_webhook_claim(&claimed, "w1", Some(&delivery), Vec::new()).await.unwrap();
    let saved = s.get_webhook(hook.id).await.unwrap();
    assert_eq!((saved.last_event_id, saved.failures), (5, 2));
    assert!(s.claim_webhook("w2", now, lease).await.unwrap().is_none(), "not due yet");
    assert!(
        s.claim_webhook("w2", now + Duration::seconds(31), lease).await.unwrap().is_some(),
        "due, unclaimed"
    );
    // A lapsed claim can be taken over.
    assert!(s.claim_webhook("w3", now + Duration::seconds(100), lease).await.unwrap().is_some());
    let deliveries = s.list_deliveries(hook.id, &crate::PageRequest::default()).await.unwrap().items;
    assert_eq!(deliveries, vec![delivery]);
    // A settings change keeps the delivery state.
    let mut changed = saved.clone();
    changed.url = "https://hooks.example/b".into();
    changed.last_event_id = 0;
    s.update_webhook(&changed).await.unwrap();
    let after = s.get_webhook(hook.id).await.unwrap();
    assert_eq!((after.url.as_str(), after.last_event_id), ("https://hooks.example/b", 5));
    // Gone with its owner, deliveries and all.
    s.delete_user(user.id).await.unwrap();
    assert!(matches!(s.get_webhook(hook.id).await, Err(crate::Error::WebhookNotFound { .. })));
}

/// Observed states: recorded with a `vm.drifted` event when they disagree, once per
/// change, never while a task holds the VM; a new state clears the stale observation.
pub async fn observed_states(s: &dyn Store) {
    use crate::reconcile::ObservedState;
    s.create_node(&node("n", 4)).await.unwrap();
    let mut vm = super::store::created_vm(s, None).await;
    let now = Utc::now();
    assert_eq!(s.vms_on_node(vm.node_id).await.unwrap().len(), 1);
    assert!(s.vms_on_node(crate::NodeId::new()).await.unwrap().is_empty());
    assert!(s.observe_vm(vm.id, ObservedState::Stopped, now).await.unwrap(), "it agrees: recorded, no event");
    assert!(!s.observe_vm(vm.id, ObservedState::Stopped, now).await.unwrap(), "nothing new");
    assert!(s.observe_vm(vm.id, ObservedState::Running, now).await.unwrap());
    let seen = s.get_vm(vm.id).await.unwrap();
    assert_eq!(seen.observed_state, Some(ObservedState::Running));
    assert!(seen.state_reason.as_deref().unwrap_or_default().contains("should be stopped"));
    let drifted = EventFilter { types: EventPattern::parse_list("vm.drifted").unwrap(), ..all() };
    let events = s.list_events(&drifted, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].vm_id, &events[0].data["observed_state"]),
        (Some(vm.id), &serde_json::json!("running"))
    );
    // The VM's state changes: the old observation goes.
    vm.state = crate::VmState::Running;
    s.update_vm(&vm).await.unwrap();
    let seen = s.get_vm(vm.id).await.unwrap();
    assert_eq!((seen.observed_state, seen.state_reason), (None, None));
    // A task holds it: left alone.
    let task = crate::Task::new(crate::TaskKind::StopVm, Some(vm.id), crate::TaskParams::None, now);
    s.enqueue_task(&task, None).await.unwrap();
    assert!(!s.observe_vm(vm.id, ObservedState::Missing, now).await.unwrap());
    assert!(!s.observe_vm(VmId::new(), ObservedState::Missing, now).await.unwrap(), "a VM gone is no error");
}
