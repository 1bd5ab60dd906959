//! vmm-py: the native half (`vmm._vmm`) of the Python package `vmm`, over [`vmm_core::Vmm`].
//!
//! It parses, makes one `Vmm` call with the GIL released, and returns the result as Python
//! dicts and lists of the same shape as the HTTP API's JSON, built directly by `pythonize`
//! (the pure-Python half, shared with the remote client, wraps them in objects). One global
//! tokio runtime runs every call and the background workers. [`to_py_err`] is the one place
//! where vmm errors become Python exceptions, of the classes of `vmm.errors`.

use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde::Serialize;
use tokio::sync::watch;
use vmm_backends::{OpenConfig, StoreConfig};
use vmm_core::{
    Access, Actor, Area, Error, IpPoolSpec, NodePatch, NodeSpec, NodeState, Page, PageRequest, PowerAction,
    TaskFilter, TaskId, TaskState, UserSpec, VirtType, VmFilter, VmId, VmPatch, VmSpec, Vmm, WhatIf,
};

mod guests;
mod rows;

pub use rows::Row;

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

/// The exception for an error: made by `vmm.errors.error_from`, the one mapping from error
/// codes to exception classes for both of the package's transports. It carries the code,
/// the HTTP status the API would answer, the message, the ids involved and (for
/// `no_capacity`) every node's reasons.
fn exception(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let ids = PyDict::new(py);
    for (k, v) in e.ids() {
        ids.set_item(k, v)?;
    }
    if let Some(field) = e.field() {
        ids.set_item("field", field)?;
    }
    let rejections = match e {
        Error::NoCapacity { rejections } => Some(pythonize::pythonize(py, rejections)?),
        _ => None,
    };
    let status = e.kind().http_status();
    let made = py.import("vmm.errors")?.getattr("error_from")?.call1((
        e.code(),
        e.public_message(),
        ids,
        status,
        rejections,
    ))?;
    Ok(PyErr::from_value(made))
}

/// Maps a vmm error to its Python exception. The message is the error's public message;
/// a backend's own text (libvirt's, a database's) stays in the log.
pub fn to_py_err(py: Python<'_>, e: Error) -> PyErr {
    exception(py, &e).unwrap_or_else(|made| made)
}

/// A result as the HTTP API shows it, built as Python objects (no JSON text on the way).
fn to_py<T: Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    Ok(pythonize::pythonize(py, value)?.unbind())
}

/// A page of a list: `{"items": [Row…], "next_cursor": …}`, each item a [`Row`] that makes
/// its fields into Python objects as they are read.
fn page_to_py<T: Serialize + Send + Sync + 'static>(py: Python<'_>, page: Page<T>) -> PyResult<Py<PyAny>> {
    let page_dict = PyDict::new(py);
    let items =
        page.items.into_iter().map(|item| Bound::new(py, Row::new(item))).collect::<PyResult<Vec<_>>>()?;
    page_dict.set_item(pyo3::intern!(py, "items"), PyList::new(py, items)?)?;
    page_dict.set_item(pyo3::intern!(py, "next_cursor"), page.next_cursor)?;
    Ok(page_dict.into_any().unbind())
}

/// A request body as the HTTP API takes it, read from Python objects; a bad one is an
/// `InvalidInputError`.
fn from_py<T: serde::de::DeserializeOwned>(py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<T> {
    pythonize::depythonize(spec).map_err(|e| to_py_err(py, Error::invalid("spec", e.to_string())))
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
    ///
    /// The call runs on one of the runtime's threads, not on the caller's: the store's
    /// worker threads hand it rows, and a runtime thread takes them with far fewer wake-ups
    /// than a thread parked in `block_on` (a 10,000-VM list took half the time).
    fn run<T: Send + 'static, F: Call<T> + 'static>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(Vmm) -> F + Send,
    ) -> PyResult<T> {
        let vmm = self.vmm.clone();
        py.detach(|| {
            let call = runtime().spawn(f(vmm));
            runtime()
                .block_on(call)
                .unwrap_or_else(|e| Err(Error::backend("vmm", format!("the call failed: {e}"))))
        })
        .map_err(|e| to_py_err(py, e))
    }

    /// Runs `f` with the actor this client acts as (if any).
    fn run_as<T: Send + 'static, F: Call<T> + 'static>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(Vmm, Option<Actor>) -> F + Send + 'static,
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
    fn run_checked<T: Send + 'static, F: Call<T> + 'static, C: Call<()> + 'static>(
        &self,
        py: Python<'_>,
        check: impl FnOnce(Vmm, Actor) -> C + Send + 'static,
        f: impl FnOnce(Vmm) -> F + Send + 'static,
    ) -> PyResult<T> {
        self.run_as(py, move |v, actor| async move {
            if let Some(actor) = actor {
                check(v.clone(), actor).await?;
            }
            f(v).await
        })
    }

    /// Runs `f` once the rules allow this client's user `access` to `area`.
    pub(crate) fn run_in<T: Send + 'static, F: Call<T> + 'static>(
        &self,
        py: Python<'_>,
        area: Area,
        access: Access,
        f: impl FnOnce(Vmm) -> F + Send + 'static,
    ) -> PyResult<T> {
        self.run_checked(py, move |_, actor| async move { actor.may(area, access) }, f)
    }

    /// Runs `f` once this client's user may have `access` to the VM (another user's is not
    /// found).
    pub(crate) fn run_on_vm<T: Send + 'static, F: Call<T> + 'static>(
        &self,
        py: Python<'_>,
        id: VmId,
        access: Access,
        f: impl FnOnce(Vmm) -> F + Send + 'static,
    ) -> PyResult<T> {
        self.run_checked(py, move |v, actor| async move { v.vm_for(&actor, id, access).await.map(drop) }, f)
    }

    /// Runs `f` once this client's user may have `access` to the task.
    fn run_on_task<T: Send + 'static, F: Call<T> + 'static>(
        &self,
        py: Python<'_>,
        id: TaskId,
        access: Access,
        f: impl FnOnce(Vmm) -> F + Send + 'static,
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
    ) -> PyResult<Py<PyAny>> {
        let vt = self::virt_type(py, virt_type)?;
        let spec =
            NodeSpec { cpu_overcommit, memory_overcommit, ..NodeSpec::new(name, uri).with_virt_type(vt) };
        to_py(
            py,
            &self.run_in(
                py,
                Area::Nodes,
                Access::Write,
                move |v| async move { v.create_node(spec).await },
            )?,
        )
    }

    #[pyo3(signature = (limit = None, cursor = None))]
    fn nodes(&self, py: Python<'_>, limit: Option<u32>, cursor: Option<String>) -> PyResult<Py<PyAny>> {
        let page = PageRequest { limit, cursor };
        page_to_py(
            py,
            self.run_in(py, Area::Nodes, Access::Read, move |v| async move { v.list_nodes(&page).await })?,
        )
    }

    fn node(&self, py: Python<'_>, id: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        to_py(py, &self.run_in(py, Area::Nodes, Access::Read, move |v| async move { v.get_node(id).await })?)
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
    ) -> PyResult<Py<PyAny>> {
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
        let patch = NodePatch { name, cpu_overcommit, memory_overcommit, state, fence: None };
        to_py(
            py,
            &self.run_in(py, Area::Nodes, Access::Write, move |v| async move {
                v.update_node(id, patch).await
            })?,
        )
    }

    fn delete_node(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        let id = parse(py, "id", id)?;
        self.run_in(py, Area::Nodes, Access::Write, move |v| async move { v.delete_node(id).await })
    }

    /// Which node would take a VM (the JSON of `POST /placement/what-if`), and why.
    fn what_if(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let question: WhatIf = from_py(py, spec)?;
        to_py(
            py,
            &self.run_in(
                py,
                Area::Nodes,
                Access::Read,
                move |v| async move { v.what_if(&question).await },
            )?,
        )
    }

    /// Creates a pool from its spec (the JSON of `POST /ip-pools`).
    fn create_ip_pool(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let spec: IpPoolSpec = from_py(py, spec)?;
        to_py(
            py,
            &self.run_in(py, Area::IpPools, Access::Write, move |v| async move {
                v.create_ip_pool(spec).await
            })?,
        )
    }

    #[pyo3(signature = (limit = None, cursor = None))]
    fn ip_pools(&self, py: Python<'_>, limit: Option<u32>, cursor: Option<String>) -> PyResult<Py<PyAny>> {
        let page = PageRequest { limit, cursor };
        page_to_py(
            py,
            self.run_in(
                py,
                Area::IpPools,
                Access::Read,
                move |v| async move { v.list_ip_pools(&page).await },
            )?,
        )
    }

    fn ip_pool(&self, py: Python<'_>, id: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        to_py(
            py,
            &self.run_in(py, Area::IpPools, Access::Read, move |v| async move { v.get_ip_pool(id).await })?,
        )
    }

    fn delete_ip_pool(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        let id = parse(py, "id", id)?;
        self.run_in(py, Area::IpPools, Access::Write, move |v| async move { v.delete_ip_pool(id).await })
    }

    #[pyo3(signature = (pool_id, address = None))]
    fn create_lease(&self, py: Python<'_>, pool_id: &str, address: Option<&str>) -> PyResult<Py<PyAny>> {
        let pool = parse(py, "pool_id", pool_id)?;
        let address = address.map(|a| parse_ip(py, "address", a)).transpose()?;
        to_py(
            py,
            &self.run_in(py, Area::IpPools, Access::Write, move |v| async move {
                v.create_lease(pool, address).await
            })?,
        )
    }

    fn delete_lease(&self, py: Python<'_>, pool_id: &str, address: &str) -> PyResult<()> {
        let pool = parse(py, "pool_id", pool_id)?;
        let address = parse_ip(py, "address", address)?;
        self.run_in(
            py,
            Area::IpPools,
            Access::Write,
            move |v| async move { v.delete_lease(pool, address).await },
        )
    }

    #[pyo3(signature = (pool_id, limit = None, cursor = None))]
    fn leases(
        &self,
        py: Python<'_>,
        pool_id: &str,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let pool = parse(py, "pool_id", pool_id)?;
        let page = PageRequest { limit, cursor };
        page_to_py(
            py,
            self.run_in(py, Area::IpPools, Access::Read, move |v| async move {
                v.list_leases(pool, &page).await
            })?,
        )
    }

    /// Creates a VM from its spec (the JSON of `POST /vms`); returns `{"vm": …, "task": …}`.
    fn create_vm(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let spec: VmSpec = from_py(py, spec)?;
        let (vm, task) = self.run_as(py, move |v, actor| async move {
            match actor {
                Some(actor) => v.create_vm_for(&actor, spec).await,
                None => v.create_vm(spec).await,
            }
        })?;
        to_py(py, &serde_json::json!({ "vm": vm, "task": task }))
    }

    fn vm(&self, py: Python<'_>, id: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        to_py(py, &self.run_on_vm(py, id, Access::Read, move |v| async move { v.get_vm(id).await })?)
    }

    /// A page of the VMs in `state`, on `node_id` and named `name` (each when given).
    #[pyo3(signature = (limit = None, cursor = None, state = None, node_id = None, name = None))]
    fn vms(
        &self,
        py: Python<'_>,
        limit: Option<u32>,
        cursor: Option<String>,
        state: Option<&str>,
        node_id: Option<&str>,
        name: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let state = state
            .map(|s| {
                s.parse()
                    .map_err(|_| to_py_err(py, Error::invalid("state", format!("{s:?} is not a VM state"))))
            })
            .transpose()?;
        let node_id = node_id.map(|n| parse(py, "node_id", n)).transpose()?;
        let filter = VmFilter { owner_id: None, node_id, state, name };
        let page = PageRequest { limit, cursor };
        page_to_py(
            py,
            self.run_as(py, move |v, actor| async move {
                match actor {
                    Some(actor) => v.list_vms_for(&actor, &filter, &page).await,
                    None => v.list_vms(&filter, &page).await,
                }
            })?,
        )
    }

    /// Queues a power action (`start`, `stop`, `shutdown`, `reboot`, `suspend`, `resume`) or
    /// `delete`; returns the task.
    fn act(&self, py: Python<'_>, id: &str, action: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        if action == "delete" {
            return to_py(
                py,
                &self.run_on_vm(py, id, Access::Write, move |v| async move { v.delete_vm(id).await })?,
            );
        }
        let action: PowerAction = action
            .parse()
            .map_err(|_| to_py_err(py, Error::invalid("action", format!("{action:?} is not an action"))))?;
        to_py(
            py,
            &self.run_on_vm(py, id, Access::Write, move |v| async move { v.power_vm(id, action).await })?,
        )
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
    ) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        let patch = VmPatch { name, vcpus, memory_mib, disk_gib, owner_id: None };
        to_py(
            py,
            &self.run_on_vm(py, id, Access::Write, move |v| async move { v.update_vm(id, patch).await })?,
        )
    }

    fn task(&self, py: Python<'_>, id: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        to_py(py, &self.run_on_task(py, id, Access::Read, move |v| async move { v.get_task(id).await })?)
    }

    #[pyo3(signature = (vm_id = None, state = None, limit = None, cursor = None))]
    fn tasks(
        &self,
        py: Python<'_>,
        vm_id: Option<&str>,
        state: Option<&str>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let vm_id = vm_id.map(|v| parse(py, "vm_id", v)).transpose()?;
        let state = state
            .map(|s| {
                serde_json::from_value::<TaskState>(serde_json::Value::String(s.to_owned()))
                    .map_err(|_| to_py_err(py, Error::invalid("state", format!("{s:?} is not a task state"))))
            })
            .transpose()?;
        let filter = TaskFilter { vm_id, state, kind: None, owner_id: None };
        let page = PageRequest { limit, cursor };
        page_to_py(
            py,
            self.run_as(py, move |v, actor| async move {
                match actor {
                    Some(actor) => v.list_tasks_for(&actor, &filter, &page).await,
                    None => v.list_tasks(&filter, &page).await,
                }
            })?,
        )
    }

    /// Waits up to `timeout` seconds (at most [`MAX_WAIT_SECONDS`]); returns the task as it
    /// is then. Waits in short slices, so that Ctrl-C (any Python signal) interrupts it.
    fn wait_task(&self, py: Python<'_>, id: &str, timeout: f64) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        if !(timeout.is_finite() && (0.0..=MAX_WAIT_SECONDS).contains(&timeout)) {
            let why = format!("must be a number of seconds from 0 to {MAX_WAIT_SECONDS}");
            return Err(to_py_err(py, Error::invalid("timeout", why)));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(timeout);
        loop {
            let slice = deadline.saturating_duration_since(std::time::Instant::now()).min(SIGNAL_CHECK);
            let task =
                self.run_on_task(py, id, Access::Read, move |v| async move { v.wait_task(id, slice).await })?;
            if !task.state.is_active() || std::time::Instant::now() >= deadline {
                return to_py(py, &task);
            }
            py.check_signals()?;
        }
    }

    /// Adds a user from its spec (the JSON of `POST /users`): as this client's user, who
    /// must be an admin, or as the program holding the database.
    fn create_user(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let spec: UserSpec = from_py(py, spec)?;
        to_py(
            py,
            &self.run_as(py, move |v, actor| async move {
                v.create_user(&actor.unwrap_or_else(Actor::system), spec).await
            })?,
        )
    }

    fn cancel_task(&self, py: Python<'_>, id: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        to_py(py, &self.run_on_task(py, id, Access::Write, move |v| async move { v.cancel_task(id).await })?)
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
    m.add_class::<Client>()?;
    m.add_class::<Row>()?;
    Ok(())
}
