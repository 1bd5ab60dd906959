//! The libvirt hypervisor against real libvirt: the test driver always, a real libvirtd
//! with real QEMU processes (`qemu:///system`, TCG) when run with `--include-ignored`.
#![cfg(feature = "libvirt")]

use std::sync::Arc;

use proptest::prelude::*;
use vmm_backends::libvirt::{LibvirtConfig, LibvirtConnector, LibvirtHypervisor};
use vmm_core::conformance::hypervisor as suite;
use vmm_core::{
    Connector, Hypervisor, IpPoolSpec, NodeSpec, PageRequest, TaskState, VirtType, Vm, VmId, VmSpec, VmState,
    Vmm,
};

fn test_config() -> LibvirtConfig {
    LibvirtConfig {
        storage_pool: "vmm-test".into(),
        storage_path: "/tmp/vmm-test-pool".into(),
        network: None,
    }
}

/// The system node's pool lives where libvirtd (root) may write.
fn system_config() -> LibvirtConfig {
    LibvirtConfig {
        storage_pool: "vmm-ci".into(),
        storage_path: "/var/lib/vmm/ci-images".into(),
        network: None,
    }
}

async fn test_driver() -> LibvirtHypervisor {
    LibvirtHypervisor::connect("test:///default", VirtType::Qemu, test_config())
        .await
        .expect("test:///default")
}

#[tokio::test(flavor = "multi_thread")]
async fn test_driver_passes_the_hypervisor_suite() {
    let hv = test_driver().await;
    suite::run(&hv, VirtType::Qemu).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libvirtd with QEMU (qemu:///system); CI runs it"]
async fn qemu_system_passes_the_hypervisor_suite_with_real_qemu() {
    let hv = LibvirtHypervisor::connect("qemu:///system", VirtType::Qemu, system_config()).await.unwrap();
    suite::run(&hv, VirtType::Qemu).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libvirtd with QEMU (qemu:///system); CI runs it"]
async fn on_a_real_node_the_volume_file_lives_and_dies_with_the_vm() {
    let connector = Arc::new(LibvirtConnector::new(system_config()));
    let vmm = Vmm::builder().with_connector(connector.clone()).build();
    let node = vmm
        .add_node(NodeSpec::new("local", "qemu:///system").with_virt_type(VirtType::Qemu))
        .await
        .expect("add qemu:///system");
    let hv = LibvirtHypervisor::connect("qemu:///system", VirtType::Qemu, system_config()).await.unwrap();
    let spec = VmSpec { node_id: Some(node.id), ..VmSpec::new("real <qemu>", 1, 128, 1) };
    let (vm, task) = vmm.create_vm(spec).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    let task = vmm.get_task(task.id).await.unwrap();
    assert_eq!(task.state, TaskState::Succeeded, "{:?}", task.error);
    let path = hv.volume_path(vm.id).await.unwrap().expect("a volume");
    assert!(std::path::Path::new(&path).is_file(), "{path} exists while the VM lives");
    let running = hv.domain(vm.id).await.unwrap().unwrap();
    assert_eq!((running.state, running.title.as_str()), (vmm_core::PowerState::Running, "real <qemu>"));
    let del = vmm.delete_vm(vm.id).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    assert_eq!(vmm.get_task(del.id).await.unwrap().state, TaskState::Succeeded);
    assert!(!std::path::Path::new(&path).exists(), "{path} is gone after delete");
    assert!(hv.domain(vm.id).await.unwrap().is_none());
    vmm.remove_node(node.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_lives_on_the_test_driver_through_vmm() {
    let vmm = Vmm::builder().with_connector(Arc::new(LibvirtConnector::new(test_config()))).build();
    let node = vmm.add_node(NodeSpec::new("test", "test:///default")).await.unwrap();
    assert!(node.capacity.cpus > 0);
    let pool = vmm.create_ip_pool(IpPoolSpec::new("p", "192.0.2.0/24")).await.unwrap();
    let (vm, _) =
        vmm.create_vm(VmSpec { ip_pool_id: Some(pool.id), ..VmSpec::new("t1", 1, 128, 1) }).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    assert_eq!(vmm.get_vm(vm.id).await.unwrap().state, VmState::Running);
    for action in [vmm_core::VmAction::Suspend, vmm_core::VmAction::Resume, vmm_core::VmAction::Stop] {
        let id = vmm.act(vm.id, action).await.unwrap().id;
        vmm.run_until_idle().await.unwrap();
        let t = vmm.get_task(id).await.unwrap();
        assert_eq!(t.state, TaskState::Succeeded, "{:?}", t.error);
    }
    let del = vmm.delete_vm(vm.id).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    assert_eq!(vmm.get_task(del.id).await.unwrap().state, TaskState::Succeeded);
    let page: vmm_core::Page<Vm> = vmm.list_vms(&PageRequest::default()).await.unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_refuses_what_it_does_not_serve() {
    let c = LibvirtConnector::new(test_config());
    for bad in ["ftp://x", "xen:///system", "nonsense"] {
        assert!(matches!(c.connect(bad, VirtType::Kvm).await, Err(vmm_core::Error::Invalid { .. })), "{bad}");
    }
    assert!(c.connect("memory://m1", VirtType::Kvm).await.is_ok());
    let unreachable = c.connect("qemu+tcp://127.0.0.1:1/system", VirtType::Kvm).await;
    assert!(matches!(unreachable, Err(vmm_core::Error::Unavailable { .. })), "{unreachable:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any name either comes back from libvirt byte for byte in the domain's title, or is
    /// refused by validation before anything is defined.
    #[test]
    fn any_name_round_trips_through_libvirt_or_is_refused(
        name in prop_oneof![
            ".{0,40}",
            "[<>&'\"\\]\\[ ]{1,20}",
            Just("]]>".to_string()),
            "\\PC{1,200}",
            "[\\x00-\\x1f\\x7f\\u{fffe}\\u{ffff}a]{1,8}",
        ]
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let hv = test_driver().await;
            let vm = VmId::new();
            match vmm_core::vm::validate_name(&name) {
                Err(e) => {
                    let invalid = matches!(e, vmm_core::Error::Invalid { .. });
                    prop_assert!(invalid, "{e:?}");
                    prop_assert!(hv.domain(vm).await.unwrap().is_none());
                }
                Ok(()) => {
                    hv.create_volume(vm, 1).await.unwrap();
                    let spec = suite::spec(vm, &name, VirtType::Qemu);
                    let defined = hv.define_domain(&spec).await;
                    let title = hv.domain(vm).await.unwrap().map(|d| d.title);
                    if defined.is_ok() {
                        hv.undefine_domain(vm).await.unwrap();
                    }
                    hv.delete_volume(vm).await.unwrap();
                    prop_assert!(defined.is_ok(), "{name:?}: {defined:?}");
                    prop_assert_eq!(title.as_deref(), Some(name.as_str()));
                }
            }
            Ok(())
        })?;
    }
}
