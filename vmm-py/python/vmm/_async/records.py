"""The resources a client hands out: VMs, tasks, nodes, pools… as the API shows them.

Each wraps the API's JSON object: its fields are attributes, ``to_dict()`` gives the object
back, and the methods of a VM or a task act on it through the client that made it (so they
work the same embedded and remote).

This file is the source: ``vmm/_sync/records.py`` is made from it by ``unasync``
(``python vmm-py/make_sync.py``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import errors

if TYPE_CHECKING:
    from .client import Client

DEFAULT_TIMEOUT = 300.0
ENDED = ("succeeded", "failed", "cancelled")


class Record:
    """A resource as the API shows it: attributes from its JSON, equal by identity."""

    _key: Tuple[str, ...] = ("id",)
    _shown: Tuple[str, ...] = ("id",)
    # Annotated attributes the client sets itself, not fields of the API's object.
    _own: Tuple[str, ...] = ("task",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Each annotated field becomes a property reading the API's object: much faster
        # than falling through to __getattr__ (which raises and catches AttributeError
        # inside every read). __getattr__ still serves fields the class does not name.
        super().__init_subclass__(**kwargs)
        for name in cls.__dict__.get("__annotations__", {}):
            if not name.startswith("_") and name not in cls._own and name not in cls.__dict__:
                setattr(cls, name, _field(name))

    def __init__(self, client: "Client", data: Mapping[str, Any]) -> None:
        # `data` is a dict, or (listed by the embedded client) a row that makes each field
        # into Python objects as it is read.
        self._client = client
        self._data = data

    def __getattr__(self, name: str) -> Any:
        # Only called for what is not set on the object: the API's fields.
        data = self.__dict__.get("_data")
        if data is not None:
            try:
                return data[name]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _set(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> Dict[str, Any]:
        """The resource in the JSON shape of the HTTP API (a copy)."""
        if isinstance(self._data, dict):
            return copy.deepcopy(self._data)
        made: Dict[str, Any] = self._data.to_dict()  # type: ignore[attr-defined]
        return made

    def _identity(self) -> Tuple[Any, ...]:
        return tuple(self._data[k] for k in self._key)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and isinstance(other, Record) and other._identity() == self._identity()

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + self._identity())

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={self._data.get(k)!r}" for k in self._shown)
        return f"{type(self).__name__}({shown})"


def _field(name: str) -> Any:
    def read(self: Record) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}") from None

    return property(read, doc=f"The API's ``{name}``.")


class Node(Record):
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


class IpPool(Record):
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


class IpLease(Record):
    """An address leased from a pool."""

    _key = ("pool_id", "address")
    _shown = ("pool_id", "address", "vm_id")
    pool_id: str
    address: str
    vm_id: Optional[str]
    created_at: str


class Network(Record):
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


class User(Record):
    """Someone who signs in: an email, a role, a state and a quota."""

    _shown = ("id", "email", "role", "state")
    id: str
    email: str
    role: str
    state: str
    auth: str
    quota: Dict[str, int]
    created_at: str


class Recipe(Record):
    """A script run at a guest's first boot, for the OS families it names."""

    _shown = ("id", "name", "os_families")
    id: str
    name: str
    os_families: List[str]
    script: str
    created_at: str


class Task(Record):
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
        return bool(self.state in ENDED)

    async def refresh(self) -> "Task":
        """Reads the task again."""
        self._set(await self._client._t.task(self.id))
        return self

    async def wait(self, timeout: float = DEFAULT_TIMEOUT) -> "Task":
        """Waits until the task ends and returns it.

        Raises the exception of its error code (:class:`vmm.errors.UnsupportedError`…) if it
        failed, and :class:`vmm.errors.TimeoutError` if it has not ended after `timeout`
        seconds. A cancelled task is returned: look at its ``state``.
        """
        self._set(await self._client._t.wait_task(self.id, float(timeout)))
        if not self.done:
            raise errors.TimeoutError(
                f"Task {self.id} is still {self.state} after {timeout}s",
                code="timeout",
                status=errors.status_of("timeout"),
                ids={"task_id": self.id},
            )
        if self.state == "failed":
            raise self.error_exception()
        return self

    def error_exception(self) -> errors.VmmError:
        """The exception of a failed task's error code, with its error as the message."""
        ids = {"task_id": self.id}
        if self.vm_id:
            ids["vm_id"] = self.vm_id
        code = self.error_code or "internal"
        return errors.error_from(code, self.error or "the task failed", ids)

    async def cancel(self) -> "Task":
        """Cancels the task if queued, or asks it to stop and undo what it did if running."""
        self._set(await self._client._t.cancel_task(self.id))
        return self


class Image(Record):
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
    task: Optional[Task]
    """The import task, on an image added with a ``source_url``."""

    async def refresh(self) -> "Image":
        """Reads the image again."""
        self._set(await self._client._t.image(self.id))
        return self

    async def upload(self, path: str) -> "Image":
        """Stores the image's data from the file at `path`; it is checked (format, no backing
        or data file, size) on the way, and the image is then ``ready``."""
        self._set(await self._client._t.upload_image(self.id, str(path)))
        return self

    async def delete(self) -> None:
        """Deletes the image, its data and the nodes' copies of it."""
        await self._client._t.delete_image(self.id)


class Vm(Record):
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
    owner_id: Optional[str]
    nics: List[Dict[str, Any]]
    task: Task
    """The create task, on a VM returned by :meth:`Client.create_vm` or :meth:`clone`."""

    async def refresh(self) -> "Vm":
        """Reads the VM again."""
        self._set(await self._client._t.vm(self.id))
        return self

    async def _follow(self, raw: Any, wait: bool, timeout: float, refresh: bool = True) -> Task:
        task = Task(self._client, raw)
        if wait:
            await task.wait(timeout)
            if refresh:
                await self.refresh()
        return task

    async def _act(self, action: str, wait: bool, timeout: float) -> Task:
        raw = await self._client._t.act(self.id, action)
        return await self._follow(raw, wait, timeout, refresh=action != "delete")

    async def start(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Powers the VM on. With ``wait``, a failed task raises its exception."""
        return await self._act("start", wait, timeout)

    async def stop(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Powers the VM off at once."""
        return await self._act("stop", wait, timeout)

    async def shutdown(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Asks the guest to shut down (forced off after the server's timeout)."""
        return await self._act("shutdown", wait, timeout)

    async def reboot(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Reboots the VM."""
        return await self._act("reboot", wait, timeout)

    async def suspend(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Pauses the VM."""
        return await self._act("suspend", wait, timeout)

    async def resume(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Continues a paused VM."""
        return await self._act("resume", wait, timeout)

    async def delete(self, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Deletes the VM with its disk and leases."""
        return await self._act("delete", wait, timeout)

    async def update(
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
        raw = await self._client._t.update_vm(self.id, name, vcpus, memory_mib, disk_gib)
        return await self._follow(raw, wait, timeout)

    async def reinstall(
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
        spec: Dict[str, Any] = {"image_id": id_of(image)}
        put(spec, "hostname", hostname)
        put(spec, "password", password)
        put(spec, "ssh_keys", list(ssh_keys) if ssh_keys else None)
        put(spec, "user_data", user_data)
        put(spec, "recipe_ids", [id_of(r) for r in recipes] if recipes else None)
        return await self._follow(await self._client._t.reinstall_vm(self.id, spec), wait, timeout)

    async def clone(self, name: str, *, start: bool = True, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> "Vm":
        """Copies this stopped VM into a new one on the same node, with its own addresses."""
        raw = await self._client._t.clone_vm(self.id, {"name": name, "start": start})
        return await self._client._created(raw, wait, timeout)

    async def add_address(
        self, pool: Any, address: Optional[str] = None, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> Task:
        """Leases `address` (or the lowest free one) from `pool` with a NIC on its network."""
        spec: Dict[str, Any] = {"ip_pool_id": id_of(pool)}
        put(spec, "address", address)
        return await self._follow(await self._client._t.add_vm_address(self.id, spec), wait, timeout)

    async def remove_address(self, address: str, *, wait: bool = True, timeout: float = DEFAULT_TIMEOUT) -> Task:
        """Takes `address` and its NIC away from the VM."""
        return await self._follow(await self._client._t.remove_vm_address(self.id, address), wait, timeout)

    async def console_log(self, tail_bytes: int = 65536) -> str:
        """The end of what the VM's serial console printed."""
        return bytes(await self._client._t.console_log(self.id, tail_bytes)).decode("utf-8", "replace")


def put(spec: Dict[str, Any], key: str, value: Any) -> None:
    """Sets `key` when `value` is given."""
    if value is not None:
        spec[key] = value


def id_of(value: Any) -> str:
    """Accepts an object with an ``id`` or the id itself."""
    return str(getattr(value, "id", value))


def opt_id(value: Any) -> Optional[str]:
    """:func:`id_of`, or ``None`` for ``None``."""
    return None if value is None else id_of(value)
