"""The remote client (``vmm.connect``, ``vmm.aio``) against a real ``vmmd`` on loopback, and the
same scenario over the embedded transport: one set of classes, two transports.

``vmmd`` is target/debug/vmmd (or ``$VMMD``); these tests need no native module, so they
also run where only the pure-Python ``vmm-client`` is installed.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import httpx
import pytest

import vmm
import vmm.aio
import vmm._sync.client
import vmm._sync.http

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = "remote-client-tests-admin-token"


def _embedded() -> bool:
    try:
        import vmm._vmm  # noqa: F401
    except ImportError:
        return False
    return True


class Vmmd:
    def __init__(self, tmp: pathlib.Path) -> None:
        binary = os.environ.get("VMMD", str(ROOT / "target" / "debug" / "vmmd"))
        env = dict(
            os.environ,
            VMM_LISTEN="127.0.0.1:0",
            VMM_DATA_DIR=str(tmp),
            VMM_ADMIN_TOKEN=TOKEN,
            VMM_LOCAL_NODE="false",
            VMM_TEST_NODES="true",
            RUST_LOG="info",
            NO_COLOR="1",
        )
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        self.log: List[str] = []
        for line in self.proc.stdout:
            self.log.append(line)
            if "listening on " in line:
                address = line.split("listening on ")[1].split()[0]
                self.url = address if address.startswith("http") else f"http://{address}"
                break
        else:
            raise RuntimeError("vmmd did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: self.log.extend(self.proc.stdout or []), daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vmmd]:
    vmmd = Vmmd(tmp_path_factory.mktemp("vmmd"))
    yield vmmd
    vmmd.stop()


@pytest.fixture
def remote(server: Vmmd, monkeypatch: pytest.MonkeyPatch) -> Iterator[vmm.Client]:
    monkeypatch.setenv("VMM_URL", server.url)
    monkeypatch.setenv("VMM_TOKEN", TOKEN)
    with vmm.connect() as client:
        yield client


@pytest.fixture(scope="module")
def server_node(server: Vmmd) -> vmm.Node:
    """The server's one test:///default node (a URI registers once)."""
    with vmm.connect(server.url, TOKEN) as admin:
        return _node(admin)


@pytest.fixture(params=["remote", "embedded"])
def either(
    request: pytest.FixtureRequest, server: Vmmd, server_node: vmm.Node, tmp_path: pathlib.Path
) -> Iterator[Tuple[vmm.Client, vmm.Node]]:
    """A client over each transport, and a test:///default node it has."""
    if request.param == "remote":
        with vmm.connect(server.url, TOKEN) as client:
            yield client, client.node(server_node.id)
        return
    if not _embedded():
        pytest.skip("the embedded platform is not installed (vmm-client)")
    with vmm.Client.open(database=f"sqlite://{tmp_path / 'vmm.db'}", test_nodes=True) as client:
        yield client, _node(client)


def _node(client: vmm.Client) -> vmm.Node:
    return client.create_node(f"lab-{uuid.uuid4().hex[:8]}", "test:///default", virt_type="qemu")


def test_the_same_scenario_runs_over_either_transport(either: Tuple[vmm.Client, vmm.Node]) -> None:
    either, node = either
    pool = either.create_ip_pool(f"pool-{uuid.uuid4().hex[:6]}", "198.51.100.0/24", gateway="198.51.100.1")
    web = either.create_vm(f"web-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mib=128, disk_gib=1, node=node, ip_pool=pool)
    assert web.state == "running" and web.task.state == "succeeded"
    assert web.addresses == ["198.51.100.2"]
    db = either.create_vm(f"db-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mib=128, disk_gib=1, node=node, start=False)
    assert db.state == "stopped"

    # Placement explains itself, and the create task recorded the same choice.
    answer = either.what_if(1, 128, 1, node=node)
    assert answer["chosen"] == node.id and [c["node_id"] for c in answer["candidates"]] == [node.id]
    assert web.task.steps[0]["message"].startswith(f"placed on {node.name} (score ")
    too_big = either.what_if(1, 16777216, 1, node=node)
    assert too_big["chosen"] is None and too_big["rejected"][0]["reasons"][0]["reason"] == "memory"
    with pytest.raises(vmm.InvalidInputError):
        either.what_if(0, 128, 1)

    # Filters, server side; lists are lazy iterators of the same classes.
    running = either.vms(state="running", node=node)
    assert iter(running) is running, "a lazy iterator, not a list"
    assert [v.id for v in running] == [web.id]
    assert [v.id for v in either.vms(node=node.id)] == [db.id, web.id], "newest first"
    assert [v.id for v in either.vms(state="stopped", node=node)] == [db.id]
    assert list(either.vms(name=web.name)) == [web]
    assert isinstance(next(either.vms(node=node)), vmm.Vm)

    # find_vm: by id or by name.
    assert either.find_vm(web.name) == web == either.find_vm(web.id)
    with pytest.raises(vmm.NotFoundError) as missing:
        either.find_vm("no-such-vm")
    assert isinstance(missing.value, LookupError) and missing.value.status == 404

    # Actions follow their tasks.
    task = web.stop()
    assert task.state == "succeeded" and web.state == "stopped"
    queued = web.start(wait=False)
    assert queued.wait(60).state == "succeeded"
    assert web.refresh().state == "running"
    assert [t.kind for t in either.tasks(vm_id=web)][:2] == ["start_vm", "stop_vm"]
    web.update(name=web.name + "-x", memory_mib=256)
    assert web.memory_mib == 256 and web.name.endswith("-x")
    assert web.to_dict() == either.vm(web.id).to_dict()
    assert [lease.address for lease in either.leases(pool)] == ["198.51.100.2"]

    # Errors: one hierarchy, subclassing the builtins, with code, status and ids.
    with pytest.raises(vmm.NotFoundError) as nf:
        either.vm(str(uuid.uuid4()))
    assert isinstance(nf.value, LookupError)
    assert (nf.value.code, nf.value.status) == ("vm_not_found", 404) and "vm_id" in nf.value.ids
    with pytest.raises(ValueError) as bad:
        either.create_vm("bad", vcpus=0, memory_mib=128, disk_gib=1, node=node)
    assert isinstance(bad.value, vmm.InvalidInputError)
    assert (bad.value.code, bad.value.status, bad.value.ids) == ("invalid", 422, {"field": "vcpus"})
    with pytest.raises(vmm.ConflictError) as conflict:
        _node(either)  # test:///default registers once
    assert (conflict.value.code, conflict.value.status) == ("conflict", 409)
    with pytest.raises(vmm.InvalidStateError) as state:
        db.resume()
    assert state.value.ids == {"vm_id": db.id} and isinstance(state.value, vmm.ConflictError)

    for vm in (web, db):
        assert vm.delete().state == "succeeded"
    assert list(either.vms(node=node)) == []
    either.delete_ip_pool(pool)


def test_a_failed_task_raises_its_exception_from_wait(either: Tuple[vmm.Client, vmm.Node], tmp_path: pathlib.Path) -> None:
    if shutil.which("qemu-img") is None:
        pytest.skip("needs qemu-img")
    either, node = either
    disk = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    image = either.create_image(f"img-{uuid.uuid4().hex[:6]}", os_family="debian", path=str(disk))
    assert image.state == "ready" and image.virtual_size_bytes == 16 << 20
    # test:///default cannot install from images: the create task fails, and wait raises.
    vm = either.create_vm(f"from-image-{uuid.uuid4().hex[:6]}", vcpus=1, memory_mib=128, disk_gib=1, node=node, image=image, wait=False)
    with pytest.raises(vmm.UnsupportedError) as failed:
        vm.task.wait(60)
    assert failed.value.ids["task_id"] == vm.task.id and vm.task.state == "failed"
    assert failed.value.code == "unsupported" and failed.value.status == 501
    with pytest.raises(vmm.NotFoundError):
        vm.refresh()  # a failed create leaves nothing behind
    image.delete()


def test_pages_are_read_as_they_are_iterated(server: Vmmd, server_node: vmm.Node, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: List[str] = []
    http = httpx.Client(event_hooks={"request": [lambda r: sent.append(f"{r.method} {r.url.path}?{r.url.query.decode()}")]})
    client = vmm.Client(vmm._sync.http.Transport(server.url, TOKEN, client=http))
    node = server_node
    made = [client.create_vm(f"p{i}", vcpus=1, memory_mib=64, disk_gib=1, node=node, start=False, wait=False) for i in range(5)]
    for vm in made:
        vm.task.wait(60)
    monkeypatch.setattr(vmm._sync.client, "PAGE", 2)
    sent.clear()
    listing = client.vms(node=node)
    assert sent == [], "nothing is read before the first item is asked for"
    first = next(listing)
    assert first.id == made[-1].id and len(sent) == 1
    assert f"node_id={node.id}" in sent[0] and "limit=2" in sent[0]
    rest = list(listing)
    assert [v.id for v in [first, *rest]] == [v.id for v in reversed(made)]
    assert len(sent) == 3 and all("cursor=" in s for s in sent[1:])
    for vm in made:
        vm.delete()
    client.close()


def test_the_remote_client_imports_nothing_native(server: Vmmd) -> None:
    code = (
        "import sys, vmm, vmm.aio\n"
        f"c = vmm.connect({server.url!r}, {TOKEN!r})\n"
        "assert list(c.vms(state='error')) == []\n"
        "assert 'vmm._vmm' not in sys.modules, 'the remote client loaded the native module'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tokens_are_checked_and_never_shown(server: Vmmd) -> None:
    secret = "not-the-token-" + uuid.uuid4().hex
    client = vmm.connect(server.url, secret)
    assert secret not in repr(client)
    with pytest.raises(vmm.AuthenticationError) as e:
        list(client.nodes())
    assert isinstance(e.value, PermissionError) and e.value.status == 401
    assert secret not in str(e.value)

    # A user who may only read gets PermissionError on a write.
    admin = vmm.connect(server.url, TOKEN)
    email = f"reader-{uuid.uuid4().hex[:6]}@example.com"
    admin.create_user(email, role="readonly", password="correct horse battery")
    session = httpx.post(f"{server.url}/api/v1/auth/login", json={"email": email, "password": "correct horse battery"})
    reader = vmm.connect(server.url, session.json()["token"])
    assert isinstance(list(reader.vms()), list)
    with pytest.raises(PermissionError) as denied:
        reader.create_node("nope", "test:///default", virt_type="qemu")
    assert isinstance(denied.value, vmm.PermissionError) and denied.value.status == 403


def test_bad_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VMM_URL", raising=False)
    with pytest.raises(vmm.InvalidInputError) as e:
        vmm.connect()
    assert e.value.ids == {"field": "url"}
    with pytest.raises(ValueError):
        vmm.connect("ftp://example.invalid/")


def test_asyncio_client(server: Vmmd, server_node: vmm.Node) -> None:
    async def scenario() -> None:
        async with vmm.aio.connect(server.url, TOKEN) as client:
            node = await client.node(server_node.id)
            vms = [
                await client.create_vm(f"aio-{i}-{uuid.uuid4().hex[:4]}", vcpus=1, memory_mib=64, disk_gib=1, node=node)
                for i in range(2)
            ]
            assert all(vm.state == "running" for vm in vms) and isinstance(vms[0], vmm.aio.Vm)
            await vms[0].stop()
            assert [vm.id async for vm in client.vms(node=node, state="running")] == [vms[1].id]
            assert (await client.find_vm(vms[0].name)).state == "stopped"
            with pytest.raises(vmm.NotFoundError):
                await client.vm(str(uuid.uuid4()))
            await asyncio.gather(*(vm.delete() for vm in vms))
            assert [vm async for vm in client.vms(node=node)] == []

    asyncio.run(scenario())


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next scripted (status, body) and records it."""

    script: List[Tuple[int, Any]] = []
    seen: List[Dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append({"method": self.command, "path": self.path, "key": self.headers.get("Idempotency-Key")})
        status, body = type(self).script.pop(0)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json" if status >= 400 else "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tuple[str, type]]:
    monkeypatch.setattr(vmm._sync.http, "FIRST_PAUSE", 0.01)
    Scripted.script, Scripted.seen = [], []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Scripted
    httpd.shutdown()


UNAVAILABLE = (503, {"type": "urn:vmm:problem:unavailable", "title": "Unavailable", "status": 503, "detail": "node n1 is unreachable", "code": "unavailable"})


def test_reads_and_creates_are_retried_with_one_key(scripted: Tuple[str, type]) -> None:
    url, server = scripted
    vm = {"id": str(uuid.uuid4()), "name": "x", "state": "stopped"}
    task = {"id": str(uuid.uuid4()), "state": "queued", "kind": "create_vm"}
    server.script = [UNAVAILABLE, (200, vm), UNAVAILABLE, (202, {"vm": vm, "task": task})]
    client = vmm.connect(url, TOKEN)
    assert client.vm(vm["id"]).name == "x"
    made = client.create_vm("x", vcpus=1, memory_mib=64, disk_gib=1, wait=False)
    assert made.task.id == task["id"]
    methods = [(s["method"], s["path"]) for s in server.seen]
    assert methods == [("GET", f"/api/v1/vms/{vm['id']}")] * 2 + [("POST", "/api/v1/vms")] * 2
    keys = [s["key"] for s in server.seen]
    assert keys[0] is None and keys[2] and keys[2] == keys[3], "a retried create sends its key again"


def test_a_patch_is_not_retried_and_errors_keep_the_problem(scripted: Tuple[str, type]) -> None:
    url, server = scripted
    server.script = [UNAVAILABLE]
    client = vmm.connect(url, TOKEN)
    with pytest.raises(vmm.BackendUnavailableError) as e:
        client.update_node(str(uuid.uuid4()), name="n2")
    assert len(server.seen) == 1
    assert (e.value.code, e.value.status, e.value.message) == ("unavailable", 503, "node n1 is unreachable")
    server.script = [UNAVAILABLE] * vmm._sync.http.ATTEMPTS
    with pytest.raises(vmm.BackendUnavailableError):
        client.node(str(uuid.uuid4()))
    assert len(server.seen) == 1 + vmm._sync.http.ATTEMPTS, "reads give up after ATTEMPTS"


def test_an_unreachable_server_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmm._sync.http, "FIRST_PAUSE", 0.01)
    with pytest.raises(vmm.BackendUnavailableError) as e:
        vmm.connect("http://127.0.0.1:9", TOKEN).vm(str(uuid.uuid4()))
    assert e.value.status == 503 and "127.0.0.1:9" in e.value.message
