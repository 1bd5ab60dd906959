"""vmm: manage KVM virtual machines from Python.

Two ways in, one set of classes:

>>> client = vmm.connect("http://vmm.example.net:8080", token="…")          # doctest: +SKIP
>>> client = vmm.Client.open(database="sqlite:///var/lib/vmm/vmm.db")      # doctest: +SKIP

``connect`` talks to a ``vmmd`` over HTTP (pure Python, ``httpx``; ``VMM_URL`` and
``VMM_TOKEN`` by default). ``Client.open`` embeds the platform: it opens the database and
runs the task workers in this process (needs the native module and libvirt). ``vmm.aio``
has the same client for asyncio.

Objects mirror the HTTP API: ``to_dict()`` gives the same JSON shape. Every change to a VM is
a task; mutating calls take ``wait=True`` (the default: return once the task has ended,
raising its exception if it failed) or ``wait=False`` (return the queued task at once).
Lists are lazy iterators over the API's pages, with filters (``client.vms(state="running")``).
"""

from __future__ import annotations

from typing import Any, Optional

from ._sync import client as _client
from ._sync import http as _http
from ._sync.records import DEFAULT_TIMEOUT, Image, IpLease, IpPool, Network, Node, Recipe, Task, User, Vm
from .errors import (
    ActiveTaskError,
    AuthenticationError,
    BackendUnavailableError,
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NoCapacityError,
    NotFoundError,
    PermissionError,
    PoolExhaustedError,
    QuotaExceededError,
    TaskFailedError,
    TimeoutError,
    UnsupportedError,
    VmmError,
)

__all__ = [
    "connect",
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
    "DEFAULT_TIMEOUT",
    "VmmError",
    "NotFoundError",
    "ConflictError",
    "ActiveTaskError",
    "InvalidStateError",
    "PoolExhaustedError",
    "QuotaExceededError",
    "PermissionError",
    "AuthenticationError",
    "NoCapacityError",
    "InvalidInputError",
    "BackendUnavailableError",
    "UnsupportedError",
    "TimeoutError",
    "TaskFailedError",
]


class Client(_client.Client):
    """The front door: nodes, IP pools, networks, images, VMs and tasks.

    Made by :func:`connect` (a remote ``vmmd``) or :meth:`open` (embedded). Every call
    blocks; an embedded client releases the GIL while it waits, so several Python threads
    can use one client at once.
    """

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
        """Embeds vmm: opens ``sqlite://PATH``, ``sqlite::memory:`` or ``postgres://…``.

        The client runs the task workers in the background (unless ``run_workers=False``,
        for a script that only submits work to a store that a ``vmmd`` also serves).

        ``test_nodes=True`` accepts ``test:///default`` and ``memory://`` nodes (for tests and
        demos); otherwise only ``qemu`` nodes at ``/system`` are accepted. Image files are
        kept in ``image_dir`` (default: ``images/`` beside a SQLite file; in memory for
        ``sqlite::memory:``).

        ``user="ann@example.com"`` acts as that user: every call is checked with their role
        (read afresh, so disabling them stops the client), another user's VMs and tasks
        raise ``NotFoundError`` and what the role may not do raises ``PermissionError``.
        Without it the client is the program that holds the database, unchecked.
        """
        try:
            from . import _vmm
        except ImportError as e:
            raise UnsupportedError(
                f"this installation of vmm has no embedded platform ({e}); use vmm.connect()",
                code="unsupported",
            ) from None
        image = None if image_dir is None else str(image_dir)
        return cls(_vmm.Client.open(database, run_workers, test_nodes, image, user))

    def __enter__(self) -> "Client":
        return self


def connect(
    url: Optional[str] = None,
    token: Optional[str] = None,
    *,
    timeout: float = 60.0,
    verify: Any = True,
) -> Client:
    """A client of the ``vmmd`` at `url` (default ``$VMM_URL``), calling with the API token
    `token` (default ``$VMM_TOKEN``).

    `timeout` bounds each request in seconds; `verify` is ``httpx``'s TLS setting (``False``,
    or a CA bundle's path). Reads and creates are retried with backoff while the server is
    unavailable; creates carry an ``Idempotency-Key`` so that a retry never makes two.
    """
    url, token = _http.settings(url, token)
    return Client(_http.Transport(url, token, timeout=timeout, verify=verify))
