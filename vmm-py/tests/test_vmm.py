"""The Python package against real backends: SQLite, libvirt's test driver, real QEMU."""

import os
import signal
import threading
import time
import uuid

import pytest

import vmm


def test_a_whole_vm_life_on_the_test_driver(client, node, pool):
    vm = client.create_vm("web-1", vcpus=1, memory_mib=128, disk_gib=1, ip_pool=pool, node=node)
    assert vm.state == "running"
    assert vm.addresses == ["192.0.2.2"]
    assert vm.node_id == node.id
    for action, state in [("suspend", "paused"), ("resume", "running"), ("reboot", "running"), ("stop", "stopped")]:
        task = getattr(vm, action)()
        assert task.state == "succeeded", task.error
        assert vm.state == state, action
    task = vm.start(wait=False)
    assert task.state in ("queued", "running", "succeeded")
    assert task.wait(timeout=60).state == "succeeded"
    vm.update(name="web-2", memory_mib=256)
    assert (vm.name, vm.memory_mib) == ("web-2", 256)
    assert [t.kind for t in client.tasks(vm_id=vm)][:2] == ["update_vm", "start_vm"]
    assert vm in list(client.vms())
    assert client.vm(vm.id) == vm
    assert vm.delete().state == "succeeded"
    with pytest.raises(vmm.NotFoundError):
        client.vm(vm.id)
    assert list(client.leases(pool)) == []


def test_objects_are_plain_and_shaped_like_the_http_api(client, node, pool):
    vm = client.create_vm("shape", vcpus=1, memory_mib=128, disk_gib=1, ip_pool=pool, node=node)
    d = vm.to_dict()
    assert set(d) == {"id", "name", "vcpus", "memory_mib", "disk_gib", "node_id", "ip_pool_id", "state",
                      "addresses", "created_at", "image_id", "hostname", "nics", "owner_id", "ha"}
    assert d["nics"] == [{"index": 0, "mac": d["nics"][0]["mac"], "pool_id": pool.id, "network_id": None,
                          "addresses": ["192.0.2.2"]}]
    assert repr(vm).startswith("Vm(id=")
    assert client.vm(vm.id) == vm and hash(client.vm(vm.id)) == hash(vm)
    assert vm != client.node(node)
    lease = next(client.leases(pool))
    assert (lease.address, lease.vm_id) == ("192.0.2.2", vm.id)
    assert set(client.node(node).to_dict()) >= {"id", "name", "uri", "virt_type", "capacity", "allocated", "state"}
    task = next(client.tasks(vm_id=vm.id))
    assert set(task.to_dict()) >= {"id", "kind", "state", "vm_id", "progress", "error", "created_at",
                                   "started_at", "finished_at"}


def test_every_exception(client, node, pool):
    missing = "0190a5b2-0000-7000-8000-00000000abcd"
    with pytest.raises(vmm.NotFoundError) as e:
        client.vm(missing)
    assert e.value.ids == {"vm_id": missing} and missing in e.value.message
    with pytest.raises(vmm.InvalidInputError) as e:
        client.create_vm("", vcpus=1, memory_mib=128, disk_gib=1)
    assert e.value.ids == {"field": "name"}
    with pytest.raises(vmm.InvalidInputError):
        client.vm("not-a-uuid")
    with pytest.raises(vmm.InvalidInputError):
        client.create_ip_pool("bad", "192.0.2.7/24")
    with pytest.raises(vmm.ConflictError):
        client.create_ip_pool("public", "198.51.100.0/24")
    tiny = client.create_ip_pool("tiny", "198.51.100.0/30")
    client.create_lease(tiny)
    client.create_lease(tiny)
    with pytest.raises(vmm.PoolExhaustedError) as e:
        client.create_lease(tiny)
    assert e.value.ids == {"pool_id": tiny.id}
    with pytest.raises(vmm.NoCapacityError) as e:
        client.create_vm("huge", vcpus=512, memory_mib=128, disk_gib=1)
    [rejection] = e.value.rejections
    assert rejection["node_id"] == node.id
    assert [r["reason"] for r in rejection["reasons"]] == ["cpu"]
    vm = client.create_vm("busy", vcpus=1, memory_mib=128, disk_gib=1, node=node)
    with pytest.raises(vmm.InvalidStateError) as e:
        vm.resume()
    assert e.value.ids == {"vm_id": vm.id}
    stop = vm.stop(wait=False)
    with pytest.raises(vmm.ActiveTaskError) as e:
        vm.start(wait=False)
    assert e.value.ids == {"vm_id": vm.id, "task_id": stop.id}
    stop.wait(60)
    # A task that fails raises what it failed with: the test driver cannot grow volumes.
    with pytest.raises(vmm.UnsupportedError) as e:
        vm.update(disk_gib=2)
    assert e.value.ids["vm_id"] == vm.id and "task_id" in e.value.ids
    assert client.task(e.value.ids["task_id"]).error_code == "unsupported"
    assert vm.refresh().disk_gib == 1, "a failed resize gives its reservation back"
    with pytest.raises(vmm.BackendUnavailableError) as e:
        client.create_node("down", "qemu+tcp://127.0.0.1:1/system")
    assert "Connection refused" not in e.value.message, "vmm's words, not libvirt's"
    with pytest.raises(vmm.InvalidInputError) as e:
        client.create_node("evil", "qemu+ssh://u@example.invalid/system?command=/tmp/p.sh")
    assert e.value.ids == {"field": "uri"} and '"command"' in e.value.message
    with pytest.raises(vmm.ConflictError):
        client.create_node("again", "test:///default")
    with pytest.raises(vmm.InvalidInputError):
        vmm.Client.open(database="mysql://nowhere/x")
    with pytest.raises(vmm.ConflictError):
        client.task(stop.id).cancel()
    for cls in (vmm.NotFoundError, vmm.ConflictError, vmm.ActiveTaskError, vmm.InvalidStateError,
                vmm.PoolExhaustedError, vmm.NoCapacityError, vmm.InvalidInputError,
                vmm.BackendUnavailableError, vmm.UnsupportedError, vmm.TimeoutError):
        assert issubclass(cls, vmm.VmmError)
    assert issubclass(vmm.TimeoutError, TimeoutError), "except TimeoutError catches vmm's too"


def test_a_wait_that_runs_out_raises_timeout(database):
    # No workers: the task stays queued.
    with vmm.Client.open(database=database, run_workers=False, test_nodes=True) as c:
        n = c.create_node(f"idle-{uuid.uuid4().hex[:8]}", "test:///default", virt_type="qemu")
        vm = c.create_vm("idle", vcpus=1, memory_mib=128, disk_gib=1, node=n, wait=False)
        with pytest.raises(vmm.TimeoutError) as e:
            vm.task.wait(timeout=0.05)
        assert e.value.ids == {"task_id": vm.task.id}
        with pytest.raises(TimeoutError):
            vm.task.wait(timeout=0)
        for absurd in (1e19, -1, float("nan"), float("inf")):
            with pytest.raises(vmm.InvalidInputError) as e:
                vm.task.wait(timeout=absurd)
            assert e.value.ids == {"field": "timeout"}
        assert vm.task.cancel().state == "cancelled"


def test_ctrl_c_interrupts_a_wait(database):
    with vmm.Client.open(database=database, run_workers=False, test_nodes=True) as c:
        n = c.create_node(f"sig-{uuid.uuid4().hex[:8]}", "test:///default", virt_type="qemu")
        vm = c.create_vm("sig", vcpus=1, memory_mib=128, disk_gib=1, node=n, wait=False)
        # A shell that starts us in the background ignores SIGINT, and Python then keeps it
        # ignored; install the handler an interactive session has.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        try:
            timer.start()
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                vm.task.wait(timeout=60)
        finally:
            timer.join()
            signal.signal(signal.SIGINT, previous)
        assert time.monotonic() - started < 30, "Ctrl-C ended the wait, not its timeout"
        vm.task.cancel()


def test_test_nodes_need_asking_for(database):
    with vmm.Client.open(database=database, run_workers=False) as c:
        for uri in ("test:///default", "memory://fake"):
            with pytest.raises(vmm.InvalidInputError) as e:
                c.create_node("n", uri)
            assert "test nodes" in e.value.message


def test_threads_create_vms_at_once(client, node, pool):
    made, errors = [], []

    def work(i):
        try:
            for j in range(5):
                made.append(client.create_vm(f"t{i}-{j}", vcpus=1, memory_mib=64, disk_gib=1, ip_pool=pool, node=node))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(made) == 30
    assert all(v.state == "running" for v in made)
    assert len({v.addresses[0] for v in made}) == 30


def test_the_gil_is_released_while_a_call_waits(database):
    # One thread blocks in a long wait; if the GIL were held, this thread could not cancel
    # the task, and the wait would end only at its timeout, with the task still queued.
    with vmm.Client.open(database=database, run_workers=False, test_nodes=True) as c:
        n = c.create_node(f"gil-{uuid.uuid4().hex[:8]}", "test:///default", virt_type="qemu")
        vm = c.create_vm("gil", vcpus=1, memory_mib=128, disk_gib=1, node=n, wait=False)
        seen = []
        waiter = threading.Thread(target=lambda: seen.append(c.task(vm.task.id).wait(timeout=120).state))
        waiter.start()
        while not waiter.is_alive():
            pass
        vm.task.cancel()
        waiter.join(timeout=60)
        assert seen == ["cancelled"]


@pytest.mark.qemu
def test_a_vm_on_real_qemu(client, pool):
    node = client.create_node(f"qemu-{uuid.uuid4().hex[:8]}", "qemu:///system", virt_type="qemu")
    vm = client.create_vm("real", vcpus=1, memory_mib=128, disk_gib=1, node=node, ip_pool=pool)
    assert vm.state == "running"
    assert vm.stop().state == "succeeded"
    assert vm.delete().state == "succeeded"
    client.delete_node(node)


def test_a_client_acting_as_a_user_sees_and_does_only_what_their_role_allows(database, client, node):
    ann = client.create_user("ann@example.com", password="correct horse battery", quota={"max_vms": 1})
    assert (ann.email, ann.role, ann.state, ann.quota) == ("ann@example.com", "user", "active", {"max_vms": 1})
    client.create_user("bob@example.com", password="correct horse battery")
    with pytest.raises(vmm.InvalidInputError):
        client.create_user("weak@example.com", password="short")
    with vmm.Client.open(database=database, test_nodes=True, run_workers=False, user="ann@example.com") as as_ann, \
            vmm.Client.open(database=database, test_nodes=True, run_workers=False, user="bob@example.com") as as_bob:
        vm = as_ann.create_vm("mine", vcpus=1, memory_mib=128, disk_gib=1, wait=False)
        assert vm.owner_id == ann.id
        assert [v.id for v in as_ann.vms()] == [vm.id]
        with pytest.raises(vmm.QuotaExceededError) as e:
            as_ann.create_vm("second", vcpus=1, memory_mib=128, disk_gib=1, wait=False)
        assert isinstance(e.value, vmm.ConflictError) and "max_vms" in e.value.message
        # Bob: Ann's VM and its tasks are not found, nodes and users are not his to touch.
        assert list(as_bob.vms()) == [] and list(as_bob.tasks()) == []
        with pytest.raises(vmm.NotFoundError):
            as_bob.vm(vm.id)
        with pytest.raises(PermissionError):
            list(as_bob.nodes())
        with pytest.raises(vmm.PermissionError):
            as_bob.create_user("eve@example.com", password="correct horse battery", role="admin")
        assert issubclass(vmm.PermissionError, vmm.VmmError)
    with pytest.raises(PermissionError):
        vmm.Client.open(database=database, user="nobody@example.com")
