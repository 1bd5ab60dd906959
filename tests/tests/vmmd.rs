//! The real `vmmd` binary on a loopback port: a VM's whole life over HTTP on SQLite and on
//! PostgreSQL, on `test:///default` and on `qemu:///system` with real QEMU
//! (`--include-ignored`); state that survives a restart; a `kill -9` in the middle of a
//! task recovered by the next start; SIGTERM that stops it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use vmm_tests::{data_dir, postgres_db, vmmd_binary, Vmmd, VmmdConfig};

fn vm_life(config: VmmdConfig, node_uri: &str) {
    let vmmd = Vmmd::start(&config);
    let (status, health) = vmmd.call("GET", "/api/v1/health", None);
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, node) =
        vmmd.call("POST", "/api/v1/nodes", Some(json!({"name": "n1", "uri": node_uri, "virt_type": "qemu"})));
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
    let (status, r) =
        vmmd.call("PATCH", &format!("/api/v1/vms/{id}"), Some(json!({"name": "renamed", "memory_mib": 192})));
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);
    let (_, node_now) = vmmd.call("GET", &format!("/api/v1/nodes/{}", node["id"].as_str().unwrap()), None);
    assert_eq!(node_now["allocated"]["memory_mib"], 192, "usage follows the resize: {node_now}");

    // A restart keeps everything.
    vmmd.stop();
    let vmmd = Vmmd::start(&config);
    let (_, vm) = vmmd.call("GET", &format!("/api/v1/vms/{id}"), None);
    assert_eq!((vm["name"].as_str(), vm["state"].as_str()), (Some("renamed"), Some("running")));

    let (status, r) = vmmd.call("DELETE", &format!("/api/v1/vms/{id}"), None);
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);
    assert_eq!(vmmd.call("GET", &format!("/api/v1/vms/{id}"), None).0, 404);
    let (_, leases) =
        vmmd.call("GET", &format!("/api/v1/ip-pools/{}/leases", pool["id"].as_str().unwrap()), None);
    assert!(leases["items"].as_array().unwrap().is_empty(), "{leases}");
    let (_, node_now) = vmmd.call("GET", &format!("/api/v1/nodes/{}", node["id"].as_str().unwrap()), None);
    assert_eq!(node_now["allocated"]["vms"], 0, "{node_now}");
    vmmd.stop();
}

#[test]
fn a_vm_lives_over_http_on_the_test_driver() {
    let data = data_dir();
    vm_life(VmmdConfig::new(&data), "test:///default");
    std::fs::remove_dir_all(data).ok();
}

#[test]
#[ignore = "needs libvirtd with QEMU (qemu:///system); CI runs it"]
fn a_vm_lives_over_http_on_real_qemu_with_sqlite() {
    let data = data_dir();
    vm_life(VmmdConfig::new(&data), "qemu:///system");
    std::fs::remove_dir_all(data).ok();
}

#[test]
#[ignore = "needs libvirtd with QEMU and PostgreSQL on 127.0.0.1:5432; CI runs it"]
fn a_vm_lives_over_http_on_real_qemu_with_postgres() {
    let data = data_dir();
    let config = VmmdConfig { database_url: Some(postgres_db()), ..VmmdConfig::new(&data) };
    vm_life(config, "qemu:///system");
    std::fs::remove_dir_all(data).ok();
}

/// `kill -9` while tasks are in hand: the next vmmd recovers every one of them once their
/// leases expire by the database's clock, and nothing is left half-made.
fn killed_mid_task(config: VmmdConfig, node_uri: &str) {
    // Short leases, so that recovery does not wait half a minute.
    let config = config.with("VMM_TASK_LEASE_S", "2");
    let vmmd = Vmmd::start(&config);
    let (status, node) =
        vmmd.call("POST", "/api/v1/nodes", Some(json!({"name": "n1", "uri": node_uri, "virt_type": "qemu"})));
    assert_eq!(status, 201, "{node}");
    let mut tasks = Vec::new();
    let mut vms = Vec::new();
    for i in 0..3 {
        let spec = json!({"name": format!("k{i}"), "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
        let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
        assert_eq!(status, 202, "{created}");
        tasks.push(created["task"].clone());
        vms.push(created["vm"]["id"].as_str().unwrap().to_owned());
    }
    vmmd.kill();
    let vmmd = Vmmd::start(&config);
    for (task, vm) in tasks.iter().zip(&vms) {
        let t = vmmd.wait(task);
        assert_eq!(t["state"], "succeeded", "{t}");
        let (_, got) = vmmd.call("GET", &format!("/api/v1/vms/{vm}"), None);
        assert_eq!(got["state"], "running", "{got}");
    }
    for vm in &vms {
        let (status, r) = vmmd.call("DELETE", &format!("/api/v1/vms/{vm}"), None);
        assert_eq!(status, 202, "{r}");
        vmmd.done(&r["task"]);
    }
    let (_, node_now) = vmmd.call("GET", &format!("/api/v1/nodes/{}", node["id"].as_str().unwrap()), None);
    assert_eq!(node_now["allocated"]["vms"], 0, "{node_now}");
    vmmd.stop();
}

#[test]
fn a_killed_vmmd_recovers_its_tasks_on_sqlite() {
    let data = data_dir();
    killed_mid_task(VmmdConfig::new(&data), "test:///default");
    std::fs::remove_dir_all(data).ok();
}

#[test]
#[ignore = "needs libvirtd with QEMU and PostgreSQL on 127.0.0.1:5432; CI runs it"]
fn a_killed_vmmd_recovers_its_tasks_on_postgres_with_real_qemu() {
    let data = data_dir();
    let config = VmmdConfig { database_url: Some(postgres_db()), ..VmmdConfig::new(&data) };
    killed_mid_task(config, "qemu:///system");
    std::fs::remove_dir_all(data).ok();
}

#[test]
fn a_generated_token_is_written_with_mode_0600_and_required() {
    let data = data_dir();
    let mut child = Command::new(vmmd_binary())
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

#[test]
fn json_logs_carry_the_request_and_task_ids() {
    let data = data_dir();
    let vmmd = Vmmd::start(
        &VmmdConfig::new(&data).with("VMM_LOG_FORMAT", "json").with("RUST_LOG", "info,tower_http=debug"),
    );
    vmmd.add_node("test:///default");
    let (status, created) = vmmd.call(
        "POST",
        "/api/v1/vms",
        Some(json!({"name": "logged", "vcpus": 1, "memory_mib": 64, "disk_gib": 1})),
    );
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);
    let task = created["task"]["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = vmmd.log();
        let lines: Vec<Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect();
        let in_span = |name: &str, key: &str, value: &str| {
            lines.iter().any(|l| {
                l["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["name"] == name && s[key] == value))
            })
        };
        let requests = lines.iter().any(|l| {
            l["spans"].as_array().is_some_and(|s| {
                s.iter().any(|s| s["name"] == "request" && s["id"].as_str().is_some_and(|id| id.len() == 36))
            })
        });
        if in_span("task", "task", task) && requests {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line of task {task}, or none of a request, in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    vmmd.stop();
    std::fs::remove_dir_all(data).ok();
}
