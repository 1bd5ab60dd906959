//! The real `vmmd` binary on a loopback port, with SQLite: a VM's whole life over HTTP on
//! `test:///default`, and on `qemu:///system` with real QEMU (`--include-ignored`); state
//! that survives a restart; SIGTERM that stops it cleanly.
#![cfg(feature = "sqlite")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const TOKEN: &str = "e2e-token-0123456789abcdef";

struct Vmmd {
    child: Child,
    base: String,
}

impl Vmmd {
    fn start(data: &PathBuf) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmmd"))
            .arg("serve")
            .env("VMM_LISTEN", "127.0.0.1:0")
            .env("VMM_DATA_DIR", data)
            .env("VMM_ADMIN_TOKEN", TOKEN)
            .env("VMM_LOCAL_NODE", "false")
            .env("VMM_STORAGE_PATH", "/var/lib/vmm/e2e-images")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("vmmd starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("vmmd logs its address").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining the log so that vmmd never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = ureq::request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .timeout(Duration::from_secs(90));
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let res = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = res.status();
        let text = res.into_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Waits for a task to end; it must succeed.
    fn done(&self, task: &Value) {
        let id = task["id"].as_str().expect("a task id");
        let (status, t) = self.call("GET", &format!("/api/v1/tasks/{id}/wait?timeout_s=60"), None);
        assert_eq!(status, 200);
        assert_eq!(t["state"], "succeeded", "{t}");
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "vmmd exits cleanly on SIGTERM: {status}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "vmmd did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vmmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("vmmd-e2e-{}", uuid::Uuid::new_v4()))
}

fn vm_life(node_uri: &str, virt_type: &str) {
    let data = data_dir();
    let vmmd = Vmmd::start(&data);
    let (status, health) = vmmd.call("GET", "/api/v1/health", None);
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, node) = vmmd.call(
        "POST",
        "/api/v1/nodes",
        Some(json!({"name": "n1", "uri": node_uri, "virt_type": virt_type})),
    );
    assert_eq!(status, 201, "{node}");
    let (status, pool) = vmmd.call(
        "POST",
        "/api/v1/ip-pools",
        Some(json!({"name": "p", "cidr": "192.0.2.0/24", "gateway": "192.0.2.1"})),
    );
    assert_eq!(status, 201, "{pool}");
    let spec = json!({"name": "e2e <vm>", "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "ip_pool_id": pool["id"], "node_id": node["id"]});
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);
    let id = created["vm"]["id"].as_str().unwrap().to_owned();
    let (_, vm) = vmmd.call("GET", &format!("/api/v1/vms/{id}"), None);
    assert_eq!((vm["state"].as_str(), vm["addresses"][0].as_str()), (Some("running"), Some("192.0.2.2")));
    for action in ["suspend", "resume", "stop", "start"] {
        let (status, r) = vmmd.call("POST", &format!("/api/v1/vms/{id}/{action}"), None);
        assert_eq!(status, 202, "{action}: {r}");
        vmmd.done(&r["task"]);
    }
    let (status, r) = vmmd.call("PATCH", &format!("/api/v1/vms/{id}"), Some(json!({"name": "renamed"})));
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);

    // A restart keeps everything.
    vmmd.stop();
    let vmmd = Vmmd::start(&data);
    let (_, vm) = vmmd.call("GET", &format!("/api/v1/vms/{id}"), None);
    assert_eq!((vm["name"].as_str(), vm["state"].as_str()), (Some("renamed"), Some("running")));

    let (status, r) = vmmd.call("DELETE", &format!("/api/v1/vms/{id}"), None);
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);
    assert_eq!(vmmd.call("GET", &format!("/api/v1/vms/{id}"), None).0, 404);
    let (_, leases) =
        vmmd.call("GET", &format!("/api/v1/ip-pools/{}/leases", pool["id"].as_str().unwrap()), None);
    assert!(leases["items"].as_array().unwrap().is_empty(), "{leases}");
    vmmd.stop();
    std::fs::remove_dir_all(data).ok();
}

#[test]
fn a_vm_lives_over_http_on_the_test_driver() {
    vm_life("test:///default", "qemu");
}

#[test]
#[ignore = "needs libvirtd with QEMU (qemu:///system); CI runs it"]
fn a_vm_lives_over_http_on_real_qemu() {
    vm_life("qemu:///system", "qemu");
}

#[test]
fn a_generated_token_is_written_with_mode_0600_and_required() {
    let data = data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmmd"))
        .arg("serve")
        .env("VMM_LISTEN", "127.0.0.1:0")
        .env("VMM_DATA_DIR", &data)
        .env_remove("VMM_ADMIN_TOKEN")
        .env("VMM_LOCAL_NODE", "false")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = String::new();
    let base = loop {
        let line = lines.next().unwrap().unwrap();
        log.push_str(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let token_file = data.join("admin.token");
    assert!(log.contains("admin.token"), "the log says where the token is");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
    assert!(!log.contains(&token), "the token itself is never logged");
    let denied = ureq::get(&format!("{base}/api/v1/vms")).call();
    assert!(matches!(denied, Err(ureq::Error::Status(401, _))));
    let ok = ureq::get(&format!("{base}/api/v1/vms"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(ok.status(), 200);
    child.kill().ok();
    child.wait().ok();
    std::fs::remove_dir_all(data).ok();
}
