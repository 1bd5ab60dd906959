//! The native calls of what runs in a VM: images, recipes, networks, and installing,
//! reinstalling, cloning and readdressing VMs. Specs come in as dicts of the HTTP request
//! bodies' shape (one parser, one set of checks); results go out in the API's shape.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use vmm_core::network::NetworkSpec;
use vmm_core::recipe::RecipeSpec;
use vmm_core::{Access, AddressSpec, Area, CloneSpec, Error, ImageSpec, PageRequest, ReinstallSpec};

use crate::{from_py, page_to_py, parse, parse_ip, to_py, to_py_err, Client};

/// Most of a console log read at once.
const MAX_TAIL_BYTES: u64 = 1 << 20;

#[pymethods]
impl Client {
    /// Adds an image; returns `{"image": …, "task": … or null}` (a task when it is fetched
    /// from its URL).
    fn create_image(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let spec: ImageSpec = from_py(py, spec)?;
        let (image, task) =
            self.run_in(py, Area::Images, Access::Write, move |v| async move { v.create_image(spec).await })?;
        to_py(py, &serde_json::json!({ "image": image, "task": task }))
    }

    /// Stores the image's data from the file at `path`, checked on the way.
    fn upload_image(&self, py: Python<'_>, id: &str, path: PathBuf) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        let file = std::fs::File::open(&path)
            .map_err(|e| to_py_err(py, Error::invalid("path", format!("{}: {e}", path.display()))))?;
        to_py(
            py,
            &self.run_in(py, Area::Images, Access::Write, move |v| async move {
                v.upload_image(id, Box::new(file)).await
            })?,
        )
    }

    #[pyo3(signature = (limit = None, cursor = None))]
    fn images(&self, py: Python<'_>, limit: Option<u32>, cursor: Option<String>) -> PyResult<Py<PyAny>> {
        let page = PageRequest { limit, cursor };
        page_to_py(
            py,
            self.run_in(py, Area::Images, Access::Read, move |v| async move { v.list_images(&page).await })?,
        )
    }

    fn image(&self, py: Python<'_>, id: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        to_py(
            py,
            &self.run_in(py, Area::Images, Access::Read, move |v| async move { v.get_image(id).await })?,
        )
    }

    fn delete_image(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        let id = parse(py, "id", id)?;
        self.run_in(py, Area::Images, Access::Write, move |v| async move { v.delete_image(id).await })
    }

    fn create_recipe(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let spec: RecipeSpec = from_py(py, spec)?;
        to_py(
            py,
            &self.run_in(
                py,
                Area::Recipes,
                Access::Write,
                move |v| async move { v.create_recipe(spec).await },
            )?,
        )
    }

    #[pyo3(signature = (limit = None, cursor = None))]
    fn recipes(&self, py: Python<'_>, limit: Option<u32>, cursor: Option<String>) -> PyResult<Py<PyAny>> {
        let page = PageRequest { limit, cursor };
        page_to_py(
            py,
            self.run_in(
                py,
                Area::Recipes,
                Access::Read,
                move |v| async move { v.list_recipes(&page).await },
            )?,
        )
    }

    fn recipe(&self, py: Python<'_>, id: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        to_py(
            py,
            &self.run_in(py, Area::Recipes, Access::Read, move |v| async move { v.get_recipe(id).await })?,
        )
    }

    fn delete_recipe(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        let id = parse(py, "id", id)?;
        self.run_in(py, Area::Recipes, Access::Write, move |v| async move { v.delete_recipe(id).await })
    }

    fn create_network(&self, py: Python<'_>, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let spec: NetworkSpec = from_py(py, spec)?;
        to_py(
            py,
            &self.run_in(py, Area::Networks, Access::Write, move |v| async move {
                v.create_network(spec).await
            })?,
        )
    }

    #[pyo3(signature = (limit = None, cursor = None))]
    fn networks(&self, py: Python<'_>, limit: Option<u32>, cursor: Option<String>) -> PyResult<Py<PyAny>> {
        let page = PageRequest { limit, cursor };
        page_to_py(
            py,
            self.run_in(
                py,
                Area::Networks,
                Access::Read,
                move |v| async move { v.list_networks(&page).await },
            )?,
        )
    }

    fn network(&self, py: Python<'_>, id: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        to_py(
            py,
            &self.run_in(
                py,
                Area::Networks,
                Access::Read,
                move |v| async move { v.get_network(id).await },
            )?,
        )
    }

    fn delete_network(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        let id = parse(py, "id", id)?;
        self.run_in(py, Area::Networks, Access::Write, move |v| async move { v.delete_network(id).await })
    }

    /// Queues a reinstall (the JSON of `POST /vms/{id}/reinstall`); returns the task.
    fn reinstall_vm(&self, py: Python<'_>, id: &str, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        let spec: ReinstallSpec = from_py(py, spec)?;
        to_py(
            py,
            &self.run_as(py, move |v, actor| async move {
                match actor {
                    Some(actor) => v.reinstall_vm_for(&actor, id, spec).await,
                    None => v.reinstall_vm(id, spec).await,
                }
            })?,
        )
    }

    /// Queues a clone; returns `{"vm": …, "task": …}`.
    fn clone_vm(&self, py: Python<'_>, id: &str, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        let spec: CloneSpec = from_py(py, spec)?;
        let (vm, task) = self.run_as(py, move |v, actor| async move {
            match actor {
                Some(actor) => v.clone_vm_for(&actor, id, spec).await,
                None => v.clone_vm(id, spec).await,
            }
        })?;
        to_py(py, &serde_json::json!({ "vm": vm, "task": task }))
    }

    /// Leases an address and queues plugging it in; returns the task.
    fn add_vm_address(&self, py: Python<'_>, id: &str, spec: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        let spec: AddressSpec = from_py(py, spec)?;
        to_py(
            py,
            &self.run_on_vm(
                py,
                id,
                Access::Write,
                move |v| async move { v.add_vm_address(id, spec).await },
            )?,
        )
    }

    /// Queues taking an address and its NIC away; returns the task.
    fn remove_vm_address(&self, py: Python<'_>, id: &str, address: &str) -> PyResult<Py<PyAny>> {
        let id = parse(py, "id", id)?;
        let address = parse_ip(py, "address", address)?;
        to_py(
            py,
            &self.run_on_vm(py, id, Access::Write, move |v| async move {
                v.remove_vm_address(id, address).await
            })?,
        )
    }

    /// The last `tail_bytes` of the VM's serial console.
    #[pyo3(signature = (id, tail_bytes = 65536))]
    fn console_log<'py>(&self, py: Python<'py>, id: &str, tail_bytes: u64) -> PyResult<Bound<'py, PyBytes>> {
        let id = parse(py, "id", id)?;
        if tail_bytes > MAX_TAIL_BYTES {
            return Err(to_py_err(py, Error::invalid("tail_bytes", format!("at most {MAX_TAIL_BYTES}"))));
        }
        let log =
            self.run_on_vm(
                py,
                id,
                Access::Read,
                move |v| async move { v.vm_console_log(id, tail_bytes).await },
            )?;
        Ok(PyBytes::new(py, &log))
    }
}
