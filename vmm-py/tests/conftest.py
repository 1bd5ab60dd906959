import os
import shutil
import uuid

import pytest

import vmm


@pytest.fixture
def database(tmp_path):
    return f"sqlite://{tmp_path / 'vmm.db'}"


@pytest.fixture
def client(database):
    with vmm.Client.open(database=database, test_nodes=True) as c:
        yield c


@pytest.fixture
def node(client):
    # test:///default is shared by the whole process; its pool lives in a temp dir.
    return client.create_node(f"lab-{uuid.uuid4().hex[:8]}", "test:///default", virt_type="qemu")


@pytest.fixture
def pool(client):
    return client.create_ip_pool("public", "192.0.2.0/24", gateway="192.0.2.1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("VMM_TEST_QEMU") == "1" or shutil.which("virsh") is None:
        return
    skip = pytest.mark.skip(reason="set VMM_TEST_QEMU=1 to run against qemu:///system")
    for item in items:
        if "qemu" in item.keywords:
            item.add_marker(skip)
