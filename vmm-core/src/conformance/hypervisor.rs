//! The [`Hypervisor`](crate::Hypervisor) suite. It works on a live node, so each check makes
//! its own VM ids and removes what it made.

use std::io::Cursor;

use crate::network::{NetworkKind, NetworkSpec};
use crate::{
    DomainSpec, Error, Hypervisor, ImageFormat, ImageId, Network, NicNetwork, NicSpec, PowerState, VirtType,
    VmId,
};

/// A domain spec for `vm` titled `title`: 1 vCPU, 128 MiB.
pub fn spec(vm: VmId, title: &str, virt_type: VirtType) -> DomainSpec {
    DomainSpec {
        vm_id: vm,
        title: title.to_owned(),
        vcpus: 1,
        memory_mib: 128,
        virt_type,
        nics: vec![NicSpec { mac: vm.nic_mac(0), network: NicNetwork::User }],
        addresses: vec!["192.0.2.10".parse().expect("address")],
        seed: false,
    }
}

/// Runs every check.
pub async fn run(hv: &dyn Hypervisor, virt_type: VirtType) {
    node_info(hv).await;
    lifecycle(hv, virt_type).await;
    unknown_domains(hv).await;
    titles_round_trip(hv, virt_type).await;
    images_disks_and_seeds(hv, virt_type).await;
}

/// The node reports some capacity.
pub async fn node_info(hv: &dyn Hypervisor) {
    let info = hv.node_info().await.expect("node_info");
    assert!(info.capacity.cpus > 0 && info.capacity.memory_mib > 0, "{info:?}");
}

/// Volume, define, every power action the node supports, redefine, undefine, delete.
pub async fn lifecycle(hv: &dyn Hypervisor, virt_type: VirtType) {
    let caps = hv.capabilities();
    let vm = VmId::new();
    let vol = hv.create_volume(vm, 1).await.expect("create_volume");
    assert_eq!((vol.name.as_str(), vol.capacity_gib), (vm.volume_name().as_str(), 1));
    assert!(matches!(hv.create_volume(vm, 1).await, Err(Error::Conflict { .. })), "volume twice");
    assert_eq!(hv.volume(vm).await.unwrap().map(|v| v.capacity_gib), Some(1));
    hv.define_domain(&spec(vm, "lifecycle", virt_type)).await.expect("define");
    let d = hv.domain(vm).await.unwrap().expect("defined domain");
    assert_eq!(
        (d.state, d.title.as_str(), d.vcpus, d.memory_mib),
        (PowerState::Shutoff, "lifecycle", 1, 128)
    );
    assert!(hv.list_domains().await.unwrap().iter().any(|d| d.vm_id == vm));
    hv.start(vm).await.expect("start");
    assert_eq!(hv.domain(vm).await.unwrap().unwrap().state, PowerState::Running);
    if caps.suspend {
        hv.suspend(vm).await.expect("suspend");
        assert_eq!(hv.domain(vm).await.unwrap().unwrap().state, PowerState::Paused);
        hv.resume(vm).await.expect("resume");
        assert_eq!(hv.domain(vm).await.unwrap().unwrap().state, PowerState::Running);
    } else {
        assert!(matches!(hv.suspend(vm).await, Err(Error::Unsupported { .. })));
    }
    if caps.reboot {
        hv.reboot(vm).await.expect("reboot");
    } else {
        assert!(matches!(hv.reboot(vm).await, Err(Error::Unsupported { .. })));
    }
    assert!(hv.undefine_domain(vm).await.is_err(), "undefining a running domain");
    hv.stop(vm).await.expect("stop");
    assert_eq!(hv.domain(vm).await.unwrap().unwrap().state, PowerState::Shutoff);
    let mut bigger = spec(vm, "renamed", virt_type);
    bigger.vcpus = 2;
    bigger.memory_mib = 256;
    hv.define_domain(&bigger).await.expect("redefine");
    let d = hv.domain(vm).await.unwrap().unwrap();
    assert_eq!((d.title.as_str(), d.vcpus, d.memory_mib), ("renamed", 2, 256));
    if caps.resize_volume {
        hv.resize_volume(vm, 2).await.expect("resize_volume");
        assert_eq!(hv.volume(vm).await.unwrap().map(|v| v.capacity_gib), Some(2));
    }
    hv.undefine_domain(vm).await.expect("undefine");
    assert!(hv.domain(vm).await.unwrap().is_none());
    hv.delete_volume(vm).await.expect("delete_volume");
    assert!(hv.volume(vm).await.unwrap().is_none());
    hv.delete_console_log(vm).await.expect("delete_console_log");
}

/// Calls on a domain that does not exist say so.
pub async fn unknown_domains(hv: &dyn Hypervisor) {
    let vm = VmId::new();
    assert!(hv.domain(vm).await.unwrap().is_none());
    assert!(hv.volume(vm).await.unwrap().is_none());
    assert!(matches!(hv.start(vm).await, Err(Error::VmNotFound { id }) if id == vm));
    assert!(matches!(hv.undefine_domain(vm).await, Err(Error::VmNotFound { .. })));
    assert!(matches!(hv.delete_volume(vm).await, Err(Error::VmNotFound { .. })));
}

/// Titles with markup, quotes and unicode come back byte for byte.
pub async fn titles_round_trip(hv: &dyn Hypervisor, virt_type: VirtType) {
    for title in ["<b>&amp;</b>", "it's \"quoted\"", "]]> <!-- -->", "Ünïcødé 仮想マシン 🚀"] {
        let vm = VmId::new();
        hv.create_volume(vm, 1).await.expect("create_volume");
        let defined = hv.define_domain(&spec(vm, title, virt_type)).await;
        let got = hv.domain(vm).await.unwrap().map(|d| d.title);
        if defined.is_ok() {
            hv.undefine_domain(vm).await.expect("undefine");
        }
        hv.delete_volume(vm).await.expect("delete_volume");
        defined.expect("define");
        assert_eq!(got.as_deref(), Some(title));
    }
}

/// A raw image of `len` bytes with a pattern in it.
fn raw_image(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Images reach the node whole or not at all; disks are made from them and copied; the
/// disk kept aside during a reinstall comes back; seeds, console logs and managed networks
/// come and go; NICs plug into running domains where the node can.
pub async fn images_disks_and_seeds(hv: &dyn Hypervisor, virt_type: VirtType) {
    let caps = hv.capabilities();
    let image = ImageId::new();
    let data = raw_image(1 << 20);
    let len = data.len() as u64;
    let upload = |bytes: Vec<u8>| hv.upload_image(image, ImageFormat::Raw, Box::new(Cursor::new(bytes)), len);
    if !caps.images {
        assert!(matches!(upload(data).await, Err(Error::Unsupported { .. })));
        return;
    }
    assert!(upload(data[..1000].to_vec()).await.is_err(), "a short upload");
    assert!(!hv.has_image(image, ImageFormat::Raw).await.unwrap(), "a short upload leaves nothing");
    upload(data.clone()).await.expect("upload_image");
    upload(data).await.expect("upload_image replaces");
    assert!(hv.has_image(image, ImageFormat::Raw).await.unwrap());

    let vm = VmId::new();
    let disk =
        hv.create_volume_from_image(vm, image, ImageFormat::Raw, 2).await.expect("create_volume_from_image");
    assert_eq!(disk.capacity_gib, 2, "grown to the size asked for");
    assert_eq!(hv.volume(vm).await.unwrap().map(|v| v.capacity_gib), Some(2));
    assert!(
        matches!(
            hv.create_volume_from_image(vm, image, ImageFormat::Raw, 2).await,
            Err(Error::Conflict { .. })
        ),
        "a disk twice"
    );
    let clone = VmId::new();
    assert_eq!(hv.copy_volume(vm, clone).await.expect("copy_volume").capacity_gib, 2);
    hv.save_previous_volume(vm).await.expect("save_previous_volume");
    hv.delete_volume(vm).await.unwrap();
    hv.restore_previous_volume(vm).await.expect("restore_previous_volume");
    assert_eq!(hv.volume(vm).await.unwrap().map(|v| v.capacity_gib), Some(2));
    assert!(
        matches!(hv.restore_previous_volume(vm).await, Err(Error::Conflict { .. })),
        "nothing kept aside"
    );
    hv.delete_previous_volume(vm).await.expect("deleting nothing");

    let spec = NetworkSpec {
        name: "conformance".into(),
        kind: NetworkKind::Managed,
        bridge: None,
        cidr: None,
        vlan: None,
        node_ids: vec![],
    };
    let network = Network::from_spec(&spec, chrono::Utc::now()).unwrap();
    hv.ensure_network(&network).await.expect("ensure_network");
    hv.ensure_network(&network).await.expect("ensure_network again");
    hv.write_seed(vm, raw_image(64 << 10)).await.expect("write_seed");
    hv.write_seed(vm, raw_image(32 << 10)).await.expect("write_seed replaces");
    let nic = |i| NicSpec { mac: vm.nic_mac(i), network: NicNetwork::Network(network.libvirt_name()) };
    let domain = DomainSpec { nics: vec![nic(0)], seed: true, ..self::spec(vm, "from an image", virt_type) };
    hv.define_domain(&domain).await.expect("define with a seed and a managed network");
    hv.start(vm).await.expect("start");
    if caps.hotplug {
        hv.attach_nic(vm, &nic(1)).await.expect("attach_nic");
        hv.attach_nic(vm, &nic(1)).await.expect("attach_nic again (a retried step)");
        match hv.detach_nic(vm, &nic(1)).await {
            Ok(()) => hv.detach_nic(vm, &nic(1)).await.expect("detach_nic again"),
            // A guest with no OS never lets go of the device: the NIC stays, and saying
            // so is right (the step fails and is undone).
            Err(Error::Conflict { reason }) if reason.contains("did not release") => {}
            Err(e) => panic!("detach_nic: {e:?}"),
        }
    }
    if caps.console_log {
        hv.console_log(vm, 4096).await.expect("console_log");
    }
    hv.stop(vm).await.unwrap();
    hv.undefine_domain(vm).await.unwrap();
    for v in [vm, clone] {
        hv.delete_volume(v).await.unwrap();
    }
    hv.delete_seed(vm).await.expect("delete_seed");
    hv.delete_seed(vm).await.expect("delete_seed again");
    hv.delete_console_log(vm).await.expect("delete_console_log");
    hv.delete_image(image, ImageFormat::Raw).await.expect("delete_image");
    hv.delete_image(image, ImageFormat::Raw).await.expect("delete_image again");
    assert!(!hv.has_image(image, ImageFormat::Raw).await.unwrap());
    hv.remove_network(&network).await.expect("remove_network");
    hv.remove_network(&network).await.expect("remove_network again");
}
