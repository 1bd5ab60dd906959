//! vmm-py: the native half (`vmm._vmm`) of the Python package `vmm`, over [`vmm_core::Vmm`].
//!
//! It parses, makes one `Vmm` call with the GIL released, and returns the result as the same
//! JSON the HTTP API returns (the pure-Python half turns it into objects). One global tokio
//! runtime runs every call and the background workers. [`to_py_err`] is the one place where
//! vmm errors become Python exceptions.

use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use serde::Serialize;
use tokio::sync::watch;
use vmm_backends::{OpenConfig, StoreConfig};
use vmm_core::{
    Access, Actor, Area, Error, IpPoolSpec, NodePatch, NodeSpec, NodeState, PageRequest, PowerAction,
    TaskFilter, TaskId, TaskState, UserSpec, VirtType, VmId, VmPatch, VmSpec, Vmm,
};

mod guests;

create_exception!(vmm._vmm, VmmError, PyException, "Base class of every vmm error.");
create_exception!(vmm._vmm, NotFoundError, VmmError, "What was asked for does not exist.");
create_exception!(vmm._vmm, ConflictError, VmmError, "The request conflicts with the current state.");
create_exception!(vmm._vmm, ActiveTaskError, ConflictError, "The VM already has a queued or running task.");
create_exception!(vmm._vmm, InvalidStateError, ConflictError, "The action is not allowed in the VM's state.");
create_exception!(vmm._vmm, PoolExhaustedError, ConflictError, "The IP pool has no free address.");
create_exception!(vmm._vmm, NoCapacityError, ConflictError, "No node can take the VM.");
create_exception!(
    vmm._vmm,
    QuotaExceededError,
    ConflictError,
    "The change would pass a limit of the owner's quota."
);
create_exception!(vmm._vmm, InvalidInputError, VmmError, "A value in the request is invalid.");
create_exception!(
    vmm._vmm,
    BackendUnavailableError,
    VmmError,
    "A node or the database cannot be reached now."
);
create_exception!(vmm._vmm, UnsupportedError, VmmError, "The backend does not support this.");

/// `vmm.TimeoutError`: a [`VmmError`] and the builtin `TimeoutError` at once, so that
/// `except TimeoutError` catches it too. Made at module import (`create_exception!` takes
/// one base).
static TIMEOUT_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// `vmm.PermissionError`: a [`VmmError`] and the builtin `PermissionError`.
static PERMISSION_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// A class named `name` deriving from [`VmmError`] and the builtin `builtin`.
fn both<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
    builtin: &str,
    doc: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    let ty = cell.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        let builtins = py.import("builtins")?;
        let bases = (py.get_type::<VmmError>(), builtins.getattr(builtin)?);
        let namespace = PyDict::new(py);
        namespace.set_item("__doc__", doc)?;
        namespace.set_item("__module__", "vmm._vmm")?;
        let made = builtins.getattr("type")?.call1((name, bases, namespace))?;
        Ok(made.cast_into::<PyType>()?.unbind())
    })?;
    Ok(ty.bind(py))
}

fn timeout_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    both(py, &TIMEOUT_ERROR, "TimeoutError", "TimeoutError", "A wait ran out of time.")
}

fn permission_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    both(
        py,
        &PERMISSION_ERROR,
        "PermissionError",
        "PermissionError",
        "The user may not do this, or is not signed in.",
    )
}

/// Longest wait accepted, in seconds (a day).
const MAX_WAIT_SECONDS: f64 = 86_400.0;

/// How often a wait looks for a Python signal (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(200);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("vmm")
            .build()
            .expect("a tokio runtime")
    })
}

/// The exception class of an error: the one mapping from vmm's error codes (and, for the
/// codes without a class of their own, kinds) to Python exceptions.
fn exception_type<'py>(py: Python<'py>, code: &str) -> PyResult<Bound<'py, PyType>> {
    Ok(match code {
        c if c.ends_with("_not_found") => py.get_type::<NotFoundError>(),
        "active_task" => py.get_type::<ActiveTaskError>(),
        "invalid_state" => py.get_type::<InvalidStateError>(),
        "pool_exhausted" => py.get_type::<PoolExhaustedError>(),
        "no_capacity" => py.get_type::<NoCapacityError>(),
        "quota_exceeded" => py.get_type::<QuotaExceededError>(),
        "forbidden" | "unauthorized" => permission_error_type(py)?.clone(),
        "conflict" | "address_in_use" => py.get_type::<ConflictError>(),
        "invalid" => py.get_type::<InvalidInputError>(),
        "unavailable" => py.get_type::<BackendUnavailableError>(),
        "unsupported" => py.get_type::<UnsupportedError>(),
        "timeout" => timeout_error_type(py)?.clone(),
        _ => py.get_type::<VmmError>(),
    })
}

/// The exception for an error `code` ([`Error::code`]), with its message, the ids involved
/// and (for `no_capacity`) every node's reasons as `err.message`, `err.ids` and
/// `err.rejections`.
fn exception(
    py: Python<'_>,
    code: &str,
    message: String,
    ids: Vec<(&str, String)>,
    rejections: Option<String>,
) -> PyErr {
    let err = match exception_type(py, code) {
        Ok(ty) => PyErr::from_type(ty, message.clone()),
        Err(e) => return e,
    };
    let value = err.value(py);
    let dict = PyDict::new(py);
    for (k, v) in ids {
        let _ = dict.set_item(k, v);
    }
    let _ = value.setattr("ids", dict);
    let _ = value.setattr("message", message);
    if let Some(json) = rejections {
        let parsed = py.import("json").and_then(|j| j.getattr("loads")?.call1((json,)));
        if let Ok(list) = parsed {
            let _ = value.setattr("rejections", list);
        }
    }
    err
}

/// Maps a vmm error to its Python exception. The message is the error's public message;
/// a backend's own text (libvirt's, a database's) stays in the log.
pub fn to_py_err(py: Python<'_>, e: Error) -> PyErr {
    let rejections = match &e {
        Error::NoCapacity { rejections } => serde_json::to_string(rejections).ok(),
        _ => None,
    };
    let mut ids = e.ids();
    if let Some(field) = e.field() {
        ids.push(("field", field.to_owned()));
    }
    exception(py, e.code(), e.public_message(), ids, rejections)
}

/// The exception for a failed task: the class its `error_code` names, its error as the
/// message, the VM and task as `ids`.
#[pyfunction]
#[pyo3(signature = (code, message, task_id, vm_id = None))]
fn task_error(
    py: Python<'_>,
    code: Option<&str>,
    message: String,
    task_id: String,
    vm_id: Option<String>,
) -> Py<PyAny> {
    let mut ids = vec![("task_id", task_id)];
    ids.extend(vm_id.map(|v| ("vm_id", v)));
    exception(py, code.unwrap_or("internal"), message, ids, None).into_value(py).into_any()
}

fn json<T: Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| VmmError::new_err(e.to_string()))
}

/// A request body as the HTTP API takes it; a bad one is an `InvalidInputError`.
fn from_json<T: serde::de::DeserializeOwned>(py: Python<'_>, text: &str) -> PyResult<T> {
    serde_json::from_str(text).map_err(|e| to_py_err(py, Error::invalid("spec", e.to_string())))
}

fn parse<T: std::str::FromStr<Err = Error>>(py: Python<'_>, field: &str, s: &str) -> PyResult<T> {
    s.parse().map_err(|_| to_py_err(py, Error::invalid(field, format!("{s:?} is not a valid id"))))
}

fn parse_ip(py: Python<'_>, field: &str, s: &str) -> PyResult<IpAddr> {
    s.parse().map_err(|_| to_py_err(py, Error::invalid(field, format!("{s:?} is not an IP address"))))
}

fn virt_type(py: Python<'_>, s: &str) -> PyResult<VirtType> {
    match s {
        "kvm" => Ok(VirtType::Kvm),
        "qemu" => Ok(VirtType::Qemu),
        _ => Err(to_py_err(py, Error::invalid("virt_type", "must be \"kvm\" or \"qemu\""))),
    }
}

/// The native client: every method takes plain values and returns JSON text.
#[pyclass(module = "vmm._vmm", frozen)]
#[derive(Debug)]
pub struct Client {
    vmm: Vmm,
    stop: Mutex<Option<watch::Sender<bool>>>,
    /// The email of the user this client acts as; every call is checked as them, their
    /// state and role read afresh. `None`: the program holding the database, unchecked.
    user: Option<String>,
}

/// A call into the service, run on the global runtime.
trait Call<T>: std::future::Future<Output = vmm_core::Result<T>> + Send {}

impl<T, F: std::future::Future<Output = vmm_core::Result<T>> + Send> Call<T> for F {}

impl Client {
    /// Runs `f` on the global runtime with the GIL released, mapping errors.
    fn run<T: Send, F: Call<T>>(&self, py: Python<'_>, f: impl FnOnce(Vmm) -> F + Send) -> PyResult<T> {
        let vmm = self.vmm.clone();
        py.detach(|| runtime().block_on(f(vmm))).map_err(|e| to_py_err(py, e))
    }

    /// Runs `f` with the actor this client acts as (if any).
    fn run_as<T: Send, F: Call<T>>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(Vmm, Option<Actor>) -> F + Send,
    ) -> PyResult<T> {
        let user = self.user.clone();
        self.run(py, move |v| async move {
            let actor = match &user {
                Some(email) => Some(v.actor_for_email(email).await?),
                None => None,
            };
            f(v, actor).await
        })
    }

    /// Runs `f` once `check` passed for this client's user (when it acts as one).
    fn run_checked<T: Send, F: Call<T>, C: Call<()>>(
        &self,
        py: Python<'_>,
        check: impl FnOnce(Vmm, Actor) -> C + Send,
        f: impl FnOnce(Vmm) -> F + Send,
    ) -> PyResult<T> {
        self.run_as(py, move |v, actor| async move {
            if let Some(actor) = actor {
                check(v.clone(), actor).await?;
            }
            f(v).await
        })
    }

    /// Runs `f` once the rules allow this client's user `access` to `area`.
    pub(crate) fn run_in<T: Send, F: Call<T>>(
        &self,
        py: Python<'_>,
        area: Area,
        access: Access,
        f: impl FnOnce(Vmm) -> F + Send,
    ) -> PyResult<T> {
        self.run_checked(py, move |_, actor| async move { actor.may(area, access) }, f)
    }

    /// Runs `f` once this client's user may have `access` to the VM (another user's is not
    /// found).
    pub(crate) fn run_on_vm<T: Send, F: Call<T>>(
        &self,
        py: Python<'_>,
        id: VmId,
        access: Access,
        f: impl FnOnce(Vmm) -> F + Send,
    ) -> PyResult<T> {
        self.run_checked(py, move |v, actor| async move { v.vm_for(&actor, id, access).await.map(drop) }, f)
    }

    /// Runs `f` once this client's user may have `access` to the task.
    fn run_on_task<T: Send, F: Call<T>>(
        &self,
        py: Python<'_>,
        id: TaskId,
        access: Access,
        f: impl FnOnce(Vmm) -> F + Send,
    ) -> PyResult<T> {
        self.run_checked(py, move |v, actor| async move { v.task_for(&actor, id, access).await.map(drop) }, f)
    }
}

#[pymethods]
impl Client {
    /// Opens the store at `database` and, unless `run_workers` is false, starts the workers.
    /// `test_nodes` accepts `test:///default` and `memory://` nodes.
    /// `image_dir` keeps image files (default: `images/` beside a SQLite file).
    #[staticmethod]
    #[pyo3(signature = (database, run_workers = true, test_nodes = false, image_dir = None, user = None))]
    fn open(
        py: Python<'_>,
        database: &str,
        run_workers: bool,
        test_nodes: bool,
        image_dir: Option<std::path::PathBuf>,
        user: Option<String>,
    ) -> PyResult<Self> {
        let mut config = OpenConfig::new(database).map_err(|e| to_py_err(py, e))?;
        if test_nodes {
            config = config.with_test_nodes();
        }
        if image_dir.is_some() {
            config.image_dir = image_dir;
        }
        let vmm =
            py.detach(|| runtime().block_on(vmm_backends::open(&config))).map_err(|e| to_py_err(py, e))?;
        let stop = if run_workers {
            let (tx, mut rx) = watch::channel(false);
            let worker = vmm.clone();
            runtime().spawn(async move {
                worker
                    .run_workers(async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await
            });
            Some(tx)
        } else {
            None
        };
        let client = Self { vmm, stop: Mutex::new(stop), user };
        // An unknown or disabled user is refused at once, not at the first call.
        client.run_as(py, |_, _| async { Ok(()) })?;
        Ok(client)
    }

    /// Checks a store URL without opening it.
    #[staticmethod]
    fn check_database_url(py: Python<'_>, database: &str) -> PyResult<()> {
        StoreConfig::parse(database).map(drop).map_err(|e| to_py_err(py, e))
    }

    /// Stops the background workers; running tasks finish first.
    fn close(&self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(true);
        }
    }

    #[pyo3(signature = (name, uri, virt_type = "kvm", cpu_overcommit = None, memory_overcommit = None))]
    fn create_node(
        &self,
        py: Python<'_>,
        name: &str,
        uri: &str,
        virt_type: &str,
        cpu_overcommit: Option<f64>,
        memory_overcommit: Option<f64>,
    ) -> PyResult<String> {
        let vt = self::virt_type(py, virt_type)?;
        let spec =
            NodeSpec { cpu_overcommit, memory_overcommit, ..NodeSpec::new(name, uri).with_virt_type(vt) };
        json(&self.run_in(py, Area::Nodes, Access::Write, |v| async move { v.create_node(spec).await })?)
    }

    #[pyo3(signature = (limit = None, cursor = None))]
    fn nodes(&self, py: Python<'_>, limit: Option<u32>, cursor: Option<String>) -> PyResult<String> {
        let page = PageRequest { limit, cursor };
        json(&self.run_in(py, Area::Nodes, Access::Read, |v| async move { v.list_nodes(&page).await })?)
    }

    fn node(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        json(&self.run_in(py, Area::Nodes, Access::Read, |v| async move { v.get_node(id).await })?)
    }

    #[pyo3(signature = (id, name = None, cpu_overcommit = None, memory_overcommit = None, state = None))]
    fn update_node(
        &self,
        py: Python<'_>,
        id: &str,
        name: Option<String>,
        cpu_overcommit: Option<f64>,
        memory_overcommit: Option<f64>,
        state: Option<&str>,
    ) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        let state = match state {
            None => None,
            Some("online") => Some(NodeState::Online),
            Some("maintenance") => Some(NodeState::Maintenance),
            Some("offline") => Some(NodeState::Offline),
            Some(_) => {
                return Err(to_py_err(py, Error::invalid("state", "must be online, maintenance or offline")))
            }
        };
        let patch = NodePatch { name, cpu_overcommit, memory_overcommit, state };
        json(&self.run_in(
            py,
            Area::Nodes,
            Access::Write,
            |v| async move { v.update_node(id, patch).await },
        )?)
    }

    fn delete_node(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        let id = parse(py, "id", id)?;
        self.run_in(py, Area::Nodes, Access::Write, |v| async move { v.delete_node(id).await })
    }

    /// Creates a pool from its spec (the JSON of `POST /ip-pools`).
    fn create_ip_pool(&self, py: Python<'_>, spec: &str) -> PyResult<String> {
        let spec: IpPoolSpec = from_json(py, spec)?;
        json(&self.run_in(
            py,
            Area::IpPools,
            Access::Write,
            |v| async move { v.create_ip_pool(spec).await },
        )?)
    }

    #[pyo3(signature = (limit = None, cursor = None))]
    fn ip_pools(&self, py: Python<'_>, limit: Option<u32>, cursor: Option<String>) -> PyResult<String> {
        let page = PageRequest { limit, cursor };
        json(&self.run_in(
            py,
            Area::IpPools,
            Access::Read,
            |v| async move { v.list_ip_pools(&page).await },
        )?)
    }

    fn ip_pool(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        json(&self.run_in(py, Area::IpPools, Access::Read, |v| async move { v.get_ip_pool(id).await })?)
    }

    fn delete_ip_pool(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        let id = parse(py, "id", id)?;
        self.run_in(py, Area::IpPools, Access::Write, |v| async move { v.delete_ip_pool(id).await })
    }

    #[pyo3(signature = (pool_id, address = None))]
    fn create_lease(&self, py: Python<'_>, pool_id: &str, address: Option<&str>) -> PyResult<String> {
        let pool = parse(py, "pool_id", pool_id)?;
        let address = address.map(|a| parse_ip(py, "address", a)).transpose()?;
        json(&self.run_in(py, Area::IpPools, Access::Write, |v| async move {
            v.create_lease(pool, address).await
        })?)
    }

    fn delete_lease(&self, py: Python<'_>, pool_id: &str, address: &str) -> PyResult<()> {
        let pool = parse(py, "pool_id", pool_id)?;
        let address = parse_ip(py, "address", address)?;
        self.run_in(py, Area::IpPools, Access::Write, |v| async move { v.delete_lease(pool, address).await })
    }

    #[pyo3(signature = (pool_id, limit = None, cursor = None))]
    fn leases(
        &self,
        py: Python<'_>,
        pool_id: &str,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> PyResult<String> {
        let pool = parse(py, "pool_id", pool_id)?;
        let page = PageRequest { limit, cursor };
        json(&self.run_in(
            py,
            Area::IpPools,
            Access::Read,
            |v| async move { v.list_leases(pool, &page).await },
        )?)
    }

    /// Creates a VM from its spec (the JSON of `POST /vms`); returns `{"vm": …, "task": …}`.
    fn create_vm(&self, py: Python<'_>, spec: &str) -> PyResult<String> {
        let spec: VmSpec = from_json(py, spec)?;
        let (vm, task) = self.run_as(py, |v, actor| async move {
            match actor {
                Some(actor) => v.create_vm_for(&actor, spec).await,
                None => v.create_vm(spec).await,
            }
        })?;
        json(&serde_json::json!({ "vm": vm, "task": task }))
    }

    fn vm(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        json(&self.run_on_vm(py, id, Access::Read, |v| async move { v.get_vm(id).await })?)
    }

    #[pyo3(signature = (limit = None, cursor = None))]
    fn vms(&self, py: Python<'_>, limit: Option<u32>, cursor: Option<String>) -> PyResult<String> {
        let page = PageRequest { limit, cursor };
        json(&self.run_as(py, |v, actor| async move {
            match actor {
                Some(actor) => v.list_vms_for(&actor, &page).await,
                None => v.list_vms(&page).await,
            }
        })?)
    }

    /// Queues a power action (`start`, `stop`, `shutdown`, `reboot`, `suspend`, `resume`) or
    /// `delete`; returns the task.
    fn act(&self, py: Python<'_>, id: &str, action: &str) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        if action == "delete" {
            return json(&self.run_on_vm(py, id, Access::Write, |v| async move { v.delete_vm(id).await })?);
        }
        let action: PowerAction = action
            .parse()
            .map_err(|_| to_py_err(py, Error::invalid("action", format!("{action:?} is not an action"))))?;
        json(&self.run_on_vm(py, id, Access::Write, |v| async move { v.power_vm(id, action).await })?)
    }

    #[pyo3(signature = (id, name = None, vcpus = None, memory_mib = None, disk_gib = None))]
    fn update_vm(
        &self,
        py: Python<'_>,
        id: &str,
        name: Option<String>,
        vcpus: Option<u32>,
        memory_mib: Option<u64>,
        disk_gib: Option<u64>,
    ) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        let patch = VmPatch { name, vcpus, memory_mib, disk_gib, owner_id: None };
        json(&self.run_on_vm(py, id, Access::Write, |v| async move { v.update_vm(id, patch).await })?)
    }

    fn task(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        json(&self.run_on_task(py, id, Access::Read, |v| async move { v.get_task(id).await })?)
    }

    #[pyo3(signature = (vm_id = None, state = None, limit = None, cursor = None))]
    fn tasks(
        &self,
        py: Python<'_>,
        vm_id: Option<&str>,
        state: Option<&str>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> PyResult<String> {
        let vm_id = vm_id.map(|v| parse(py, "vm_id", v)).transpose()?;
        let state = state
            .map(|s| {
                serde_json::from_value::<TaskState>(serde_json::Value::String(s.to_owned()))
                    .map_err(|_| to_py_err(py, Error::invalid("state", format!("{s:?} is not a task state"))))
            })
            .transpose()?;
        let filter = TaskFilter { vm_id, state, owner_id: None };
        let page = PageRequest { limit, cursor };
        json(&self.run_as(py, |v, actor| async move {
            match actor {
                Some(actor) => v.list_tasks_for(&actor, &filter, &page).await,
                None => v.list_tasks(&filter, &page).await,
            }
        })?)
    }

    /// Waits up to `timeout` seconds (at most [`MAX_WAIT_SECONDS`]); returns the task as it
    /// is then. Waits in short slices, so that Ctrl-C (any Python signal) interrupts it.
    fn wait_task(&self, py: Python<'_>, id: &str, timeout: f64) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        if !(timeout.is_finite() && (0.0..=MAX_WAIT_SECONDS).contains(&timeout)) {
            let why = format!("must be a number of seconds from 0 to {MAX_WAIT_SECONDS}");
            return Err(to_py_err(py, Error::invalid("timeout", why)));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(timeout);
        loop {
            let slice = deadline.saturating_duration_since(std::time::Instant::now()).min(SIGNAL_CHECK);
            let task =
                self.run_on_task(py, id, Access::Read, |v| async move { v.wait_task(id, slice).await })?;
            if !task.state.is_active() || std::time::Instant::now() >= deadline {
                return json(&task);
            }
            py.check_signals()?;
        }
    }

    /// Adds a user from its spec (the JSON of `POST /users`): as this client's user, who
    /// must be an admin, or as the program holding the database.
    fn create_user(&self, py: Python<'_>, spec: &str) -> PyResult<String> {
        let spec: UserSpec = from_json(py, spec)?;
        json(&self.run_as(py, |v, actor| async move {
            v.create_user(&actor.unwrap_or_else(Actor::system), spec).await
        })?)
    }

    fn cancel_task(&self, py: Python<'_>, id: &str) -> PyResult<String> {
        let id = parse(py, "id", id)?;
        json(&self.run_on_task(py, id, Access::Write, |v| async move { v.cancel_task(id).await })?)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// The native module `vmm._vmm`.
#[pymodule]
fn _vmm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Client>()?;
    m.add_function(wrap_pyfunction!(task_error, m)?)?;
    for (name, ty) in [
        ("VmmError", py.get_type::<VmmError>()),
        ("NotFoundError", py.get_type::<NotFoundError>()),
        ("ConflictError", py.get_type::<ConflictError>()),
        ("ActiveTaskError", py.get_type::<ActiveTaskError>()),
        ("InvalidStateError", py.get_type::<InvalidStateError>()),
        ("PoolExhaustedError", py.get_type::<PoolExhaustedError>()),
        ("NoCapacityError", py.get_type::<NoCapacityError>()),
        ("QuotaExceededError", py.get_type::<QuotaExceededError>()),
        ("InvalidInputError", py.get_type::<InvalidInputError>()),
        ("BackendUnavailableError", py.get_type::<BackendUnavailableError>()),
        ("UnsupportedError", py.get_type::<UnsupportedError>()),
    ] {
        m.add(name, ty)?;
    }
    m.add("TimeoutError", timeout_error_type(py)?)?;
    m.add("PermissionError", permission_error_type(py)?)?;
    Ok(())
}
