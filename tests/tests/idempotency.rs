//! `Idempotency-Key` against the real `vmmd`: the same create retried one after another and
//! 16 at once makes one VM and takes one address, on SQLite and on PostgreSQL
//! (`--include-ignored`).

use serde_json::{json, Value};
use vmm_tests::{data_dir, postgres_db, Vmmd, VmmdConfig, TOKEN};

fn create(base: &str, key: &str, spec: &Value) -> (u16, Value) {
    let res = ureq::post(&format!("{base}/api/v1/vms"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .set("Idempotency-Key", key)
        .send_json(spec.clone());
    let res = match res {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST /vms: {e}"),
    };
    (res.status(), serde_json::from_str(&res.into_string().unwrap()).unwrap())
}

fn one_vm_per_key(config: VmmdConfig) {
    let vmmd = Vmmd::start(&config);
    vmmd.add_node("test:///default");
    let (_, pool) =
        vmmd.call("POST", "/api/v1/ip-pools", Some(json!({"name": "p", "cidr": "198.51.100.0/24"})));
    let spec = json!({"name": "web", "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "ip_pool_id": pool["id"]});

    // One after another.
    let (s1, first) = create(&vmmd.base, "seq-key", &spec);
    let (s2, second) = create(&vmmd.base, "seq-key", &spec);
    assert_eq!((s1, s2), (202, 202), "{first} {second}");
    assert_eq!(first, second);
    vmmd.done(&first["task"]);

    // Sixteen at once.
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..16).map(|_| scope.spawn(|| create(&vmmd.base, "burst-key", &spec))).collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let made: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 202).map(|(_, b)| b).collect();
    assert!(answers.iter().all(|(s, _)| *s == 202 || *s == 409), "{answers:?}");
    assert!(!made.is_empty());
    assert!(made.iter().all(|b| b["vm"]["id"] == made[0]["vm"]["id"]), "{made:?}");
    vmmd.done(&made[0]["task"]);

    let (_, vms) = vmmd.call("GET", "/api/v1/vms?limit=1000", None);
    assert_eq!(vms["items"].as_array().unwrap().len(), 2, "{vms}");
    let (_, leases) =
        vmmd.call("GET", &format!("/api/v1/ip-pools/{}/leases", pool["id"].as_str().unwrap()), None);
    assert_eq!(leases["items"].as_array().unwrap().len(), 2, "{leases}");
    vmmd.stop();
}

#[test]
fn a_retried_create_makes_one_vm_on_sqlite() {
    one_vm_per_key(VmmdConfig::new(&data_dir()));
}

#[test]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432; CI runs it"]
fn a_retried_create_makes_one_vm_on_postgres() {
    one_vm_per_key(VmmdConfig { database_url: Some(postgres_db()), ..VmmdConfig::new(&data_dir()) });
}
