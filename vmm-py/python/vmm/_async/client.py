"""The client: one set of methods over either transport (embedded or remote).

This file is the source: ``vmm/_sync/client.py`` is made from it by ``unasync``
(``python vmm-py/make_sync.py``), so the asyncio client (``vmm.aio``) and the blocking one
(``vmm``) are the same code.
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any, AsyncIterator, Callable, Dict, Optional, Sequence, Tuple

from .. import errors
from .records import (
    DEFAULT_TIMEOUT,
    Image,
    IpLease,
    IpPool,
    Network,
    Node,
    Recipe,
    Task,
    User,
    Vm,
    id_of,
    opt_id,
    put,
)
from .transport import Transport

# Items asked for per page: the most the API gives.
PAGE = 1000


class Client:
    """The front door: nodes, IP pools, networks, images, VMs and tasks.

    Lists are lazy: they read page by page as they are iterated (``list(client.vms())``
    reads them all). Calls that start a task take ``wait=True`` (the default: return once
    the task has ended, raising its exception if it failed) or ``wait=False`` (return at
    once; ``vm.task`` or the returned task can be waited on later).
    """

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._t!r})"

    async def close(self) -> None:
        """Lets go of the transport: the connection pool, or the embedded workers (tasks in
        hand finish first)."""
        await self._t.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @staticmethod
    async def _pages(fetch: Callable[[Optional[str]], Any]) -> AsyncIterator[Dict[str, Any]]:
        cursor: Optional[str] = None
        while True:
            page = await fetch(cursor)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # Nodes
    async def create_node(
        self,
        name: str,
        uri: str,
        *,
        virt_type: str = "kvm",
        cpu_overcommit: Optional[float] = None,
        memory_overcommit: Optional[float] = None,
    ) -> Node:
        """Registers a node: vmm checks its URI, connects to it and reads its capacity."""
        return Node(self, await self._t.create_node(name, uri, virt_type, cpu_overcommit, memory_overcommit))

    async def add_node(self, name: str, uri: str, **kwargs: Any) -> Node:
        """Deprecated name of :meth:`create_node`."""
        warnings.warn("Client.add_node is now Client.create_node", DeprecationWarning, stacklevel=2)
        return await self.create_node(name, uri, **kwargs)

    async def nodes(self) -> AsyncIterator[Node]:
        """Every node, newest first."""
        async for item in self._pages(lambda c: self._t.nodes(PAGE, c)):
            yield Node(self, item)

    async def node(self, node: Any) -> Node:
        """One node, by object or id."""
        return Node(self, await self._t.node(id_of(node)))

    async def update_node(
        self,
        node: Any,
        *,
        name: Optional[str] = None,
        cpu_overcommit: Optional[float] = None,
        memory_overcommit: Optional[float] = None,
        state: Optional[str] = None,
    ) -> Node:
        """Renames a node, changes its ratios, or sets its state (``maintenance``, ``online``)."""
        raw = await self._t.update_node(id_of(node), name, cpu_overcommit, memory_overcommit, state)
        return Node(self, raw)

    async def delete_node(self, node: Any) -> None:
        """Unregisters a node that has no VMs."""
        await self._t.delete_node(id_of(node))

    async def remove_node(self, node: Any) -> None:
        """Deprecated name of :meth:`delete_node`."""
        warnings.warn("Client.remove_node is now Client.delete_node", DeprecationWarning, stacklevel=2)
        await self.delete_node(node)

    # Placement
    async def what_if(
        self,
        vcpus: int,
        memory_mib: int,
        disk_gib: int,
        *,
        node: Any = None,
        ip_pools: Optional[Sequence[Any]] = None,
    ) -> Dict[str, Any]:
        """Which node a VM of this size would be placed on, and why; nothing is reserved.

        The answer is the API's: ``chosen`` (a node id, or ``None`` when no node fits),
        ``candidates`` (every node that could take it, best first, with its ``score``) and
        ``rejected`` (every other node with all its ``reasons``). `node` pins the question
        to one node; `ip_pools` rejects the nodes without those pools' networks.
        """
        spec: Dict[str, Any] = {"vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib}
        put(spec, "node_id", opt_id(node))
        put(spec, "ip_pool_ids", [id_of(p) for p in ip_pools] if ip_pools else None)
        answer: Dict[str, Any] = await self._t.what_if(spec)
        return answer

    # IP pools
    async def create_ip_pool(
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
        put(spec, "gateway", gateway)
        put(spec, "ranges", [{"start": r[0], "end": r[1]} for r in ranges] if ranges else None)
        put(spec, "reserved", list(reserved) if reserved else None)
        put(spec, "network_id", opt_id(network))
        put(spec, "dns", list(dns) if dns else None)
        return IpPool(self, await self._t.create_ip_pool(spec))

    async def ip_pools(self) -> AsyncIterator[IpPool]:
        """Every pool, newest first."""
        async for item in self._pages(lambda c: self._t.ip_pools(PAGE, c)):
            yield IpPool(self, item)

    async def ip_pool(self, pool: Any) -> IpPool:
        """One pool, by object or id."""
        return IpPool(self, await self._t.ip_pool(id_of(pool)))

    async def delete_ip_pool(self, pool: Any) -> None:
        """Deletes a pool that has no leases."""
        await self._t.delete_ip_pool(id_of(pool))

    async def create_lease(self, pool: Any, address: Optional[str] = None) -> IpLease:
        """Leases `address`, or the lowest free one, by hand."""
        return IpLease(self, await self._t.create_lease(id_of(pool), address))

    async def delete_lease(self, pool: Any, address: str) -> None:
        """Ends a lease held by hand."""
        await self._t.delete_lease(id_of(pool), address)

    async def allocate_ip(self, pool: Any, address: Optional[str] = None) -> IpLease:
        """Deprecated name of :meth:`create_lease`."""
        warnings.warn("Client.allocate_ip is now Client.create_lease", DeprecationWarning, stacklevel=2)
        return await self.create_lease(pool, address)

    async def release_ip(self, pool: Any, address: str) -> None:
        """Deprecated name of :meth:`delete_lease`."""
        warnings.warn("Client.release_ip is now Client.delete_lease", DeprecationWarning, stacklevel=2)
        await self.delete_lease(pool, address)

    async def leases(self, pool: Any) -> AsyncIterator[IpLease]:
        """Every lease of a pool, in address order."""
        pool_id = id_of(pool)
        async for item in self._pages(lambda c: self._t.leases(pool_id, PAGE, c)):
            yield IpLease(self, item)

    # Networks
    async def create_network(
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
        put(spec, "bridge", bridge)
        put(spec, "cidr", cidr)
        put(spec, "vlan", vlan)
        put(spec, "node_ids", [id_of(n) for n in nodes] if nodes else None)
        return Network(self, await self._t.create_network(spec))

    async def networks(self) -> AsyncIterator[Network]:
        """Every network, newest first."""
        async for item in self._pages(lambda c: self._t.networks(PAGE, c)):
            yield Network(self, item)

    async def network(self, network: Any) -> Network:
        """One network, by object or id."""
        return Network(self, await self._t.network(id_of(network)))

    async def delete_network(self, network: Any) -> None:
        """Deletes a network no pool is on."""
        await self._t.delete_network(id_of(network))

    # Images and recipes
    async def create_image(
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
        put(spec, "min_disk_gib", min_disk_gib)
        put(spec, "source_url", source_url)
        raw = await self._t.create_image(spec)
        image = Image(self, raw["image"])
        image.task = Task(self, raw["task"]) if raw.get("task") else None
        if path is not None:
            await image.upload(path)
        elif image.task is not None and wait:
            await image.task.wait(timeout)
            await image.refresh()
        return image

    async def images(self) -> AsyncIterator[Image]:
        """Every image, newest first."""
        async for item in self._pages(lambda c: self._t.images(PAGE, c)):
            yield Image(self, item)

    async def image(self, image: Any) -> Image:
        """One image, by object or id."""
        return Image(self, await self._t.image(id_of(image)))

    async def delete_image(self, image: Any) -> None:
        """Deletes an image no VM is being installed from."""
        await self._t.delete_image(id_of(image))

    async def create_recipe(self, name: str, *, os_families: Sequence[str], script: str) -> Recipe:
        """Adds a recipe: a script for images of the OS families named."""
        spec = {"name": name, "os_families": list(os_families), "script": script}
        return Recipe(self, await self._t.create_recipe(spec))

    async def recipes(self) -> AsyncIterator[Recipe]:
        """Every recipe, newest first."""
        async for item in self._pages(lambda c: self._t.recipes(PAGE, c)):
            yield Recipe(self, item)

    async def recipe(self, recipe: Any) -> Recipe:
        """One recipe, by object or id."""
        return Recipe(self, await self._t.recipe(id_of(recipe)))

    async def delete_recipe(self, recipe: Any) -> None:
        """Deletes a recipe."""
        await self._t.delete_recipe(id_of(recipe))

    # VMs
    async def create_vm(
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
        raises :class:`VmmError`. The VM's create task is ``vm.task``.
        """
        spec: Dict[str, Any] = {
            "name": name,
            "vcpus": vcpus,
            "memory_mib": memory_mib,
            "disk_gib": disk_gib,
            "start": start,
        }
        put(spec, "node_id", opt_id(node))
        put(spec, "ip_pool_id", opt_id(ip_pool))
        put(spec, "ip_pool_ids", [id_of(p) for p in ip_pools] if ip_pools else None)
        put(spec, "image_id", opt_id(image))
        put(spec, "hostname", hostname)
        put(spec, "password", password)
        put(spec, "ssh_keys", list(ssh_keys) if ssh_keys else None)
        put(spec, "user_data", user_data)
        put(spec, "recipe_ids", [id_of(r) for r in recipes] if recipes else None)
        return await self._created(await self._t.create_vm(spec), wait, timeout)

    async def _created(self, raw: Dict[str, Any], wait: bool, timeout: float) -> Vm:
        vm = Vm(self, raw["vm"])
        vm.task = Task(self, raw["task"])
        if wait:
            task = await vm.task.wait(timeout)
            if task.state != "succeeded":
                raise errors.VmmError(
                    f"Creating VM {vm.id} {task.state}: {task.error}",
                    code="cancelled",
                    status=409,
                    ids={"vm_id": vm.id, "task_id": task.id},
                )
            await vm.refresh()
        return vm

    async def vm(self, vm: Any) -> Vm:
        """One VM, by object or id."""
        return Vm(self, await self._t.vm(id_of(vm)))

    async def vms(self, *, state: Optional[str] = None, node: Any = None, name: Optional[str] = None) -> AsyncIterator[Vm]:
        """The VMs, newest first: those in `state` (``running``…), on `node` (object or id) and
        named `name`, each when given."""
        node_id = opt_id(node)
        async for item in self._pages(lambda c: self._t.vms(PAGE, c, state, node_id, name)):
            yield Vm(self, item)

    async def find_vm(self, name_or_id: Any) -> Vm:
        """The VM with this id, or else the one with this name.

        Raises :class:`NotFoundError` when there is none and :class:`ConflictError` when
        several VMs (of several users) share the name.
        """
        key = id_of(name_or_id)
        if _is_uuid(key):
            try:
                return await self.vm(key)
            except errors.NotFoundError:
                pass
        found = [vm async for vm in self.vms(name=key)]
        if not found:
            raise errors.NotFoundError(f"No VM is named or has the id {key!r}", code="vm_not_found", status=404)
        if len(found) > 1:
            raise errors.ConflictError(f"{len(found)} VMs are named {key!r}; use an id", code="conflict", status=409)
        return found[0]

    # Users
    async def create_user(
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
        put(spec, "password", password)
        return User(self, await self._t.create_user(spec))

    # Tasks
    async def task(self, task: Any) -> Task:
        """One task, by object or id."""
        return Task(self, await self._t.task(id_of(task)))

    async def tasks(self, *, vm_id: Any = None, state: Optional[str] = None) -> AsyncIterator[Task]:
        """Tasks, newest first, of one VM (object or id) and/or in one state."""
        vm = opt_id(vm_id)
        async for item in self._pages(lambda c: self._t.tasks(vm, state, PAGE, c)):
            yield Task(self, item)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
