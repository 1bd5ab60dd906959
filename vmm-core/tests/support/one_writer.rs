//! [`OneWriter`]: the in-memory store behind one lock held across awaits, as a database's
//! write lock is held across a transaction's statements, with batches of ends that fail or
//! are slow on demand.

use std::time::Duration;

use vmm_core::memory::InMemoryStore;
use vmm_core::{Error, IpPool, Node, PageRequest, TaskFilter, VmAction};

/// A store that admits one caller at a time and holds its lock across an await, as a
/// database's write lock is held across the statements of a transaction.
#[derive(Debug, Default)]
pub struct OneWriter {
    inner: InMemoryStore,
    lock: futures::lock::Mutex<()>,
    /// How many more calls that record ends fail as a whole (as a transaction that fails
    /// to commit would).
    pub failing_batches: std::sync::atomic::AtomicUsize,
    /// How many more calls that record ends take a second before they start (without the
    /// lock: a slow network, not a busy database).
    pub slow_batches: std::sync::atomic::AtomicUsize,
}

/// Returns `Pending` once, as a database round trip would.
async fn round_trip() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

macro_rules! one_at_a_time {
    ($($area:ident { $($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)* } $(+ { $($own:item)* })?)*) => {
        $(
            #[async_trait::async_trait]
            impl vmm_core::$area for OneWriter {
                $(async fn $name(&self, $($arg: $ty),*) -> vmm_core::Result<$out> {
                    let _held = self.lock.lock().await;
                    round_trip().await;
                    self.inner.$name($($arg),*).await
                })*
                $($($own)*)?
            }
        )*
    };
}

use chrono::{DateTime, Utc};
use vmm_core::{
    ApiToken, Demand, GuestSettings, Image, ImageId, IpLease, Network, NetworkId, NodeId, NodeImage, Page,
    PlacementGroup, PlacementGroupId, PlacementRequest, PoolId, Recipe, RecipeId, StoredToken, Task, TaskId,
    TokenId, User, UserId, Vm, VmFilter, VmGuest, VmId,
};

one_at_a_time! {
    NodeStore {
        create_node(node: &Node) -> ();
        get_node(id: NodeId) -> Node;
        list_nodes(page: &PageRequest) -> Page<Node>;
        update_node(node: &Node) -> ();
        delete_node(id: NodeId) -> ();
    }
    IpamStore {
        create_pool(pool: &IpPool) -> ();
        get_pool(id: PoolId) -> IpPool;
        list_pools(page: &PageRequest) -> Page<IpPool>;
        delete_pool(id: PoolId) -> ();
        allocate_lease(pool: PoolId, address: Option<std::net::IpAddr>, vm: Option<VmId>, now: DateTime<Utc>) -> IpLease;
        release_lease(pool: PoolId, address: std::net::IpAddr) -> ();
        list_leases(pool: PoolId, page: &PageRequest) -> Page<IpLease>;
    }
    VmStore {
        create_vm(vm: &Vm, task: &Task, placement: &PlacementRequest, guest: Option<&GuestSettings>) -> Vm;
        get_vm(id: VmId) -> Vm;
        list_vms(filter: &VmFilter, page: &PageRequest) -> Page<Vm>;
        set_vm_owner(id: VmId, owner: Option<UserId>) -> Vm;
        update_vm(vm: &Vm) -> ();
        resize_vm(id: VmId, target: Demand) -> Vm;
        delete_vm(id: VmId) -> ();
        vm_guest(id: VmId) -> VmGuest;
        set_vm_guest(id: VmId, guest: &VmGuest) -> ();
        queue_reinstall(task: &Task, next: &GuestSettings) -> ();
        add_vm_address(id: VmId, pool: PoolId, address: Option<std::net::IpAddr>, task: &Task) -> Vm;
        remove_vm_address(id: VmId, address: std::net::IpAddr) -> Vm;
        vms_on_node(node: NodeId) -> Vec<Vm>;
        observe_vm(id: VmId, observed: vmm_core::reconcile::ObservedState, at: DateTime<Utc>) -> bool;
    }
    ImageStore {
        create_image(image: &Image) -> ();
        get_image(id: ImageId) -> Image;
        list_images(page: &PageRequest) -> Page<Image>;
        update_image(image: &Image) -> ();
        delete_image(id: ImageId) -> Vec<NodeId>;
        node_image(node: NodeId, image: ImageId) -> Option<NodeImage>;
        claim_node_image(node: NodeId, image: ImageId, now: DateTime<Utc>, until: DateTime<Utc>) -> bool;
        set_node_image_ready(node: NodeId, image: ImageId) -> ();
        forget_node_image(node: NodeId, image: ImageId) -> ();
    }
    RecipeStore {
        create_recipe(recipe: &Recipe) -> ();
        get_recipe(id: RecipeId) -> Recipe;
        list_recipes(page: &PageRequest) -> Page<Recipe>;
        delete_recipe(id: RecipeId) -> ();
    }
    PlacementGroupStore {
        create_placement_group(group: &PlacementGroup) -> ();
        get_placement_group(id: PlacementGroupId) -> PlacementGroup;
        list_placement_groups(page: &PageRequest) -> Page<PlacementGroup>;
        placement_group_nodes(id: PlacementGroupId) -> Vec<NodeId>;
        delete_placement_group(id: PlacementGroupId) -> ();
    }
    HaStore {
        renew_node_lease(node: NodeId, now: DateTime<Utc>, until: DateTime<Utc>) -> vmm_core::ha::NodeLease;
        node_leases() -> Vec<vmm_core::ha::NodeLease>;
        set_node_health(seen: &vmm_core::ha::NodeLease, next: &vmm_core::ha::NodeLease, event: Option<vmm_core::Event>) -> bool;
    }
    MigrationStore {
        queue_migration(vm: VmId, task: &Task, request: &vmm_core::MigrationRequest) -> Task;
        switch_migration(vm: VmId, to: NodeId) -> Vm;
        end_migration(vm: VmId, to: NodeId) -> ();
    }
    NetworkStore {
        create_network(network: &Network) -> ();
        get_network(id: NetworkId) -> Network;
        list_networks(page: &PageRequest) -> Page<Network>;
        delete_network(id: NetworkId) -> ();
    }
    UserStore {
        create_user(user: &User, password_hash: Option<&str>) -> ();
        get_user(id: UserId) -> User;
        user_by_email(email: &str) -> Option<(User, Option<String>)>;
        list_users(page: &PageRequest) -> Page<User>;
        update_user(id: UserId, patch: &vmm_core::UserPatch, password_hash: Option<&str>) -> User;
        user_usage(id: UserId) -> vmm_core::users::UserUsage;
        delete_user(id: UserId) -> ();
        create_token(token: &ApiToken, prefix: &str, hash: &str) -> ();
        token_by_prefix(prefix: &str) -> Option<StoredToken>;
        get_token(id: TokenId) -> ApiToken;
        list_tokens(user: Option<UserId>, page: &PageRequest) -> Page<ApiToken>;
        delete_token(id: TokenId) -> ();
    }
    AuditStore {
        append_audit(entry: &vmm_core::AuditEntry) -> ();
        complete_audit(id: vmm_core::AuditId, outcome: &vmm_core::AuditOutcome) -> ();
        list_audit(filter: &vmm_core::AuditFilter, page: &PageRequest) -> Page<vmm_core::AuditEntry>;
    }
    EventStore {
        list_events(filter: &vmm_core::EventFilter, limit: usize) -> Vec<vmm_core::Event>;
        last_event_id() -> u64;
        prune_events(before: DateTime<Utc>) -> u64;
    }
    IdempotencyStore {
        begin_request(scope: &str, key: &str, hash: &str, now: DateTime<Utc>, stale_after: Duration, ttl: Duration) -> vmm_core::idempotency::IdempotencyBegin;
        finish_request(scope: &str, key: &str, response: &vmm_core::idempotency::StoredResponse) -> ();
        forget_request(scope: &str, key: &str) -> ();
        prune_requests(now: DateTime<Utc>) -> u64;
    }
    WebhookStore {
        create_webhook(hook: &vmm_core::webhook::Webhook) -> ();
        get_webhook(id: vmm_core::WebhookId) -> vmm_core::webhook::Webhook;
        list_webhooks(owner: Option<UserId>, channels: bool, page: &PageRequest) -> Page<vmm_core::webhook::Webhook>;
        update_webhook(hook: &vmm_core::webhook::Webhook) -> ();
        delete_webhook(id: vmm_core::WebhookId) -> ();
        claim_webhook(worker: &str, now: DateTime<Utc>, lease: Duration) -> Option<vmm_core::webhook::Webhook>;
        finish_webhook_claim(hook: &vmm_core::webhook::Webhook, worker: &str, delivery: Option<&vmm_core::webhook::Delivery>, events: Vec<vmm_core::Event>) -> ();
        list_deliveries(id: vmm_core::WebhookId, page: &PageRequest) -> Page<vmm_core::webhook::Delivery>;
    }
    SingletonStore {
        acquire_singleton(name: &str, holder: &str, ttl: Duration) -> bool;
    }
    ConsoleStore {
        add_console_ticket(ticket: &vmm_core::ConsoleTicket, now: DateTime<Utc>) -> ();
        take_console_ticket(token_hash: &str, now: DateTime<Utc>) -> vmm_core::ConsoleTicket;
        record_console(ticket: &vmm_core::ConsoleTicket, kind: vmm_core::EventType, at: DateTime<Utc>) -> ();
    }
    UsageStore {
        add_usage(points: &[(vmm_core::usage::UsageSubject, vmm_core::usage::UsagePoint)]) -> ();
        roll_up_usage(resolution: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> ();
        prune_usage(resolution: u32, before: DateTime<Utc>) -> u64;
        usage(subject: vmm_core::usage::UsageSubject, resolution: u32, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<vmm_core::usage::UsagePoint>;
        count_usage() -> u64;
    }
    BackupStore {
        create_backup_target(target: &vmm_core::BackupTargetConfig) -> ();
        get_backup_target(id: vmm_core::BackupTargetId) -> vmm_core::BackupTargetConfig;
        list_backup_targets(page: &PageRequest) -> Page<vmm_core::BackupTargetConfig>;
        delete_backup_target(id: vmm_core::BackupTargetId) -> ();
        enqueue_backup_task(backup: &vmm_core::Backup, task: &Task) -> ();
        get_backup(id: vmm_core::BackupId) -> vmm_core::Backup;
        list_backups(filter: &vmm_core::BackupFilter, page: &PageRequest) -> Page<vmm_core::Backup>;
        update_backup(backup: &vmm_core::Backup, event: Option<vmm_core::Event>) -> ();
        delete_backup(id: vmm_core::BackupId, event: Option<vmm_core::Event>) -> ();
        create_schedule(schedule: &vmm_core::backup::BackupSchedule) -> ();
        get_schedule(id: vmm_core::ScheduleId) -> vmm_core::backup::BackupSchedule;
        list_schedules(owner: Option<UserId>, page: &PageRequest) -> Page<vmm_core::backup::BackupSchedule>;
        update_schedule(schedule: &vmm_core::backup::BackupSchedule) -> ();
        delete_schedule(id: vmm_core::ScheduleId) -> ();
        claim_due_schedule(now: DateTime<Utc>) -> Option<vmm_core::backup::BackupSchedule>;
    }
    SnapshotStore {
        put_snapshot(snapshot: &vmm_core::snapshot::Snapshot) -> ();
        list_snapshots(vm: VmId) -> Vec<vmm_core::snapshot::Snapshot>;
        delete_snapshot(vm: VmId, name: &str) -> ();
    }
    SshKeyStore {
        create_ssh_key(key: &vmm_core::SshKey) -> ();
        get_ssh_key(id: vmm_core::SshKeyId) -> vmm_core::SshKey;
        list_ssh_keys(owner: Option<UserId>, page: &PageRequest) -> Page<vmm_core::SshKey>;
        delete_ssh_key(id: vmm_core::SshKeyId) -> ();
    }
}

one_at_a_time! {
    TaskStore {
        enqueue_task(task: &Task, action: Option<VmAction>) -> ();
        get_task(id: TaskId) -> Task;
        list_tasks(filter: &TaskFilter, page: &PageRequest) -> Page<Task>;
        count_active_tasks() -> Vec<(vmm_core::TaskState, u64)>;
        claim_tasks(owner: &str, now: DateTime<Utc>, lease: Duration, max: usize) -> Vec<Task>;
        renew_lease(id: TaskId, fence: u64, lease: Duration) -> ();
        save_task(task: &Task, fence: u64) -> ();
        cancel_task(id: TaskId, now: DateTime<Utc>) -> Task;
    } + {
        async fn finish_and_claim(
            &self,
            ends: &[(Task, u64)],
            owner: &str,
            now: DateTime<Utc>,
            lease: Duration,
            max: usize,
        ) -> vmm_core::Result<vmm_core::Finished> {
            use std::sync::atomic::Ordering::SeqCst;
            let less = |n: usize| n.checked_sub(1);
            if !ends.is_empty() && self.slow_batches.fetch_update(SeqCst, SeqCst, less).is_ok() {
                futures_timer::Delay::new(Duration::from_secs(1)).await;
            }
            let _held = self.lock.lock().await;
            round_trip().await;
            if !ends.is_empty() && self.failing_batches.fetch_update(SeqCst, SeqCst, less).is_ok() {
                return Err(Error::backend("test", "the transaction did not commit"));
            }
            self.inner.finish_and_claim(ends, owner, now, lease, max).await
        }
    }
}
