//! The reconciler of the real `vmmd` against real QEMU (`qemu:///system`): a VM destroyed
//! with `virsh destroy` is seen stopped, with a `vm.drifted` event, within the interval; one
//! undefined with `virsh undefine` is `missing` and kept; a planted domain and volume that
//! carry vmm's marks are reported as orphans and removed only when asked; a foreign domain
//! is never touched.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vmm_tests::{data_dir, Vmmd, VmmdConfig};

fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh").arg("-c").arg("qemu:///system").args(args).output().expect("virsh runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited 60 s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn reconcile(vmmd: &Vmmd, dry_run: bool) -> Value {
    let (status, r) = vmmd.call("POST", "/api/v1/reconcile", Some(json!({"dry_run": dry_run})));
    assert_eq!(status, 202, "{r}");
    let task = vmmd.wait(&r["task"]);
    assert_eq!(task["state"], "succeeded", "{task}");
    task["result"]["nodes"][0].clone()
}

#[test]
#[ignore = "needs libvirtd with QEMU (qemu:///system); CI runs it"]
fn drift_missing_vms_and_orphans_on_real_qemu() {
    let vmmd = Vmmd::start(&VmmdConfig::new(&data_dir()).with("VMM_RECONCILE_INTERVAL_S", "1"));
    let (status, node) = vmmd.call(
        "POST",
        "/api/v1/nodes",
        Some(json!({"name": "n1", "uri": "qemu:///system", "virt_type": "qemu"})),
    );
    assert_eq!(status, 201, "{node}");
    let mut vms = Vec::new();
    for (name, start) in [("drifter", true), ("template", false)] {
        let spec = json!({"name": name, "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "start": start});
        let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
        assert_eq!(status, 202, "{created}");
        vmmd.done(&created["task"]);
        vms.push(created["vm"]["id"].as_str().unwrap().to_owned());
    }
    let (a, b) = (&vms[0], &vms[1]);
    let observed =
        |vm: &str| vmmd.call("GET", &format!("/api/v1/vms/{vm}"), None).1["observed_state"].clone();
    wait_for("the running VM seen running", || (observed(a) == "running").then_some(()));

    assert!(virsh(&["destroy", &format!("vmm-{a}")]).0);
    wait_for("the destroyed VM seen stopped", || (observed(a) == "stopped").then_some(()));
    let (_, vm) = vmmd.call("GET", &format!("/api/v1/vms/{a}"), None);
    assert_eq!(vm["state"], "running", "the database keeps what it should be: {vm}");
    assert!(vm["state_reason"].as_str().unwrap().contains("should be running"), "{vm}");
    let (_, events) = vmmd.call("GET", "/api/v1/events?types=vm.drifted", None);
    let drifted = &events["items"].as_array().unwrap()[0];
    assert_eq!(
        (drifted["vm_id"].as_str(), drifted["data"]["observed_state"].as_str()),
        (Some(a.as_str()), Some("stopped"))
    );

    assert!(virsh(&["undefine", &format!("vmm-{a}")]).0);
    wait_for("the undefined VM seen missing", || (observed(a) == "missing").then_some(()));
    assert_eq!(vmmd.call("GET", &format!("/api/v1/vms/{a}"), None).0, 200, "a missing VM is kept");

    // Plant a domain with vmm's metadata (the template's, under a new id), a volume with a
    // VM's name, and a foreign domain.
    let ghost = uuid::Uuid::new_v4().to_string();
    let (_, xml) = virsh(&["dumpxml", "--inactive", &format!("vmm-{b}")]);
    let planted = xml.replace(b.as_str(), &ghost);
    let dir = data_dir();
    std::fs::write(dir.join("ghost.xml"), planted).unwrap();
    assert!(virsh(&["define", dir.join("ghost.xml").to_str().unwrap()]).0);
    let stray = format!("vmm-{}.qcow2", uuid::Uuid::new_v4());
    assert!(virsh(&["vol-create-as", "vmm", &stray, "1M", "--format", "qcow2"]).0);
    let foreign = format!("foreign-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let foreign_xml = format!(
        "<domain type='qemu'><name>{foreign}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64'>hvm</type></os></domain>"
    );
    std::fs::write(dir.join("foreign.xml"), foreign_xml).unwrap();
    assert!(virsh(&["define", dir.join("foreign.xml").to_str().unwrap()]).0);

    let dry = reconcile(&vmmd, true);
    // The pool is the host's: what other tests left there is reported too.
    let listed =
        |report: &Value, key: &str, name: &str| report[key].as_array().unwrap().iter().any(|v| v == name);
    assert!(listed(&dry, "orphan_domains", &ghost), "{dry}");
    assert!(listed(&dry, "orphan_volumes", &stray), "{dry}");
    assert!(!listed(&dry, "orphan_domains", a) && !listed(&dry, "orphan_domains", b), "{dry}");
    assert!(!dry.to_string().contains(&foreign), "foreign domains are not looked at: {dry}");
    assert!(dry["drift"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["vm_id"] == a.as_str() && d["observed_state"] == "missing"));
    assert!(virsh(&["dominfo", &format!("vmm-{ghost}")]).0, "a dry run removes nothing");
    assert!(virsh(&["vol-info", "--pool", "vmm", &stray]).0);

    let done = reconcile(&vmmd, false);
    let stray_vm = stray.trim_start_matches("vmm-").trim_end_matches(".qcow2");
    assert!(listed(&done, "removed", &ghost) && listed(&done, "removed", stray_vm), "{done}");
    assert!(!listed(&done, "removed", a) && !listed(&done, "removed", b), "{done}");
    assert!(!virsh(&["dominfo", &format!("vmm-{ghost}")]).0, "the orphan domain is gone");
    assert!(!virsh(&["vol-info", "--pool", "vmm", &stray]).0, "the orphan volume is gone");
    assert!(virsh(&["dominfo", &foreign]).0, "the foreign domain is untouched");
    assert!(virsh(&["dominfo", &format!("vmm-{b}")]).0, "the template VM is untouched");
    virsh(&["undefine", &foreign]);

    for vm in [a, b] {
        let (status, r) = vmmd.call("DELETE", &format!("/api/v1/vms/{vm}"), None);
        assert_eq!(status, 202, "{r}");
        vmmd.done(&r["task"]);
    }
    vmmd.stop();
}
