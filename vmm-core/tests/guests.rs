//! VMs installed from images on the in-memory fakes: a failure injected at each step of an
//! install, a reinstall, a clone and an address change is undone with nothing left behind
//! (no domain, volume, seed, lease, partial image copy); an image is not deleted under an
//! install; a reinstall resumed after its worker died finishes the job.

use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use vmm_core::guest::read_seed;
use vmm_core::memory::{HypervisorCall, InMemoryConnector, InMemoryHypervisor, InMemoryStore};
use vmm_core::network::{NetworkKind, NetworkSpec};
use vmm_core::{
    Actor, AddressSpec, AuthSource, CloneSpec, Error, Image, ImageFormat, ImageSpec, IpPool, IpPoolSpec,
    ManualClock, NodeSpec, NodeUriPolicy, OsInfo, PageRequest, Quota, ReinstallSpec, Role, Secret,
    SshKeySpec, TaskFilter, TaskState, TaskStore, UserSpec, VmId, VmSpec, VmState, VmStore, Vmm, VmmConfig,
};

const NODE_URI: &str = "memory://g1?cpus=8&memory_mib=16384&storage_gib=200";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz5Q2d5kq2xqk0fZ7J3o1n9Zr1v3p6yX7mWcJmQqG7A alice@example";
const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0sR3Ugb5pJm1vWcJc5jJ7p1b9n2kqzXc0Jm8c1y4Yb bob@example";

struct Fixture {
    vmm: Vmm,
    store: Arc<InMemoryStore>,
    clock: Arc<ManualClock>,
    hv: Arc<InMemoryHypervisor>,
    pools: [IpPool; 2],
    image: Image,
}

/// A qcow2 header of 1 GiB.
fn qcow2() -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    h
}

async fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let store = Arc::new(InMemoryStore::with_clock(clock.clone()));
    let connector = Arc::new(InMemoryConnector::new());
    let config =
        VmmConfig { worker_id: "w".into(), node_uris: NodeUriPolicy::for_tests(), ..VmmConfig::default() };
    let vmm = Vmm::builder()
        .with_store(store.clone())
        .with_connector(connector.clone())
        .with_clock(clock.clone())
        .with_config(config)
        .build();
    vmm.create_node(NodeSpec::new("g1", NODE_URI)).await.unwrap();
    let hv = connector.get(NODE_URI).unwrap();
    let network = vmm.create_network(managed("lab", vec![])).await.unwrap();
    let mut pools = Vec::new();
    for (name, cidr) in [("a", "198.51.100.0/28"), ("b", "203.0.113.0/28")] {
        let spec = IpPoolSpec::new(name, cidr).on_network(network.id);
        pools.push(vmm.create_ip_pool(spec).await.unwrap());
    }
    let spec = ImageSpec {
        name: "deb".into(),
        os: OsInfo { family: "debian".into(), version: "12".into() },
        format: ImageFormat::Qcow2,
        min_disk_gib: None,
        source_url: None,
    };
    let (image, _) = vmm.create_image(spec).await.unwrap();
    let image = vmm.upload_image(image.id, Box::new(std::io::Cursor::new(qcow2()))).await.unwrap();
    Fixture { vmm, store, clock, hv, pools: pools.try_into().unwrap(), image }
}

impl Fixture {
    fn spec(&self) -> VmSpec {
        VmSpec {
            image_id: Some(self.image.id),
            ip_pool_ids: self.pools.iter().map(|p| p.id).collect(),
            hostname: Some("web-1".into()),
            ssh_keys: vec![KEY.into()],
            ..VmSpec::new("web 1", 1, 1024, 2)
        }
    }

    async fn leases(&self) -> usize {
        let mut n = 0;
        for p in &self.pools {
            n += self.vmm.list_leases(p.id, &PageRequest::default()).await.unwrap().items.len();
        }
        n
    }

    async fn active_tasks(&self) -> usize {
        let mut n = 0;
        for state in [TaskState::Queued, TaskState::Running] {
            let filter = TaskFilter { state: Some(state), ..TaskFilter::default() };
            n += self.vmm.list_tasks(&filter, &PageRequest::default()).await.unwrap().items.len();
        }
        n
    }

    /// A VM installed from the image, running.
    async fn installed(&self) -> VmId {
        let (vm, task) = self.vmm.create_vm(self.spec()).await.unwrap();
        self.vmm.run_until_idle().await.unwrap();
        assert_eq!(self.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        vm.id
    }

    /// A reinstall from the fixture's image, with these hostname and keys and nothing else.
    fn reinstall(&self, hostname: Option<&str>, ssh_keys: &[&str]) -> ReinstallSpec {
        ReinstallSpec {
            image_id: self.image.id,
            hostname: hostname.map(str::to_owned),
            password: None,
            ssh_keys: ssh_keys.iter().map(|k| (*k).to_owned()).collect(),
            ssh_key_ids: vec![],
            user_data: None,
            recipe_ids: vec![],
        }
    }

    fn seed(&self, vm: VmId) -> vmm_core::guest::SeedFiles {
        read_seed(&self.hv.seed(vm).expect("a seed")).unwrap()
    }
}

#[test]
fn a_failure_at_any_install_step_leaves_nothing_behind() {
    let steps = [
        HypervisorCall::EnsureNetwork,
        HypervisorCall::UploadImage,
        HypervisorCall::CreateVolumeFromImage,
        HypervisorCall::WriteSeed,
        HypervisorCall::DefineDomain,
        HypervisorCall::Start,
    ];
    for step in steps {
        block_on(async {
            let f = fixture().await;
            f.hv.fail_next(step);
            let (vm, task) = f.vmm.create_vm(f.spec()).await.unwrap();
            assert_eq!(f.leases().await, 2, "two addresses taken with the task");
            f.vmm.run_until_idle().await.unwrap();
            let task = f.vmm.get_task(task.id).await.unwrap();
            assert_eq!(task.state, TaskState::Failed, "{step:?}");
            assert!(f.hv.calls().contains(&step), "{step:?} was reached");
            assert!(matches!(f.vmm.get_vm(vm.id).await, Err(Error::VmNotFound { .. })));
            assert_eq!(
                (f.hv.domain_count(), f.hv.volume_count()),
                (0, 0),
                "{step:?}: a domain or volume was left"
            );
            assert_eq!(f.hv.leftovers(), 0, "{step:?}: a seed or console log was left");
            assert_eq!(f.leases().await, 0, "{step:?}: a lease was left");
            assert_eq!(f.active_tasks().await, 0);
            if step == HypervisorCall::UploadImage {
                assert!(f.hv.images().is_empty(), "no partial copy of the image stays on the node");
            }
            // The next install works, and reuses the node's copy when it has one.
            let (uploads, cached) = (f.hv.count(HypervisorCall::UploadImage), !f.hv.images().is_empty());
            f.installed().await;
            let expected = if cached { uploads } else { uploads + 1 };
            assert_eq!(f.hv.count(HypervisorCall::UploadImage), expected, "{step:?}");
        });
    }
}

#[test]
fn a_failed_reinstall_puts_the_old_disk_and_seed_back() {
    let steps = [
        HypervisorCall::SavePreviousVolume,
        HypervisorCall::CreateVolumeFromImage,
        HypervisorCall::WriteSeed,
        HypervisorCall::DefineDomain,
        HypervisorCall::Start,
    ];
    for step in steps {
        block_on(async {
            let f = fixture().await;
            let vm = f.installed().await;
            let before = f.seed(vm);
            let disk = f.hv.volume_of(vm).unwrap();
            f.hv.fail_next(step);
            let spec = f.reinstall(None, &[OTHER_KEY]);
            let task = f.vmm.reinstall_vm(vm, spec).await.unwrap();
            f.vmm.run_until_idle().await.unwrap();
            assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Failed, "{step:?}");
            assert_eq!(f.hv.volume_of(vm), Some(disk.clone()), "{step:?}: the old disk is back");
            assert_eq!(f.seed(vm), before, "{step:?}: the old seed is back");
            assert_eq!(f.vmm.get_vm(vm).await.unwrap().state, VmState::Stopped);
            assert!(f.store.vm_guest(vm).await.unwrap().next.is_none(), "the reinstall's settings are gone");
            assert_eq!(f.hv.leftovers(), 1, "{step:?}: the seed, and no disk kept aside");
            assert_eq!(f.leases().await, 2);
        });
    }
}

#[test]
fn a_reinstall_keeps_id_addresses_and_macs_and_runs_cloud_init_again() {
    block_on(async {
        let f = fixture().await;
        let vm = f.installed().await;
        let before = f.vmm.get_vm(vm).await.unwrap();
        let spec = ReinstallSpec {
            user_data: Some("#!/bin/sh\necho mine\n".into()),
            ..f.reinstall(Some("web-2"), &[OTHER_KEY])
        };
        let task = f.vmm.reinstall_vm(vm, spec.clone()).await.unwrap();
        // A second reinstall while one is queued is refused and changes nothing.
        assert!(matches!(f.vmm.reinstall_vm(vm, spec).await, Err(Error::ActiveTask { .. })));
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        let after = f.vmm.get_vm(vm).await.unwrap();
        assert_eq!((after.addresses.clone(), after.nics.clone()), (before.addresses, before.nics));
        assert_eq!((after.state, after.hostname.as_deref()), (VmState::Running, Some("web-2")));
        let seed = f.seed(vm);
        assert!(seed.meta_data.contains(&format!("{vm}-1")), "{}", seed.meta_data);
        assert!(seed.user_data.contains("bob@example") && !seed.user_data.contains("alice@example"));
        assert!(seed.user_data.contains("echo mine"));
        assert_eq!(f.hv.leftovers(), 1, "the old disk kept aside is gone");
    });
}

#[test]
fn a_reinstall_whose_worker_died_is_finished_by_another() {
    block_on(async {
        let f = fixture().await;
        let vm = f.installed().await;
        let spec = f.reinstall(None, &[]);
        let task = f.vmm.reinstall_vm(vm, spec).await.unwrap();
        // A worker claims it, keeps the disk aside, replaces it, and dies.
        let claimed =
            f.store.claim_task("dead", chrono::Utc::now(), Duration::from_secs(30)).await.unwrap().unwrap();
        assert_eq!(claimed.id, task.id);
        vmm_core::Hypervisor::save_previous_volume(f.hv.as_ref(), vm).await.unwrap();
        f.clock.advance(chrono::Duration::seconds(31));
        f.vmm.run_until_idle().await.unwrap();
        let task = f.vmm.get_task(task.id).await.unwrap();
        assert_eq!((task.state, task.attempts), (TaskState::Succeeded, 2));
        assert_eq!(f.hv.leftovers(), 1, "the seed, and no disk kept aside");
        assert!(f.seed(vm).meta_data.contains(&format!("{vm}-1")));
    });
}

#[test]
fn a_reinstall_whose_worker_died_after_the_install_records_it() {
    block_on(async {
        let f = fixture().await;
        let vm = f.installed().await;
        let spec = f.reinstall(Some("web-2"), &[OTHER_KEY]);
        let task = f.vmm.reinstall_vm(vm, spec).await.unwrap();
        // A worker claims it, installs, reaches the last checkpoint, and dies before
        // recording the new install.
        let mut claimed =
            f.store.claim_task("dead", chrono::Utc::now(), Duration::from_secs(30)).await.unwrap().unwrap();
        assert_eq!(claimed.id, task.id);
        claimed.checkpoints = ["disk_saved", "disk_replaced", "installed"].map(String::from).to_vec();
        f.store.save_task(&claimed, claimed.fence()).await.unwrap();
        f.clock.advance(chrono::Duration::seconds(31));
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        let after = f.vmm.get_vm(vm).await.unwrap();
        assert_eq!((after.state, after.hostname.as_deref()), (VmState::Running, Some("web-2")));
        let guest = f.store.vm_guest(vm).await.unwrap();
        assert!(guest.next.is_none(), "the queued settings are the current ones");
        assert_eq!(guest.current.map(|g| g.generation), Some(1));
        // A later seed rewrite (an address change) carries the new install's instance id.
        let spec = AddressSpec { ip_pool_id: f.pools[0].id, address: None };
        let task = f.vmm.add_vm_address(vm, spec).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        let seed = f.seed(vm);
        assert!(seed.meta_data.contains(&format!("{vm}-1")), "{}", seed.meta_data);
        assert!(seed.user_data.contains("bob@example") && !seed.user_data.contains("alice@example"));
    });
}

#[test]
fn a_reinstall_cancelled_after_its_worker_died_puts_the_old_disk_back() {
    block_on(async {
        let f = fixture().await;
        let vm = f.installed().await;
        let spec = f.reinstall(None, &[]);
        let task = f.vmm.reinstall_vm(vm, spec).await.unwrap();
        let disk = f.hv.volume_of(vm).expect("a disk");
        // A worker keeps the disk aside and dies; then the user cancels.
        let mut claimed =
            f.store.claim_task("dead", chrono::Utc::now(), Duration::from_secs(30)).await.unwrap().unwrap();
        vmm_core::Hypervisor::stop(f.hv.as_ref(), vm).await.unwrap();
        vmm_core::Hypervisor::save_previous_volume(f.hv.as_ref(), vm).await.unwrap();
        claimed.checkpoints = vec!["disk_saved".into()];
        f.store.save_task(&claimed, claimed.fence()).await.unwrap();
        f.vmm.cancel_task(task.id).await.unwrap();
        f.clock.advance(chrono::Duration::seconds(31));
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Cancelled);
        assert_eq!(f.hv.volume_of(vm), Some(disk), "the old disk is back");
        assert_eq!(f.hv.leftovers(), 1, "the seed, and no disk kept aside");
        assert!(f.store.vm_guest(vm).await.unwrap().next.is_none());
        assert_eq!(f.vmm.get_vm(vm).await.unwrap().state, VmState::Stopped);
    });
}

#[test]
fn a_failed_clone_leaves_nothing_of_the_copy() {
    for step in [
        HypervisorCall::CopyVolume,
        HypervisorCall::WriteSeed,
        HypervisorCall::DefineDomain,
        HypervisorCall::Start,
    ] {
        block_on(async {
            let f = fixture().await;
            let vm = f.installed().await;
            f.vmm.power_vm(vm, vmm_core::PowerAction::Stop).await.unwrap();
            f.vmm.run_until_idle().await.unwrap();
            let before = f.hv.leftovers();
            f.hv.fail_next(step);
            let (copy, task) =
                f.vmm.clone_vm(vm, CloneSpec { name: "copy".into(), start: true }).await.unwrap();
            assert_eq!(f.leases().await, 4);
            f.vmm.run_until_idle().await.unwrap();
            assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Failed, "{step:?}");
            assert!(matches!(f.vmm.get_vm(copy.id).await, Err(Error::VmNotFound { .. })));
            assert_eq!(f.hv.leftovers(), before, "{step:?}: nothing of the copy stays");
            assert_eq!(f.leases().await, 2, "{step:?}: the copy's leases are given back");
        });
    }
}

#[test]
fn a_clone_gets_its_own_addresses_macs_and_instance() {
    block_on(async {
        let f = fixture().await;
        let vm = f.installed().await;
        assert!(matches!(
            f.vmm.clone_vm(vm, CloneSpec { name: "copy".into(), start: true }).await,
            Err(Error::InvalidState { .. })
        ));
        f.vmm.power_vm(vm, vmm_core::PowerAction::Stop).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        let (copy, task) = f.vmm.clone_vm(vm, CloneSpec { name: "copy".into(), start: true }).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        let (a, b) = (f.vmm.get_vm(vm).await.unwrap(), f.vmm.get_vm(copy.id).await.unwrap());
        assert!(a.addresses.iter().all(|x| !b.addresses.contains(x)), "{:?} {:?}", a.addresses, b.addresses);
        assert!(a.nics.iter().all(|x| b.nics.iter().all(|y| x.mac != y.mac)));
        assert_eq!(b.state, VmState::Running);
        assert_eq!(f.hv.volume_of(copy.id).unwrap().content, f.hv.volume_of(vm).unwrap().content);
        let seed = f.seed(copy.id);
        assert!(seed.meta_data.contains(&copy.id.to_string()) && seed.meta_data.contains("copy"));
        assert!(seed.user_data.contains("alice@example"), "the keys come along");
    });
}

#[test]
fn a_failed_address_change_gives_the_lease_back_and_changes_nothing() {
    for step in [HypervisorCall::DefineDomain, HypervisorCall::AttachNic, HypervisorCall::WriteSeed] {
        block_on(async {
            let f = fixture().await;
            let vm = f.installed().await;
            let (before, seed) = (f.vmm.get_vm(vm).await.unwrap(), f.seed(vm));
            f.hv.fail_next(step);
            let spec = AddressSpec { ip_pool_id: f.pools[0].id, address: None };
            let task = f.vmm.add_vm_address(vm, spec).await.unwrap();
            assert_eq!(f.leases().await, 3, "taken with the task");
            f.vmm.run_until_idle().await.unwrap();
            assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Failed, "{step:?}");
            let after = f.vmm.get_vm(vm).await.unwrap();
            assert_eq!(
                (after.addresses, after.nics),
                (before.addresses.clone(), before.nics.clone()),
                "{step:?}"
            );
            assert_eq!(f.leases().await, 2, "{step:?}: the lease is given back");
            assert!(f.hv.live_nics(vm).is_empty(), "{step:?}: no NIC stays plugged in");
            assert_eq!(f.seed(vm), seed, "{step:?}: the seed is as it was");
        });
    }
}

#[test]
fn an_image_is_not_deleted_under_an_install() {
    block_on(async {
        let f = fixture().await;
        let (_, task) = f.vmm.create_vm(f.spec()).await.unwrap();
        assert!(matches!(f.vmm.delete_image(f.image.id).await, Err(Error::Conflict { .. })));
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        f.vmm.delete_image(f.image.id).await.expect("no install uses it any more");
        assert!(f.hv.images().is_empty(), "the node's copy went with it");
        assert!(matches!(f.vmm.create_vm(f.spec()).await, Err(Error::ImageNotFound { .. })));
    });
}

#[test]
fn a_pool_on_a_network_the_node_lacks_is_refused_naming_the_field() {
    block_on(async {
        let f = fixture().await;
        let other =
            f.vmm.create_node(NodeSpec::new("g2", "memory://g2?cpus=8&memory_mib=16384")).await.unwrap();
        let here = f.vmm.list_nodes(&PageRequest::default()).await.unwrap().items;
        let first = here.iter().find(|n| n.name == "g1").unwrap().id;
        let ghost = managed("elsewhere", vec![vmm_core::NodeId::new()]);
        assert!(matches!(f.vmm.create_network(ghost).await, Err(Error::NodeNotFound { .. })));
        let spec = managed("only-g2", vec![other.id]);
        let network = f.vmm.create_network(spec).await.unwrap();
        let pool = f
            .vmm
            .create_ip_pool(IpPoolSpec::new("c", "198.51.100.64/28").on_network(network.id))
            .await
            .unwrap();
        let pinned = VmSpec { node_id: Some(first), ip_pool_ids: vec![pool.id], ..f.spec() };
        match f.vmm.create_vm(pinned).await {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "ip_pool_ids"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let both = VmSpec { ip_pool_ids: vec![f.pools[0].id, pool.id], ..f.spec() };
        let (vm, _) = f.vmm.create_vm(both).await.unwrap();
        assert_eq!(vm.node_id, other.id, "placed on the node that has both networks");
        assert_eq!(f.leases().await, 1, "the refused create took nothing");
    });
}

/// A managed network on `node_ids` (every node when empty).
fn managed(name: &str, node_ids: Vec<vmm_core::NodeId>) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        kind: NetworkKind::Managed,
        bridge: None,
        cidr: None,
        vlan: None,
        node_ids,
    }
}

/// Keys from a user's library reach the guest by id, beside the keys given as text, at
/// create and at reinstall; a key the caller may not see is refused as if it did not exist.
#[test]
fn library_keys_reach_the_guest_by_id_and_only_the_callers() {
    block_on(async {
        let f = fixture().await;
        let admin = f.vmm.bootstrap_admin("admin@localhost").await.unwrap();
        let admin = Actor::new(&admin, None).unwrap();
        let spec = UserSpec {
            email: "ann@example.com".into(),
            password: Some(Secret::new("correct horse battery")),
            role: Role::User,
            auth: AuthSource::Local,
            quota: Quota::default(),
        };
        let ann = f.vmm.create_user(&admin, spec.clone()).await.unwrap();
        let ann = Actor::new(&ann, None).unwrap();
        let bob =
            f.vmm.create_user(&admin, UserSpec { email: "bob@example.com".into(), ..spec }).await.unwrap();
        let bob = Actor::new(&bob, None).unwrap();
        let other = SshKeySpec { name: "bob's".into(), public_key: OTHER_KEY.into() };
        let anns = f.vmm.create_ssh_key(&ann, other.clone()).await.unwrap();
        let bobs = f.vmm.create_ssh_key(&bob, other).await.unwrap();

        let refused = VmSpec { ssh_key_ids: vec![bobs.id], ..f.spec() };
        match f.vmm.create_vm_for(&ann, refused).await {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "ssh_key_ids"),
            other => panic!("another user's key: {other:?}"),
        }
        let (vm, task) =
            f.vmm.create_vm_for(&ann, VmSpec { ssh_key_ids: vec![anns.id], ..f.spec() }).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        let seed = f.seed(vm.id);
        assert!(
            seed.user_data.contains("alice@example") && seed.user_data.contains("bob@example"),
            "{}",
            seed.user_data
        );

        let again = ReinstallSpec { ssh_key_ids: vec![anns.id], ..f.reinstall(None, &[]) };
        let task = f.vmm.reinstall_vm_for(&ann, vm.id, again).await.unwrap();
        f.vmm.run_until_idle().await.unwrap();
        assert_eq!(f.vmm.get_task(task.id).await.unwrap().state, TaskState::Succeeded);
        let seed = f.seed(vm.id);
        assert!(
            seed.user_data.contains("bob@example") && !seed.user_data.contains("alice@example"),
            "{}",
            seed.user_data
        );
        assert!(matches!(
            f.vmm.reinstall_vm_for(&bob, vm.id, f.reinstall(None, &[])).await,
            Err(Error::VmNotFound { .. })
        ));
    });
}
