"""Servers from images, from Python: the tiny guest installed on qemu:///system with a
hostname, keys, a recipe and two addresses on a managed network, reinstalled and cloned,
and everything gone after; bad input raises typed exceptions and changes nothing."""

import hashlib
import json
import pathlib
import subprocess
import time
import uuid

import pytest

import vmm

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "guest" / "out" / "tiny.qcow2"
KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz5Q2d5kq2xqk0fZ7J3o1n9Zr1v3p6yX7mWcJmQqG7A alice@example",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0sR3Ugb5pJm1vWcJc5jJ7p1b9n2kqzXc0Jm8c1y4Yb bob@example",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4v0h6Q5Vx1nH4Cq2y1o3Jd9kD3Lw7mN1pZr8sT0uYe carol@example",
]


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def ready(vm, skip=0, within=180):
    """What the guest reported on its serial console, the `skip`-th time it did."""
    deadline = time.monotonic() + within
    while True:
        log = vm.console_log(1 << 20)
        # The log is written in pieces: only complete lines count.
        complete = log[: log.rfind("\n") + 1]
        found = [line[len("VMM-GUEST-READY ") :] for line in complete.splitlines() if line.startswith("VMM-GUEST-READY ")]
        if len(found) > skip:
            return json.loads(found[skip])
        assert time.monotonic() < deadline, f"no report #{skip} from {vm.id}:\n{log}"
        time.sleep(0.5)


def virsh(*args):
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True).stdout


@pytest.mark.qemu
def test_a_server_from_an_image_on_real_qemu(tmp_path):
    assert TINY.exists(), f"{TINY} is missing: run tests/guest/build.sh (the setup does)"
    suffix = uuid.uuid4().hex[:8]
    with vmm.Client.open(database=f"sqlite://{tmp_path / 'vmm.db'}") as c:
        node = c.create_node(f"qemu-{suffix}", "qemu:///system", virt_type="qemu")
        net = c.create_network(f"py-{suffix}", kind="managed")
        pools = [
            c.create_ip_pool(f"a-{suffix}", "198.51.100.0/24", gateway="198.51.100.1", network=net, dns=["198.51.100.53"]),
            c.create_ip_pool(f"b-{suffix}", "203.0.113.0/24", gateway="203.0.113.1", network=net),
        ]
        recipe = c.create_recipe(f"r-{suffix}", os_families=["linux"], script="exit 42")
        image = c.create_image(f"tiny-{suffix}", os_family="linux", path=str(TINY))
        assert image.state == "ready" and len(image.sha256) == 64

        vm = c.create_vm(
            "py guest",
            vcpus=1,
            memory_mib=256,
            disk_gib=1,
            node=node,
            image=image,
            ip_pools=pools,
            hostname="py-guest",
            ssh_keys=KEYS[:2],
            recipes=[recipe],
        )
        assert vm.state == "running" and vm.hostname == "py-guest" and len(vm.nics) == 2
        addresses = [f"{a}/24" for a in vm.addresses]
        seen = ready(vm)
        assert seen["instance_id"] == vm.id and seen["hostname"] == "py-guest"
        assert seen["addresses"] == addresses
        assert seen["ssh_keys"] == [sha256(k) for k in KEYS[:2]]
        assert seen["scripts"] == [42] and seen["password"] is False

        assert vm.reinstall(image, ssh_keys=[KEYS[2]]).state == "succeeded"
        seen = ready(vm, skip=1)
        assert seen["instance_id"] == f"{vm.id}-1" and seen["ssh_keys"] == [sha256(KEYS[2])]
        assert seen["addresses"] == addresses and vm.addresses == [a.split("/")[0] for a in addresses]

        vm.stop()
        copy = vm.clone("py copy")
        assert copy.state == "running" and not set(copy.addresses) & set(vm.addresses)
        seen = ready(copy)
        assert seen["instance_id"] == copy.id and seen["addresses"] == [f"{a}/24" for a in copy.addresses]

        for v in (vm, copy):
            assert v.delete().state == "succeeded"
        for p in pools:
            assert list(c.leases(p)) == []
            c.delete_ip_pool(p)
        image.delete()
        c.delete_network(net)
        c.delete_node(node)
        domains, volumes = virsh("list", "--all", "--name"), virsh("vol-list", "vmm")
        for gone in (vm.id, copy.id, image.id):
            assert gone not in domains and gone not in volumes
        assert net.id not in virsh("net-list", "--all", "--name")


def test_bad_input_raises_typed_errors_and_changes_nothing(client, node, tmp_path):
    good = tmp_path / "good.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(good), "16M"], check=True)
    shadow = tmp_path / "shadow.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", str(shadow), "1M"], check=True)
    image = client.create_image("good", os_family="debian", path=str(good))
    assert image.state == "ready" and image.virtual_size_bytes == 16 << 20
    bad = client.create_image("shadow", os_family="debian")
    with pytest.raises(vmm.InvalidInputError) as e:
        bad.upload(str(shadow))
    assert "backing file" in e.value.message
    assert bad.refresh().state == "importing"
    with pytest.raises(vmm.InvalidInputError):
        client.create_image("far", os_family="debian", source_url="http://169.254.169.254/")

    net = client.create_network("lab", kind="managed")
    pool = client.create_ip_pool("p", "198.51.100.0/24", network=net)
    alpine = client.create_recipe("apk", os_families=["alpine"], script="true")
    base = dict(vcpus=1, memory_mib=128, disk_gib=1, node=node, image=image, ip_pools=[pool])
    cases = [
        (dict(hostname="Bad_Host"), vmm.InvalidInputError, "hostname"),
        (dict(ssh_keys=["ssh-ed25519 nope"]), vmm.InvalidInputError, "ssh_keys"),
        (dict(user_data="#!/bin/sh\n" + "x" * 70000), vmm.InvalidInputError, "user_data"),
        (dict(recipes=[alpine]), vmm.InvalidInputError, "recipe_ids"),
        (dict(image="0190a5b2-0000-7000-8000-00000000abcd"), vmm.NotFoundError, None),
    ]
    for change, error, field in cases:
        with pytest.raises(error) as e:
            client.create_vm("bad", **{**base, **change})
        if field:
            assert e.value.ids.get("field") == field, e.value.ids
    assert list(client.vms()) == [] and list(client.leases(pool)) == []
