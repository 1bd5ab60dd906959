//! Backups on the in-memory fakes: full and incremental backups of a stopped VM, restore
//! as a new VM, verify, a corrupted chunk, a full target, and deletes that keep the chains
//! that share chunks.

use std::sync::Arc;

use futures::executor::block_on;
use vmm_core::backup::{
    manifest::CHUNK_SIZE, BackupMode, BackupSpec, BackupTargetSpec, NewVmFromBackup, RestoreSpec,
};
use vmm_core::backup::{RetentionPolicy, ScheduleSpec};
use vmm_core::event::{EventFilter, EventType};
use vmm_core::memory::{
    InMemoryConnector, InMemoryHypervisor, InMemoryStore, InMemoryTarget, InMemoryTargets,
};
use vmm_core::snapshot::SnapshotSpec;
use vmm_core::{
    Actor, Backup, BackupState, Error, EventStore, ManualClock, NodeSpec, NodeUriPolicy, PowerAction, Role,
    TaskState, Vm, VmSpec, VmState, Vmm, VmmConfig,
};

const URI: &str = "memory://n1";

struct World {
    vmm: Vmm,
    clock: Arc<ManualClock>,
    hv: Arc<InMemoryHypervisor>,
    store: Arc<InMemoryStore>,
    target: Arc<InMemoryTarget>,
    target_id: vmm_core::BackupTargetId,
}

fn admin() -> Actor {
    Actor { role: Role::Admin, ..Actor::system() }
}

async fn world() -> World {
    let clock = Arc::new(ManualClock::new("2026-03-01T10:00:30Z".parse().unwrap()));
    let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
    let connector = Arc::new(InMemoryConnector::new());
    let targets = InMemoryTargets::new();
    let vmm = Vmm::builder()
        .with_store(store.clone())
        .with_connector(connector.clone())
        .with_targets(Arc::new(targets.clone()))
        .with_clock(clock.clone())
        .with_config(VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() })
        .build();
    vmm.create_node(NodeSpec::new("n1", URI)).await.unwrap();
    let spec = BackupTargetSpec { name: "t".into(), url: "memory://t".into(), s3: None };
    let target_id = vmm.create_backup_target(&admin(), spec).await.unwrap().id;
    World { vmm, clock, hv: connector.get(URI).unwrap(), store, target: targets.target("t"), target_id }
}

/// A stopped VM whose disk holds `content`.
async fn stopped_vm(w: &World, content: &str) -> Vm {
    let (vm, _) = w.vmm.create_vm(VmSpec::new("web-1", 1, 512, 1)).await.unwrap();
    w.vmm.run_until_idle().await.unwrap();
    w.vmm.power_vm(vm.id, PowerAction::Stop).await.unwrap();
    w.vmm.run_until_idle().await.unwrap();
    assert!(w.hv.set_volume_content(vm.id, content));
    w.vmm.get_vm(vm.id).await.unwrap()
}

/// Two and a half chunks: one of `a`, one of zeros, half of `b`.
fn disk(a: char, b: char) -> String {
    let mut s = a.to_string().repeat(CHUNK_SIZE);
    s.push_str(&"\0".repeat(CHUNK_SIZE));
    s.push_str(&b.to_string().repeat(CHUNK_SIZE / 2));
    s
}

async fn take(w: &World, vm: &Vm, mode: BackupMode) -> (Backup, TaskState) {
    let (backup, task) =
        w.vmm.backup_vm(&admin(), vm.id, BackupSpec { target_id: w.target_id, mode }).await.unwrap();
    w.vmm.run_until_idle().await.unwrap();
    let state = w.vmm.get_task(task.id).await.unwrap().state;
    (w.store_backup(backup.id).await, state)
}

impl World {
    /// Every backup the store holds.
    async fn all_backups(&self) -> Vec<Backup> {
        let (filter, page) = (Default::default(), Default::default());
        vmm_core::BackupStore::list_backups(self.store.as_ref(), &filter, &page).await.unwrap().items
    }

    async fn store_backup(&self, id: vmm_core::BackupId) -> Backup {
        vmm_core::BackupStore::get_backup(self.store.as_ref(), id).await.unwrap()
    }

    async fn restore(&self, backup: &Backup, name: &str) -> (Vm, TaskState) {
        let spec = RestoreSpec {
            new_vm: Some(NewVmFromBackup { name: name.into(), node_id: None, start: false }),
            vm_id: None,
        };
        let (vm, task) = self.vmm.restore_backup(&admin(), backup.id, spec).await.unwrap();
        self.vmm.run_until_idle().await.unwrap();
        (vm, self.vmm.get_task(task.id).await.unwrap().state)
    }

    async fn events(&self, kind: EventType) -> Vec<vmm_core::Event> {
        let all = self.store.list_events(&EventFilter::default(), 10_000).await.unwrap();
        all.into_iter().filter(|e| e.kind == kind).collect()
    }
}

#[test]
fn a_full_and_an_incremental_backup_restore_as_new_vms() {
    block_on(async {
        let w = world().await;
        let vm = stopped_vm(&w, &disk('a', 'b')).await;
        let (full, state) = take(&w, &vm, BackupMode::Full).await;
        assert_eq!((state, full.state), (TaskState::Succeeded, BackupState::Completed));
        // The zero chunk is not stored: two chunks and the manifest.
        assert_eq!(w.target.keys().len(), 3, "{:?}", w.target.keys());
        assert_eq!(full.disk_bytes, (CHUNK_SIZE * 5 / 2) as u64);

        // Change the last chunk only: the incremental stores that one and names the rest.
        assert!(w.hv.set_volume_content(vm.id, disk('a', 'c')));
        let (incr, state) = take(&w, &vm, BackupMode::Incremental).await;
        assert_eq!((state, incr.parent_id), (TaskState::Succeeded, Some(full.id)));
        assert!(incr.size_bytes < (CHUNK_SIZE / 2 + 100_000) as u64, "{}", incr.size_bytes);
        assert_eq!(w.events(EventType::BackupCompleted).await.len(), 2);

        for (backup, want, name) in
            [(&full, disk('a', 'b'), "from-full"), (&incr, disk('a', 'c'), "from-incr")]
        {
            let (restored, state) = w.restore(backup, name).await;
            assert_eq!(state, TaskState::Succeeded);
            assert_eq!(w.vmm.get_vm(restored.id).await.unwrap().state, VmState::Stopped);
            assert_eq!(w.hv.volume_of(restored.id).unwrap().content, want, "{name}");
        }

        // Deleting the full backup keeps the chunks the incremental shares with it.
        let task = w.vmm.delete_backup(&admin(), full.id).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        assert_eq!(w.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        let (again, state) = w.restore(&incr, "again").await;
        assert_eq!(state, TaskState::Succeeded);
        assert_eq!(w.hv.volume_of(again.id).unwrap().content, disk('a', 'c'));
        // Deleting the last one leaves nothing on the target.
        w.vmm.delete_backup(&admin(), incr.id).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        assert!(w.target.keys().is_empty(), "{:?}", w.target.keys());
        assert_eq!(w.events(EventType::BackupDeleted).await.len(), 2);
    })
}

#[test]
fn a_flipped_byte_fails_verify_and_restore_naming_the_chunk() {
    block_on(async {
        let w = world().await;
        let vm = stopped_vm(&w, &disk('a', 'b')).await;
        let (backup, _) = take(&w, &vm, BackupMode::Full).await;
        let task = w.vmm.verify_backup(&admin(), backup.id).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        assert_eq!(w.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        assert!(w.store_backup(backup.id).await.verified.unwrap().ok);

        let chunk = w.target.keys().into_iter().find(|k| k.ends_with("chunks/00000002")).unwrap();
        assert!(w.target.corrupt(&chunk));
        let task = w.vmm.verify_backup(&admin(), backup.id).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        let task = w.vmm.get_task(task.id).await.unwrap();
        assert_eq!(task.state, TaskState::Failed);
        assert!(task.error.as_deref().unwrap().contains("chunk 2"), "{:?}", task.error);
        let verified = w.store_backup(backup.id).await.verified.unwrap();
        assert!(!verified.ok && verified.error.unwrap().contains(&chunk));
        let events = w.events(EventType::BackupVerified).await;
        assert_eq!(events.len(), 2);

        let volumes = w.hv.volume_count();
        let (restored, state) = w.restore(&backup, "broken").await;
        assert_eq!(state, TaskState::Failed);
        assert!(
            matches!(w.vmm.get_vm(restored.id).await, Err(Error::VmNotFound { .. })),
            "undone like a create"
        );
        assert_eq!(w.hv.volume_count(), volumes, "no volume is left");
    })
}

#[test]
fn a_full_target_fails_the_backup_and_keeps_nothing_of_it() {
    block_on(async {
        let w = world().await;
        // Far more than the channel between the node and the target holds: the read must
        // end when the target fails, not wait for room.
        let vm = stopped_vm(&w, &disk('a', 'b').repeat(8)).await;
        w.target.set_capacity(Some((CHUNK_SIZE + CHUNK_SIZE / 4) as u64));
        let (backup, state) = take(&w, &vm, BackupMode::Full).await;
        assert_eq!((state, backup.state), (TaskState::Failed, BackupState::Failed));
        assert!(w.target.keys().is_empty(), "{:?}", w.target.keys());
        // It is not restorable.
        let spec = RestoreSpec {
            new_vm: Some(NewVmFromBackup { name: "x".into(), node_id: None, start: false }),
            vm_id: None,
        };
        assert!(matches!(w.vmm.restore_backup(&admin(), backup.id, spec).await, Err(Error::Conflict { .. })));
    })
}

#[test]
fn running_vms_are_crash_consistent_and_other_users_are_refused() {
    block_on(async {
        let w = world().await;
        let (vm, _) = w.vmm.create_vm(VmSpec::new("web-1", 1, 512, 1)).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        // A running VM is backed up too, crash-consistent (the fake has no guest agent).
        assert!(w.hv.set_volume_content(vm.id, disk('a', 'b')));
        let (backup, state) = take(&w, &vm, BackupMode::Full).await;
        assert_eq!((state, backup.state), (TaskState::Succeeded, BackupState::Completed));
        assert_eq!(backup.consistency, Some(vmm_core::backup::Consistency::CrashConsistent));

        let stranger = Actor { role: Role::User, user_id: vmm_core::UserId::new(), token_id: None };
        let spec = BackupSpec { target_id: w.target_id, mode: BackupMode::Full };
        assert!(matches!(w.vmm.backup_vm(&stranger, vm.id, spec).await, Err(Error::VmNotFound { .. })));
        assert!(matches!(w.vmm.verify_backup(&stranger, backup.id).await, Err(Error::BackupNotFound { .. })));
        assert!(matches!(
            w.vmm.list_backup_targets(&stranger, &Default::default()).await,
            Err(Error::Forbidden { .. })
        ));
        // A target that holds backups cannot be removed.
        assert!(matches!(
            w.vmm.delete_backup_target(&admin(), w.target_id).await,
            Err(Error::Conflict { .. })
        ));
    })
}

#[test]
fn a_one_minute_schedule_keeping_two_leaves_two_after_four_runs() {
    block_on(async {
        let w = world().await;
        let vm = stopped_vm(&w, &disk('a', 'b')).await;
        let spec = ScheduleSpec {
            name: "every minute".into(),
            cron: "* * * * *".into(),
            target_id: w.target_id,
            vm_ids: vec![vm.id],
            all: false,
            mode: BackupMode::Incremental,
            retention: RetentionPolicy { keep_last: 2, ..Default::default() },
            enabled: true,
        };
        let schedule = w.vmm.create_schedule(&admin(), spec).await.unwrap();
        assert_eq!(w.vmm.run_due_schedules().await.unwrap(), 0, "not due yet");
        for run in 1..=4 {
            w.clock.advance(chrono::Duration::minutes(1));
            assert_eq!(w.vmm.run_due_schedules().await.unwrap(), 1, "run {run}");
            w.vmm.run_until_idle().await.unwrap();
        }
        let made = w.all_backups().await;
        assert_eq!(made.len(), 2, "{made:#?}");
        assert!(made.iter().all(|b| b.state == BackupState::Completed && b.schedule_id == Some(schedule.id)));
        // What is left restores, though its chain's older backups were pruned.
        for b in &made {
            let (restored, state) = w.restore(b, &format!("r-{}", b.id)).await;
            assert_eq!(state, TaskState::Succeeded);
            assert_eq!(w.hv.volume_of(restored.id).unwrap().content, disk('a', 'b'));
        }
        // Down for an hour: one run catches up, not sixty.
        w.clock.advance(chrono::Duration::minutes(60));
        assert_eq!(w.vmm.run_due_schedules().await.unwrap(), 1);
        assert_eq!(w.vmm.run_due_schedules().await.unwrap(), 0);
    })
}

#[test]
fn backups_count_against_the_owners_disk_quota() {
    block_on(async {
        let w = world().await;
        let vm = stopped_vm(&w, &disk('a', 'b')).await;
        let quota = vmm_core::users::Quota { max_disk_gib: Some(1), ..Default::default() };
        let user = vmm_core::users::User {
            id: vmm_core::UserId::new(),
            email: "q@example.com".into(),
            role: Role::User,
            state: vmm_core::users::UserState::Active,
            auth: vmm_core::users::AuthSource::Local,
            quota,
            created_at: vmm_core::Clock::now(w.clock.as_ref()),
        };
        vmm_core::UserStore::create_user(w.store.as_ref(), &user, None).await.unwrap();
        let vm = w.vmm.change_vm_owner(&admin(), vm.id, Some(user.id)).await.unwrap();
        // The VM's 1 GiB disk fills the quota: a backup that stores anything is refused.
        let (backup, state) = take(&w, &vm, BackupMode::Full).await;
        assert_eq!((state, backup.state), (TaskState::Failed, BackupState::Failed));
        assert!(w.target.keys().is_empty(), "{:?}", w.target.keys());
        let task = w.vmm.get_task(backup.task_id.unwrap()).await.unwrap();
        assert_eq!(task.error_code.as_deref(), Some("quota_exceeded"), "{task:?}");
    })
}

#[test]
fn a_restore_into_the_vm_replaces_its_disk_or_leaves_it_as_it_was() {
    block_on(async {
        let w = world().await;
        let vm = stopped_vm(&w, &disk('a', 'b')).await;
        let (backup, _) = take(&w, &vm, BackupMode::Full).await;
        let into = || RestoreSpec { new_vm: None, vm_id: Some(vm.id) };
        let restore = |spec: RestoreSpec| async {
            let (_, task) = w.vmm.restore_backup(&admin(), backup.id, spec).await.unwrap();
            w.vmm.run_until_idle().await.unwrap();
            w.vmm.get_task(task.id).await.unwrap()
        };
        // The disk changed since: the restore puts the backup's back.
        assert!(w.hv.set_volume_content(vm.id, disk('x', 'y')));
        assert_eq!(restore(into()).await.state, TaskState::Succeeded);
        assert_eq!(w.hv.volume_of(vm.id).unwrap().content, disk('a', 'b'));
        assert_eq!(w.events(EventType::VmRestored).await.len(), 1);
        // A bad chunk: the restore fails and the disk is as it was.
        assert!(w.hv.set_volume_content(vm.id, disk('x', 'y')));
        let chunk = w.target.keys().into_iter().find(|k| k.contains("/chunks/")).unwrap();
        assert!(w.target.corrupt(&chunk));
        let task = restore(into()).await;
        assert_eq!(task.state, TaskState::Failed, "{task:?}");
        assert_eq!(w.hv.volume_of(vm.id).unwrap().content, disk('x', 'y'));
        assert_eq!(w.vmm.get_vm(vm.id).await.unwrap().state, VmState::Stopped);
        // Only into its own, stopped VM; and one of the two ways.
        let other = RestoreSpec { new_vm: None, vm_id: Some(vmm_core::VmId::new()) };
        assert!(matches!(w.vmm.restore_backup(&admin(), backup.id, other).await, Err(Error::Invalid { .. })));
        let both = RestoreSpec {
            new_vm: Some(NewVmFromBackup { name: "n".into(), node_id: None, start: false }),
            vm_id: Some(vm.id),
        };
        assert!(matches!(w.vmm.restore_backup(&admin(), backup.id, both).await, Err(Error::Invalid { .. })));
        w.vmm.power_vm(vm.id, PowerAction::Start).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        assert!(matches!(
            w.vmm.restore_backup(&admin(), backup.id, into()).await,
            Err(Error::Conflict { .. })
        ));
    })
}

#[test]
fn snapshots_are_taken_reverted_to_and_deleted_as_tasks() {
    block_on(async {
        let w = world().await;
        let (vm, _) = w.vmm.create_vm(VmSpec::new("snap", 1, 512, 1)).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        assert!(w.hv.set_volume_content(vm.id, "before"));
        let spec =
            |name: &str, memory: Option<bool>| SnapshotSpec { name: name.into(), description: None, memory };
        let vmm = &w.vmm;
        let done = |task: vmm_core::Task| async move {
            vmm.run_until_idle().await.unwrap();
            vmm.get_task(task.id).await.unwrap().state
        };
        // A running VM's snapshot keeps its memory; a disk-only one is refused while it runs.
        assert!(matches!(
            w.vmm.create_snapshot(&admin(), vm.id, spec("x", Some(false))).await,
            Err(Error::Conflict { .. })
        ));
        let task = w.vmm.create_snapshot(&admin(), vm.id, spec("before-upgrade", None)).await.unwrap();
        assert_eq!(done(task).await, TaskState::Succeeded);
        let taken = w.vmm.list_snapshots(&admin(), vm.id).await.unwrap();
        assert_eq!((taken.len(), taken[0].memory), (1, true));
        assert!(matches!(
            w.vmm.create_snapshot(&admin(), vm.id, spec("before-upgrade", None)).await,
            Err(Error::Conflict { .. })
        ));
        assert!(matches!(
            w.vmm.create_snapshot(&admin(), vm.id, spec("../x", None)).await,
            Err(Error::Invalid { .. })
        ));

        // Stopped and changed: the revert brings the disk back, and the VM running.
        w.vmm.power_vm(vm.id, PowerAction::Stop).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        assert!(w.hv.set_volume_content(vm.id, "after"));
        let task = w.vmm.create_snapshot(&admin(), vm.id, spec("stopped", None)).await.unwrap();
        assert_eq!(done(task).await, TaskState::Succeeded);
        let taken = w.vmm.list_snapshots(&admin(), vm.id).await.unwrap();
        assert_eq!(taken[1].parent.as_deref(), Some("before-upgrade"));
        assert!(!taken[1].memory);
        let task = w.vmm.revert_snapshot(&admin(), vm.id, "before-upgrade").await.unwrap();
        assert_eq!(done(task).await, TaskState::Succeeded);
        assert_eq!(w.hv.volume_of(vm.id).unwrap().content, "before");
        assert_eq!(w.vmm.get_vm(vm.id).await.unwrap().state, VmState::Running);
        assert!(matches!(
            w.vmm.revert_snapshot(&admin(), vm.id, "nope").await,
            Err(Error::SnapshotNotFound { .. })
        ));

        // A VM with snapshots backs up, and deletes cleanly with them.
        let (backup, state) = take(&w, &vm, BackupMode::Full).await;
        assert_eq!((state, backup.state), (TaskState::Succeeded, BackupState::Completed));
        let task = w.vmm.delete_snapshot(&admin(), vm.id, "stopped").await.unwrap();
        assert_eq!(done(task).await, TaskState::Succeeded);
        assert_eq!(w.vmm.list_snapshots(&admin(), vm.id).await.unwrap().len(), 1);
        let task = w.vmm.delete_vm(vm.id).await.unwrap();
        assert_eq!(done(task).await, TaskState::Succeeded);
        assert!(vmm_core::SnapshotStore::list_snapshots(w.store.as_ref(), vm.id).await.unwrap().is_empty());
    })
}

#[test]
fn a_vm_busy_when_its_schedule_runs_is_backed_up_once_it_is_free() {
    block_on(async {
        let w = world().await;
        let vm = stopped_vm(&w, &disk('a', 'b')).await;
        let spec = |name: &str| ScheduleSpec {
            name: name.into(),
            cron: "0 3 * * *".into(),
            target_id: w.target_id,
            vm_ids: vec![vm.id],
            all: false,
            mode: BackupMode::Full,
            retention: RetentionPolicy::default(),
            enabled: true,
        };
        // Two schedules at the same time over the same VM: the second finds it busy.
        w.vmm.create_schedule(&admin(), spec("local")).await.unwrap();
        w.vmm.create_schedule(&admin(), spec("offsite")).await.unwrap();
        w.clock.advance(chrono::Duration::hours(24));
        assert_eq!(w.vmm.run_due_schedules().await.unwrap(), 2);
        w.vmm.run_until_idle().await.unwrap();
        // The next pass queues what was busy, though no schedule is due.
        assert_eq!(w.vmm.run_due_schedules().await.unwrap(), 0);
        w.vmm.run_until_idle().await.unwrap();
        let made = w.all_backups().await;
        assert_eq!(made.len(), 2, "{made:#?}");
        assert!(made.iter().all(|b| b.state == BackupState::Completed));
        assert_ne!(made[0].schedule_id, made[1].schedule_id);
    })
}

#[test]
fn a_cancelled_queued_backup_is_recorded_failed() {
    block_on(async {
        let w = world().await;
        let vm = stopped_vm(&w, &disk('a', 'b')).await;
        let spec = BackupSpec { target_id: w.target_id, mode: BackupMode::Full };
        let (backup, task) = w.vmm.backup_vm(&admin(), vm.id, spec).await.unwrap();
        w.vmm.cancel_task(task.id).await.unwrap();
        let backup = w.store_backup(backup.id).await;
        assert_eq!(backup.state, BackupState::Failed);
        // It can be deleted, and then the target can go.
        w.vmm.delete_backup(&admin(), backup.id).await.unwrap();
        w.vmm.run_until_idle().await.unwrap();
        w.vmm.delete_backup_target(&admin(), w.target_id).await.unwrap();
    })
}
