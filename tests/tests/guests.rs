//! Usable servers end to end, over HTTP against the real `vmmd`: the tiny guest
//! (`tests/guest/build.sh`) uploaded as an image, a VM installed from it on
//! `qemu:///system` with a hostname, two SSH keys, a recipe and addresses from two pools on
//! a managed network, and what the guest applied read back from its serial console;
//! reinstalled with a new key; cloned; everything deleted and nothing left in libvirt.
//! Hostile images and URLs are refused with 422, and a forbidden listener sees no
//! connection.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use vmm_tests::{data_dir, Vmmd, VmmdConfig};

const KEYS: [&str; 3] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz5Q2d5kq2xqk0fZ7J3o1n9Zr1v3p6yX7mWcJmQqG7A alice@example",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0sR3Ugb5pJm1vWcJc5jJ7p1b9n2kqzXc0Jm8c1y4Yb bob@example",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4v0h6Q5Vx1nH4Cq2y1o3Jd9kD3Lw7mN1pZr8sT0uYe carol@example",
];

/// How long a boot under TCG may take to report.
const BOOT: Duration = Duration::from_secs(180);

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

/// What the guest reported, the `skip`-th time it did.
fn ready(vmmd: &Vmmd, vm: &str, skip: usize) -> Value {
    let line = vmmd.console_line(vm, "VMM-GUEST-READY ", skip, BOOT);
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh").arg("-c").arg("qemu:///system").args(args).output().expect("virsh runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs libvirtd with QEMU (qemu:///system) and the tiny guest; CI runs it"]
fn a_server_from_an_image_boots_with_what_it_was_given() {
    let data = data_dir();
    let vmmd = Vmmd::start(&VmmdConfig::new(&data));
    let (status, node) = vmmd.call(
        "POST",
        "/api/v1/nodes",
        Some(json!({"name": "n1", "uri": "qemu:///system", "virt_type": "qemu"})),
    );
    assert_eq!(status, 201, "{node}");
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let (status, net) = vmmd.call(
        "POST",
        "/api/v1/networks",
        Some(json!({"name": format!("e2e-{suffix}"), "kind": "managed"})),
    );
    assert_eq!(status, 201, "{net}");
    let mut pools = Vec::new();
    for (name, cidr, gw) in [("a", "198.51.100.0/24", "198.51.100.1"), ("b", "203.0.113.0/24", "203.0.113.1")]
    {
        let spec = json!({"name": format!("{name}-{suffix}"), "cidr": cidr, "gateway": gw, "network_id": id(&net), "dns": ["198.51.100.53"]});
        let (status, pool) = vmmd.call("POST", "/api/v1/ip-pools", Some(spec));
        assert_eq!(status, 201, "{pool}");
        pools.push(id(&pool));
    }
    let recipe = json!({"name": format!("r-{suffix}"), "os_families": ["linux"], "script": "echo from-the-recipe > /tmp/r\nexit 42"});
    let (status, recipe) = vmmd.call("POST", "/api/v1/recipes", Some(recipe));
    assert_eq!(status, 201, "{recipe}");
    let image_id = vmmd.tiny_image(&format!("tiny-{suffix}"));

    let spec = json!({
        "name": "e2e guest", "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "node_id": id(&node),
        "image_id": image_id, "hostname": "e2e-guest", "ssh_keys": [KEYS[0], KEYS[1]],
        "recipe_ids": [id(&recipe)], "ip_pool_ids": pools, "password": "correct horse battery staple",
    });
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);
    let vm = id(&created["vm"]);
    let (_, got) = vmmd.call("GET", &format!("/api/v1/vms/{vm}"), None);
    let addresses: Vec<String> =
        got["addresses"].as_array().unwrap().iter().map(|a| format!("{}/24", a.as_str().unwrap())).collect();
    assert_eq!(addresses.len(), 2, "{got}");

    let seen = ready(&vmmd, &vm, 0);
    assert_eq!(seen["instance_id"], vm, "{seen}");
    assert_eq!(seen["hostname"], "e2e-guest", "{seen}");
    assert_eq!(seen["addresses"], json!(addresses), "{seen}");
    assert_eq!(seen["ssh_keys"], json!([sha256(KEYS[0]), sha256(KEYS[1])]), "{seen}");
    assert_eq!((seen["password"].as_bool(), &seen["scripts"]), (Some(true), &json!([42])), "{seen}");

    // Reinstall with a new key: applied, with the same addresses and a new instance id.
    let (status, r) = vmmd.call(
        "POST",
        &format!("/api/v1/vms/{vm}/reinstall"),
        Some(json!({"image_id": image_id, "ssh_keys": [KEYS[2]]})),
    );
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);
    let seen = ready(&vmmd, &vm, 1);
    assert_eq!(seen["instance_id"], format!("{vm}-1"), "{seen}");
    assert_eq!(seen["ssh_keys"], json!([sha256(KEYS[2])]), "{seen}");
    assert_eq!((&seen["addresses"], &seen["hostname"]), (&json!(addresses), &json!("e2e-guest")), "{seen}");

    // Clone the stopped VM: the copy boots with its own addresses and instance.
    let (status, r) = vmmd.call("POST", &format!("/api/v1/vms/{vm}/stop"), None);
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);
    let (status, cloned) =
        vmmd.call("POST", &format!("/api/v1/vms/{vm}/clone"), Some(json!({"name": "e2e copy"})));
    assert_eq!(status, 202, "{cloned}");
    vmmd.done(&cloned["task"]);
    let copy = id(&cloned["vm"]);
    let (_, copied) = vmmd.call("GET", &format!("/api/v1/vms/{copy}"), None);
    let copy_addresses: Vec<String> = copied["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/24", a.as_str().unwrap()))
        .collect();
    assert!(copy_addresses.iter().all(|a| !addresses.contains(a)), "{copy_addresses:?} vs {addresses:?}");
    let seen = ready(&vmmd, &copy, 0);
    assert_eq!(
        (seen["instance_id"].as_str(), &seen["addresses"]),
        (Some(copy.as_str()), &json!(copy_addresses))
    );
    assert_eq!((seen["hostname"].as_str(), &seen["ssh_keys"]), (Some("e2e-copy"), &json!([sha256(KEYS[2])])));

    // Delete everything: nothing stays in libvirt, no lease in the store.
    for v in [&vm, &copy] {
        let (status, r) = vmmd.call("DELETE", &format!("/api/v1/vms/{v}"), None);
        assert_eq!(status, 202, "{r}");
        vmmd.done(&r["task"]);
    }
    for pool in &pools {
        let (_, leases) = vmmd.call("GET", &format!("/api/v1/ip-pools/{pool}/leases"), None);
        assert_eq!(leases["items"], json!([]), "{leases}");
        assert_eq!(vmmd.call("DELETE", &format!("/api/v1/ip-pools/{pool}"), None).0, 204);
    }
    assert_eq!(vmmd.call("DELETE", &format!("/api/v1/images/{image_id}"), None).0, 204);
    assert_eq!(vmmd.call("DELETE", &format!("/api/v1/networks/{}", id(&net)), None).0, 204);
    let domains = virsh(&["list", "--all", "--name"]);
    let volumes = virsh(&["vol-list", "vmm"]);
    for gone in [&vm, &copy, &image_id] {
        assert!(!domains.contains(gone.as_str()), "a domain of {gone} is left:\n{domains}");
        assert!(!volumes.contains(gone.as_str()), "a volume of {gone} is left:\n{volumes}");
    }
    let networks = virsh(&["net-list", "--all", "--name"]);
    assert!(!networks.contains(&id(&net)), "the managed network is left:\n{networks}");
    vmmd.stop();
    std::fs::remove_dir_all(data).ok();
}

/// A listener that counts the connections it gets and answers each with `answer`.
fn listener(ip: &str, answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut stream) = stream else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).ok();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            stream.write_all(&answer(&path)).ok();
        }
    });
    (port, count)
}

#[test]
fn hostile_images_and_urls_are_refused_with_422() {
    let work = data_dir();
    let at = |name: &str| work.join(name);
    let qemu_img = |args: &[&str]| {
        let out = Command::new("qemu-img").args(args).output().expect("qemu-img runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "/etc/shadow",
        "-F",
        "raw",
        at("shadow.qcow2").to_str().unwrap(),
        "1M",
    ]);
    std::fs::write(at("data.raw"), vec![0u8; 1 << 20]).unwrap();
    let data_file = format!("data_file={}", at("data.raw").display());
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &data_file,
        at("datafile.qcow2").to_str().unwrap(),
        "1M",
    ]);
    std::fs::write(at("plain.raw"), vec![1u8; 1 << 20]).unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", at("huge.qcow2").to_str().unwrap(), "64G"]);
    qemu_img(&["create", "-q", "-f", "qcow2", at("good.qcow2").to_str().unwrap(), "32M"]);

    let (victim, connections) =
        listener("127.0.0.1", |_| b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec());
    let served = std::fs::read(at("good.qcow2")).unwrap();
    let served_copy = served.clone();
    let (mirror, _) = listener("127.0.0.2", move |path| match path {
        "/to-loopback" => format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{victim}/x\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes(),
        "/moved" => b"HTTP/1.1 301 Moved\r\nLocation: /good.qcow2\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/good.qcow2" => {
            let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", served.len()).into_bytes();
            out.extend_from_slice(&served);
            out
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    });
    let config = VmmdConfig::new(&work)
        .with("VMM_IMAGE_URL_HOSTS", "*")
        .with("VMM_IMAGE_URL_ADDRESSES", "127.0.0.2")
        .with("VMM_IMAGE_MAX_VIRTUAL_BYTES", &(16u64 << 30).to_string());
    let vmmd = Vmmd::start(&config);

    for (file, format, why) in [
        ("shadow.qcow2", "qcow2", "backing file"),
        ("datafile.qcow2", "qcow2", "data file"),
        ("plain.raw", "qcow2", "not qcow2"),
        ("huge.qcow2", "qcow2", "over the limit"),
    ] {
        let spec = json!({"name": file, "os": {"family": "linux"}, "format": format});
        let (status, image) = vmmd.call("POST", "/api/v1/images", Some(spec));
        assert_eq!(status, 201, "{image}");
        let (status, problem) = vmmd.upload(&format!("/api/v1/images/{}/data", id(&image)), &at(file));
        assert_eq!(status, 422, "{file}: {problem}");
        assert!(problem["detail"].as_str().unwrap_or_default().contains(why), "{file}: {problem}");
        let (_, image) = vmmd.call("GET", &format!("/api/v1/images/{}", id(&image)), None);
        assert_eq!(image["state"], "importing", "{file}: nothing was kept");
    }
    let images_dir = work.join("images");
    let kept: Vec<_> = std::fs::read_dir(&images_dir).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(kept.is_empty(), "refused data stays out of {}: {kept:?}", images_dir.display());

    for url in [
        format!("http://127.0.0.1:{victim}/image.qcow2"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{victim}/image.qcow2"),
        format!("http://localhost:{victim}/image.qcow2"),
        format!("http://127.0.0.2:{mirror}/to-loopback"),
    ] {
        let spec = json!({"name": "far", "os": {"family": "linux"}, "format": "qcow2", "source_url": url});
        let (status, problem) = vmmd.call("POST", "/api/v1/images", Some(spec));
        assert_eq!((status, problem["field"].as_str()), (422, Some("source_url")), "{url}: {problem}");
    }
    let (_, images) = vmmd.call("GET", "/api/v1/images", None);
    assert_eq!(images["items"].as_array().unwrap().len(), 4, "a refused URL adds no image: {images}");

    // From the mirror the operator allows, through a redirect: fetched by a task and checked.
    let spec = json!({"name": "fetched", "os": {"family": "linux"}, "format": "qcow2",
                      "source_url": format!("http://127.0.0.2:{mirror}/moved")});
    let (status, accepted) = vmmd.call("POST", "/api/v1/images", Some(spec));
    assert_eq!((status, accepted["image"]["state"].as_str()), (202, Some("importing")), "{accepted}");
    vmmd.done(&accepted["task"]);
    let (_, image) = vmmd.call("GET", &format!("/api/v1/images/{}", id(&accepted["image"])), None);
    let sha: String = Sha256::digest(&served_copy).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        (image["state"].as_str(), image["sha256"].as_str()),
        (Some("ready"), Some(sha.as_str())),
        "{image}"
    );
    assert_eq!(image["virtual_size_bytes"], 32u64 << 20);
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the loopback listener saw a connection");
    vmmd.stop();
    std::fs::remove_dir_all(work).ok();
}
