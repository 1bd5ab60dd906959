//! The [`Vmm`] service: the SDK's front door and the home of every business rule. Adapters
//! (the HTTP server, the Python package) parse, call one method, and map errors.
//!
//! Its methods live in one file per area (`nodes`, `ipam`, `vms`, `tasks`); the worker
//! engine that runs tasks is in `engine`, and each task kind's saga in `jobs/<kind>`.
//!
//! Every VM mutation is a persisted [`Task`](crate::Task) that a background worker runs under
//! a fenced lease ([`Vmm::run_workers`]); the host supplies the executor (the server and the
//! Python package use tokio; tests here use a thread or `block_on`).

mod audit;
mod backups;
mod consoles;
mod engine;
mod events;
mod guests;
mod ha;
mod idempotency;
mod images;
mod ipam;
mod jobs;
mod maintenance;

mod metrics;
mod migrations;
mod networks;
mod nodes;
mod placement;
mod recipes;
mod reconcile;
mod schedules;
mod snapshots;
mod ssh_keys;
mod tasks;
mod tenancy;
mod usage;
mod users;
mod vms;
mod webhooks;

pub use consoles::{ConsoleGrant, ConsoleSession};
pub use usage::{NodeDomains, UsageCollector};
pub use users::{Session, TOKEN_PREFIX};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use event_listener::Event;

use crate::backup::TargetOpener;
use crate::clock::{Clock, SystemClock};
use crate::directory::Directory;
use crate::error::Result;
use crate::hypervisor::{Connector, Hypervisor};
use crate::id::{ImageId, NodeId, UserId, VmId};
use crate::image::{ImageFetcher, ImageLimits, ImageRepo, UrlPolicy};
use crate::memory::{InMemoryConnector, InMemoryImageRepo, InMemoryStore, InMemoryTargets};
use crate::node::{Node, NodeUriPolicy};
use crate::placement::Strategy;
use crate::store::Store;
use crate::task::{Task, TaskDeadlines, TaskKind, TaskParams};
use crate::users::Actor;

/// How a [`Vmm`] runs its tasks and which nodes it accepts.
#[derive(Debug, Clone)]
pub struct VmmConfig {
    /// This worker's name in task leases (for people reading them; the fence, not the
    /// name, decides who holds a task).
    pub worker_id: String,
    /// How long a claimed task's lease lasts before it must be renewed.
    pub lease: Duration,
    /// How often idle workers look for tasks queued by other processes.
    pub poll_interval: Duration,
    /// Claims of one task before it is undone and failed.
    pub max_attempts: u32,
    /// Tasks one worker loop runs at once.
    pub concurrency: usize,
    /// How placement chooses among fitting nodes.
    pub strategy: Strategy,
    /// How long a graceful shutdown waits before forcing the VM off.
    pub shutdown_timeout: Duration,
    /// How long each kind of task may run before it is stopped, undone and failed.
    pub deadlines: TaskDeadlines,
    /// Which node URIs are accepted.
    pub node_uris: NodeUriPolicy,
    /// Limits on imported images.
    pub image_limits: ImageLimits,
    /// Which URLs images may be fetched from.
    pub image_urls: UrlPolicy,
    /// How long a sign-in's session token works.
    pub session_ttl: Duration,
    /// How long the first answer to an idempotency key is kept.
    pub idempotency_ttl: Duration,
    /// How long a first try with an idempotency key may run before a retry may run it
    /// again (its server is taken to have died).
    pub idempotency_stale: Duration,
    /// Which URLs webhooks may deliver to (any public host by default).
    pub webhook_urls: UrlPolicy,
    /// Failed deliveries in a row after which a webhook is disabled.
    pub webhook_max_failures: u32,
    /// How long a console ticket can be used (default 60 s).
    pub console_ttl: Duration,
    /// Console sessions open at once per VM, in one process (default 4).
    pub console_sessions: usize,
    /// How often usage is sampled and how long it is kept.
    pub usage: crate::usage::UsageRetention,
    /// How long a node's bulk statistics serve scrapes before they are read again (default 5 s).
    pub stats_cache: Duration,
    /// Every node keeps VM disks in one directory they all see (NFS, a cluster
    /// filesystem): a migration moves no disk, and HA may restart a VM elsewhere. Off by
    /// default: each node's disks are its own, and a migration copies them.
    pub shared_storage: bool,
    /// How long a node counts as alive after it last answered (HA; default 30 s).
    pub node_lease: Duration,
    /// Fence agents by name: each a command and its arguments, run with the node's id,
    /// name and URI in `VMM_NODE_ID`, `VMM_NODE_NAME` and `VMM_NODE_URI`; exit 0 means the
    /// node is off.
    pub fence_agents: crate::ha::FenceAgents,
    /// How long a fence agent may run.
    pub fence_timeout: Duration,
}

impl Default for VmmConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_attempts: 3,
            concurrency: 8,
            strategy: Strategy::Spread,
            shutdown_timeout: Duration::from_secs(60),
            deadlines: TaskDeadlines::default(),
            node_uris: NodeUriPolicy::default(),
            image_limits: ImageLimits::default(),
            image_urls: UrlPolicy::default(),
            session_ttl: Duration::from_secs(12 * 3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_stale: Duration::from_secs(300),
            webhook_urls: UrlPolicy { allowed_hosts: vec!["*".into()], ..UrlPolicy::default() },
            webhook_max_failures: 10,
            console_ttl: Duration::from_secs(60),
            console_sessions: 4,
            usage: crate::usage::UsageRetention::default(),
            stats_cache: Duration::from_secs(5),
            shared_storage: false,
            node_lease: Duration::from_secs(30),
            fence_agents: crate::ha::FenceAgents::default(),
            fence_timeout: Duration::from_secs(60),
        }
    }
}

/// Builds a [`Vmm`] from its parts.
#[derive(Debug, Default)]
pub struct VmmBuilder {
    store: Option<Arc<dyn Store>>,
    connector: Option<Arc<dyn Connector>>,
    clock: Option<Arc<dyn Clock>>,
    images: Option<Arc<dyn ImageRepo>>,
    fetcher: Option<Arc<dyn ImageFetcher>>,
    directory: Option<Arc<dyn Directory>>,
    targets: Option<Arc<dyn TargetOpener>>,
    fencer: Option<Arc<dyn crate::ha::Fencer>>,
    config: VmmConfig,
}

impl VmmBuilder {
    /// How backup targets are opened (default: [`InMemoryTargets`], `memory://NAME` only).
    pub fn with_targets(mut self, targets: Arc<dyn TargetOpener>) -> Self {
        self.targets = Some(targets);
        self
    }

    /// How dead nodes are fenced (default: [`NoFencer`](crate::ha::NoFencer), no agents).
    pub fn with_fencer(mut self, fencer: Arc<dyn crate::ha::Fencer>) -> Self {
        self.fencer = Some(fencer);
        self
    }

    /// Persistence (default: a fresh [`InMemoryStore`] on the builder's clock).
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// How nodes are opened by URI (default: an [`InMemoryConnector`] for `memory://`).
    pub fn with_connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// The clock (default: the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Task engine settings and the node URI policy.
    pub fn with_config(mut self, config: VmmConfig) -> Self {
        self.config = config;
        self
    }

    /// Where image files are kept (default: an [`InMemoryImageRepo`]).
    pub fn with_image_repo(mut self, images: Arc<dyn ImageRepo>) -> Self {
        self.images = Some(images);
        self
    }

    /// How images are fetched from URLs (default: none; URL imports fail as unsupported).
    pub fn with_image_fetcher(mut self, fetcher: Arc<dyn ImageFetcher>) -> Self {
        self.fetcher = Some(fetcher);
        self
    }

    /// Where LDAP users are checked (default: none; they cannot sign in).
    pub fn with_directory(mut self, directory: Arc<dyn Directory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// The service.
    pub fn build(self) -> Vmm {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Vmm {
            acting: None,
            inner: Arc::new(Inner {
                store: self.store.unwrap_or_else(|| Arc::new(InMemoryStore::with_clock(clock.clone()))),
                connector: self.connector.unwrap_or_else(|| Arc::new(InMemoryConnector::new())),
                clock,
                images: self.images.unwrap_or_else(|| Arc::new(InMemoryImageRepo::new())),
                fetcher: self.fetcher,
                directory: self.directory,
                targets: self.targets.unwrap_or_else(|| Arc::new(InMemoryTargets::new())),
                fencer: self.fencer.unwrap_or_else(|| Arc::new(crate::ha::NoFencer)),
                config: self.config,
                hypervisors: Mutex::new(HashMap::new()),
                uploads: Mutex::new(HashSet::new()),
                changed: Event::new(),
                metrics: crate::metrics::TaskMetrics::default(),
                consoles: Mutex::new(HashMap::new()),
                scraped: Mutex::new(HashMap::new()),
                busy: Mutex::new(HashMap::new()),
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    connector: Arc<dyn Connector>,
    clock: Arc<dyn Clock>,
    images: Arc<dyn ImageRepo>,
    fetcher: Option<Arc<dyn ImageFetcher>>,
    directory: Option<Arc<dyn Directory>>,
    targets: Arc<dyn TargetOpener>,
    fencer: Arc<dyn crate::ha::Fencer>,
    config: VmmConfig,
    hypervisors: Mutex<HashMap<NodeId, Arc<dyn Hypervisor>>>,
    /// Images whose data is being uploaded through this service: one upload at a time each.
    uploads: Mutex<HashSet<ImageId>>,
    /// Notified whenever a task is queued or changes state.
    changed: Event,
    /// The engine's metrics.
    metrics: crate::metrics::TaskMetrics,
    /// Open console sessions per VM, in this process.
    consoles: Mutex<HashMap<VmId, usize>>,
    /// The last bulk statistics read from each node, for scrapes.
    scraped: Mutex<HashMap<NodeId, (std::time::Instant, usage::Domains)>>,
    /// VMs a schedule's run found busy with another task, tried again at each scheduler
    /// pass until their backup is queued or the schedule runs again.
    busy: Mutex<HashMap<crate::id::ScheduleId, Vec<VmId>>>,
}

/// The vmm service. Cheap to clone; clones share everything.
///
/// ```
/// # futures::executor::block_on(async {
/// use vmm_core::{IpPoolSpec, NodeSpec, TaskState, Vmm, VmSpec, VmState};
/// let vmm = Vmm::in_memory(); // in-memory store and memory:// nodes
/// vmm.create_node(NodeSpec::new("n1", "memory://n1")).await?;
/// let pool = vmm.create_ip_pool(IpPoolSpec::new("public", "192.0.2.0/24")).await?;
/// let spec = VmSpec { ip_pool_id: Some(pool.id), ..VmSpec::new("web-1", 2, 2048, 20) };
/// let (vm, task) = vmm.create_vm(spec).await?;
/// vmm.run_until_idle().await?; // a server runs `run_workers` in the background instead
/// assert_eq!(vmm.get_task(task.id).await?.state, TaskState::Succeeded);
/// let vm = vmm.get_vm(vm.id).await?;
/// assert_eq!((vm.state, vm.addresses[0].to_string()), (VmState::Running, "192.0.2.1".into()));
/// # Ok::<(), vmm_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Vmm {
    inner: Arc<Inner>,
    /// The user on whose behalf tasks are queued through this handle ([`Vmm::acting_for`]).
    acting: Option<UserId>,
}

impl Vmm {
    /// A builder; with no parts given it makes an in-memory service that accepts only the
    /// node URIs of [`VmmConfig::node_uris`] (no test nodes).
    pub fn builder() -> VmmBuilder {
        VmmBuilder::default()
    }

    /// A service wholly in memory, whose nodes are `memory://NAME` fakes: for examples,
    /// doctests and tests.
    pub fn in_memory() -> Self {
        let config = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
        Self::builder().with_config(config).build()
    }

    /// The same service, queueing tasks on behalf of `actor`: their tasks and the events
    /// those make name them.
    pub fn acting_for(&self, actor: &Actor) -> Vmm {
        Vmm { inner: self.inner.clone(), acting: Some(actor.user_id) }
    }

    /// A new task, asked for by the user this handle acts for.
    fn new_task(&self, kind: TaskKind, vm: Option<VmId>, params: TaskParams, now: DateTime<Utc>) -> Task {
        Task { actor_id: self.acting, ..Task::new(kind, vm, params, now) }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The task engine settings.
    pub fn config(&self) -> &VmmConfig {
        &self.inner.config
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn notify(&self) {
        self.inner.changed.notify(usize::MAX);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Arc<dyn Hypervisor>>> {
        self.inner.hypervisors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node's hypervisor, opened on first use. A URI the policy refuses (a node
    /// registered before the policy was tightened) is never opened.
    async fn hypervisor(&self, node: &Node) -> Result<Arc<dyn Hypervisor>> {
        if let Some(hv) = self.cache().get(&node.id) {
            return Ok(hv.clone());
        }
        self.inner.config.node_uris.check(&node.uri)?;
        let hv = self.inner.connector.connect(&node.uri, node.virt_type).await?;
        Ok(self.cache().entry(node.id).or_insert(hv).clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
