"""A short scenario with a client generated from openapi.json by openapi-python-client,
against a real vmmd: the document is good enough for a generator, and the generated
types read the server's answers (every answer is parsed into its model).

    python .ci/openapi-client.py BASE_URL TOKEN   # with vmm_client (generated) installed
"""

import sys
import uuid

from vmm_client import AuthenticatedClient
from vmm_client.api.nodes import list_nodes
from vmm_client.api.tasks import wait_task
from vmm_client.api.vms import create_vm, delete_vm, get_vm, list_vms, run_vm_action
from vmm_client.models import PageNode, PageVm, PowerAction, Problem, Task, TaskState, Vm, VmAccepted, VmSpec, VmState

base, token = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)


def done(task_id: uuid.UUID) -> Task:
    while True:
        task = wait_task.sync(task_id, client=client, timeout_s=30)
        assert isinstance(task, Task), task
        if task.state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED):
            return task


nodes = list_nodes.sync(client=client)
assert isinstance(nodes, PageNode) and nodes.items, nodes
node = next(n for n in nodes.items if n.name == "test")
name = f"generated-{uuid.uuid4().hex[:8]}"
made = create_vm.sync(client=client, body=VmSpec(name=name, vcpus=1, memory_mib=128, disk_gib=1, node_id=node.id))
assert isinstance(made, VmAccepted), made
assert done(made.task.id).state == TaskState.SUCCEEDED
page = list_vms.sync(client=client, name=name, state=VmState.RUNNING, node_id=node.id)
assert isinstance(page, PageVm) and [vm.id for vm in page.items] == [made.vm.id], page
stop = run_vm_action.sync(made.vm.id, PowerAction.STOP, client=client)
assert not isinstance(stop, Problem) and stop is not None, stop
assert done(stop.task.id).state == TaskState.SUCCEEDED
vm = get_vm.sync(made.vm.id, client=client)
assert isinstance(vm, Vm) and vm.state == VmState.STOPPED, vm
missing = get_vm.sync(uuid.uuid4(), client=client)
assert isinstance(missing, Problem) and missing.code == "vm_not_found" and missing.status == 404, missing
gone = delete_vm.sync(made.vm.id, client=client)
assert not isinstance(gone, Problem) and gone is not None, gone
assert done(gone.task.id).state == TaskState.SUCCEEDED
print(f"generated client: ok ({name} created, listed, stopped and deleted)")
