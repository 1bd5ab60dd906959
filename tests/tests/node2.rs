//! The second test host of `tests/node2.sh`: another libvirt host on this machine, with
//! its own host UUID and name, that `vmmd` reaches over `qemu+tcp` and places VMs on; its
//! power can be cut (its QEMU dies with its libvirtd, its definitions stay) and its link
//! split (its traffic then goes nowhere, not out of the machine); `down` leaves nothing
//! behind. Only root may reach its unauthenticated libvirtd. The migration and HA tests build on it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use vmm_tests::virsh_at as virsh;
use vmm_tests::{data_dir, node2, wait_until, Vmmd, VmmdConfig};

const NODE2: &str = node2::URI;

/// Runs `tests/node2.sh VERB` with its state under `dir`; its stdout and exit code.
fn node2(dir: &Path, verb: &str) -> (String, i32) {
    let out = node2::run(dir, verb);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    // Every verb but `status` (3: down) succeeds, and says nothing on stderr.
    assert!(code == 0 || (verb == "status" && code == 3), "node2.sh {verb} exited {code}: {stderr}");
    assert!(stderr.is_empty(), "node2.sh {verb}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).trim().to_owned(), code)
}

fn host_uuid(uri: &str) -> String {
    let (ok, caps) = virsh(uri, &["capabilities"]);
    assert!(ok, "capabilities of {uri}");
    let host = &caps[caps.find("<host>").expect("a <host>")..];
    host.split("<uuid>").nth(1).and_then(|s| s.split("</uuid>").next()).expect("a host uuid").to_owned()
}

fn qemu_running(domain: &str) -> bool {
    Command::new("pgrep").args(["-f", &format!("guest={domain},")]).status().is_ok_and(|s| s.success())
}

#[test]
#[ignore = "makes network namespaces and a second libvirtd (root); CI runs it"]
fn a_second_host_is_made_used_powered_off_split_and_removed() {
    let dir = data_dir().join("node2");
    let _down = node2::Down(dir.clone());
    let (uri, _) = node2(&dir, "up");
    assert_eq!(uri, NODE2);
    assert_eq!(node2(&dir, "up").0, NODE2, "up twice is up");
    assert_eq!(node2(&dir, "status"), (format!("up {NODE2}"), 0));

    // Another host to libvirt: its own UUID and name (migration compares the UUIDs).
    assert_ne!(host_uuid(NODE2), host_uuid("qemu:///system"));
    assert_eq!(virsh(NODE2, &["hostname"]).1, "node2");
    // Its libvirtd asks no one who they are: only root may connect.
    let nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "virsh", "-c", NODE2, "uri"])
        .env("HOME", "/tmp")
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&nobody.stderr);
    assert!(!nobody.status.success() && refused.contains("Connection refused"), "{refused}");
    // From there the main host answers too (peer-to-peer migration back goes that way).
    let back = Command::new("ip")
        .args([
            "netns",
            "exec",
            "vmm-node2",
            "virsh",
            "-c",
            "qemu+tcp://203.0.113.250/system",
            "capabilities",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&back.stdout).contains(&host_uuid("qemu:///system")));

    // vmmd registers it beside the local host and runs a VM there.
    let vmmd = Vmmd::start(&VmmdConfig::new(&data_dir()));
    let n1 = vmmd.add_node("qemu:///system");
    let (status, n2) =
        vmmd.call("POST", "/api/v1/nodes", Some(json!({"name": "n2", "uri": NODE2, "virt_type": "qemu"})));
    assert_eq!(status, 201, "{n2}");
    assert!(n2["capacity"]["cpus"].as_u64() > Some(0));
    let spec =
        json!({"name": "over-there", "vcpus": 1, "memory_mib": 64, "disk_gib": 1, "node_id": n2["id"]});
    let (status, made) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{made}");
    vmmd.done(&made["task"]);
    let domain = format!("vmm-{}", made["vm"]["id"].as_str().unwrap());
    assert_eq!(virsh(NODE2, &["domstate", &domain]), (true, "running".into()));
    assert!(!virsh("qemu:///system", &["dominfo", &domain]).0, "not on the main host");
    assert!(qemu_running(&domain));
    // Its disk is on node2's own /var/lib/vmm, not on this host's.
    let volume = format!("e2e-images/{domain}.qcow2");
    assert!(dir.join("vmm").join(&volume).exists() && !Path::new("/var/lib/vmm").join(&volume).exists());
    assert_ne!(n1["id"], n2["id"]);

    // Power loss: libvirtd and QEMU die at once; the host answers nothing.
    node2(&dir, "power-off");
    assert!(!qemu_running(&domain), "its QEMU died with it");
    assert_eq!(node2(&dir, "status"), ("down".into(), 3));
    assert!(!virsh(NODE2, &["uri"]).0);
    // Powered on again: the definition survived, the VM did not run on.
    node2(&dir, "up");
    assert_eq!(virsh(NODE2, &["domstate", &domain]), (true, "shut off".into()));

    // A network split: unreachable while cut, back when mended.
    node2(&dir, "cut");
    assert!(!virsh(NODE2, &["uri"]).0, "unreachable while cut");
    let route = Command::new("ip").args(["route", "get", "203.0.113.251"]).output().unwrap();
    let route = String::from_utf8_lossy(&route.stdout).into_owned() + &String::from_utf8_lossy(&route.stderr);
    assert!(!route.contains(" via "), "nothing for node2 leaves by the default route while cut: {route}");
    node2(&dir, "mend");
    wait_until("node2 to answer again", Duration::from_secs(20), || virsh(NODE2, &["uri"]).0);

    // vmmd cleans up there as anywhere.
    let (status, del) =
        vmmd.call("DELETE", &format!("/api/v1/vms/{}", made["vm"]["id"].as_str().unwrap()), None);
    assert_eq!(status, 202, "{del}");
    let ended: Value = vmmd.wait(&del["task"]);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert!(!virsh(NODE2, &["dominfo", &domain]).0, "undefined on node2");
    drop(vmmd);

    // Down removes all of it, and twice is fine.
    node2(&dir, "down");
    node2(&dir, "down");
    assert_eq!(node2(&dir, "status").1, 3);
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&netns.stdout).contains("vmm-node2"));
    assert!(!Command::new("ip").args(["link", "show", "vmmn2-host"]).output().unwrap().status.success());
    assert!(!dir.exists());
    let rules = Command::new("iptables").args(["-S"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains("203.0.113.25"), "no firewall rule left");
    let routes = Command::new("ip").args(["route", "show", "203.0.113.251"]).output().unwrap();
    assert!(String::from_utf8_lossy(&routes.stdout).trim().is_empty(), "no route left");
}
