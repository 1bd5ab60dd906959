//! The [`Vmm`] service: the SDK's front door and the home of every business rule. Adapters
//! (the HTTP server, the Python package) parse, call one method, and map errors.
//!
//! Every VM mutation is a persisted [`Task`] that a background worker runs under a lease
//! ([`Vmm::run_workers`]); the host supplies the executor (the server and the Python package
//! use tokio; tests here use a thread). A create is a saga: place and lease in one store
//! transaction, then disk, define, start; a failure or a cancel at any step undoes the
//! earlier ones. A worker that dies leaves a lease that expires; the next worker to claim the
//! task resumes it (every step is idempotent) or, after `max_attempts`, undoes it and fails it.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use event_listener::Event;
use futures::future::{select, BoxFuture, Either, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use futures_timer::Delay;
use tracing::Instrument;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::hypervisor::{Connector, DomainSpec, Hypervisor, PowerState};
use crate::id::{NodeId, PoolId, TaskId, VmId};
use crate::ipam::{IpLease, IpPool, IpPoolSpec};
use crate::memory::{MemoryConnector, MemoryStore};
use crate::node::{Node, NodePatch, NodeSpec};
use crate::page::{Page, PageRequest};
use crate::placement::{self, Demand, Strategy};
use crate::store::{PlacementRequest, Store};
use crate::task::{Task, TaskFilter, TaskKind, TaskParams, TaskState};
use crate::vm::{Vm, VmAction, VmPatch, VmSpec, VmState};

/// How a [`Vmm`] runs its tasks.
#[derive(Debug, Clone)]
pub struct VmmConfig {
    /// This worker's name in task leases; unique per process.
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
        }
    }
}

/// Builds a [`Vmm`] from its parts.
#[derive(Debug, Default)]
pub struct VmmBuilder {
    store: Option<Arc<dyn Store>>,
    connector: Option<Arc<dyn Connector>>,
    clock: Option<Arc<dyn Clock>>,
    config: VmmConfig,
}

impl VmmBuilder {
    /// Persistence (default: a fresh [`MemoryStore`]).
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// How nodes are opened by URI (default: a [`MemoryConnector`] for `memory://` URIs).
    pub fn with_connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// The clock (default: the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Task engine settings.
    pub fn with_config(mut self, config: VmmConfig) -> Self {
        self.config = config;
        self
    }

    /// The service.
    pub fn build(self) -> Vmm {
        Vmm {
            inner: Arc::new(Inner {
                store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
                connector: self.connector.unwrap_or_else(|| Arc::new(MemoryConnector::new())),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                config: self.config,
                hypervisors: Mutex::new(HashMap::new()),
                changed: Event::new(),
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    connector: Arc<dyn Connector>,
    clock: Arc<dyn Clock>,
    config: VmmConfig,
    hypervisors: Mutex<HashMap<NodeId, Arc<dyn Hypervisor>>>,
    /// Notified whenever a task is queued or changes state.
    changed: Event,
}

/// The vmm service. Cheap to clone; clones share everything.
///
/// ```
/// # futures::executor::block_on(async {
/// use vmm_core::{IpPoolSpec, NodeSpec, TaskState, Vmm, VmSpec, VmState};
/// let vmm = Vmm::builder().build(); // in-memory store and memory:// nodes
/// vmm.add_node(NodeSpec::new("n1", "memory://n1")).await?;
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
}

/// How a task body ended when it did not fail.
enum Outcome {
    Done,
    Cancelled,
}

/// A claimed task being run by this worker.
struct Run {
    task: Task,
    owner: String,
}

impl Vmm {
    /// A builder; with no parts given it makes an in-memory service.
    pub fn builder() -> VmmBuilder {
        VmmBuilder::default()
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

    // ----- nodes -----

    /// Connects to a node, reads its capacity, and registers it.
    pub async fn add_node(&self, spec: NodeSpec) -> Result<Node> {
        spec.validate()?;
        let hv = self.inner.connector.connect(spec.uri.trim(), spec.virt_type).await?;
        let info = hv.node_info().await?;
        let node = Node::from_spec(&spec, info.capacity, self.now());
        self.inner.store.insert_node(&node).await?;
        self.cache().insert(node.id, hv);
        Ok(node)
    }

    /// One node.
    pub async fn get_node(&self, id: NodeId) -> Result<Node> {
        self.inner.store.get_node(id).await
    }

    /// Nodes, newest first.
    pub async fn list_nodes(&self, page: &PageRequest) -> Result<Page<Node>> {
        self.inner.store.list_nodes(page).await
    }

    /// Renames a node, changes its ratios, or puts it in or out of maintenance.
    pub async fn update_node(&self, id: NodeId, patch: NodePatch) -> Result<Node> {
        patch.validate()?;
        let node = self.inner.store.get_node(id).await?;
        self.inner.store.update_node(&patch.applied_to(&node)).await?;
        self.inner.store.get_node(id).await
    }

    /// Unregisters a node that has no VMs.
    pub async fn remove_node(&self, id: NodeId) -> Result<()> {
        self.inner.store.delete_node(id).await?;
        self.cache().remove(&id);
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Arc<dyn Hypervisor>>> {
        self.inner.hypervisors.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn hypervisor(&self, node: &Node) -> Result<Arc<dyn Hypervisor>> {
        if let Some(hv) = self.cache().get(&node.id) {
            return Ok(hv.clone());
        }
        let hv = self.inner.connector.connect(&node.uri, node.virt_type).await?;
        self.cache().insert(node.id, hv.clone());
        Ok(hv)
    }

    // ----- IP pools -----

    /// Creates a pool.
    pub async fn create_ip_pool(&self, spec: IpPoolSpec) -> Result<IpPool> {
        let pool = IpPool::from_spec(&spec, self.now())?;
        self.inner.store.insert_pool(&pool).await?;
        Ok(pool)
    }

    /// One pool.
    pub async fn get_ip_pool(&self, id: PoolId) -> Result<IpPool> {
        self.inner.store.get_pool(id).await
    }

    /// Pools, newest first.
    pub async fn list_ip_pools(&self, page: &PageRequest) -> Result<Page<IpPool>> {
        self.inner.store.list_pools(page).await
    }

    /// Deletes a pool with no leases.
    pub async fn delete_ip_pool(&self, id: PoolId) -> Result<()> {
        self.inner.store.delete_pool(id).await
    }

    /// Leases `address`, or the lowest free address, to nobody (held by hand).
    pub async fn allocate_ip(&self, pool: PoolId, address: Option<IpAddr>) -> Result<IpLease> {
        self.inner.store.allocate_lease(pool, address, None, self.now()).await
    }

    /// Ends a lease held by hand.
    pub async fn release_ip(&self, pool: PoolId, address: IpAddr) -> Result<()> {
        self.inner.store.release_lease(pool, address).await
    }

    /// A pool's leases.
    pub async fn list_leases(&self, pool: PoolId, page: &PageRequest) -> Result<Page<IpLease>> {
        self.inner.store.list_leases(pool, page).await
    }

    // ----- VMs -----

    /// Places the VM, leases its address and queues its create task, all in one
    /// transaction; the task then makes the disk, defines and (if asked) starts it.
    pub async fn create_vm(&self, spec: VmSpec) -> Result<(Vm, Task)> {
        spec.validate()?;
        let now = self.now();
        let vm = Vm {
            id: VmId::new(),
            name: spec.name,
            vcpus: spec.vcpus,
            memory_mib: spec.memory_mib,
            disk_gib: spec.disk_gib,
            node_id: NodeId::from_uuid(uuid::Uuid::nil()),
            ip_pool_id: spec.ip_pool_id,
            state: VmState::Creating,
            addresses: Vec::new(),
            created_at: now,
        };
        let task = Task::new(TaskKind::CreateVm, Some(vm.id), TaskParams::Create { start: spec.start }, now);
        let placement = PlacementRequest { pinned: spec.node_id, strategy: self.inner.config.strategy };
        let vm = self.inner.store.create_vm(&vm, &task, placement).await?;
        self.notify();
        Ok((vm, task))
    }

    /// One VM.
    pub async fn get_vm(&self, id: VmId) -> Result<Vm> {
        self.inner.store.get_vm(id).await
    }

    /// VMs, newest first.
    pub async fn list_vms(&self, page: &PageRequest) -> Result<Page<Vm>> {
        self.inner.store.list_vms(page).await
    }

    /// Queues a rename and/or resize. Disks only grow; the node must have room.
    pub async fn update_vm(&self, id: VmId, patch: VmPatch) -> Result<Task> {
        let vm = self.inner.store.get_vm(id).await?;
        patch.validate(&vm)?;
        let action = if patch.resizes(&vm) {
            VmAction::Resize
        } else if patch.renames(&vm) {
            VmAction::Rename
        } else {
            return Err(Error::invalid("patch", "changes nothing"));
        };
        if action == VmAction::Resize {
            // Early answer; the task re-checks in one transaction.
            vm.state.apply(id, action)?;
            let mut node = self.inner.store.get_node(vm.node_id).await?;
            node.allocated.vcpus -= u64::from(vm.vcpus);
            node.allocated.memory_mib -= vm.memory_mib;
            node.allocated.storage_gib -= vm.disk_gib;
            node.state = crate::node::NodeState::Online;
            let after = patch.applied_to(&vm);
            let demand =
                Demand { vcpus: after.vcpus, memory_mib: after.memory_mib, disk_gib: after.disk_gib };
            if let Some(reason) = placement::check(&node, &demand) {
                let rejection = placement::Rejection { node_id: node.id, node_name: node.name, reason };
                return Err(Error::NoCapacity { rejections: vec![rejection] });
            }
        }
        self.enqueue(id, action, TaskKind::UpdateVm, TaskParams::Update { patch }).await
    }

    /// Queues the VM's deletion with its disk and leases.
    pub async fn delete_vm(&self, id: VmId) -> Result<Task> {
        self.enqueue(id, VmAction::Delete, TaskKind::DeleteVm, TaskParams::None).await
    }

    /// Queues a power action: start, stop, shutdown, reboot, suspend or resume.
    pub async fn act(&self, id: VmId, action: VmAction) -> Result<Task> {
        match action {
            VmAction::Resize | VmAction::Rename => {
                Err(Error::invalid("action", "resize and rename go through update_vm"))
            }
            VmAction::Delete => self.delete_vm(id).await,
            _ => self.enqueue(id, action, TaskKind::for_action(action), TaskParams::None).await,
        }
    }

    /// Queues a start.
    pub async fn start_vm(&self, id: VmId) -> Result<Task> {
        self.act(id, VmAction::Start).await
    }

    /// Queues a forced power-off.
    pub async fn stop_vm(&self, id: VmId) -> Result<Task> {
        self.act(id, VmAction::Stop).await
    }

    /// Queues a graceful shutdown (forced after the configured timeout).
    pub async fn shutdown_vm(&self, id: VmId) -> Result<Task> {
        self.act(id, VmAction::Shutdown).await
    }

    /// Queues a reboot.
    pub async fn reboot_vm(&self, id: VmId) -> Result<Task> {
        self.act(id, VmAction::Reboot).await
    }

    /// Queues a suspend.
    pub async fn suspend_vm(&self, id: VmId) -> Result<Task> {
        self.act(id, VmAction::Suspend).await
    }

    /// Queues a resume.
    pub async fn resume_vm(&self, id: VmId) -> Result<Task> {
        self.act(id, VmAction::Resume).await
    }

    async fn enqueue(&self, id: VmId, action: VmAction, kind: TaskKind, params: TaskParams) -> Result<Task> {
        let task = Task::new(kind, Some(id), params, self.now());
        self.inner.store.enqueue_task(&task, Some(action)).await?;
        self.notify();
        Ok(task)
    }

    // ----- tasks -----

    /// One task.
    pub async fn get_task(&self, id: TaskId) -> Result<Task> {
        self.inner.store.get_task(id).await
    }

    /// Tasks, newest first.
    pub async fn list_tasks(&self, filter: &TaskFilter, page: &PageRequest) -> Result<Page<Task>> {
        self.inner.store.list_tasks(filter, page).await
    }

    /// Cancels a queued task, or asks a running one to stop and undo what it did. A queued
    /// create gives back its placement and address at once.
    pub async fn cancel_task(&self, id: TaskId) -> Result<Task> {
        let task = self.inner.store.cancel_task(id, self.now()).await?;
        self.notify();
        if let (TaskKind::CreateVm, TaskState::Cancelled, Some(vm)) = (task.kind, task.state, task.vm_id) {
            // Nothing exists on the node yet. Should this fail or the process die here, the VM
            // stays `creating` with no task, and deleting it cleans up.
            self.undo_create(vm).await?;
        }
        Ok(task)
    }

    /// Waits until the task ends or `timeout` passes, and returns it as it is then.
    pub async fn wait_task(&self, id: TaskId, timeout: Duration) -> Result<Task> {
        let deadline = Instant::now() + timeout;
        loop {
            let listener = self.inner.changed.listen();
            let task = self.inner.store.get_task(id).await?;
            let now = Instant::now();
            if !task.state.is_active() || now >= deadline {
                return Ok(task);
            }
            // Tasks run by another process do not notify us: poll as well.
            let nap = (deadline - now).min(self.inner.config.poll_interval);
            select(listener, Delay::new(nap)).await;
        }
    }

    // ----- workers -----

    /// Claims one task and runs it to its end. False when nothing was claimable.
    pub async fn run_next_task(&self) -> Result<bool> {
        match self.claim().await? {
            Some(task) => {
                self.execute(task).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Runs tasks one after another until none is claimable; returns how many ran.
    pub async fn run_until_idle(&self) -> Result<usize> {
        let mut n = 0;
        while self.run_next_task().await? {
            n += 1;
        }
        Ok(n)
    }

    /// The worker loop: claims and runs up to `concurrency` tasks at once, recovers tasks
    /// whose lease expired, and returns once `shutdown` completes and the tasks in hand end.
    ///
    /// Claims run in the same set of futures as the tasks, so that a claim waiting for the
    /// database never stops a running task (which may hold the lock it waits for) from being
    /// polled; and no future that touches the store is ever dropped half-way.
    pub async fn run_workers(&self, shutdown: impl Future<Output = ()>) {
        enum Event {
            Claimed(Result<Option<Box<Task>>>),
            Ran,
        }
        let config = &self.inner.config;
        let mut shutdown = pin!(shutdown.fuse());
        let mut work: FuturesUnordered<BoxFuture<'_, Event>> = FuturesUnordered::new();
        let (mut running, mut claiming, mut idle, mut stopping) = (0usize, false, false, false);
        loop {
            if !stopping && !claiming && !idle && running < config.concurrency.max(1) {
                work.push(Box::pin(self.claim().map(|c| Event::Claimed(c.map(|t| t.map(Box::new))))));
                claiming = true;
            }
            if stopping && running == 0 && !claiming {
                return;
            }
            let wake = select(self.inner.changed.listen(), Delay::new(config.poll_interval));
            let next = async {
                match work.next().await {
                    Some(event) => event,
                    None => std::future::pending().await,
                }
            };
            // The losers of the race borrow `work`: settle the outcome before touching it.
            let outcome = match select(pin!(next), select(wake, shutdown.as_mut())).await {
                Either::Left((event, _)) => Some(event),
                Either::Right((Either::Left(_), _)) => None,
                Either::Right((Either::Right(_), _)) => {
                    stopping = true;
                    None
                }
            };
            match outcome {
                Some(Event::Claimed(claimed)) => {
                    claiming = false;
                    match claimed {
                        Ok(Some(task)) => {
                            running += 1;
                            work.push(Box::pin(self.execute(*task).map(|()| Event::Ran)));
                        }
                        Ok(None) => idle = true,
                        Err(e) => {
                            tracing::warn!(error = %error_chain(&e), "claiming a task failed");
                            idle = true;
                        }
                    }
                }
                Some(Event::Ran) => {
                    running -= 1;
                    idle = false;
                }
                // Woken: something changed, or it is time to look again.
                None => idle = false,
            }
        }
    }

    async fn claim(&self) -> Result<Option<Task>> {
        let now = self.now();
        let until = now + chrono_duration(self.inner.config.lease);
        self.inner.store.claim_task(&self.inner.config.worker_id, now, until).await
    }

    async fn execute(&self, task: Task) {
        let span = tracing::info_span!("task", task = %task.id, kind = %task.kind, vm = ?task.vm_id, attempt = task.attempts);
        let id = task.id;
        let work = self.perform(Run { task, owner: self.inner.config.worker_id.clone() });
        match select(pin!(work.instrument(span.clone())), pin!(self.keep_lease(id))).await {
            Either::Left(_) => {}
            Either::Right((e, _)) => {
                span.in_scope(|| tracing::warn!(error = %e, "lease lost; leaving the task to its new owner"));
            }
        }
        self.notify();
    }

    /// Renews the lease every third of its length; ends only when the lease is lost.
    async fn keep_lease(&self, id: TaskId) -> Error {
        let config = &self.inner.config;
        loop {
            Delay::new(config.lease / 3).await;
            let now = self.now();
            match self
                .inner
                .store
                .renew_lease(id, &config.worker_id, now, now + chrono_duration(config.lease))
                .await
            {
                Ok(()) => {}
                Err(e @ Error::LeaseLost { .. }) => return e,
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "renewing a lease failed; retrying")
                }
            }
        }
    }

    async fn perform(&self, mut run: Run) {
        tracing::info!("task started");
        let result = match run.task.kind {
            TaskKind::CreateVm => self.create_saga(&mut run).await,
            TaskKind::DeleteVm => self.delete_steps(&mut run).await.map(|()| Outcome::Done),
            TaskKind::UpdateVm => self.update_steps(&mut run).await.map(|()| Outcome::Done),
            TaskKind::StartVm => self.power_steps(&mut run, VmAction::Start).await,
            TaskKind::StopVm => self.power_steps(&mut run, VmAction::Stop).await,
            TaskKind::ShutdownVm => self.power_steps(&mut run, VmAction::Shutdown).await,
            TaskKind::RebootVm => self.power_steps(&mut run, VmAction::Reboot).await,
            TaskKind::SuspendVm => self.power_steps(&mut run, VmAction::Suspend).await,
            TaskKind::ResumeVm => self.power_steps(&mut run, VmAction::Resume).await,
        };
        let now = self.now();
        let (state, error) = match result {
            Ok(Outcome::Done) => (TaskState::Succeeded, None),
            Ok(Outcome::Cancelled) => (TaskState::Cancelled, None),
            Err(Error::LeaseLost { .. }) => return,
            Err(e) => (TaskState::Failed, Some(e)),
        };
        run.task.state = state;
        if state == TaskState::Succeeded {
            run.task.progress = 100;
        }
        run.task.log(now, format!("{state}"));
        run.task.error_code = error.as_ref().map(|e| e.code().to_owned());
        run.task.error = error.as_ref().map(|e| error_chain(e));
        run.task.finished_at = Some(now);
        match self.inner.store.save_task(&run.task, &run.owner, now).await {
            Ok(()) => {
                tracing::info!(state = %state, error = run.task.error.as_deref(), "task ended")
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "could not record the end of the task")
            }
        }
    }

    /// Logs a step and saves progress; fails with `LeaseLost` if another worker took over.
    async fn step(&self, run: &mut Run, progress: u8, message: impl Into<String>) -> Result<()> {
        let now = self.now();
        let message = message.into();
        tracing::debug!(progress, message = %message, "step");
        run.task.progress = progress;
        run.task.log(now, message);
        self.inner.store.save_task(&run.task, &run.owner, now).await
    }

    async fn cancel_requested(&self, run: &mut Run) -> Result<bool> {
        let stored = self.inner.store.get_task(run.task.id).await?;
        run.task.cancel_requested = stored.cancel_requested;
        Ok(stored.cancel_requested)
    }

    fn domain_spec(vm: &Vm, node: &Node) -> DomainSpec {
        DomainSpec {
            vm_id: vm.id,
            title: vm.name.clone(),
            vcpus: vm.vcpus,
            memory_mib: vm.memory_mib,
            virt_type: node.virt_type,
            mac: vm.id.mac_address(),
            addresses: vm.addresses.clone(),
        }
    }

    async fn vm_and_hypervisor(&self, run: &Run) -> Result<(Vm, Node, Arc<dyn Hypervisor>)> {
        let id = run.task.vm_id.ok_or_else(|| Error::invalid("task", "has no VM"))?;
        let vm = self.inner.store.get_vm(id).await?;
        let node = self.inner.store.get_node(vm.node_id).await?;
        let hv = self.hypervisor(&node).await?;
        Ok((vm, node, hv))
    }

    async fn create_saga(&self, run: &mut Run) -> Result<Outcome> {
        let vm_id = run.task.vm_id.ok_or_else(|| Error::invalid("task", "has no VM"))?;
        let max = self.inner.config.max_attempts;
        let result = if run.task.attempts > max {
            Err(Error::conflict(format!("gave up after {max} attempts")))
        } else {
            self.create_steps(run).await
        };
        let outcome = match result {
            Ok(Outcome::Done) => return Ok(Outcome::Done),
            Err(e @ Error::LeaseLost { .. }) => return Err(e),
            Ok(Outcome::Cancelled) => Ok(Outcome::Cancelled),
            Err(e) => Err(e),
        };
        let now = self.now();
        run.task.log(now, "undoing the earlier steps");
        match self.undo_create(vm_id).await {
            Ok(()) => outcome,
            Err(undo) => {
                let first = match &outcome {
                    Ok(_) => "cancelled".to_owned(),
                    Err(e) => error_chain(e),
                };
                Err(Error::conflict(format!(
                    "{first}; undoing it failed ({}), the VM is left in state error for a later delete",
                    error_chain(&undo)
                )))
            }
        }
    }

    async fn create_steps(&self, run: &mut Run) -> Result<Outcome> {
        let start = matches!(run.task.params, TaskParams::Create { start: true });
        let (mut vm, node, hv) = self.vm_and_hypervisor(run).await?;
        if self.cancel_requested(run).await? {
            return Ok(Outcome::Cancelled);
        }
        self.step(run, 10, format!("creating a {} GiB disk on {}", vm.disk_gib, node.name)).await?;
        if hv.volume(vm.id).await?.is_none() {
            hv.create_volume(vm.id, vm.disk_gib).await?;
        }
        if self.cancel_requested(run).await? {
            return Ok(Outcome::Cancelled);
        }
        self.step(run, 40, "defining the domain").await?;
        hv.define_domain(&Self::domain_spec(&vm, &node)).await?;
        if self.cancel_requested(run).await? {
            return Ok(Outcome::Cancelled);
        }
        if start {
            self.step(run, 70, "starting").await?;
            let running = hv.domain(vm.id).await?.is_some_and(|d| d.state == PowerState::Running);
            if !running {
                hv.start(vm.id).await?;
            }
        }
        vm.state = if start { VmState::Running } else { VmState::Stopped };
        self.inner.store.update_vm(&vm).await?;
        Ok(Outcome::Done)
    }

    /// Removes whatever a create made: domain, volume, then the VM record and its leases.
    /// If the hypervisor part fails, the VM stays recorded in state `error` with its leases,
    /// so that nothing is orphaned and a later delete can finish the job.
    async fn undo_create(&self, vm_id: VmId) -> Result<()> {
        let mut vm = match self.inner.store.get_vm(vm_id).await {
            Ok(vm) => vm,
            Err(Error::VmNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let cleanup = async {
            let node = self.inner.store.get_node(vm.node_id).await?;
            let hv = self.hypervisor(&node).await?;
            remove_from_hypervisor(hv.as_ref(), vm_id).await
        };
        match cleanup.await {
            Ok(()) => self.inner.store.delete_vm(vm_id).await,
            Err(e) => {
                vm.state = VmState::Error;
                self.inner.store.update_vm(&vm).await?;
                Err(e)
            }
        }
    }

    async fn delete_steps(&self, run: &mut Run) -> Result<()> {
        let (mut vm, _node, hv) = match self.vm_and_hypervisor(run).await {
            Err(Error::VmNotFound { .. }) => return Ok(()),
            other => other?,
        };
        vm.state = VmState::Deleting;
        self.inner.store.update_vm(&vm).await?;
        self.step(run, 20, "removing the domain and its disk").await?;
        if let Err(e) = remove_from_hypervisor(hv.as_ref(), vm.id).await {
            vm.state = VmState::Error;
            self.inner.store.update_vm(&vm).await?;
            return Err(e);
        }
        self.step(run, 80, "releasing addresses").await?;
        self.inner.store.delete_vm(vm.id).await
    }

    async fn power_steps(&self, run: &mut Run, action: VmAction) -> Result<Outcome> {
        let (mut vm, _node, hv) = self.vm_and_hypervisor(run).await?;
        let next = vm.state.apply(vm.id, action)?;
        let observed = hv.domain(vm.id).await?.ok_or(Error::VmNotFound { id: vm.id })?.state;
        // A task resumed after a crash may find its work already done.
        let done_already = match action {
            VmAction::Start | VmAction::Resume => observed == PowerState::Running,
            VmAction::Stop | VmAction::Shutdown => observed == PowerState::Shutoff,
            VmAction::Suspend => observed == PowerState::Paused,
            _ => false,
        };
        self.step(run, 30, format!("{action} requested")).await?;
        if !done_already {
            let result = match action {
                VmAction::Start => hv.start(vm.id).await,
                VmAction::Stop => hv.stop(vm.id).await,
                VmAction::Shutdown => hv.shutdown(vm.id, self.inner.config.shutdown_timeout).await,
                VmAction::Reboot => hv.reboot(vm.id).await,
                VmAction::Suspend => hv.suspend(vm.id).await,
                VmAction::Resume => hv.resume(vm.id).await,
                _ => Err(Error::invalid("action", format!("{action} is not a power action"))),
            };
            if let Err(e) = result {
                // Record what the hypervisor shows now, or error when it cannot tell.
                vm.state = match hv.domain(vm.id).await {
                    Ok(Some(d)) => observed_state(d.state),
                    _ => VmState::Error,
                };
                self.inner.store.update_vm(&vm).await?;
                return Err(e);
            }
        }
        vm.state = next;
        self.inner.store.update_vm(&vm).await?;
        Ok(Outcome::Done)
    }

    async fn update_steps(&self, run: &mut Run) -> Result<()> {
        let TaskParams::Update { patch } = run.task.params.clone() else {
            return Err(Error::invalid("task", "update without a patch"));
        };
        let (vm, node, hv) = self.vm_and_hypervisor(run).await?;
        patch.validate(&vm)?;
        let target = patch.applied_to(&vm);
        if patch.resizes(&vm) {
            vm.state.apply(vm.id, VmAction::Resize)?;
            self.step(run, 20, "reserving capacity").await?;
            self.inner.store.resize_vm(vm.id, target.vcpus, target.memory_mib, target.disk_gib).await?;
        }
        let applied = async {
            self.step(run, 50, "updating the domain").await?;
            hv.define_domain(&Self::domain_spec(&target, &node)).await?;
            if target.disk_gib > vm.disk_gib {
                self.step(run, 70, format!("growing the disk to {} GiB", target.disk_gib)).await?;
                if let Err(e) = hv.resize_volume(vm.id, target.disk_gib).await {
                    hv.define_domain(&Self::domain_spec(&vm, &node)).await.ok();
                    return Err(e);
                }
            }
            Ok(())
        };
        match applied.await {
            Ok(()) => {}
            Err(e @ Error::LeaseLost { .. }) => return Err(e),
            Err(e) => {
                // Give the reserved capacity back.
                self.inner.store.resize_vm(vm.id, vm.vcpus, vm.memory_mib, vm.disk_gib).await.ok();
                return Err(e);
            }
        }
        let mut saved = self.inner.store.get_vm(vm.id).await?;
        saved.name = target.name;
        self.inner.store.update_vm(&saved).await
    }
}

/// Forces the domain off, undefines it, deletes its volume; each only if present.
async fn remove_from_hypervisor(hv: &dyn Hypervisor, vm: VmId) -> Result<()> {
    if let Some(domain) = hv.domain(vm).await? {
        if !matches!(domain.state, PowerState::Shutoff | PowerState::Crashed) {
            hv.stop(vm).await?;
        }
        hv.undefine_domain(vm).await?;
    }
    if hv.volume(vm).await?.is_some() {
        hv.delete_volume(vm).await?;
    }
    Ok(())
}

fn observed_state(state: PowerState) -> VmState {
    match state {
        PowerState::Running => VmState::Running,
        PowerState::Paused => VmState::Paused,
        PowerState::Shutoff => VmState::Stopped,
        PowerState::Crashed | PowerState::Other => VmState::Error,
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// An error with its sources, joined by `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
