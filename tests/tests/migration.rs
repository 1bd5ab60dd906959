//! Migration between two real libvirt hosts (this one and `tests/node2.sh`'s), with the
//! tiny guest: live there and back while it counts on its console (no reboot), offline
//! when stopped, and `kill -9` of vmmd at every phase of a migration, after which the
//! restarted vmmd finishes or rolls back the move: one copy defined and running, the
//! database pointing at it, no disk left on the other host. And a node's maintenance:
//! its three guests evacuated to the other host and brought back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use vmm_tests::virsh_at as virsh;
use vmm_tests::{data_dir, node2, Vmmd, VmmdConfig};

const NODE1: &str = "qemu:///system";
const NODE2: &str = node2::URI;
const BOOT: Duration = Duration::from_secs(180);
/// Where vmmd keeps disks (`Vmmd::start`), on each host.
const STORAGE: &str = "e2e-images";

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// The two hosts: their node ids in vmmd, and where each keeps the VM's disk.
struct Hosts {
    n1: String,
    n2: String,
    node2_dir: PathBuf,
}

impl Hosts {
    fn uri(&self, node: &str) -> &'static str {
        if node == self.n1 {
            NODE1
        } else {
            NODE2
        }
    }

    fn disk(&self, uri: &str, vm: &str) -> PathBuf {
        let root = if uri == NODE1 { PathBuf::from("/var/lib/vmm") } else { self.node2_dir.join("vmm") };
        root.join(STORAGE).join(format!("vmm-{vm}.qcow2"))
    }

    /// Exactly one host has the VM's domain, in `state`, and its disk; the database points
    /// at that host; the other host has neither. Returns the node.
    fn one_copy(&self, vmmd: &Vmmd, vm: &str, state: &str) -> String {
        let (_, got) = vmmd.call("GET", &format!("/api/v1/vms/{vm}"), None);
        let node = got["node_id"].as_str().expect("a node").to_owned();
        assert!(got.get("migrating_to").is_none(), "no move under way: {got}");
        let (here, there) = if node == self.n1 { (NODE1, NODE2) } else { (NODE2, NODE1) };
        let domain = format!("vmm-{vm}");
        assert_eq!(virsh(here, &["domstate", &domain]), (true, state.to_owned()), "on {here}");
        assert!(!virsh(there, &["dominfo", &domain]).0, "{there} has no definition of {domain}");
        assert!(self.disk(here, vm).exists(), "the disk is on {here}");
        assert!(!self.disk(there, vm).exists(), "no disk is left on {there}");
        node
    }
}

/// The last tick the guest printed, waiting for one after `seen` bytes of its log.
fn next_tick(vmmd: &Vmmd, vm: &str, seen: usize) -> (u64, String) {
    let deadline = std::time::Instant::now() + BOOT;
    loop {
        let log = vmmd.console_log(vm);
        let after = log.get(seen.min(log.len())..).unwrap_or_default().to_owned();
        let complete = after.rfind('\n').map_or("", |end| &after[..end]);
        let tick = complete.lines().filter_map(|l| l.trim_end().strip_prefix("VMM-GUEST-TICK ")).next_back();
        if let Some(tick) = tick.and_then(|t| t.trim().parse().ok()) {
            return (tick, after);
        }
        assert!(std::time::Instant::now() < deadline, "no tick after {seen} bytes; the log:\n{log}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn migrate(vmmd: &Vmmd, vm: &str, body: Value) -> Value {
    let (status, r) = vmmd.call("POST", &format!("/api/v1/vms/{vm}/migrate"), Some(body));
    assert_eq!(status, 202, "{r}");
    r["task"].clone()
}

/// The second host, up until dropped; one test at a time has it.
fn node2_up() -> (std::sync::MutexGuard<'static, ()>, node2::Down, PathBuf) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = data_dir().join("node2");
    let down = node2::Down(dir.clone());
    node2::must(&dir, "up");
    (guard, down, dir)
}

/// vmmd with both hosts registered, and the tiny guest's image.
fn vmmd_with_both(config: &VmmdConfig, node2_dir: &Path) -> (Vmmd, Hosts, String) {
    let vmmd = Vmmd::start(config);
    let n1 = id(&vmmd.add_node(NODE1));
    let (status, n2) =
        vmmd.call("POST", "/api/v1/nodes", Some(json!({"name": "n2", "uri": NODE2, "virt_type": "qemu"})));
    assert_eq!(status, 201, "{n2}");
    let hosts = Hosts { n1, n2: id(&n2), node2_dir: node2_dir.to_owned() };
    let image = vmmd.tiny_image(&format!("tiny-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    (vmmd, hosts, image)
}

/// Running tiny guests on `node`, once they count (they boot side by side).
fn guests(vmmd: &Vmmd, names: &[&str], node: &str, image: &str) -> Vec<String> {
    let vms: Vec<String> = names
        .iter()
        .map(|name| {
            let spec = json!({"name": name, "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "node_id": node,
                "image_id": image});
            let (status, made) = vmmd.call("POST", "/api/v1/vms", Some(spec));
            assert_eq!(status, 202, "{made}");
            vmmd.done(&made["task"]);
            id(&made["vm"])
        })
        .collect();
    for vm in &vms {
        vmmd.console_line(vm, "VMM-GUEST-TICK 1", 0, BOOT);
    }
    vms
}

#[test]
#[ignore = "makes a second libvirt host (root) and boots the tiny guest; CI runs it"]
fn maintenance_evacuates_three_guests_and_brings_them_back() {
    let (_one, _down, node2_dir) = node2_up();
    let data = data_dir();
    let (vmmd, hosts, image) = vmmd_with_both(&VmmdConfig::new(&data), &node2_dir);
    let vms = guests(&vmmd, &["tenant-0", "tenant-1", "tenant-2"], &hosts.n1, &image);
    let path = format!("/api/v1/nodes/{}/maintenance", hosts.n1);
    let (status, r) = vmmd.call("POST", &path, Some(json!({"evacuate": true})));
    assert_eq!(status, 202, "{r}");
    let ended = vmmd.wait(&r["task"]);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert_eq!(ended["result"]["moved"].as_array().unwrap().len(), 3, "{ended}");
    for vm in &vms {
        assert_eq!(hosts.one_copy(&vmmd, vm, "running"), hosts.n2);
    }
    let (_, n1) = vmmd.call("GET", &format!("/api/v1/nodes/{}", hosts.n1), None);
    assert_eq!(
        (n1["state"].as_str(), n1["allocated"]["vms"].as_u64()),
        (Some("maintenance"), Some(0)),
        "{n1}"
    );

    let (status, r) = vmmd.call("DELETE", &format!("{path}?return_vms=true"), None);
    assert_eq!(status, 202, "{r}");
    let ended = vmmd.wait(&r["task"]);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    for vm in &vms {
        assert_eq!(hosts.one_copy(&vmmd, vm, "running"), hosts.n1);
        let (tick, _) = next_tick(&vmmd, vm, 0);
        assert!(tick > 1, "{vm} counts on");
    }
    for vm in &vms {
        vmmd.act("DELETE", &format!("/api/v1/vms/{vm}"));
    }
    vmmd.stop();
    std::fs::remove_dir_all(data).ok();
}

#[test]
#[ignore = "makes a second libvirt host (root) and boots the tiny guest; CI runs it"]
fn a_guest_moves_live_and_offline_and_every_crash_ends_with_one_copy() {
    let (_one, _down, node2_dir) = node2_up();

    let data = data_dir();
    // Short task leases: a run that died is taken over within seconds.
    let config = VmmdConfig::new(&data).with("VMM_TASK_LEASE_S", "3");
    let (mut vmmd, hosts, image) = vmmd_with_both(&config, &node2_dir);
    let n1 = hosts.n1.clone();
    let vm = guests(&vmmd, &["mover"], &n1, &image).remove(0);

    // Live there: placement chooses node2 (the only other node) and says so.
    let (before, _) = next_tick(&vmmd, &vm, 0);
    let task = migrate(&vmmd, &vm, json!({}));
    assert!(task["steps"][0]["message"].as_str().unwrap().starts_with("placed on n2"), "{task}");
    vmmd.done(&task);
    assert_eq!(hosts.one_copy(&vmmd, &vm, "running"), hosts.n2);
    // The console is node2's now: the guest counts on, it did not boot again.
    let (after, log) = next_tick(&vmmd, &vm, 0);
    assert!(after > before, "ticks go on from {before}: {after}");
    assert!(!log.contains("VMM-GUEST-BOOT"), "no reboot: {log}");
    // And back, asked by name.
    let seen = vmmd.console_log(&vm).len();
    vmmd.done(&migrate(&vmmd, &vm, json!({"node_id": n1, "live": true})));
    assert_eq!(hosts.one_copy(&vmmd, &vm, "running"), n1);
    let (back, log) = next_tick(&vmmd, &vm, seen.min(vmmd.console_log(&vm).len()));
    assert!(back > after, "ticks go on from {after}: {back}");
    assert!(!log.contains("VMM-GUEST-BOOT"), "no reboot: {log}");

    // Offline: stopped, it moves stopped, and boots there from the copied disk.
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/stop"));
    vmmd.done(&migrate(&vmmd, &vm, json!({"node_id": hosts.n2})));
    assert_eq!(hosts.one_copy(&vmmd, &vm, "shut off"), hosts.n2);
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/start"));
    vmmd.console_line(&vm, "VMM-GUEST-READY", 0, BOOT);
    assert_eq!(hosts.one_copy(&vmmd, &vm, "running"), hosts.n2);

    // kill -9 at every phase, live and offline: the next vmmd ends the move.
    let phases = ["prepare", "transferring", "transfer", "switch_over", "clean_up"];
    for live in [true, false] {
        if !live {
            vmmd.act("POST", &format!("/api/v1/vms/{vm}/stop"));
        }
        let state = if live { "running" } else { "shut off" };
        for phase in phases {
            if !live && phase == "transferring" {
                continue; // an offline transfer takes a blink; there is no "under way"
            }
            let (_, got) = vmmd.call("GET", &format!("/api/v1/vms/{vm}"), None);
            let from = got["node_id"].as_str().unwrap().to_owned();
            vmmd.stop();
            let crashing = config.clone().with("VMM_CRASH_AT", &format!("migrate_vm.{phase}"));
            let doomed = Vmmd::start(&crashing);
            let task = migrate(&doomed, &vm, json!({"live": live}));
            let status = doomed.wait_exit(Duration::from_secs(120));
            assert!(!status.success(), "vmmd died at {phase}: {status}");
            vmmd = Vmmd::start(&config);
            let ended = vmmd.wait(&task);
            let node = hosts.one_copy(&vmmd, &vm, state);
            match ended["state"].as_str() {
                // Recorded phases carry on; the rest may roll back.
                Some("succeeded") => assert_ne!(node, from, "{phase}: moved, and the database says so"),
                Some("failed") => assert_eq!(node, from, "{phase}: rolled back: {ended}"),
                other => panic!("{phase}: the task ended {other:?}: {ended}"),
            }
            if phase != "transferring" {
                assert_eq!(
                    ended["state"], "succeeded",
                    "{phase}: a run that died after a phase resumes: {ended}"
                );
            }
            let (_, nodes) = vmmd.call("GET", "/api/v1/nodes", None);
            for n in nodes["items"].as_array().unwrap() {
                let vms = n["allocated"]["vms"].as_u64().unwrap();
                let expected = u64::from(id(n) == node);
                assert_eq!(vms, expected, "{phase}: the VM counts on its node only: {nodes}");
            }
            eprintln!("kill -9 at {phase} ({}): ended {}, on {}", state, ended["state"], hosts.uri(&node));
        }
    }

    // Gone from wherever it is.
    vmmd.act("DELETE", &format!("/api/v1/vms/{vm}"));
    for uri in [NODE1, NODE2] {
        assert!(!virsh(uri, &["dominfo", &format!("vmm-{vm}")]).0);
        assert!(!hosts.disk(uri, &vm).exists());
    }
    vmmd.stop();
    std::fs::remove_dir_all(data).ok();
}
