"""Time to list 10,000 VMs with vmm from Python, beside libvirt-python's listAllDomains() on
the same 10,000 domains of test:///default, in one run (one process: test:///default is
shared by every connection of a process).

    python vmm-py/bench/list_10k.py        # needs the vmm wheel and libvirt-python
"""

import statistics
import sys
import tempfile
import time

import libvirt

import vmm

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000


def timed(fn, rounds=7):
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return result, statistics.median(samples), min(samples)


def main():
    global COUNT
    with tempfile.TemporaryDirectory() as tmp, vmm.Client.open(database=f"sqlite://{tmp}/vmm.db", test_nodes=True) as client:
        # One host is one node (a URI registers once), so the count is what its capacity holds.
        node = client.create_node("lab", "test:///default", virt_type="qemu", cpu_overcommit=64, memory_overcommit=64)
        cap = node.capacity
        per_node = min(cap["cpus"] * 64, cap["memory_mib"] * 64 // 64, cap["storage_gib"])
        if per_node < COUNT:
            print(f"test:///default holds {per_node} VMs of 1 GiB; listing {per_node}", flush=True)
            COUNT = per_node
        start = time.perf_counter()
        made = [
            client.create_vm(f"vm-{i}", vcpus=1, memory_mib=64, disk_gib=1, start=False, wait=False)
            for i in range(COUNT)
        ]
        failed = [vm.task for vm in made if vm.task.wait(600).state != "succeeded"]
        assert not failed, f"{len(failed)} creates failed, first: {failed[0].error}"
        print(f"created {COUNT} VMs through vmm in {time.perf_counter() - start:.1f} s", flush=True)

        conn = libvirt.open("test:///default")
        vms, vmm_median, vmm_best = timed(client.vms)
        domains, virt_median, virt_best = timed(lambda: conn.listAllDomains(0))
        ours = [d for d in domains if d.name().startswith("vmm-")]
        assert len(vms) == COUNT == len(ours), (len(vms), len(ours))
        print(f"vmm Client.vms():               {len(vms)} VMs, median {vmm_median * 1000:.1f} ms (best {vmm_best * 1000:.1f} ms)")
        print(f"libvirt conn.listAllDomains(0): {len(domains)} domains, median {virt_median * 1000:.1f} ms (best {virt_best * 1000:.1f} ms)")
        _, names_median, _ = timed(lambda: [(d.UUIDString(), d.name(), d.info()[0]) for d in conn.listAllDomains(0)])
        print(f"listAllDomains + uuid, name, state of each: median {names_median * 1000:.1f} ms")


if __name__ == "__main__":
    main()
