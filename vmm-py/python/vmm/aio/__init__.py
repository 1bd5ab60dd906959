"""vmm for asyncio: the same classes as :mod:`vmm`, with coroutine methods, over HTTP.

>>> async with vmm.aio.connect("http://vmm.example.net:8080", token="…") as client:  # doctest: +SKIP
...     async for vm in client.vms(state="running"):
...         await vm.reboot()
"""

from __future__ import annotations

from typing import Any, Optional

from .._async.client import Client
from .._async.http import Transport, settings
from .._async.records import DEFAULT_TIMEOUT, Image, IpLease, IpPool, Network, Node, Recipe, Task, User, Vm

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
]


def connect(
    url: Optional[str] = None,
    token: Optional[str] = None,
    *,
    timeout: float = 60.0,
    verify: Any = True,
) -> Client:
    """An asyncio client of the ``vmmd`` at `url` (default ``$VMM_URL``) with the API token
    `token` (default ``$VMM_TOKEN``); see :func:`vmm.connect`."""
    url, token = settings(url, token)
    return Client(Transport(url, token, timeout=timeout, verify=verify))
