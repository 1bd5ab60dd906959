//! A full backup of a stopped VM's 2 GiB disk (filled with data, no zeros) on
//! `qemu:///system` to a directory target, beside `qemu-img convert` of the same disk file to
//! the same filesystem: the disk streamed through libvirt, cut into 4 MiB chunks, each
//! hashed and written, and a manifest, against a plain copy. Then the size and time of an
//! incremental backup after 1% of the disk's blocks changed.
//!
//! `cargo bench -p vmm-benches --bench backup` runs `BACKUP_RUNS` (3) of each, interleaved,
//! and prints the medians and the ratio (target: vmm ≥ 0.9× qemu-img's throughput);
//! `cargo test --benches` runs one of each on a 256 MiB disk. Skipped without libvirtd.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vmm_benches::BENCH_POOL_DIR as POOL_DIR;
use vmm_core::backup::{BackupMode, BackupSpec, BackupTargetSpec};
use vmm_core::{Actor, BackupTargetId, Role, TaskState, VmId, VmSpec, Vmm};

const MIB: u64 = 1 << 20;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn admin() -> Actor {
    Actor { role: Role::Admin, ..Actor::system() }
}

struct Bench {
    rt: tokio::runtime::Runtime,
    vmm: Vmm,
    vm: VmId,
    disk: PathBuf,
    target: BackupTargetId,
    /// The target's directory (the filesystem both copies go to).
    dir: PathBuf,
    data: PathBuf,
}

fn setup(disk_mib: u64) -> Option<Bench> {
    let vmm_benches::LocalVmm { rt, vmm, node, data } = vmm_benches::local_vmm("backup")?;
    let dir = data.join("target");
    std::fs::create_dir_all(&dir).unwrap();
    let spec =
        VmSpec { node_id: Some(node), start: false, ..VmSpec::new("bench", 1, 128, disk_mib.div_ceil(1024)) };
    let (vm, task) = rt.block_on(vmm.create_vm(spec)).unwrap();
    let task = rt.block_on(vmm.wait_task(task.id, Duration::from_secs(120))).unwrap();
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
    let disk = Path::new(POOL_DIR).join(vm.id.volume_name());
    // Data everywhere, 64 MiB at a time with a byte pattern of its own.
    let mut io = Command::new("qemu-io");
    io.args(["-f", "qcow2"]);
    for (i, at) in (0..disk_mib).step_by(64).enumerate() {
        io.arg("-c").arg(format!("write -q -P {} {}M {}M", 1 + i % 250, at, 64.min(disk_mib - at)));
    }
    run(io.arg(&disk));
    let spec = BackupTargetSpec { name: "bench".into(), url: format!("dir://{}", dir.display()), s3: None };
    let target = rt.block_on(vmm.create_backup_target(&admin(), spec)).unwrap().id;
    Some(Bench { rt, vmm, vm: vm.id, disk, target, dir, data })
}

impl Bench {
    /// One backup of `mode`: how long it took and how many bytes it stored.
    fn backup(&self, mode: BackupMode) -> (Duration, u64) {
        let started = Instant::now();
        let (backup, task) = self
            .rt
            .block_on(self.vmm.backup_vm(&admin(), self.vm, BackupSpec { target_id: self.target, mode }))
            .unwrap();
        let task = self.rt.block_on(self.vmm.wait_task(task.id, Duration::from_secs(600))).unwrap();
        let took = started.elapsed();
        assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
        let backup =
            self.rt.block_on(self.vmm.backup_for(&admin(), backup.id, vmm_core::Access::Read)).unwrap();
        (took, backup.size_bytes)
    }

    /// Deletes every backup of the VM.
    fn clear(&self) {
        let page = self
            .rt
            .block_on(self.vmm.list_backups(&admin(), &Default::default(), &Default::default()))
            .unwrap();
        for b in page.items {
            let task = self.rt.block_on(self.vmm.delete_backup(&admin(), b.id)).unwrap();
            self.rt.block_on(self.vmm.wait_task(task.id, Duration::from_secs(120))).unwrap();
        }
    }

    /// `qemu-img convert` of the disk to the target's filesystem.
    fn convert(&self) -> Duration {
        let out = self.dir.join("convert.qcow2");
        let started = Instant::now();
        run(Command::new("qemu-img")
            .args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"])
            .arg(&self.disk)
            .arg(&out));
        let took = started.elapsed();
        std::fs::remove_file(out).unwrap();
        took
    }

    /// Rewrites 1% of the disk, in 1 MiB blocks spread over it.
    fn change_one_percent(&self, disk_mib: u64) {
        let blocks = (disk_mib / 100).max(1);
        let mut io = Command::new("qemu-io");
        io.args(["-f", "qcow2"]);
        for i in 0..blocks {
            io.arg("-c").arg(format!("write -q -P 0xee {}M 1M", i * (disk_mib / blocks)));
        }
        run(io.arg(&self.disk));
    }

    fn finish(self) {
        self.clear();
        let task = self.rt.block_on(self.vmm.delete_vm(self.vm)).unwrap();
        self.rt.block_on(self.vmm.wait_task(task.id, Duration::from_secs(120))).unwrap();
        std::fs::remove_dir_all(&self.data).ok();
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (runs, disk_mib) = if benching {
        (std::env::var("BACKUP_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(3usize), 2048)
    } else {
        (1, 256)
    };
    let Some(bench) = setup(disk_mib) else { return };
    // The disk file's size: what both read.
    let bytes = std::fs::metadata(&bench.disk).unwrap().len();
    let (mut vmm, mut convert) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        bench.clear();
        vmm.push(bench.backup(BackupMode::Full).0);
        convert.push(bench.convert());
    }
    // An incremental after 1% changed, on top of the last full one.
    bench.change_one_percent(disk_mib);
    let (incr_took, incr_bytes) = bench.backup(BackupMode::Incremental);
    let (a, b) = (median(vmm), median(convert));
    let rate = |d: Duration| bytes as f64 / MIB as f64 / d.as_secs_f64();
    println!("backup: a {disk_mib} MiB disk ({} MiB file), median of {runs}", bytes / MIB);
    println!("  vmm full backup to dir://     {:.2} s  {:.0} MiB/s", a.as_secs_f64(), rate(a));
    println!(
        "  qemu-img convert, same fs     {:.2} s  {:.0} MiB/s  (vmm / qemu-img throughput = {:.2})",
        b.as_secs_f64(),
        rate(b),
        b.as_secs_f64() / a.as_secs_f64()
    );
    println!(
        "  incremental after 1% changed  {:.2} s  {} MiB stored",
        incr_took.as_secs_f64(),
        incr_bytes / MIB
    );
    bench.finish();
}
