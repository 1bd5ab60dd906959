//! The README's example: a node, a pool, a VM created, started and stopped, all in memory.

use vmm_core::{IpPoolSpec, NodeSpec, TaskState, VmSpec, VmState, Vmm};

fn main() -> Result<(), vmm_core::Error> {
    futures::executor::block_on(async {
        let vmm = Vmm::in_memory();
        let node =
            vmm.create_node(NodeSpec::new("node-1", "memory://node-1?cpus=8&memory_mib=32768")).await?;
        let pool = vmm
            .create_ip_pool(
                IpPoolSpec::new("public", "192.0.2.0/24").with_gateway("192.0.2.1".parse().unwrap()),
            )
            .await?;
        let spec = VmSpec { ip_pool_id: Some(pool.id), ..VmSpec::new("web-1", 2, 2048, 20) };
        let (vm, task) = vmm.create_vm(spec).await?;
        vmm.run_until_idle().await?;
        assert_eq!(vmm.get_task(task.id).await?.state, TaskState::Succeeded);
        let vm = vmm.get_vm(vm.id).await?;
        println!("{} is {} on {} with {:?}", vm.name, vm.state, node.name, vm.addresses);
        vmm.stop_vm(vm.id).await?;
        vmm.run_until_idle().await?;
        assert_eq!(vmm.get_vm(vm.id).await?.state, VmState::Stopped);
        let node = vmm.get_node(node.id).await?;
        println!("{} has {} VMs, {} vCPUs given out", node.name, node.allocated.vms, node.allocated.vcpus);
        Ok(())
    })
}
