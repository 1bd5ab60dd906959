//! Two `vmmd` on one PostgreSQL with real QEMU (`--include-ignored`): 200 creates spread
//! over both, one of them killed with `kill -9` half-way; every task ends, no VM or address
//! is lost or made twice, and the loops that run once per cluster (the reconciler) go on in
//! the survivor.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vmm_tests::{data_dir, postgres_db, Vmmd, VmmdConfig};

const CREATES: usize = 200;

fn create(vmmd: &Vmmd, pool: &str, i: usize) -> Option<(String, Value)> {
    // Not started: the domain and disk are made, no guest runs (200 QEMUs would not fit).
    let spec = json!({"name": format!("c{i}"), "vcpus": 1, "memory_mib": 64, "disk_gib": 1, "ip_pool_id": pool, "start": false});
    let (status, r) = vmmd.call_with_timeout("POST", "/api/v1/vms", Some(spec), Duration::from_secs(30));
    if status != 202 {
        eprintln!("create {i}: {status} {r}");
        return None;
    }
    Some((r["vm"]["id"].as_str().unwrap().to_owned(), r["task"].clone()))
}

#[test]
#[ignore = "needs libvirtd with QEMU and PostgreSQL on 127.0.0.1:5432; CI runs it"]
fn two_vmmd_share_one_database_and_survive_a_kill() {
    let db = postgres_db();
    let config = |dir: std::path::PathBuf| {
        VmmdConfig { database_url: Some(db.clone()), ..VmmdConfig::new(&dir) }
            .with("VMM_TASK_LEASE_S", "2")
            .with("VMM_RECONCILE_INTERVAL_S", "1")
    };
    let a = Vmmd::start(&config(data_dir()));
    let b = Vmmd::start(&config(data_dir()));
    let (status, node) = a.call(
        "POST",
        "/api/v1/nodes",
        Some(json!({"name": "n1", "uri": "qemu:///system", "virt_type": "qemu", "cpu_overcommit": 64.0, "memory_overcommit": 4.0})),
    );
    assert_eq!(status, 201, "{node}");
    let (_, pool) = b.call("POST", "/api/v1/ip-pools", Some(json!({"name": "p", "cidr": "198.51.100.0/24"})));
    let pool = pool["id"].as_str().unwrap().to_owned();

    // Creates four at a time, spread over both; A dies with tasks in hand half-way through
    // the first round. The node holds at most 128 vCPUs (64 per CPU), so the 200 creates go
    // in two rounds of 100, each deleted before the next.
    let batch = |from: usize, to: usize, servers: &[&Vmmd]| -> Vec<(String, Value)> {
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|w| {
                    let pool = pool.clone();
                    scope.spawn(move || {
                        (from + w..to)
                            .step_by(4)
                            .filter_map(|i| create(servers[i % servers.len()], &pool, i))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        })
    };
    let mut made = batch(0, CREATES / 4, &[&a, &b]);
    a.kill();
    made.extend(batch(CREATES / 4, CREATES / 2, &[&b]));
    check_round(&b, &pool, &made);
    made = batch(CREATES / 2, CREATES, &[&b]);
    check_round(&b, &pool, &made);
    // Each VM was made once, and each of its addresses taken and given back once.
    let (_, events) =
        b.call("GET", "/api/v1/events?types=vm.created,lease.taken,lease.released&limit=1000", None);
    let events = events["items"].as_array().unwrap();
    for kind in ["vm.created", "lease.taken", "lease.released"] {
        let vms: Vec<&str> =
            events.iter().filter(|e| e["type"] == kind).map(|e| e["vm_id"].as_str().unwrap()).collect();
        assert_eq!(vms.len(), CREATES, "{kind}");
        assert_eq!(vms.iter().collect::<HashSet<_>>().len(), CREATES, "{kind} once per VM");
    }
    b.stop();
}

/// Every task of `made` ends well on `b`; the VMs are all there, each with its own address;
/// the reconciler (a singleton: the survivor's now) observes every one; then they go.
fn check_round(b: &Vmmd, pool: &str, made: &[(String, Value)]) {
    assert_eq!(made.len(), CREATES / 2, "every create was accepted");
    let deadline = Instant::now() + Duration::from_secs(600);
    for (_, task) in made {
        loop {
            let t = b.wait(task);
            if t["state"] != "queued" && t["state"] != "running" {
                assert_eq!(t["state"], "succeeded", "{t}");
                break;
            }
            assert!(Instant::now() < deadline, "task {} never ended", task["id"]);
        }
    }
    let (_, vms) = b.call("GET", "/api/v1/vms?limit=1000", None);
    let vms = vms["items"].as_array().unwrap().clone();
    let ids: HashSet<&str> = vms.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        made.iter().map(|(id, _)| id.as_str()).collect::<HashSet<_>>(),
        "no VM lost or made twice"
    );
    let addresses: HashSet<&str> = vms.iter().map(|v| v["addresses"][0].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), made.len(), "each VM its own address");
    let (_, leases) = b.call("GET", &format!("/api/v1/ip-pools/{pool}/leases?limit=1000"), None);
    assert_eq!(leases["items"].as_array().unwrap().len(), made.len(), "no lease lost or left over");
    assert!(vms.iter().all(|v| v["state"] == "stopped"), "every VM made");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, vms) = b.call("GET", "/api/v1/vms?limit=1000", None);
        let seen =
            vms["items"].as_array().unwrap().iter().filter(|v| v["observed_state"] == "stopped").count();
        if seen == made.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the survivor's reconciler saw {seen} of {} VMs", made.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::scope(|scope| {
        for w in 0..4 {
            scope.spawn(move || {
                for (vm, _) in made.iter().skip(w).step_by(4) {
                    let (status, r) = b.call("DELETE", &format!("/api/v1/vms/{vm}"), None);
                    assert_eq!(status, 202, "{r}");
                    b.done(&r["task"]);
                }
            });
        }
    });
    let (_, leases) = b.call("GET", &format!("/api/v1/ip-pools/{pool}/leases"), None);
    assert!(leases["items"].as_array().unwrap().is_empty());
}
