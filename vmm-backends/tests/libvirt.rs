//! The libvirt hypervisor against real libvirt: the test driver always, a real libvirtd
//! with real QEMU processes (`qemu:///system`, TCG) when run with `--include-ignored`.
#![cfg(feature = "libvirt")]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use vmm_backends::libvirt::{Deadlines, LibvirtConfig, LibvirtConnector, LibvirtHypervisor};
use vmm_core::conformance::hypervisor as suite;
use vmm_core::reconcile::ObservedState;
use vmm_core::{
    Connector, Hypervisor, IpPoolSpec, NodeSpec, NodeUriPolicy, PageRequest, PowerAction, TaskState,
    VirtType, Vm, VmId, VmSpec, VmState, Vmm, VmmConfig,
};

fn test_config() -> LibvirtConfig {
    LibvirtConfig {
        storage_pool: "vmm-test".into(),
        storage_path: "/tmp/vmm-test-pool".into(),
        ..LibvirtConfig::default()
    }
}

/// The system node's pool lives where libvirtd (root) may write.
fn system_config() -> LibvirtConfig {
    LibvirtConfig {
        storage_pool: "vmm-ci".into(),
        storage_path: "/var/lib/vmm/ci-images".into(),
        // The suite's guests have no OS, which never releases an unplugged NIC.
        deadlines: Deadlines { unplug: Duration::from_secs(2), ..Deadlines::default() },
        ..LibvirtConfig::default()
    }
}

/// A service over libvirt that accepts test nodes.
fn vmm_on(config: LibvirtConfig) -> Vmm {
    let config_vmm = VmmConfig { node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    Vmm::builder().with_connector(Arc::new(LibvirtConnector::new(config))).with_config(config_vmm).build()
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
    let vmm = vmm_on(system_config());
    let node = vmm
        .create_node(NodeSpec::new("local", "qemu:///system").with_virt_type(VirtType::Qemu))
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
    let del = vmm.get_task(del.id).await.unwrap();
    assert_eq!(del.state, TaskState::Succeeded, "{:?}", del.error);
    assert!(!std::path::Path::new(&path).exists(), "{path} is gone after delete");
    assert!(hv.domain(vm.id).await.unwrap().is_none());
    vmm.delete_node(node.id).await.unwrap();
}

/// libvirt refuses to refresh a pool while a volume is being built or copied in it, and only
/// a refresh shows libvirt the console logs virtlogd writes: reading and deleting a VM's
/// console log on a node busy installing another VM waits for the copy instead of failing
/// (CI once failed a VM's delete this way, with the hypervisor suite copying beside it).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libvirtd with QEMU (qemu:///system); CI runs it"]
async fn console_logs_are_read_and_deleted_while_the_pool_copies_a_volume() {
    let config = system_config();
    let hv = LibvirtHypervisor::connect("qemu:///system", VirtType::Qemu, config.clone()).await.unwrap();
    let vm = VmId::new();
    // A log libvirt has not seen, as virtlogd leaves it, plus one rotated copy.
    let log = std::path::Path::new(&config.storage_path).join(vm.console_log_name());
    let rotated = log.with_extension("log.0");
    std::fs::write(&log, b"booting\nlogin: ").unwrap();
    std::fs::write(&rotated, b"older").unwrap();

    let conn = virt::connect::Connect::open(Some("qemu:///system")).unwrap();
    let pool = conn.lookup_storage_pool_by_name(&config.storage_pool).unwrap();
    let raw = |name: &str, gib: u64| {
        format!("<volume><name>{name}</name><capacity unit='G'>{gib}</capacity><allocation>0</allocation><target><format type='raw'/></target></volume>")
    };
    // Copying 8 GiB of holes keeps the pool busy for a second or more (1 GiB took 0.2 s);
    // should a copy end before the pool was seen busy, a larger one is tried.
    let mut tried = Vec::new();
    let mut copying = None;
    for gib in [8, 32, 128] {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let (source, copy) = (format!("vmm-busy-{tag}-src.raw"), format!("vmm-busy-{tag}-copy.raw"));
        let src = virt::storage_vol::StorageVol::create_xml(&pool, &raw(&source, gib), 0).unwrap();
        tried.extend([source, copy.clone()]);
        let thread = std::thread::spawn({
            let (pool, xml) = (pool.clone(), raw(&copy, gib));
            move || virt::storage_vol::StorageVol::create_xml_from(&pool, &xml, &src, 0).map(|_| ())
        });
        while pool.lookup_storage_vol_by_name(&copy).is_err() && !thread.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        match pool.refresh(0) {
            Err(busy) => {
                assert!(busy.message().contains("asynchronous jobs"), "{busy}");
                copying = Some(thread);
                break;
            }
            Ok(()) => thread.join().unwrap().unwrap(),
        }
    }
    let copying = copying.expect("a copy kept the pool busy long enough to be seen");

    let tail = hv.console_log(vm, 7).await.expect("read while the pool copies");
    assert_eq!(tail, b"login: ");
    hv.delete_console_log(vm).await.expect("delete while the pool copies");
    assert!(!log.exists() && !rotated.exists(), "both logs are gone");

    copying.join().unwrap().unwrap();
    for name in &tried {
        pool.lookup_storage_vol_by_name(name).unwrap().delete(0).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_lives_on_the_test_driver_through_vmm() {
    let vmm = vmm_on(test_config());
    let node = vmm.create_node(NodeSpec::new("test", "test:///default")).await.unwrap();
    assert!(node.capacity.cpus > 0);
    let pool = vmm.create_ip_pool(IpPoolSpec::new("p", "192.0.2.0/24")).await.unwrap();
    let (vm, _) =
        vmm.create_vm(VmSpec { ip_pool_id: Some(pool.id), ..VmSpec::new("t1", 1, 128, 1) }).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    assert_eq!(vmm.get_vm(vm.id).await.unwrap().state, VmState::Running);
    for action in [PowerAction::Suspend, PowerAction::Resume, PowerAction::Stop] {
        let id = vmm.power_vm(vm.id, action).await.unwrap().id;
        vmm.run_until_idle().await.unwrap();
        let t = vmm.get_task(id).await.unwrap();
        assert_eq!(t.state, TaskState::Succeeded, "{:?}", t.error);
    }
    let del = vmm.delete_vm(vm.id).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    assert_eq!(vmm.get_task(del.id).await.unwrap().state, TaskState::Succeeded);
    let page: vmm_core::Page<Vm> =
        vmm.list_vms(&vmm_core::VmFilter::default(), &PageRequest::default()).await.unwrap();
    assert!(page.items.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_refuses_what_it_does_not_serve() {
    let c = LibvirtConnector::new(test_config());
    for bad in ["ftp://x", "xen:///system", "nonsense", "test:///etc/passwd", "qemu:///embed?root=/tmp/x"] {
        assert!(matches!(c.connect(bad, VirtType::Kvm).await, Err(vmm_core::Error::Invalid { .. })), "{bad}");
    }
    assert!(c.connect("memory://m1", VirtType::Kvm).await.is_ok());
    let hv = c.connect("qemu+tcp://127.0.0.1:1/system", VirtType::Kvm).await.unwrap();
    match hv.node_info().await {
        Err(vmm_core::Error::Unavailable { reason, .. }) => {
            assert_eq!(reason, "cannot connect to the node", "vmm's words, not libvirt's");
        }
        other => panic!("{other:?}"),
    }
}

/// A node URI that would make libvirt run a program is refused before libvirt sees it:
/// the program never runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_uri_never_runs_a_program() {
    let dir = std::env::temp_dir().join(format!("vmm-uri-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("ran");
    let script = dir.join("p.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hostile = [
        format!("qemu+ssh://u@example.invalid/system?command={}", script.display()),
        format!("qemu+ssh://u@example.invalid/system?netcat={}", script.display()),
        format!("qemu+ssh://u@example.invalid/system?proxy={}", script.display()),
        "qemu:///system?socket=/any/path".to_owned(),
    ];
    let vmm = vmm_on(test_config());
    for uri in &hostile {
        let got = vmm.create_node(NodeSpec::new("evil", uri)).await;
        assert!(
            matches!(got, Err(vmm_core::Error::Invalid { ref field, .. }) if field == "uri"),
            "{uri}: {got:?}"
        );
        let direct = LibvirtConnector::new(test_config()).connect(uri, VirtType::Kvm).await;
        assert!(direct.is_err(), "{uri}");
    }
    assert!(!marker.exists(), "a node URI ran a program");
    std::fs::remove_dir_all(dir).ok();
}

/// A loopback listener that accepts connections and never answers.
fn tarpit() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn short_deadlines() -> LibvirtConfig {
    let mut config = test_config();
    config.deadlines.connect = std::time::Duration::from_millis(800);
    config.deadlines.call = std::time::Duration::from_secs(2);
    config
}

/// A node that accepts TCP and never answers fails its own calls within the connect
/// deadline, fails them at once while it stays silent, and holds up nobody else.
#[tokio::test(flavor = "multi_thread")]
async fn a_tarpit_node_fails_fast_and_stalls_nobody_else() {
    let (_listener, port) = tarpit();
    let c = Arc::new(LibvirtConnector::new(short_deadlines()));
    let silent = c.connect(&format!("qemu+tcp://127.0.0.1:{port}/system"), VirtType::Qemu).await.unwrap();
    let test = c.connect("test:///default", VirtType::Qemu).await.unwrap();
    let hung = tokio::spawn({
        let silent = silent.clone();
        async move { silent.node_info().await }
    });
    // Meanwhile another node answers, through the same connector.
    let info = tokio::time::timeout(std::time::Duration::from_secs(10), test.node_info()).await;
    assert!(matches!(info, Ok(Ok(_))), "{info:?}");
    let first =
        tokio::time::timeout(std::time::Duration::from_secs(10), hung).await.expect("the deadline held");
    assert!(matches!(first.unwrap(), Err(vmm_core::Error::Unavailable { .. })));
    // While the first attempt still hangs, further calls fail at once instead of piling up.
    for _ in 0..20 {
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), silent.domain(VmId::new())).await;
        assert!(matches!(again, Ok(Err(vmm_core::Error::Unavailable { .. }))), "{again:?}");
    }
    // A URI connected later is not held up by the tarpit either.
    let other = c.connect("qemu+tcp://127.0.0.1:1/system", VirtType::Qemu).await.unwrap();
    assert!(matches!(other.node_info().await, Err(vmm_core::Error::Unavailable { .. })));
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

/// A domain destroyed behind vmm's back (as `virsh destroy` does, on a connection of its
/// own) is seen through the node's lifecycle events: the reconciler's interval is an hour.
#[tokio::test(flavor = "multi_thread")]
async fn a_domain_destroyed_behind_vmms_back_is_seen_through_lifecycle_events() {
    let vmm = vmm_on(test_config());
    vmm.create_node(NodeSpec::new("test", "test:///default")).await.unwrap();
    let (vm, _) = vmm.create_vm(VmSpec::new("watched", 1, 128, 1)).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reconciler = tokio::spawn({
        let vmm = vmm.clone();
        async move {
            vmm.run_reconciler(Duration::from_secs(3600), async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let observed = |want: ObservedState| {
        let vmm = vmm.clone();
        async move {
            for _ in 0..200 {
                if vmm.get_vm(vm.id).await.unwrap().observed_state == Some(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("never observed {want:?}");
        }
    };
    observed(ObservedState::Running).await;
    tokio::task::spawn_blocking(move || {
        let conn = virt::connect::Connect::open(Some("test:///default")).unwrap();
        conn.lookup_domain_by_name(&vm.id.domain_name()).unwrap().destroy().unwrap();
    })
    .await
    .unwrap();
    observed(ObservedState::Stopped).await;
    stop.send(()).unwrap();
    reconciler.await.unwrap();
    vmm.power_vm(vm.id, PowerAction::Stop).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    let del = vmm.delete_vm(vm.id).await.unwrap();
    vmm.run_until_idle().await.unwrap();
    assert_eq!(vmm.get_task(del.id).await.unwrap().state, TaskState::Succeeded);
}
