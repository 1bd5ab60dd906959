# Made by vmm-py/make_sync.py from vmm/_async/http.py: edit that file, not this one.
"""The remote transport: each operation as a call to a ``vmmd``'s HTTP API, over ``httpx``.

* Every request carries the bearer token; the token is never shown (not in ``repr``, not in
  errors).
* An error answer raises the exception of its problem+json (:func:`vmm.errors.from_problem`).
* Calls that are safe to repeat are retried with backoff on 503, 429 (after the server's
  ``Retry-After``), 502/504 and broken connections: reads, and every POST, each of which
  carries an ``Idempotency-Key`` so that the server answers a repeat with the first answer.
  Any call is retried when its connection could not be opened (the request never left).

This file is made from ``vmm/_async/http.py`` by ``unasync``
(``python vmm-py/make_sync.py``).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from time import sleep
from typing import Any, Iterator, Dict, Mapping, Optional, Tuple
from urllib.parse import quote

import httpx

from .. import errors
from .transport import Json

API = "/api/v1"
USER_AGENT = "vmm-python"

# Retries: attempts in all, the first pause (doubled each time, with jitter), the longest.
ATTEMPTS = 5
FIRST_PAUSE = 0.2
LONGEST_PAUSE = 10.0

# The longest a single `GET /tasks/{id}/wait` may wait, as the server allows it.
WAIT_SLICE = 30.0
UPLOAD_CHUNK = 1 << 20
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


def _seg(value: str) -> str:
    """One path segment: user text is quoted, never spliced into the path as is."""
    return quote(str(value), safe="")


def _page(limit: Optional[int], cursor: Optional[str], **filters: Optional[str]) -> Dict[str, Any]:
    query: Dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
    if limit is not None:
        query["limit"] = limit
    if cursor is not None:
        query["cursor"] = cursor
    return query


def base_url(url: str) -> str:
    """The API root of a server URL (``http://host:8080`` or ``…/api/v1``)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise errors.InvalidInputError(
            f"{url!r} is not an http:// or https:// URL", code="invalid", status=400, ids={"field": "url"}
        )
    root = str(parsed.copy_with(query=None, fragment=None)).rstrip("/")
    return root if root.endswith(API) else root + API


def settings(url: Optional[str], token: Optional[str]) -> Tuple[str, Optional[str]]:
    """The server URL and token to use: those given, else ``$VMM_URL`` and ``$VMM_TOKEN``."""
    url = url or os.environ.get("VMM_URL")
    if not url:
        raise errors.InvalidInputError(
            "no server URL: pass url= or set VMM_URL", code="invalid", status=422, ids={"field": "url"}
        )
    return url, token if token is not None else os.environ.get("VMM_TOKEN")


class Transport:
    """Calls a ``vmmd`` at `url` with `token`."""

    def __init__(
        self,
        url: str,
        token: Optional[str],
        *,
        timeout: float = 60.0,
        verify: Any = True,
        client: Optional[httpx.Client] = None,
    ) -> None:
        self.url = base_url(url)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = client or httpx.Client(timeout=timeout, verify=verify)
        self._http.headers.update(headers)

    def __repr__(self) -> str:
        return f"Transport(url={self.url!r})"

    def close(self) -> None:
        self._http.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        body: Any = None,
        content: Any = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> httpx.Response:
        headers = dict(headers or {})
        if method == "POST":
            headers["Idempotency-Key"] = str(uuid.uuid4())
        repeatable = method in ("GET", "HEAD", "POST", "PUT") and content is None
        extra: Dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        pause = FIRST_PAUSE
        for attempt in range(1, ATTEMPTS + 1):
            last = attempt == ATTEMPTS
            try:
                answer = self._http.request(
                    method,
                    self.url + path,
                    params=query,
                    json=body,
                    content=content,
                    headers=headers,
                    **extra,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                if last:
                    raise errors.BackendUnavailableError(
                        f"cannot reach {self.url}: {e}", code="unavailable", status=503
                    ) from None
            except httpx.TransportError as e:
                if last or not repeatable:
                    raise errors.BackendUnavailableError(
                        f"{method} {path} to {self.url} broke off: {e}", code="unavailable", status=503
                    ) from None
            else:
                if answer.status_code < 400:
                    return answer
                if last or not repeatable or answer.status_code not in RETRIED_STATUSES:
                    raise self._error(answer)
                pause = max(pause, _retry_after(answer))
            sleep(min(pause, LONGEST_PAUSE) * random.uniform(0.8, 1.2))
            pause *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    @staticmethod
    def _error(answer: httpx.Response) -> errors.VmmError:
        try:
            problem = answer.json()
        except ValueError:
            problem = None
        return errors.from_problem(answer.status_code, problem)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._send(method, path, **kwargs)
        return answer.json() if answer.content else None

    def _get(self, path: str, **query: Any) -> Any:
        return self._json("GET", path, query={k: v for k, v in query.items() if v is not None})

    def _post(self, path: str, body: Any = None) -> Any:
        return self._json("POST", path, body={} if body is None else body)

    def _delete(self, path: str) -> Any:
        return self._json("DELETE", path)

    # Nodes
    def create_node(
        self,
        name: str,
        uri: str,
        virt_type: str,
        cpu_overcommit: Optional[float],
        memory_overcommit: Optional[float],
        /,
    ) -> Any:
        spec: Json = {"name": name, "uri": uri, "virt_type": virt_type}
        if cpu_overcommit is not None:
            spec["cpu_overcommit"] = cpu_overcommit
        if memory_overcommit is not None:
            spec["memory_overcommit"] = memory_overcommit
        return self._post("/nodes", spec)

    def nodes(self, limit: Optional[int], cursor: Optional[str], /) -> Any:
        return self._get("/nodes", **_page(limit, cursor))

    def node(self, id: str, /) -> Any:
        return self._get(f"/nodes/{_seg(id)}")

    def update_node(
        self,
        id: str,
        name: Optional[str],
        cpu_overcommit: Optional[float],
        memory_overcommit: Optional[float],
        state: Optional[str],
        /,
    ) -> Any:
        patch = {"name": name, "cpu_overcommit": cpu_overcommit, "memory_overcommit": memory_overcommit, "state": state}
        body = {k: v for k, v in patch.items() if v is not None}
        return self._json("PATCH", f"/nodes/{_seg(id)}", body=body)

    def delete_node(self, id: str, /) -> None:
        self._delete(f"/nodes/{_seg(id)}")

    # IP pools and leases
    def what_if(self, spec: Json, /) -> Any:
        return self._post("/placement/what-if", spec)

    def create_ip_pool(self, spec: Json, /) -> Any:
        return self._post("/ip-pools", spec)

    def ip_pools(self, limit: Optional[int], cursor: Optional[str], /) -> Any:
        return self._get("/ip-pools", **_page(limit, cursor))

    def ip_pool(self, id: str, /) -> Any:
        return self._get(f"/ip-pools/{_seg(id)}")

    def delete_ip_pool(self, id: str, /) -> None:
        self._delete(f"/ip-pools/{_seg(id)}")

    def create_lease(self, pool_id: str, address: Optional[str], /) -> Any:
        return self._post(f"/ip-pools/{_seg(pool_id)}/leases", {} if address is None else {"address": address})

    def delete_lease(self, pool_id: str, address: str, /) -> None:
        self._delete(f"/ip-pools/{_seg(pool_id)}/leases/{_seg(address)}")

    def leases(self, pool_id: str, limit: Optional[int], cursor: Optional[str], /) -> Any:
        return self._get(f"/ip-pools/{_seg(pool_id)}/leases", **_page(limit, cursor))

    # Networks, images, recipes
    def create_network(self, spec: Json, /) -> Any:
        return self._post("/networks", spec)

    def networks(self, limit: Optional[int], cursor: Optional[str], /) -> Any:
        return self._get("/networks", **_page(limit, cursor))

    def network(self, id: str, /) -> Any:
        return self._get(f"/networks/{_seg(id)}")

    def delete_network(self, id: str, /) -> None:
        self._delete(f"/networks/{_seg(id)}")

    def create_image(self, spec: Json, /) -> Any:
        made = self._post("/images", spec)
        # 201 with the image, or 202 with the image and its import task.
        return made if "image" in made else {"image": made, "task": None}

    def upload_image(self, id: str, path: str, /) -> Any:
        try:
            file = open(path, "rb")
        except OSError as e:
            raise errors.InvalidInputError(f"{path}: {e.strerror}", code="invalid", status=400, ids={"field": "path"}) from None
        with file:
            return self._json(
                "PUT",
                f"/images/{_seg(id)}/data",
                content=_chunks(file),
                headers={"Content-Type": "application/octet-stream"},
            )

    def images(self, limit: Optional[int], cursor: Optional[str], /) -> Any:
        return self._get("/images", **_page(limit, cursor))

    def image(self, id: str, /) -> Any:
        return self._get(f"/images/{_seg(id)}")

    def delete_image(self, id: str, /) -> None:
        self._delete(f"/images/{_seg(id)}")

    def create_recipe(self, spec: Json, /) -> Any:
        return self._post("/recipes", spec)

    def recipes(self, limit: Optional[int], cursor: Optional[str], /) -> Any:
        return self._get("/recipes", **_page(limit, cursor))

    def recipe(self, id: str, /) -> Any:
        return self._get(f"/recipes/{_seg(id)}")

    def delete_recipe(self, id: str, /) -> None:
        self._delete(f"/recipes/{_seg(id)}")

    # VMs
    def create_vm(self, spec: Json, /) -> Any:
        return self._post("/vms", spec)

    def vm(self, id: str, /) -> Any:
        return self._get(f"/vms/{_seg(id)}")

    def vms(
        self,
        limit: Optional[int],
        cursor: Optional[str],
        state: Optional[str],
        node_id: Optional[str],
        name: Optional[str],
        /,
    ) -> Any:
        return self._get("/vms", **_page(limit, cursor, state=state, node_id=node_id, name=name))

    def act(self, id: str, action: str, /) -> Any:
        if action == "delete":
            return (self._delete(f"/vms/{_seg(id)}"))["task"]
        return (self._post(f"/vms/{_seg(id)}/{_seg(action)}"))["task"]

    def update_vm(
        self,
        id: str,
        name: Optional[str],
        vcpus: Optional[int],
        memory_mib: Optional[int],
        disk_gib: Optional[int],
        /,
    ) -> Any:
        patch = {"name": name, "vcpus": vcpus, "memory_mib": memory_mib, "disk_gib": disk_gib}
        body = {k: v for k, v in patch.items() if v is not None}
        return (self._json("PATCH", f"/vms/{_seg(id)}", body=body))["task"]

    def reinstall_vm(self, id: str, spec: Json, /) -> Any:
        return (self._post(f"/vms/{_seg(id)}/reinstall", spec))["task"]

    def clone_vm(self, id: str, spec: Json, /) -> Any:
        return self._post(f"/vms/{_seg(id)}/clone", spec)

    def add_vm_address(self, id: str, spec: Json, /) -> Any:
        return (self._post(f"/vms/{_seg(id)}/addresses", spec))["task"]

    def remove_vm_address(self, id: str, address: str, /) -> Any:
        return (self._delete(f"/vms/{_seg(id)}/addresses/{_seg(address)}"))["task"]

    def console_log(self, id: str, tail_bytes: int, /) -> bytes:
        answer = self._send("GET", f"/vms/{_seg(id)}/console-log", query={"tail_bytes": tail_bytes})
        return answer.content

    # Tasks and users
    def task(self, id: str, /) -> Any:
        return self._get(f"/tasks/{_seg(id)}")

    def tasks(
        self, vm_id: Optional[str], state: Optional[str], limit: Optional[int], cursor: Optional[str], /
    ) -> Any:
        return self._get("/tasks", **_page(limit, cursor, vm_id=vm_id, state=state))

    def wait_task(self, id: str, timeout: float, /) -> Any:
        """Long-polls the server slice by slice until the task ends or `timeout` passes."""
        if not 0 <= timeout <= 86_400:
            raise errors.InvalidInputError(
                "timeout must be a number of seconds from 0 to 86400",
                code="invalid",
                status=400,
                ids={"field": "timeout"},
            )
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            task = self._json(
                "GET",
                f"/tasks/{_seg(id)}/wait",
                query={"timeout_s": round(min(left, WAIT_SLICE), 3)},
                timeout=min(left, WAIT_SLICE) + 30.0,
            )
            if task["state"] in ("succeeded", "failed", "cancelled") or time.monotonic() >= deadline:
                return task

    def cancel_task(self, id: str, /) -> Any:
        return self._post(f"/tasks/{_seg(id)}/cancel")

    def create_user(self, spec: Json, /) -> Any:
        return self._post("/users", spec)


def _retry_after(answer: httpx.Response) -> float:
    """The server's ``Retry-After`` in seconds (0 when absent or a date)."""
    try:
        return max(0.0, float(answer.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0


def _chunks(file: Any) -> Iterator[bytes]:
    while True:
        chunk = file.read(UPLOAD_CHUNK)
        if not chunk:
            return
        yield chunk


__all__: Tuple[str, ...] = ("Transport", "base_url", "settings")
