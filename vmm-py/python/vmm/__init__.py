"""vmm: manage KVM virtual machines from Python.

>>> client = vmm.Client.open(database="sqlite:///var/lib/vmm/vmm.db")   # doctest: +SKIP
>>> client.add_node("local", "qemu:///system", virt_type="qemu")        # doctest: +SKIP

Objects mirror the HTTP API: ``to_dict()`` gives the same JSON shape. Every change to a VM is
a task; mutating calls take ``wait=True`` (the default: return once the task has ended) or
``wait=False`` (return the queued task at once).
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from . import _vmm
from ._vmm import (
    ActiveTaskError,
    BackendUnavailableError,
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NoCapacityError,
    NotFoundError,
    PermissionError,
    PoolExhaustedError,
    QuotaExceededError,
    TimeoutError,
    UnsupportedError,
    VmmError,
)

__all__ = [
    "Client",
    "Node",
    "IpPool",
    "IpLease",
    "Network",
    "Image",
    "Recipe",
    "Vm",
    "Task",
    "User",
    "VmmError",
    "NotFoundError",
    "ConflictError",
    "ActiveTaskError",
    "InvalidStateError",
    "PoolExhaustedError",
    "QuotaExceededError",
    "PermissionError",
    "NoCapacityError",
    "InvalidInputError",
    "BackendUnavailableError",
    "UnsupportedError",
    "TimeoutError",
]

DEFAULT_TIMEOUT = 300.0
_PAGE = 1000


class _Record:
    """A resource as the API shows it: attributes from its JSON, equal by identity."""

    _key: Tuple[str, ...] = ("id",)

    def __init__(self, client: "Client", data: Dict[str, Any]) -> None:
        self._client = client
        self._set(data)

    def _set(self, data: Dict[str, Any]) -> None:
        self._data = data
        for name, value in data.items():
            setattr(self, name, value)

    def to_dict(self) -> Dict[str, Any]:
        """The resource in the JSON shape of the HTTP API."""
        copy: Dict[str, Any] = json.loads(json.dumps(self._data))
        return copy

    def _identity(self) -> Tuple[Any, ...]:
        return tuple(self._data[k] for k in self._key)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._identity() == self._identity()

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + self._identity())

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={self._data.get(k)!r}" for k in self._shown)
        return f"{type(self).__name__}({shown})"

    _shown: Tuple[str, ...] = ("id",)


class Node(_Record):
    """A hypervisor node."""

    _shown = ("id", "name", "uri", "state")
    id: str
    name: str
    uri: str
    virt_type: str
    capacity: Dict[str, int]
    allocated: Dict[str, int]
    cpu_overcommit: float
    memory_overcommit: float
    state: str
    created_at: str


class IpPool(_Record):
    """A pool of addresses VMs lease from."""

    _shown = ("id", "name", "cidr")
    id: str
    name: str
    cidr: str
    gateway: Optional[str]
    ranges: List[Dict[str, str]]
    reserved: List[str]
    network_id: Optional[str]
    dns: List[str]
    created_at: str


class Network(_Record):
    """A network VMs' NICs plug into: a host bridge, or one vmm manages on each node."""

    _shown = ("id", "name", "kind", "bridge")
    id: str
    name: str
    kind: str
    bridge: str
    cidr: Optional[str]
    vlan: Optional[int]
    node_ids: List[str]
    created_at: str


class User(_Record):
    """Someone who signs in: an email, a role, a state and a quota."""

    _shown = ("id", "email", "role", "state")
    id: str
    email: str
    role: str
    state: str
    auth: str
    quota: Dict[str, int]
    created_at: str


class Recipe(_Record):
    """A script run at a guest's first boot, for the OS families it names."""

    _shown = ("id", "name", "os_families")
    id: str
    name: str
    os_families: List[str]
    script: str
    created_at: str


class Image(_Record):
    """An OS image VMs are installed from."""

    _shown = ("id", "name", "state")
    id: str
    name: str
    os: Dict[str, str]
    format: str
    state: str
    size_bytes: Optional[int]
    virtual_size_bytes: Optional[int]
    min_disk_gib: Optional[int]
    sha256: Optional[str]
    source_url: Optional[str]
    error: Optional[str]
    created_at: str
    task: Optional["Task"]
    """The import task, on an image added with a ``source_url``."""

    def refresh(self) -> "Image":
        """Reads the image again."""
        self._set(json.loads(self._client._native.image(self.id)))
        return self

    def upload(self, path: str) -> "Image":
        """Stores the image's data from the file at `path`; it is checked (format, no backing
        or data file, size) on the way, and the image is then ``ready``."""
        self._set(json.loads(self._client._native.upload_image(self.id, str(path))))
        return self

    def delete(self) -> None:
        """Deletes the image, its data and the nodes' copies of it."""
        self._client._native.delete_image(self.id)


class IpLease(_Record):
    """An address leased from a pool."""

    _key = ("pool_id", "address")
    _shown = ("pool_id", "address", "vm_id")
    pool_id: str
    address: str
    vm_id: Optional[str]
    created_at: str


class Task(_Record):
    """A persisted unit of work: queued, running, succeeded, failed or cancelled."""

    _shown = ("id", "kind", "state", "progress")
    id: str
    kind: str
    state: str
    vm_id: Optional[str]
    progress: int
    error: Optional[str]
    error_code: Optional[str]
    steps: List[Dict[str, str]]
    attempts: int
    created_at: str
    started_at: Optional[str]
    finished_at: Optional[str]

    @property
    def done(self) -> bool:
        """Whether the task has ended."""
        return self.state in ("succeeded", "failed", "cancelled")

    def refresh(self) -> "Task":
        """Reads the task again."""
        self._set(json.loads(self._client._native.task(self.id)))
        return self

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> "Task":
        """Waits until the task ends; raises :class:`TimeoutError` if it has not after `timeout` seconds."""
        self._set(json.loads(self._client._native.wait_task(self.id, float(timeout))))
        if not self.done:
            error = TimeoutError(f"Task {self.id} is still {self.state} after {timeout}s")
            error.ids = {"task_id": self.id}
            error.message = str(error)
            raise error
        return self

    def cancel(self) -> "Task":
        """Cancels the task if queued, or asks it to stop and undo what it did if running."""
        self._set(json.loads(self._client._native.cancel_task(self.id)))
        return self


class Vm(_Record):
    """A virtual machine."""

    _shown = ("id", "name", "state", "addresses")
    id: str
    name: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    node_id: str
    ip_pool_id: Optional[str]
    state: str
    addresses: List[str]
    created_at: str
    image_id: Optional[str]
    hostname: Optional[str]
    nics: List[Dict[str, Any]]
    task: "Task"
    """The create task, on a VM returned by :meth:`Client.create_vm` or :meth:`clone`."""

    def refresh(self) -> "Vm":
        """Reads the VM again."""
        self._set(json.loads(self._client._native.vm(self.id)))
        return self

    def _act(self, action: str, wait: bool, timeout: float) -> Task:
        task = Task(self._client, json.loads(self._client._native.act(self.id, action)))
        if wait:
            _raise_if_failed(task.wait(timeout))
            if action != "delete":
                self.refresh()
        return task

    def start(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Powers the VM on. With ``wait``, a failed task raises its exception."""
        return self._act("start", wait, timeout)

    def stop(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Powers the VM off at once."""
        return self._act("stop", wait, timeout)

    def shutdown(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Asks the guest to shut down (forced off after the server's timeout)."""
        return self._act("shutdown", wait, timeout)

    def reboot(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Reboots the VM."""
        return self._act("reboot", wait, timeout)

    def suspend(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Pauses the VM."""
        return self._act("suspend", wait, timeout)

    def resume(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Continues a paused VM."""
        return self._act("resume", wait, timeout)

    def delete(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Deletes the VM with its disk and leases."""
        return self._act("delete", wait, timeout)

    def update(
        self,
        *,
        name: Optional[str] = None,
        vcpus: Optional[int] = None,
        memory_mib: Optional[int] = None,
        disk_gib: Optional[int] = None,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Task:
        """Renames and/or resizes the VM (disks only grow)."""
        raw = self._client._native.update_vm(self.id, name, vcpus, memory_mib, disk_gib)
        task = Task(self._client, json.loads(raw))
        if wait:
            _raise_if_failed(task.wait(timeout))
            self.refresh()
        return task


    def _run(self, raw: str, wait: bool, timeout: float) -> Task:
        task = Task(self._client, json.loads(raw))
        if wait:
            _raise_if_failed(task.wait(timeout))
            self.refresh()
        return task

    def reinstall(
        self,
        image: Any,
        *,
        hostname: Optional[str] = None,
        password: Optional[str] = None,
        ssh_keys: Optional[Sequence[str]] = None,
        user_data: Optional[str] = None,
        recipes: Optional[Sequence[Any]] = None,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Task:
        """Rewrites the disk from `image`; the VM keeps its id, addresses and MACs, and its
        hostname, password and keys unless new ones are given. cloud-init runs again."""
        spec: Dict[str, Any] = {"image_id": _id(image)}
        _put(spec, "hostname", hostname)
        _put(spec, "password", password)
        _put(spec, "ssh_keys", list(ssh_keys) if ssh_keys else None)
        _put(spec, "user_data", user_data)
        _put(spec, "recipe_ids", [_id(r) for r in recipes] if recipes else None)
        return self._run(self._client._native.reinstall_vm(self.id, json.dumps(spec)), wait, timeout)

    def clone(
        self, name: str, *, start: bool = True, wait: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> "Vm":
        """Copies this stopped VM into a new one on the same node, with its own addresses."""
        raw = json.loads(self._client._native.clone_vm(self.id, json.dumps({"name": name, "start": start})))
        return self._client._created(raw, wait, timeout)

    def add_address(
        self, pool: Any, address: Optional[str] = None, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> Task:
        """Leases `address` (or the lowest free one) from `pool` with a NIC on its network."""
        spec: Dict[str, Any] = {"ip_pool_id": _id(pool)}
        _put(spec, "address", address)
        return self._run(self._client._native.add_vm_address(self.id, json.dumps(spec)), wait, timeout)

    def remove_address(self, address: str, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Takes `address` and its NIC away from the VM."""
        return self._run(self._client._native.remove_vm_address(self.id, address), wait, timeout)

    def console_log(self, tail_bytes: int = 65536) -> str:
        """The end of what the VM's serial console printed."""
        return bytes(self._client._native.console_log(self.id, tail_bytes)).decode("utf-8", "replace")


def _put(spec: Dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        spec[key] = value


def _raise_if_failed(task: Task) -> Task:
    """Raises the exception of a failed task's error code (``UnsupportedError``…)."""
    if task.state == "failed":
        raise _vmm.task_error(task.error_code, task.error or "the task failed", task.id, task.vm_id)
    return task


def _id(value: Any) -> str:
    """Accepts an object with an ``id`` or the id itself."""
    return str(getattr(value, "id", value))


def _opt_id(value: Any) -> Optional[str]:
    return None if value is None else _id(value)


class Client:
    """The front door: opened on a store, it manages nodes, IP pools, VMs and tasks.

    The client runs the task workers in the background (unless ``run_workers=False``, for a
    script that only submits work to a store that a ``vmmd`` also serves). Every call
    releases the GIL while it waits, so several Python threads can use one client at once.
    """

    def __init__(self, native: "_vmm.Client") -> None:
        self._native = native

    @classmethod
    def open(
        cls,
        database: str = "sqlite://data/vmm.db",
        *,
        run_workers: bool = True,
        test_nodes: bool = False,
        image_dir: Optional[str] = None,
        user: Optional[str] = None,
    ) -> "Client":
        """Opens ``sqlite://PATH``, ``sqlite::memory:`` or ``postgres://…``.

        ``test_nodes=True`` accepts ``test:///default`` and ``memory://`` nodes (for tests and
        demos); otherwise only ``qemu`` nodes at ``/system`` are accepted. Image files are
        kept in ``image_dir`` (default: ``images/`` beside a SQLite file; in memory for
        ``sqlite::memory:``).

        ``user="ann@example.com"`` acts as that user: every call is checked with their role
        (read afresh, so disabling them stops the client), another user's VMs and tasks
        raise ``NotFoundError`` and what the role may not do raises ``PermissionError``.
        Without it the client is the program that holds the database, unchecked.
        """
        image = None if image_dir is None else str(image_dir)
        return cls(_vmm.Client.open(database, run_workers, test_nodes, image, user))

    def close(self) -> None:
        """Stops the background workers (tasks in hand finish first)."""
        self._native.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Nodes
    def create_node(
        self,
        name: str,
        uri: str,
        *,
        virt_type: str = "kvm",
        cpu_overcommit: Optional[float] = None,
        memory_overcommit: Optional[float] = None,
    ) -> Node:
        """Registers a node: vmm checks its URI, connects to it and reads its capacity."""
        raw = self._native.create_node(name, uri, virt_type, cpu_overcommit, memory_overcommit)
        return Node(self, json.loads(raw))

    def add_node(self, name: str, uri: str, **kwargs: Any) -> Node:
        """Deprecated name of :meth:`create_node`."""
        warnings.warn("Client.add_node is now Client.create_node", DeprecationWarning, stacklevel=2)
        return self.create_node(name, uri, **kwargs)

    def nodes(self) -> List[Node]:
        """Every node, newest first."""
        return [Node(self, n) for n in self._pages(lambda c: self._native.nodes(_PAGE, c))]

    def node(self, node: Any) -> Node:
        """One node, by object or id."""
        return Node(self, json.loads(self._native.node(_id(node))))

    def update_node(
        self,
        node: Any,
        *,
        name: Optional[str] = None,
        cpu_overcommit: Optional[float] = None,
        memory_overcommit: Optional[float] = None,
        state: Optional[str] = None,
    ) -> Node:
        """Renames a node, changes its ratios, or sets its state (``maintenance``, ``online``)."""
        raw = self._native.update_node(_id(node), name, cpu_overcommit, memory_overcommit, state)
        return Node(self, json.loads(raw))

    def delete_node(self, node: Any) -> None:
        """Unregisters a node that has no VMs."""
        self._native.delete_node(_id(node))

    def remove_node(self, node: Any) -> None:
        """Deprecated name of :meth:`delete_node`."""
        warnings.warn("Client.remove_node is now Client.delete_node", DeprecationWarning, stacklevel=2)
        self.delete_node(node)

    # IP pools
    def create_ip_pool(
        self,
        name: str,
        cidr: str,
        *,
        gateway: Optional[str] = None,
        ranges: Optional[Sequence[Tuple[str, str]]] = None,
        reserved: Optional[Sequence[str]] = None,
        network: Any = None,
        dns: Optional[Sequence[str]] = None,
    ) -> IpPool:
        """Creates a pool of IPv4 or IPv6 addresses, on `network` if given (a VM drawing from
        it then gets a NIC there, configured with the gateway and `dns`)."""
        spec: Dict[str, Any] = {"name": name, "cidr": cidr}
        _put(spec, "gateway", gateway)
        _put(spec, "ranges", [{"start": r[0], "end": r[1]} for r in ranges] if ranges else None)
        _put(spec, "reserved", list(reserved) if reserved else None)
        _put(spec, "network_id", _opt_id(network))
        _put(spec, "dns", list(dns) if dns else None)
        return IpPool(self, json.loads(self._native.create_ip_pool(json.dumps(spec))))

    def ip_pools(self) -> List[IpPool]:
        """Every pool, newest first."""
        return [IpPool(self, p) for p in self._pages(lambda c: self._native.ip_pools(_PAGE, c))]

    def ip_pool(self, pool: Any) -> IpPool:
        """One pool, by object or id."""
        return IpPool(self, json.loads(self._native.ip_pool(_id(pool))))

    def delete_ip_pool(self, pool: Any) -> None:
        """Deletes a pool that has no leases."""
        self._native.delete_ip_pool(_id(pool))

    def create_lease(self, pool: Any, address: Optional[str] = None) -> IpLease:
        """Leases `address`, or the lowest free one, by hand."""
        return IpLease(self, json.loads(self._native.create_lease(_id(pool), address)))

    def delete_lease(self, pool: Any, address: str) -> None:
        """Ends a lease held by hand."""
        self._native.delete_lease(_id(pool), address)

    def allocate_ip(self, pool: Any, address: Optional[str] = None) -> IpLease:
        """Deprecated name of :meth:`create_lease`."""
        warnings.warn("Client.allocate_ip is now Client.create_lease", DeprecationWarning, stacklevel=2)
        return self.create_lease(pool, address)

    def release_ip(self, pool: Any, address: str) -> None:
        """Deprecated name of :meth:`delete_lease`."""
        warnings.warn("Client.release_ip is now Client.delete_lease", DeprecationWarning, stacklevel=2)
        self.delete_lease(pool, address)

    def leases(self, pool: Any) -> List[IpLease]:
        """Every lease of a pool, in address order."""
        return [IpLease(self, x) for x in self._pages(lambda c: self._native.leases(_id(pool), _PAGE, c))]

    # Networks
    def create_network(
        self,
        name: str,
        *,
        kind: str = "managed",
        bridge: Optional[str] = None,
        cidr: Optional[str] = None,
        vlan: Optional[int] = None,
        nodes: Optional[Sequence[Any]] = None,
    ) -> Network:
        """Adds a network: ``bridge`` names a host bridge (``br0``); ``managed`` has vmm define
        an isolated libvirt network on each node that needs it."""
        spec: Dict[str, Any] = {"name": name, "kind": kind}
        _put(spec, "bridge", bridge)
        _put(spec, "cidr", cidr)
        _put(spec, "vlan", vlan)
        _put(spec, "node_ids", [_id(n) for n in nodes] if nodes else None)
        return Network(self, json.loads(self._native.create_network(json.dumps(spec))))

    def networks(self) -> List[Network]:
        """Every network, newest first."""
        return [Network(self, n) for n in self._pages(lambda c: self._native.networks(_PAGE, c))]

    def network(self, network: Any) -> Network:
        """One network, by object or id."""
        return Network(self, json.loads(self._native.network(_id(network))))

    def delete_network(self, network: Any) -> None:
        """Deletes a network no pool is on."""
        self._native.delete_network(_id(network))

    # Images and recipes
    def create_image(
        self,
        name: str,
        *,
        os_family: str,
        os_version: str = "",
        format: str = "qcow2",
        min_disk_gib: Optional[int] = None,
        source_url: Optional[str] = None,
        path: Optional[str] = None,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Image:
        """Adds an image, with its data from the file at `path` or fetched from `source_url`
        (by a task, followed when ``wait``). Without either it waits for
        :meth:`Image.upload`."""
        spec: Dict[str, Any] = {"name": name, "os": {"family": os_family, "version": os_version}, "format": format}
        _put(spec, "min_disk_gib", min_disk_gib)
        _put(spec, "source_url", source_url)
        raw = json.loads(self._native.create_image(json.dumps(spec)))
        image = Image(self, raw["image"])
        image.task = Task(self, raw["task"]) if raw.get("task") else None
        if path is not None:
            image.upload(path)
        elif image.task is not None and wait:
            _raise_if_failed(image.task.wait(timeout))
            image.refresh()
        return image

    def images(self) -> List[Image]:
        """Every image, newest first."""
        return [Image(self, i) for i in self._pages(lambda c: self._native.images(_PAGE, c))]

    def image(self, image: Any) -> Image:
        """One image, by object or id."""
        return Image(self, json.loads(self._native.image(_id(image))))

    def delete_image(self, image: Any) -> None:
        """Deletes an image no VM is being installed from."""
        self._native.delete_image(_id(image))

    def create_recipe(self, name: str, *, os_families: Sequence[str], script: str) -> Recipe:
        """Adds a recipe: a script for images of the OS families named."""
        spec = {"name": name, "os_families": list(os_families), "script": script}
        return Recipe(self, json.loads(self._native.create_recipe(json.dumps(spec))))

    def recipes(self) -> List[Recipe]:
        """Every recipe, newest first."""
        return [Recipe(self, r) for r in self._pages(lambda c: self._native.recipes(_PAGE, c))]

    def recipe(self, recipe: Any) -> Recipe:
        """One recipe, by object or id."""
        return Recipe(self, json.loads(self._native.recipe(_id(recipe))))

    def delete_recipe(self, recipe: Any) -> None:
        """Deletes a recipe."""
        self._native.delete_recipe(_id(recipe))

    # VMs
    def create_vm(
        self,
        name: str,
        *,
        vcpus: int,
        memory_mib: int,
        disk_gib: int,
        node: Any = None,
        ip_pool: Any = None,
        ip_pools: Optional[Sequence[Any]] = None,
        image: Any = None,
        hostname: Optional[str] = None,
        password: Optional[str] = None,
        ssh_keys: Optional[Sequence[str]] = None,
        user_data: Optional[str] = None,
        recipes: Optional[Sequence[Any]] = None,
        start: bool = True,
        wait: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Vm:
        """Creates a VM; by default returns it once its create task has ended.

        With `image`, the disk is a copy of it and the guest is set up by cloud-init:
        `hostname`, root `password`, `ssh_keys`, `recipes`, the user's own `user_data`, and
        one NIC per pool of `ip_pools` configured with its address.

        A create that fails raises the exception of its failure; one that is cancelled
        raises :class:`VmmError`.
        """
        spec: Dict[str, Any] = {
            "name": name,
            "vcpus": vcpus,
            "memory_mib": memory_mib,
            "disk_gib": disk_gib,
            "start": start,
        }
        _put(spec, "node_id", _opt_id(node))
        _put(spec, "ip_pool_id", _opt_id(ip_pool))
        _put(spec, "ip_pool_ids", [_id(p) for p in ip_pools] if ip_pools else None)
        _put(spec, "image_id", _opt_id(image))
        _put(spec, "hostname", hostname)
        _put(spec, "password", password)
        _put(spec, "ssh_keys", list(ssh_keys) if ssh_keys else None)
        _put(spec, "user_data", user_data)
        _put(spec, "recipe_ids", [_id(r) for r in recipes] if recipes else None)
        return self._created(json.loads(self._native.create_vm(json.dumps(spec))), wait, timeout)

    def _created(self, raw: Dict[str, Any], wait: bool, timeout: float) -> Vm:
        vm = Vm(self, raw["vm"])
        vm.task = Task(self, raw["task"])
        if wait:
            task = _raise_if_failed(vm.task.wait(timeout))
            if task.state != "succeeded":
                error = VmmError(f"Creating VM {vm.id} {task.state}: {task.error}")
                error.ids = {"vm_id": vm.id, "task_id": task.id}
                error.message = str(error)
                raise error
            vm.refresh()
        return vm

    def vm(self, vm: Any) -> Vm:
        """One VM, by object or id."""
        return Vm(self, json.loads(self._native.vm(_id(vm))))

    def vms(self) -> List[Vm]:
        """Every VM, newest first."""
        return [Vm(self, v) for v in self._pages(lambda c: self._native.vms(_PAGE, c))]

    # Users
    def create_user(
        self,
        email: str,
        *,
        role: str = "user",
        password: Optional[str] = None,
        auth: str = "local",
        quota: Optional[Dict[str, int]] = None,
    ) -> User:
        """Adds a user (``role``: admin, operator, user or readonly; a local user needs a
        password of 12 characters or more; ``quota``: max_vms, max_vcpus, max_memory_mib,
        max_disk_gib, max_addresses). A client acting as a user must act as an admin."""
        spec: Dict[str, Any] = {"email": email, "role": role, "auth": auth, "quota": quota or {}}
        if password is not None:
            spec["password"] = password
        return User(self, json.loads(self._native.create_user(json.dumps(spec))))

    # Tasks
    def task(self, task: Any) -> Task:
        """One task, by object or id."""
        return Task(self, json.loads(self._native.task(_id(task))))

    def tasks(self, *, vm_id: Any = None, state: Optional[str] = None) -> List[Task]:
        """Tasks, newest first, of one VM and/or in one state."""
        return [Task(self, t) for t in self._pages(lambda c: self._native.tasks(_opt_id(vm_id), state, _PAGE, c))]

    @staticmethod
    def _pages(fetch: Any) -> Iterator[Dict[str, Any]]:
        cursor: Optional[str] = None
        while True:
            page = json.loads(fetch(cursor))
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
