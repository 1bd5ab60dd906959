//! Backups: the [`BackupStore`](crate::BackupStore) part of every store, and the suite
//! every [`BackupTarget`] passes.

use chrono::Utc;

use crate::backup::{
    Backup, BackupFilter, BackupMode, BackupState, BackupTarget, BackupTargetConfig, S3Access,
};
use crate::error::Error;
use crate::event::{Event, EventFilter, EventType};
use crate::id::BackupTargetId;
use crate::page::PageRequest;
use crate::secret::Secret;
use crate::store::Store;
use crate::task::{Task, TaskKind, TaskParams};

fn target_config(name: &str) -> BackupTargetConfig {
    BackupTargetConfig {
        id: BackupTargetId::new(),
        name: name.into(),
        url: "s3://bucket/prefix".into(),
        s3: Some(S3Access {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: None,
            access_key_id: "AKIA".into(),
            secret_access_key: Secret::new("the-secret"),
        }),
        created_at: Utc::now(),
    }
}

/// Targets keep their secret for use and drop it from lists; backups are recorded with
/// their task (one active task per VM), updated with events, listed by filter, deleted;
/// a target that holds backups stays.
pub async fn backup_records(s: &dyn Store) {
    let target = target_config("site-a");
    s.create_backup_target(&target).await.expect("create a target");
    let same_name = BackupTargetConfig { id: BackupTargetId::new(), ..target.clone() };
    assert!(matches!(s.create_backup_target(&same_name).await, Err(Error::Conflict { .. })));
    let got = s.get_backup_target(target.id).await.expect("get the target");
    assert_eq!(got.s3.as_ref().map(|a| a.secret_access_key.expose()), Some("the-secret"), "kept for use");
    let listed = s.list_backup_targets(&PageRequest::default()).await.expect("list targets");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].s3.as_ref().map(|a| a.secret_access_key.expose()), Some(""), "not listed");

    s.create_node(&super::store::node("n1", 8)).await.expect("create a node");
    let vm = super::store::created_vm(s, None).await;
    let backup = Backup::new(vm.id, target.id, BackupMode::Full, Utc::now());
    let task =
        Task::new(TaskKind::BackupVm, Some(vm.id), TaskParams::Backup { backup_id: backup.id }, Utc::now());
    s.enqueue_backup_task(&backup, &task).await.expect("record a backup with its task");
    // A second task on the VM is refused, and records nothing.
    let other = Backup::new(vm.id, target.id, BackupMode::Full, Utc::now());
    let second =
        Task::new(TaskKind::BackupVm, Some(vm.id), TaskParams::Backup { backup_id: other.id }, Utc::now());
    assert!(matches!(s.enqueue_backup_task(&other, &second).await, Err(Error::ActiveTask { .. })));
    assert!(matches!(s.get_backup(other.id).await, Err(Error::BackupNotFound { .. })));
    // An unknown target is refused.
    let lost = Backup::new(vm.id, BackupTargetId::new(), BackupMode::Full, Utc::now());
    let t = Task::new(TaskKind::BackupVm, None, TaskParams::Backup { backup_id: lost.id }, Utc::now());
    assert!(matches!(s.enqueue_backup_task(&lost, &t).await, Err(Error::BackupTargetNotFound { .. })));

    let done =
        Backup { state: BackupState::Completed, size_bytes: 42, ..s.get_backup(backup.id).await.unwrap() };
    let event =
        Event::new(EventType::BackupCompleted, Utc::now()).vm(Some(vm.id)).with("backup_id", backup.id);
    s.update_backup(&done, Some(event)).await.expect("update a backup");
    assert_eq!(s.get_backup(backup.id).await.unwrap(), done);
    let events = s.list_events(&EventFilter::default(), 1000).await.unwrap();
    assert!(events.iter().any(|e| e.kind == EventType::BackupCompleted), "the event is recorded with it");

    let by_vm = BackupFilter { vm_id: Some(vm.id), ..BackupFilter::default() };
    assert_eq!(s.list_backups(&by_vm, &PageRequest::default()).await.unwrap().items.len(), 1);
    let other_vm = BackupFilter { vm_id: Some(crate::id::VmId::new()), ..BackupFilter::default() };
    assert!(s.list_backups(&other_vm, &PageRequest::default()).await.unwrap().items.is_empty());

    assert!(matches!(s.delete_backup_target(target.id).await, Err(Error::Conflict { .. })));
    s.delete_backup(backup.id, None).await.expect("delete a backup");
    assert!(matches!(s.delete_backup(backup.id, None).await, Err(Error::BackupNotFound { .. })));
    assert!(matches!(s.update_backup(&done, None).await, Err(Error::BackupNotFound { .. })));
    s.delete_backup_target(target.id).await.expect("delete an empty target");
    assert!(matches!(s.get_backup_target(target.id).await, Err(Error::BackupTargetNotFound { .. })));
}

/// Schedules: kept with their target (which then stays), listed by owner, and each due
/// run claimed by one of the callers racing for it, its next run moved past now.
pub async fn schedules(s: &dyn Store) {
    use crate::backup::{BackupSchedule, ScheduleSpec};
    let target = target_config("site-b");
    s.create_backup_target(&target).await.expect("create a target");
    let owner = crate::id::UserId::new();
    let t0: chrono::DateTime<Utc> = "2026-03-01T10:00:30Z".parse().unwrap();
    let spec = ScheduleSpec {
        name: "every minute".into(),
        cron: "* * * * *".into(),
        target_id: target.id,
        vm_ids: Vec::new(),
        all: true,
        mode: BackupMode::Incremental,
        retention: crate::backup::RetentionPolicy { keep_last: 2, ..Default::default() },
        enabled: true,
    };
    let schedule = BackupSchedule::new(spec.clone(), Some(owner), t0).unwrap();
    let lost =
        BackupSchedule::new(ScheduleSpec { target_id: BackupTargetId::new(), ..spec }, None, t0).unwrap();
    assert!(matches!(s.create_schedule(&lost).await, Err(Error::BackupTargetNotFound { .. })));
    s.create_schedule(&schedule).await.expect("create a schedule");
    assert_eq!(s.get_schedule(schedule.id).await.unwrap(), schedule);
    assert_eq!(s.list_schedules(Some(owner), &PageRequest::default()).await.unwrap().items.len(), 1);
    assert!(s
        .list_schedules(Some(crate::id::UserId::new()), &PageRequest::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(matches!(s.delete_backup_target(target.id).await, Err(Error::Conflict { .. })));

    assert_eq!(s.claim_due_schedule(t0).await.unwrap(), None, "not due yet");
    let later = t0 + chrono::Duration::minutes(5);
    let (a, b) = futures::join!(s.claim_due_schedule(later), s.claim_due_schedule(later));
    let claimed: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(claimed.len(), 1, "one caller gets the run");
    assert_eq!(claimed[0].last_run_at, Some(later));
    assert!(claimed[0].next_run_at > later);
    assert_eq!(s.get_schedule(schedule.id).await.unwrap(), claimed[0]);

    let disabled = BackupSchedule { enabled: false, ..claimed[0].clone() };
    s.update_schedule(&disabled).await.expect("update a schedule");
    assert_eq!(s.claim_due_schedule(later + chrono::Duration::hours(1)).await.unwrap(), None, "disabled");
    s.delete_schedule(schedule.id).await.expect("delete a schedule");
    assert!(matches!(s.get_schedule(schedule.id).await, Err(Error::ScheduleNotFound { .. })));
    assert!(matches!(s.update_schedule(&disabled).await, Err(Error::ScheduleNotFound { .. })));
    s.delete_backup_target(target.id).await.expect("delete an unused target");
}

/// Snapshot records: kept per VM by name (a second put replaces), listed oldest first,
/// deleted idempotently, and gone with their VM.
pub async fn snapshot_records(s: &dyn Store) {
    use crate::snapshot::Snapshot;
    s.create_node(&super::store::node("n1", 8)).await.expect("create a node");
    let vm = super::store::created_vm(s, None).await;
    let t0 = Utc::now();
    let snap = |name: &str, secs: i64| Snapshot {
        vm_id: vm.id,
        name: name.into(),
        description: None,
        memory: false,
        parent: None,
        created_at: t0 + chrono::Duration::seconds(secs),
    };
    s.put_snapshot(&snap("b", 2)).await.expect("put a snapshot");
    s.put_snapshot(&snap("a", 1)).await.expect("put another");
    s.put_snapshot(&Snapshot { memory: true, ..snap("b", 2) }).await.expect("put it again");
    let names: Vec<_> =
        s.list_snapshots(vm.id).await.unwrap().into_iter().map(|x| (x.name, x.memory)).collect();
    assert_eq!(names, vec![("a".to_owned(), false), ("b".to_owned(), true)]);
    let lost = Snapshot { vm_id: crate::id::VmId::new(), ..snap("c", 3) };
    assert!(matches!(s.put_snapshot(&lost).await, Err(Error::VmNotFound { .. })));
    s.delete_snapshot(vm.id, "a").await.expect("delete a snapshot");
    s.delete_snapshot(vm.id, "a").await.expect("delete it again");
    assert_eq!(s.list_snapshots(vm.id).await.unwrap().len(), 1);
    s.delete_vm(vm.id).await.expect("delete the VM");
    assert!(s.list_snapshots(vm.id).await.unwrap().is_empty(), "they go with the VM");
}

/// What every backup target does: puts replace, gets see whole objects or none, lists
/// give the keys under a prefix (and only those), deletes are idempotent, and keys vmm
/// does not make are refused.
pub async fn backup_target(t: &dyn BackupTarget) {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let key = |k: &str| format!("suite-{run}/{k}");
    assert_eq!(t.get(&key("a")).await.expect("get a missing object"), None);
    t.put(&key("a"), b"one".to_vec()).await.expect("put");
    t.put(&key("a"), b"two".to_vec()).await.expect("put again");
    assert_eq!(t.get(&key("a")).await.unwrap().as_deref(), Some(&b"two"[..]));
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    t.put(&key("dir/b"), big.clone()).await.expect("put a large object");
    t.put(&key("dir/sub/c"), Vec::new()).await.expect("put an empty object");
    t.put(&format!("suite-{run}x/d"), b"d".to_vec()).await.expect("put beside");
    assert_eq!(t.get(&key("dir/b")).await.unwrap(), Some(big));
    assert_eq!(t.get(&key("dir/sub/c")).await.unwrap(), Some(Vec::new()));

    let mut listed = t.list(&format!("suite-{run}/")).await.expect("list");
    listed.sort();
    assert_eq!(listed, vec![key("a"), key("dir/b"), key("dir/sub/c")]);
    let mut under = t.list(&key("dir/")).await.unwrap();
    under.sort();
    assert_eq!(under, vec![key("dir/b"), key("dir/sub/c")]);
    assert!(t.list(&format!("suite-{run}/none/")).await.unwrap().is_empty());

    t.delete_prefix(&key("dir/")).await.expect("delete a prefix");
    assert_eq!(
        t.list(&format!("suite-{run}/")).await.unwrap(),
        vec![key("a")],
        "only what was under it goes"
    );
    t.delete_prefix(&key("dir/")).await.expect("delete a prefix again");
    for k in [key("a"), key("dir/b"), key("dir/sub/c"), format!("suite-{run}x/d")] {
        t.delete(&k).await.expect("delete");
        t.delete(&k).await.expect("delete again");
        assert_eq!(t.get(&k).await.unwrap(), None);
    }
    assert!(t.list(&format!("suite-{run}/")).await.unwrap().is_empty());
    for bad in ["../escape", "/abs", "a//b", "a/./b"] {
        assert!(matches!(t.put(bad, b"x".to_vec()).await, Err(Error::Invalid { .. })), "{bad}");
        assert!(t.get(bad).await.is_err(), "{bad}");
    }
}
