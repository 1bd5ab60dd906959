"""Time to list 10,000 VMs from Python: embedded (``vmm.Client.open``), remote (``vmm.connect``
to a vmmd on loopback) and the peer, libvirt-python's ``listAllDomains()`` plus each
domain's UUID, name and state, on the same 10,000 domains of ``test:///default``; one run.

test:///default holds 100 VMs of vmm's smallest size, so 100 are made through vmm and the
other 9,900 are written into the database (as ``create_at_scale`` does) and defined in
libvirt with the same names and UUIDs: both sides list the same 10,000.

    maturin build --release … && pip install the wheel and libvirt-python
    cargo build --release -p vmm-server --bin vmmd
    python vmm-py/bench/list_10k.py [COUNT]
"""

import gc
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import libvirt

import vmm

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
ROUNDS = 21
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VMMD = os.environ.get("VMMD", os.path.join(ROOT, "target", "release", "vmmd"))
TOKEN = "bench-list-10k-admin-token"


def timed(fn, rounds=ROUNDS):
    samples = []
    result = None
    for _ in range(rounds):
        result = None
        gc.collect()  # each round starts from the same heap, whoever made the last one's garbage
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return result, statistics.median(samples), min(samples)


def bulk(db_path, node_id, made, count):
    """Writes VMs `made`+1 … `count` into the database; returns their (uuid, name)."""
    rows = [(f"00000000-0000-7000-8000-{n:012d}", f"bulk-{n}") for n in range(1, count - made + 1)]
    db = sqlite3.connect(db_path)
    with db:
        db.executemany(
            "INSERT INTO vms (id, name, vcpus, memory_mib, disk_gib, node_id, ip_pool_id, state, addresses, created_at) "
            "VALUES (?, ?, 1, 64, 1, ?, NULL, 'stopped', '[]', '2026-01-01T00:00:00.000000Z')",
            [(i, n, node_id) for i, n in rows],
        )
    db.close()
    return rows


def start_vmmd(data):
    env = dict(os.environ, VMM_LISTEN="127.0.0.1:0", VMM_DATA_DIR=data, VMM_ADMIN_TOKEN=TOKEN,
               VMM_LOCAL_NODE="false", VMM_TEST_NODES="true", NO_COLOR="1")
    log = open(os.path.join(data, "vmmd.log"), "w+")
    proc = subprocess.Popen([VMMD, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    for _ in range(300):
        log.seek(0)
        for line in log:
            if "listening on " in line:
                address = line.split("listening on ")[1].split()[0]
                return proc, address if address.startswith("http") else f"http://{address}"
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log.seek(0)
    raise SystemExit("vmmd did not start:\n" + log.read())


def main():
    global COUNT
    with tempfile.TemporaryDirectory() as tmp:
        db_path = f"{tmp}/vmm.db"
        with vmm.Client.open(database=f"sqlite://{db_path}", test_nodes=True) as client:
            node = client.create_node("lab", "test:///default", virt_type="qemu", cpu_overcommit=64, memory_overcommit=64)
            made = min(COUNT, node.capacity["storage_gib"])
            start = time.perf_counter()
            vms = [client.create_vm(f"vm-{i}", vcpus=1, memory_mib=64, disk_gib=1, start=False, wait=False) for i in range(made)]
            failed = [vm.task for vm in vms if vm.task.wait(600).state != "succeeded"]
            assert not failed, f"{len(failed)} creates failed"
            print(f"made {made} VMs through vmm in {time.perf_counter() - start:.1f} s", flush=True)
        rows = bulk(db_path, node.id, made, COUNT)
        conn = libvirt.open("test:///default")
        for uuid, name in rows:
            conn.defineXML(
                f"<domain type='test'><name>vmm-{uuid}</name><uuid>{uuid}</uuid><memory unit='MiB'>64</memory>"
                "<vcpu>1</vcpu><os><type>hvm</type></os></domain>"
            )
        remote_data = f"{tmp}/remote"
        os.mkdir(remote_data)
        shutil.copy(db_path, f"{remote_data}/vmm.db")

        embedded = vmm.Client.open(database=f"sqlite://{db_path}", test_nodes=True, run_workers=False)
        proc, url = start_vmmd(remote_data)
        try:
            remote = vmm.connect(url, TOKEN)
            listed, emb_median, emb_best = timed(lambda: list(embedded.vms()))
            assert len(listed) == COUNT, len(listed)
            read, emb_read_median, _ = timed(lambda: [(v.id, v.name, v.state) for v in embedded.vms()])
            assert len(read) == COUNT and read[-1][2] == "stopped", read[-1]
            listed, rem_median, rem_best = timed(lambda: list(remote.vms()))
            assert len(listed) == COUNT, len(listed)
            _, rem_read_median, _ = timed(lambda: [(v.id, v.name, v.state) for v in remote.vms()])
            domains = [d for d in conn.listAllDomains(0) if d.name().startswith("vmm-")]
            assert len(domains) == COUNT, len(domains)
            _, peer_median, peer_best = timed(
                lambda: [(d.UUIDString(), d.name(), d.info()[0]) for d in conn.listAllDomains(0)]
            )
            _, bare_median, _ = timed(lambda: conn.listAllDomains(0))
        except Exception:
            print(open(os.path.join(remote_data, "vmmd.log")).read()[-3000:], file=sys.stderr)
            raise
        finally:
            proc.terminate()
            proc.wait(30)
            embedded.close()
    print(f"embedded list(client.vms()):  {COUNT} VMs, median {emb_median * 1000:.1f} ms (best {emb_best * 1000:.1f} ms)"
          f"; with each VM's id, name, state read: {emb_read_median * 1000:.1f} ms")
    print(f"remote   list(client.vms()):  {COUNT} VMs, median {rem_median * 1000:.1f} ms (best {rem_best * 1000:.1f} ms)"
          f"; with each VM's id, name, state read: {rem_read_median * 1000:.1f} ms")
    print(f"libvirt listAllDomains + uuid, name, state: median {peer_median * 1000:.1f} ms (best {peer_best * 1000:.1f} ms)"
          f"; listAllDomains alone {bare_median * 1000:.1f} ms")
    print(f"embedded / libvirt = {emb_median / peer_median:.2f} (target <= 1.0; {emb_read_median / peer_median:.2f} with the "
          f"fields read); remote / embedded = {rem_median / emb_median:.2f} (target <= 2.0; "
          f"{rem_read_median / emb_read_median:.2f} with the fields read)")


if __name__ == "__main__":
    main()
