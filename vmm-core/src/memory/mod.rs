//! In-memory fakes of every trait: [`InMemoryStore`], [`InMemoryHypervisor`] and
//! [`InMemoryConnector`] (which serves `memory://NAME` URIs). They keep the same rules as
//! the real backends and pass the same conformance suites; they back doctests, unit tests,
//! server tests and Python tests. The store implements each area's sub-trait in a file of
//! that area.

mod audit;
mod backups;
mod consoles;
mod events;
mod fencer;
mod ha;
mod hypervisor;
mod idempotency;
mod images;
mod ipam;
mod migrations;
mod networks;
mod nodes;
mod placement_groups;
mod recipes;
mod repo;
mod sender;
mod singletons;
mod snapshots;
mod ssh_keys;
mod tasks;
mod usage;
mod users;
mod vms;
mod watch;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::audit::AuditEntry;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::event::{task_events, Event};
use crate::id::{
    AuditId, ImageId, NetworkId, NodeId, PlacementGroupId, PoolId, RecipeId, SshKeyId, TaskId, TokenId,
    UserId, VmId,
};
use crate::image::Image;
use crate::ipam::{IpAllocator, IpLease, IpPool};
use crate::network::Network;
use crate::node::Node;
use crate::page::{Page, PageRequest};
use crate::recipe::Recipe;
use crate::ssh_keys::SshKey;
use crate::store::{NodeImage, VmGuest};
use crate::task::Task;
use crate::users::{ApiToken, User, UserUsage};
use crate::vm::Vm;

pub use backups::{InMemoryTarget, InMemoryTargets};
pub use fencer::InMemoryFencer;
pub use hypervisor::{
    Failure, FakeVolume, HypervisorCall, InMemoryConnector, InMemoryHypervisor, DEFAULT_MEMORY_CAPACITY,
};
pub use repo::InMemoryImageRepo;
pub use sender::{InMemoryWebhookSender, SentRequest};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A page of the values of `map` (keyed by time-ordered ids) that `keep` passes, newest
/// first, keyset-paged by key.
fn page_of<K, V>(map: &BTreeMap<K, V>, page: &PageRequest, keep: impl Fn(&V) -> bool) -> Result<Page<V>>
where
    K: Ord + Copy + std::str::FromStr + std::fmt::Display,
    V: Clone,
{
    let limit = page.limit()?;
    let before: Option<K> = page.cursor()?;
    let entries = match before {
        Some(b) => map.range(..b),
        None => map.range(..),
    };
    let items: Vec<(K, V)> =
        entries.rev().filter(|(_, v)| keep(v)).take(limit + 1).map(|(k, v)| (*k, v.clone())).collect();
    let page = Page::from_overfetch(items, limit, |(k, _)| k.to_string());
    Ok(Page { items: page.items.into_iter().map(|(_, v)| v).collect(), next_cursor: page.next_cursor })
}

#[derive(Debug)]
struct PoolState {
    pool: IpPool,
    alloc: IpAllocator,
    leases: BTreeMap<IpAddr, IpLease>,
}

#[derive(Debug, Default)]
struct StoreState {
    /// Nodes, each with `allocated` kept up to date as VMs come and go.
    nodes: BTreeMap<NodeId, Node>,
    pools: BTreeMap<PoolId, PoolState>,
    vms: BTreeMap<VmId, Vm>,
    /// The addresses each VM holds.
    vm_leases: HashMap<VmId, Vec<(PoolId, IpAddr)>>,
    tasks: BTreeMap<TaskId, Task>,
    /// Tasks that are queued or running.
    active: BTreeSet<TaskId>,
    /// The active task of each VM.
    vm_active: HashMap<VmId, TaskId>,
    /// What is kept about each VM's guest.
    guests: HashMap<VmId, VmGuest>,
    images: BTreeMap<ImageId, Image>,
    node_images: HashMap<(NodeId, ImageId), NodeImage>,
    recipes: BTreeMap<RecipeId, Recipe>,
    placement_groups: BTreeMap<PlacementGroupId, crate::placement_group::PlacementGroup>,
    networks: BTreeMap<NetworkId, Network>,
    /// Users with their password hashes.
    users: BTreeMap<UserId, (User, Option<String>)>,
    /// Tokens with their lookup prefixes and hashes.
    tokens: BTreeMap<TokenId, (ApiToken, String, String)>,
    ssh_keys: BTreeMap<SshKeyId, SshKey>,
    audit: BTreeMap<AuditId, AuditEntry>,
    /// The event log by id.
    events: BTreeMap<u64, Event>,
    /// The last event id given (pruning never lowers it).
    last_event: u64,
    /// Idempotency keys by scope and key.
    idempotency: HashMap<(String, String), crate::idempotency::IdempotencyRecord>,
    webhooks: BTreeMap<crate::id::WebhookId, webhooks::HookState>,
    deliveries: BTreeMap<crate::id::DeliveryId, crate::webhook::Delivery>,
    /// Singleton leases: holder and until when.
    singletons: HashMap<String, (String, chrono::DateTime<chrono::Utc>)>,
    /// Console tickets by token hash.
    console_tickets: HashMap<String, crate::console::ConsoleTicket>,
    /// Usage points by subject key, resolution and time (Unix seconds).
    usage: BTreeMap<(String, u32, i64), crate::usage::UsagePoint>,
    /// Backup targets, with their S3 secrets.
    backup_targets: BTreeMap<crate::id::BackupTargetId, crate::backup::BackupTargetConfig>,
    backups: BTreeMap<crate::id::BackupId, crate::backup::Backup>,
    schedules: BTreeMap<crate::id::ScheduleId, crate::backup::BackupSchedule>,
    /// Each node's lease and HA state.
    node_leases: BTreeMap<crate::id::NodeId, crate::ha::NodeLease>,
    /// Each VM's snapshots (a VM's go when it does).
    snapshots: HashMap<VmId, Vec<crate::snapshot::Snapshot>>,
}

impl StoreState {
    /// Keeps a new task, as its VM's owner's (or as the owner it names, without a VM),
    /// and records it queued.
    fn insert_task(&mut self, task: &Task) {
        let owner = match task.vm_id {
            Some(v) => self.vms.get(&v).and_then(|vm| vm.owner_id),
            None => task.owner_id,
        };
        let task = Task { owner_id: owner, ..task.clone() };
        self.task_changed(None, &task, task.created_at);
        self.tasks.insert(task.id, task);
    }

    /// Appends `events`, numbered after the last.
    fn emit_all(&mut self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            self.emit(e);
        }
    }

    /// Appends an event, numbered after the last.
    fn emit(&mut self, mut event: Event) {
        self.last_event += 1;
        event.id = self.last_event;
        self.events.insert(event.id, event);
    }

    /// Records the events of a task's change.
    fn task_changed(&mut self, before: Option<&Task>, after: &Task, at: chrono::DateTime<chrono::Utc>) {
        let name = after.vm_id.and_then(|v| self.vms.get(&v)).map(|vm| vm.name.clone());
        for event in task_events(before, after, name.as_deref(), at) {
            self.emit(event);
        }
    }

    /// What `owner`'s VMs hold.
    fn usage_of(&self, owner: UserId) -> UserUsage {
        let mut usage = UserUsage::default();
        for vm in self.vms.values().filter(|v| v.owner_id == Some(owner)) {
            usage.add(vm);
        }
        usage
    }

    /// Whether `adding` fits in the quota of `owner` (if any) beside what they hold.
    fn check_quota(&self, owner: Option<UserId>, adding: &UserUsage) -> Result<()> {
        let Some(owner) = owner else { return Ok(()) };
        let (user, _) = self.users.get(&owner).ok_or(Error::UserNotFound { id: owner })?;
        if user.quota.is_unlimited() {
            return Ok(());
        }
        user.quota.check(&self.usage_of(owner), adding)
    }

    fn finish(&mut self, task: &Task) {
        if !task.state.is_active() {
            self.active.remove(&task.id);
            if let Some(vm) = task.vm_id {
                if self.vm_active.get(&vm) == Some(&task.id) {
                    self.vm_active.remove(&vm);
                }
            }
        }
    }
}

/// A [`Store`](crate::Store) in memory. Every method takes one lock, so each is atomic.
/// Its clock is the store's clock, by which leases expire (as a database's would be).
///
/// ```
/// # futures::executor::block_on(async {
/// use vmm_core::{memory::InMemoryStore, IpPool, IpPoolSpec, IpamStore};
/// let store = InMemoryStore::new();
/// let pool = IpPool::from_spec(&IpPoolSpec::new("p", "192.0.2.0/30"), chrono::Utc::now()).unwrap();
/// store.create_pool(&pool).await.unwrap();
/// let lease = store.allocate_lease(pool.id, None, None, chrono::Utc::now()).await.unwrap();
/// assert_eq!(lease.address.to_string(), "192.0.2.1");
/// # });
/// ```
#[derive(Debug)]
pub struct InMemoryStore {
    state: Mutex<StoreState>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty store whose leases expire by `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self { state: Mutex::new(StoreState::default()), clock }
    }

    fn state(&self) -> MutexGuard<'_, StoreState> {
        lock(&self.state)
    }
}
