//! HA on two real libvirt hosts sharing a storage directory (this host and
//! `tests/node2.sh`'s, both seeing the same directory under /var/tmp): a network split of
//! the second host restarts nothing while no one fences it; a power loss of the second
//! host (its libvirtd and QEMU killed) brings its HA guest up on the first host only after
//! the fence agent (`tests/fence-node2.sh`) ran, within the lease and the fence's time;
//! when the host comes back, the stale definition there is removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use vmm_tests::virsh_at as virsh;
use vmm_tests::{data_dir, node2, wait_until, Vmmd, VmmdConfig};

const NODE1: &str = "qemu:///system";
const NODE2: &str = node2::URI;
const LEASE_S: u64 = 5;

fn here(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The types of the node's HA events so far.
fn node_events(vmmd: &Vmmd, node: &str) -> Vec<String> {
    let (_, events) = vmmd.call("GET", "/api/v1/events?types=node.*&limit=1000", None);
    events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node_id"] == json!(node))
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
#[ignore = "makes a second libvirt host (root) and boots the tiny guest; CI runs it"]
fn a_dead_hosts_ha_guest_restarts_elsewhere_only_once_fenced() {
    let node2_dir = data_dir().join("node2");
    let _down = node2::Down(node2_dir.clone());
    node2::must(&node2_dir, "up");
    // Both hosts see /var/tmp (node2.sh keeps only libvirt's own directories apart).
    let run = uuid::Uuid::new_v4().simple().to_string();
    let shared = PathBuf::from(format!("/var/tmp/vmm-ha-{run}"));
    // A pool of its own on each host (the main host's `vmm` pool is at another path).
    let pool = format!("vmm-ha-{}", &run[..8]);
    let data = data_dir();
    let marker = data.join("fenced");
    let config_file = data.join("vmmd.toml");
    std::fs::write(
        &config_file,
        format!(
            "[fence_agents]\nnode2 = [\"bash\", {:?}, {:?}]\n",
            here("fence-node2.sh").display().to_string(),
            marker.display().to_string()
        ),
    )
    .unwrap();
    let config = VmmdConfig { config_file: Some(config_file), ..VmmdConfig::new(&data) }
        .with("VMM_STORAGE_PATH", &shared.display().to_string())
        .with("VMM_STORAGE_SHARED", "true")
        .with("VMM_STORAGE_POOL", &pool)
        .with("VMM_NODE_LEASE_S", &LEASE_S.to_string())
        .with("VMM_HA_INTERVAL_S", "1")
        .with("VMM_NODE2_DIR", &node2_dir.display().to_string());
    let vmmd = Vmmd::start(&config);
    let n1 = id(&vmmd.add_node(NODE1));
    let (status, n2) =
        vmmd.call("POST", "/api/v1/nodes", Some(json!({"name": "n2", "uri": NODE2, "virt_type": "qemu"})));
    assert_eq!(status, 201, "{n2}");
    let n2 = id(&n2);
    let image = vmmd.tiny_image("tiny-ha");
    let spec = json!({"name": "precious", "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "node_id": n2,
        "image_id": image, "ha": true});
    let (status, made) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{made}");
    vmmd.done(&made["task"]);
    let vm = id(&made["vm"]);
    assert_eq!(made["vm"]["ha"], true);
    vmmd.console_line(&vm, "VMM-GUEST-TICK 1", 0, Duration::from_secs(180));
    let domain = format!("vmm-{vm}");
    wait_until("node2's lease", Duration::from_secs(30), || {
        vmmd.call("GET", &format!("/api/v1/nodes/{n2}/lease"), None).1["health"] == "alive"
    });

    // A network split, no fence agent: the lease runs out, an operator is asked, and
    // nothing restarts however long it lasts.
    node2::must(&node2_dir, "cut");
    wait_until("an operator to be asked", Duration::from_secs(30), || {
        node_events(&vmmd, &n2).contains(&"node.fence_required".to_owned())
    });
    std::thread::sleep(Duration::from_secs(2 * LEASE_S));
    let (_, got) = vmmd.call("GET", &format!("/api/v1/vms/{vm}"), None);
    assert_eq!(got["node_id"], json!(n2), "nothing moved without a fence: {got}");
    assert!(!virsh(NODE1, &["dominfo", &domain]).0, "not defined on the first host");
    let (status, r) = vmmd.call("POST", &format!("/api/v1/nodes/{n1}/fence"), None);
    if status != 409 {
        let log = vmmd.log();
        let tail: Vec<&str> = log.lines().filter(|l| !l.contains("GET /api")).collect();
        panic!("a live node is not fenced: {r}\n{}", tail[tail.len().saturating_sub(80)..].join("\n"));
    }
    node2::must(&node2_dir, "mend");
    wait_until("node2 to be revived", Duration::from_secs(30), || {
        node_events(&vmmd, &n2).contains(&"node.revived".to_owned())
    });
    assert_eq!(virsh(NODE2, &["domstate", &domain]), (true, "running".into()), "it ran on all along");

    // Power loss with a fence agent: fenced first, then up on the first host.
    let (status, r) = vmmd.call(
        "PATCH",
        &format!("/api/v1/nodes/{n2}"),
        Some(json!({"fence": {"kind": "agent", "agent": "node2"}})),
    );
    assert_eq!(status, 200, "{r}");
    let (status, r) = vmmd.call(
        "PATCH",
        &format!("/api/v1/nodes/{n2}"),
        Some(json!({"fence": {"kind": "agent", "agent": "nowhere"}})),
    );
    assert_eq!(status, 422, "only configured agents: {r}");
    let lost = now_s();
    node2::must(&node2_dir, "power-off");
    let began = Instant::now();
    let on_n1 = || {
        vmmd.call("GET", &format!("/api/v1/vms/{vm}"), None).1["node_id"] == json!(n1)
            && virsh(NODE1, &["domstate", &domain]).1 == "running"
    };
    while !on_n1() {
        if began.elapsed() > Duration::from_secs(120) {
            let log = vmmd.log();
            let tail: Vec<&str> = log.lines().filter(|l| !l.contains("GET /api")).collect();
            panic!("not on the first host in time:\n{}", tail[tail.len().saturating_sub(60)..].join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = began.elapsed();
    let fenced: f64 = std::fs::read_to_string(&marker)
        .expect("the fence agent ran")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (_, events) = vmmd.call("GET", "/api/v1/events?types=vm.recovered,node.fenced&limit=100", None);
    let at = |kind: &str| {
        let e = events["items"].as_array().unwrap().iter().find(|e| e["type"] == kind).expect(kind).clone();
        chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap().timestamp_micros() as f64
            / 1e6
    };
    assert!(fenced > lost && fenced <= at("node.fenced"), "fenced at {fenced}, lost at {lost}: {events}");
    assert!(at("vm.recovered") > fenced, "started only after the fence: {events}");
    // Lease, a pass or two, the fence (a second here) and a start.
    assert!(took < Duration::from_secs(LEASE_S + 20), "recovered in {took:?}");
    eprintln!("power loss to running on the first host: {took:?} (lease {LEASE_S}s)");
    vmmd.console_line(&vm, "VMM-GUEST-READY", 0, Duration::from_secs(180));

    // The host comes back: the stale definition goes, the guest stays where it runs.
    node2::must(&node2_dir, "up");
    wait_until("the stale definition to go", Duration::from_secs(60), || {
        !virsh(NODE2, &["dominfo", &domain]).0
    });
    assert_eq!(virsh(NODE1, &["domstate", &domain]), (true, "running".into()));
    vmmd.act("DELETE", &format!("/api/v1/vms/{vm}"));
    vmmd.stop();
    for verb in ["pool-destroy", "pool-undefine"] {
        virsh(NODE1, &[verb, &pool]);
    }
    std::fs::remove_dir_all(&shared).ok();
    std::fs::remove_dir_all(data).ok();
}
