//! Keeping it, end to end: the directory and S3 targets (moto on loopback) pass the target
//! suite; on `qemu:///system` the tiny guest writes a known pattern to its disk through a
//! recipe, is backed up in full to a directory while it runs (libvirt's backup API) and to
//! S3 once stopped, changed, backed up incrementally to S3, destroyed, and restored from each backup as a new VM whose disk `qemu-img
//! compare`s equal to the disk at backup time and whose guest reports the pattern on its
//! console. Faults: a flipped byte in a stored chunk fails verify and restore naming the
//! chunk; a full target (a tmpfs of a few MiB) fails the backup and keeps nothing of it;
//! `kill -9` of vmmd mid-backup leaves nothing restorable and the task ends after recovery.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use vmm_core::backup::{BackupTargetConfig, S3Access, TargetOpener};
use vmm_core::{BackupTargetId, Secret};
use vmm_tests::{data_dir, wait_until, Moto, Vmmd, VmmdConfig};

/// How long a boot under TCG may take to report.
const BOOT: Duration = Duration::from_secs(180);

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("an id in {v}")).to_owned()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The file of a VM's disk volume on this machine.
fn volume_path(vm: &str) -> String {
    run("virsh", &["-c", "qemu:///system", "vol-path", "--pool", "vmm", &format!("vmm-{vm}.qcow2")])
        .trim()
        .to_owned()
}

/// The `VMM-GUEST-DISK` line the guest prints at boot: the text at 512 MiB and the MD5 of
/// the MiB at 600 MiB.
fn disk_line(vmmd: &Vmmd, vm: &str) -> String {
    vmmd.console_line(vm, "VMM-GUEST-DISK ", 0, BOOT)
}

fn md5_of(data: &[u8]) -> String {
    let out = Command::new("sh")
        .args(["-c", "md5sum | cut -d' ' -f1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(data)?;
            c.wait_with_output()
        })
        .expect("md5sum");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn s3_spec(moto: &Moto, name: &str, bucket: &str) -> Value {
    json!({"name": name, "url": format!("s3://{bucket}/site-a"), "s3": {
        "endpoint": moto.endpoint, "region": "us-east-1", "access_key_id": "testing",
        "secret_access_key": "moto-secret-key-for-tests"}})
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A tmpfs mounted on a temporary directory, unmounted and removed when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = temp_dir("tmpfs");
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()]);
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test]
#[ignore = "needs moto from the setup's .venv; CI runs it"]
async fn directory_and_s3_targets_pass_the_target_suite() {
    let moto = Moto::start("suite");
    let dir = temp_dir("target-suite");
    let targets = vmm_backends::backup::Targets::new();
    let configs = [
        BackupTargetConfig {
            id: BackupTargetId::new(),
            name: "dir".into(),
            url: format!("dir://{}", dir.display()),
            s3: None,
            created_at: chrono::Utc::now(),
        },
        BackupTargetConfig {
            id: BackupTargetId::new(),
            name: "s3".into(),
            url: "s3://suite/some/prefix".into(),
            s3: Some(S3Access {
                endpoint: Some(moto.endpoint.clone()),
                region: None,
                access_key_id: "testing".into(),
                secret_access_key: Secret::new("moto-secret"),
            }),
            created_at: chrono::Utc::now(),
        },
    ];
    for config in &configs {
        let target = targets.open(config).await.expect("the target opens");
        vmm_core::conformance::backups::backup_target(target.as_ref()).await;
    }
    // The prefix holds every key the S3 target wrote (the suite removed them all).
    assert!(moto.keys("suite").is_empty(), "{:?}", moto.keys("suite"));
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
#[ignore = "needs libvirtd with QEMU, the tiny guest and moto; CI runs them"]
fn a_guest_backed_up_to_a_directory_and_to_s3_restores_with_its_disk() {
    let data = data_dir();
    let vmmd = Vmmd::start(&VmmdConfig::new(&data));
    let node = vmmd.add_node("qemu:///system");
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let pattern = format!("VMM-PATTERN-{suffix}");
    let script = format!("printf '%s' {pattern} | dd of=/dev/vda bs=1M seek=512 conv=notrunc\nsync");
    let recipe = json!({"name": format!("pattern-{suffix}"), "os_families": ["linux"], "script": script});
    let (status, recipe) = vmmd.call("POST", "/api/v1/recipes", Some(recipe));
    assert_eq!(status, 201, "{recipe}");
    let image = vmmd.tiny_image(&format!("tiny-{suffix}"));
    let spec = json!({"name": "kept", "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "node_id": id(&node),
        "image_id": image, "recipe_ids": [id(&recipe)]});
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);
    let vm = id(&created["vm"]);
    let zeros = md5_of(&[0u8; 1 << 20]);
    assert_eq!(disk_line(&vmmd, &vm), format!("{pattern} {zeros}"), "the recipe wrote the pattern");

    // The targets: a directory, and a bucket on moto.
    let moto = Moto::start("vmm-backups");
    let dir = temp_dir("backups");
    let (status, dir_target) = vmmd.call(
        "POST",
        "/api/v1/backup-targets",
        Some(json!({"name": "local", "url": format!("dir://{}", dir.display())})),
    );
    assert_eq!(status, 201, "{dir_target}");
    let (status, s3_target) =
        vmmd.call("POST", "/api/v1/backup-targets", Some(s3_spec(&moto, "offsite", "vmm-backups")));
    assert_eq!(status, 201, "{s3_target}");
    assert!(!s3_target.to_string().contains("moto-secret-key-for-tests"), "{s3_target}");
    assert!(!vmmd.log().contains("moto-secret-key-for-tests"), "the secret is not logged");

    let backup = |target: &Value, mode: &str| -> Value {
        let (status, r) = vmmd.call(
            "POST",
            &format!("/api/v1/vms/{vm}/backups"),
            Some(json!({"target_id": id(target), "mode": mode})),
        );
        assert_eq!(status, 202, "{r}");
        vmmd.done(&r["task"]);
        let (_, b) = vmmd.call("GET", &format!("/api/v1/backups/{}", id(&r["backup"])), None);
        assert_eq!(b["state"], "completed", "{b}");
        b
    };
    let keep = temp_dir("disks");
    // The guest runs: the full backup to the directory copies its disk at one instant,
    // crash-consistent (the tiny guest has no agent to freeze its filesystems).
    let full_dir = backup(&dir_target, "full");
    assert_eq!(full_dir["consistency"], "crash_consistent", "{full_dir}");
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/stop"));
    let full_s3 = backup(&s3_target, "full");
    assert_eq!(full_s3["consistency"], "stopped", "{full_s3}");
    // The tiny guest never writes to its disk after the recipe: the disk now is the disk at
    // either backup.
    let at_full = keep.join("full.qcow2");
    std::fs::copy(volume_path(&vm), &at_full).expect("a copy of the disk at backup time");
    // Change 1 MiB on the stopped VM's disk, then back up incrementally to S3.
    let path = volume_path(&vm);
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 0x5a 600M 1M", &path]);
    let incr = backup(&s3_target, "incremental");
    assert_eq!(incr["parent_id"], full_s3["id"], "{incr}");
    let stored = incr["size_bytes"].as_u64().unwrap();
    assert!(stored < full_s3["size_bytes"].as_u64().unwrap() / 2, "{incr} vs {full_s3}");
    let at_incr = keep.join("incr.qcow2");
    std::fs::copy(&path, &at_incr).expect("a copy of the disk at backup time");

    // Into the VM itself: the full backup's disk comes back over the changed one.
    let (status, r) =
        vmmd.call("POST", &format!("/api/v1/backups/{}/restore", id(&full_s3)), Some(json!({"vm_id": vm})));
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);
    run("qemu-img", &["compare", "-f", "qcow2", "-F", "qcow2", at_full.to_str().unwrap(), &volume_path(&vm)]);

    // Destroy the VM; restore each backup as a new VM.
    vmmd.act("DELETE", &format!("/api/v1/vms/{vm}"));
    let restore = |backup: &Value, name: &str| -> (u16, Value) {
        vmmd.call(
            "POST",
            &format!("/api/v1/backups/{}/restore", id(backup)),
            Some(json!({"new_vm": {"name": name, "start": false}})),
        )
    };
    for (backup, reference, name, sum) in [
        (&full_dir, &at_full, "from-dir", zeros.clone()),
        (&incr, &at_incr, "from-s3", md5_of(&[0x5a; 1 << 20])),
    ] {
        let (status, r) = restore(backup, name);
        assert_eq!(status, 202, "{r}");
        vmmd.done(&r["task"]);
        let restored = id(&r["vm"]);
        let restored_path = volume_path(&restored);
        run(
            "qemu-img",
            &["compare", "-f", "qcow2", "-F", "qcow2", reference.to_str().unwrap(), &restored_path],
        );
        vmmd.act("POST", &format!("/api/v1/vms/{restored}/start"));
        assert_eq!(disk_line(&vmmd, &restored), format!("{pattern} {sum}"), "{name}");
        vmmd.act("DELETE", &format!("/api/v1/vms/{restored}"));
    }

    // Verify: good; then flip a byte of a stored chunk: verify and restore fail naming it.
    for b in [&full_dir, &incr] {
        let (status, r) = vmmd.call("POST", &format!("/api/v1/backups/{}/verify", id(b)), None);
        assert_eq!(status, 202, "{r}");
        vmmd.done(&r["task"]);
    }
    let chunk =
        files(&dir).into_iter().find(|p| p.to_string_lossy().contains("/chunks/")).expect("a chunk file");
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&chunk, bytes).unwrap();
    let name = chunk.file_name().unwrap().to_string_lossy().into_owned();
    let (_, r) = vmmd.call("POST", &format!("/api/v1/backups/{}/verify", id(&full_dir)), None);
    let task = vmmd.wait(&r["task"]);
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["error"].as_str().unwrap().contains(&name), "{task}");
    let (_, b) = vmmd.call("GET", &format!("/api/v1/backups/{}", id(&full_dir)), None);
    assert_eq!(b["verified"]["ok"], false, "{b}");
    let (status, r) = restore(&full_dir, "from-a-bad-chunk");
    assert_eq!(status, 202, "{r}");
    let task = vmmd.wait(&r["task"]);
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["error"].as_str().unwrap().contains(&name), "{task}");
    let volumes = run("virsh", &["-c", "qemu:///system", "vol-list", "vmm"]);
    assert!(!volumes.contains(&id(&r["vm"])), "no volume of the failed restore is left:\n{volumes}");

    // Deleting every backup empties both targets.
    for b in [&incr, &full_s3, &full_dir] {
        vmmd.act("DELETE", &format!("/api/v1/backups/{}", id(b)));
    }
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    assert!(moto.keys("vmm-backups").is_empty(), "{:?}", moto.keys("vmm-backups"));
    for t in [&dir_target, &s3_target] {
        assert_eq!(vmmd.call("DELETE", &format!("/api/v1/backup-targets/{}", id(t)), None).0, 204);
    }
    assert_eq!(vmmd.call("DELETE", &format!("/api/v1/images/{image}"), None).0, 204);
    vmmd.stop();
    for d in [&dir, &keep, &data] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
#[ignore = "needs libvirtd with QEMU, root (to mount a tmpfs) and the tiny guest; CI runs them"]
fn a_full_target_and_a_killed_vmmd_leave_no_partial_backup() {
    let data = data_dir();
    let config = VmmdConfig::new(&data).with("VMM_TASK_LEASE_S", "3");
    let vmmd = Vmmd::start(&config);
    let node = vmmd.add_node("qemu:///system");
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let image = vmmd.tiny_image(&format!("tiny-{suffix}"));
    let spec = json!({"name": "big", "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "node_id": id(&node),
        "image_id": image, "start": false});
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);
    let vm = id(&created["vm"]);
    // 300 MiB of data, so that a backup takes long enough to be interrupted.
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 0x33 100M 300M", &volume_path(&vm)]);

    // A tmpfs of 8 MiB: the backup fails as the target fills, and nothing of it stays.
    let tmpfs = Tmpfs::mount("8m");
    let small = tmpfs.0.clone();
    let (status, t) = vmmd.call(
        "POST",
        "/api/v1/backup-targets",
        Some(json!({"name": "small", "url": format!("dir://{}", small.display())})),
    );
    assert_eq!(status, 201, "{t}");
    let (status, r) =
        vmmd.call("POST", &format!("/api/v1/vms/{vm}/backups"), Some(json!({"target_id": id(&t)})));
    assert_eq!(status, 202, "{r}");
    let task = vmmd.wait(&r["task"]);
    assert_eq!(task["state"], "failed", "{task}");
    assert!(task["error"].as_str().unwrap().contains("full"), "{task}");
    let (_, b) = vmmd.call("GET", &format!("/api/v1/backups/{}", id(&r["backup"])), None);
    assert_eq!(b["state"], "failed", "{b}");
    assert!(files(&small).is_empty(), "{:?}", files(&small));
    drop(tmpfs);

    // kill -9 mid-backup: no manifest, so nothing restorable; after a restart the task is
    // recovered and ends, and the backup is either complete and good or failed and gone.
    let dir = temp_dir("killed");
    let (status, t) = vmmd.call(
        "POST",
        "/api/v1/backup-targets",
        Some(json!({"name": "killed", "url": format!("dir://{}", dir.display())})),
    );
    assert_eq!(status, 201, "{t}");
    let (status, r) =
        vmmd.call("POST", &format!("/api/v1/vms/{vm}/backups"), Some(json!({"target_id": id(&t)})));
    assert_eq!(status, 202, "{r}");
    let backup = id(&r["backup"]);
    wait_until("chunks on the target", Duration::from_secs(60), || {
        files(&dir).iter().filter(|p| p.to_string_lossy().contains("/chunks/")).count() >= 3
    });
    vmmd.kill();
    assert!(
        files(&dir).iter().all(|p| !p.ends_with("manifest.json")),
        "an interrupted backup has no manifest: {:?}",
        files(&dir)
    );
    let vmmd = Vmmd::start(&config);
    let task = vmmd.wait(&r["task"]);
    let (_, b) = vmmd.call("GET", &format!("/api/v1/backups/{backup}"), None);
    match task["state"].as_str() {
        Some("succeeded") => {
            assert_eq!(b["state"], "completed", "{b}");
            let (_, v) = vmmd.call("POST", &format!("/api/v1/backups/{backup}/verify"), None);
            assert_eq!(vmmd.wait(&v["task"])["state"], "succeeded");
        }
        Some("failed") => {
            assert_eq!(b["state"], "failed", "{b}");
            assert!(files(&dir).is_empty(), "{:?}", files(&dir));
        }
        other => panic!("the task ended {other:?}: {task}"),
    }
    vmmd.act("DELETE", &format!("/api/v1/backups/{backup}"));
    // Nothing stays: no chunk, no staging file of a put the kill interrupted.
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
    vmmd.act("DELETE", &format!("/api/v1/vms/{vm}"));
    assert_eq!(vmmd.call("DELETE", &format!("/api/v1/images/{image}"), None).0, 204);
    vmmd.stop();
    for d in [&dir, &small, &data] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn a_schedule_keeping_two_leaves_two_after_four_runs() {
    let data = data_dir();
    let vmmd = Vmmd::start(&VmmdConfig::new(&data));
    vmmd.add_node("memory://n1");
    let (status, created) = vmmd.call(
        "POST",
        "/api/v1/vms",
        Some(json!({"name": "s", "vcpus": 1, "memory_mib": 128, "disk_gib": 1})),
    );
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);
    let vm = id(&created["vm"]);
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/stop"));
    let (status, target) =
        vmmd.call("POST", "/api/v1/backup-targets", Some(json!({"name": "m", "url": "memory://schedules"})));
    assert_eq!(status, 201, "{target}");
    let spec = json!({"name": "every minute", "cron": "* * * * *", "target_id": id(&target), "vm_ids": [vm],
        "mode": "incremental", "retention": {"keep_last": 2}});
    let (status, schedule) = vmmd.call("POST", "/api/v1/backup-schedules", Some(spec));
    assert_eq!(status, 201, "{schedule}");
    for _ in 0..4 {
        let (status, run) =
            vmmd.call("POST", &format!("/api/v1/backup-schedules/{}/run", id(&schedule)), None);
        assert_eq!(status, 202, "{run}");
        for task in run["tasks"].as_array().unwrap() {
            vmmd.done(task);
        }
    }
    let (_, backups) = vmmd.call("GET", &format!("/api/v1/backups?vm_id={vm}"), None);
    let items = backups["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{backups}");
    assert!(
        items.iter().all(|b| b["state"] == "completed" && b["schedule_id"] == schedule["id"]),
        "{backups}"
    );
    // A bad cron is refused, and changes nothing.
    let (status, bad) = vmmd.call(
        "PATCH",
        &format!("/api/v1/backup-schedules/{}", id(&schedule)),
        Some(json!({"cron": "61 * * * *"})),
    );
    assert_eq!(status, 422, "{bad}");
    let (_, kept) = vmmd.call("GET", &format!("/api/v1/backup-schedules/{}", id(&schedule)), None);
    assert_eq!(kept["cron"], "* * * * *");
    vmmd.stop();
    std::fs::remove_dir_all(data).ok();
}

#[test]
#[ignore = "needs libvirtd with QEMU and the tiny guest; CI runs it"]
fn snapshots_of_a_guest_revert_its_disk_and_memory_and_go_with_it() {
    let data = data_dir();
    let vmmd = Vmmd::start(&VmmdConfig::new(&data));
    let node = vmmd.add_node("qemu:///system");
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let image = vmmd.tiny_image(&format!("tiny-{suffix}"));
    let spec = json!({"name": "snapped", "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "node_id": id(&node),
        "image_id": image});
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);
    let vm = id(&created["vm"]);
    vmmd.console_line(&vm, "VMM-GUEST-TICK 1", 0, BOOT);
    let snapshot = |name: &str| {
        let (status, r) =
            vmmd.call("POST", &format!("/api/v1/vms/{vm}/snapshots"), Some(json!({"name": name})));
        assert_eq!(status, 202, "{r}");
        vmmd.done(&r["task"]);
    };
    // Running: disk and memory. Then stopped, the disk changed, a disk-only one.
    snapshot("live");
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/stop"));
    run("qemu-io", &["-f", "qcow2", "-c", "write -q -P 0x77 600M 1M", &volume_path(&vm)]);
    snapshot("changed");
    let (_, list) = vmmd.call("GET", &format!("/api/v1/vms/{vm}/snapshots"), None);
    let got: Vec<_> =
        list["items"].as_array().unwrap().iter().map(|s| (s["name"].clone(), s["memory"].clone())).collect();
    assert_eq!(got, vec![(json!("live"), json!(true)), (json!("changed"), json!(false))], "{list}");
    assert_eq!(list["items"][1]["parent"], "live", "{list}");
    let (status, bad) =
        vmmd.call("POST", &format!("/api/v1/vms/{vm}/snapshots"), Some(json!({"name": "a/b"})));
    assert_eq!(status, 422, "{bad}");

    // A VM with snapshots backs up.
    let dir = temp_dir("snapped");
    let (_, target) = vmmd.call(
        "POST",
        "/api/v1/backup-targets",
        Some(json!({"name": "snapped", "url": format!("dir://{}", dir.display())})),
    );
    let (status, r) =
        vmmd.call("POST", &format!("/api/v1/vms/{vm}/backups"), Some(json!({"target_id": id(&target)})));
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);

    // Revert to the running one: the guest runs on from where it was (no new boot), and the
    // disk is as it was then.
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/snapshots/live/revert"));
    let (_, got) = vmmd.call("GET", &format!("/api/v1/vms/{vm}"), None);
    assert_eq!(got["state"], "running", "{got}");
    // What the guest prints next: a tick counting on from before the snapshot, no boot.
    let seen = vmmd.console_log(&vm).len();
    let mut after = String::new();
    wait_until("a tick after the revert", BOOT, || {
        let log = vmmd.console_log(&vm);
        after = log.get(seen.min(log.len())..).unwrap_or_default().to_owned();
        after.contains("VMM-GUEST-TICK ")
            && after.split("VMM-GUEST-TICK ").nth(1).is_some_and(|t| t.contains('\n'))
    });
    assert!(!after.contains("VMM-GUEST-BOOT"), "the guest was not booted again: {after}");
    let tick: u32 =
        after.split("VMM-GUEST-TICK ").nth(1).and_then(|t| t.lines().next()).unwrap().trim().parse().unwrap();
    assert!(tick >= 2, "the guest counts on from its snapshot: {after}");
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/stop"));
    let read = run("qemu-io", &["-f", "qcow2", "-c", "read -P 0 600M 1M", &volume_path(&vm)]);
    assert!(!read.contains("failed"), "the disk is as it was at the snapshot: {read}");

    vmmd.act("DELETE", &format!("/api/v1/vms/{vm}/snapshots/changed"));
    let (_, list) = vmmd.call("GET", &format!("/api/v1/vms/{vm}/snapshots"), None);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    // The VM goes with its snapshots.
    let (_, backups) = vmmd.call("GET", &format!("/api/v1/backups?vm_id={vm}"), None);
    for b in backups["items"].as_array().unwrap() {
        vmmd.act("DELETE", &format!("/api/v1/backups/{}", id(b)));
    }
    vmmd.act("DELETE", &format!("/api/v1/vms/{vm}"));
    let domains = run("virsh", &["-c", "qemu:///system", "list", "--all", "--name"]);
    assert!(!domains.contains(&vm), "{domains}");
    assert_eq!(vmmd.call("DELETE", &format!("/api/v1/backup-targets/{}", id(&target)), None).0, 204);
    assert_eq!(vmmd.call("DELETE", &format!("/api/v1/images/{image}"), None).0, 204);
    vmmd.stop();
    for d in [&dir, &data] {
        std::fs::remove_dir_all(d).ok();
    }
}
