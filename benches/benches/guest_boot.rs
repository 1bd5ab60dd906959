//! From an image to "guest reported ready" on the tiny guest (`tests/guest/build.sh`), on
//! `qemu:///system` under TCG, three ways:
//!
//! - **vmm**: `Vmm::create_vm` from the image (its copy already on the node, as after the
//!   first VM): the disk copied from it and grown, the seed written, the domain defined and
//!   started, by the task engine;
//! - **virt-install --import** of a copy of the same image with the same seed as a CD-ROM;
//! - **virsh create** of the domain XML vmm writes, over a copy of the image and the seed.
//!
//! Each run starts from the image on the node and ends when the guest's `VMM-GUEST-READY`
//! line is complete in its serial log (read the same way for all three). Cleanup is not
//! timed. `cargo bench -p vmm-benches --bench guest_boot` runs `GUEST_BOOT_RUNS` (5) of
//! each, interleaved, and prints the medians; `cargo test --benches` runs one of each.
//! Skipped when libvirtd, virt-install or the tiny guest is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vmm_backends::libvirt::{domain_xml, Placement};
use vmm_benches::{BENCH_POOL as POOL, BENCH_POOL_DIR as POOL_DIR};
use vmm_core::guest::{seed_files, seed_image, GuestRequest};
use vmm_core::{
    DomainSpec, ImageFormat, ImageSpec, NicNetwork, NicSpec, OsInfo, TaskState, VirtType, VmId, VmSpec, Vmm,
};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz5Q2d5kq2xqk0fZ7J3o1n9Zr1v3p6yX7mWcJmQqG7A bench@example";
const MEMORY_MIB: u64 = 256;
const READY: &str = "VMM-GUEST-READY ";

fn tiny_guest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guest/out/tiny.qcow2")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn virsh(args: &[&str]) {
    run(Command::new("virsh").arg("-c").arg("qemu:///system").args(args));
}

/// Waits until `log` holds a complete READY line.
fn wait_ready(log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(text) = std::fs::read_to_string(log) {
            if text
                .lines()
                .zip(text.split_inclusive('\n'))
                .any(|(l, full)| l.starts_with(READY) && full.ends_with('\n'))
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{} never said READY", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The seed a guest of `vm` gets from vmm: the same files for every way.
fn seed(vm: VmId) -> Vec<u8> {
    let request = GuestRequest {
        hostname: Some("bench".into()),
        ssh_keys: vec![KEY.into()],
        ..GuestRequest::default()
    };
    seed_image(&seed_files(vm, &request.settings("bench", vm, &[]).unwrap(), &[])).unwrap()
}

/// A copy of the image as the VM's disk, grown to 1 GiB (what vmm's copy does).
fn copy_disk(image: &Path, disk: &Path) {
    run(Command::new("qemu-img").args(["convert", "-q", "-f", "qcow2", "-O", "qcow2"]).arg(image).arg(disk));
    run(Command::new("qemu-img").args(["resize", "-q", "-f", "qcow2"]).arg(disk).arg("1G"));
}

struct Bench {
    rt: tokio::runtime::Runtime,
    vmm: Vmm,
    node: vmm_core::NodeId,
    image: vmm_core::ImageId,
    /// The bench's own vmmd data (database and image library), removed at the end.
    data: PathBuf,
}

fn setup() -> Option<Bench> {
    if !tiny_guest().exists() {
        eprintln!("skipping guest_boot: {} is missing (tests/guest/build.sh)", tiny_guest().display());
        return None;
    }
    if Command::new("virt-install").arg("--version").output().is_err() {
        eprintln!("skipping guest_boot: virt-install is missing (Debian's virtinst)");
        return None;
    }
    let vmm_benches::LocalVmm { rt, vmm, node, data } = vmm_benches::local_vmm("guest_boot")?;
    let spec = ImageSpec {
        name: "tiny".into(),
        os: OsInfo { family: "linux".into(), version: String::new() },
        format: ImageFormat::Qcow2,
        min_disk_gib: None,
        source_url: None,
    };
    let (image, _) = rt.block_on(vmm.create_image(spec)).unwrap();
    let file = std::fs::File::open(tiny_guest()).unwrap();
    rt.block_on(vmm.upload_image(image.id, Box::new(file))).unwrap();
    let bench = Bench { rt, vmm, node, image: image.id, data };
    // The first VM copies the image to the node; the timed ones find it there.
    bench.through_vmm();
    Some(bench)
}

impl Bench {
    /// Deletes the image, with the node's cached copy, and the bench's data.
    fn finish(self) {
        self.rt.block_on(self.vmm.delete_image(self.image)).unwrap();
        std::fs::remove_dir_all(&self.data).ok();
    }

    /// The VM's serial log on the node.
    fn log_of(vm: VmId) -> PathBuf {
        Path::new(POOL_DIR).join(vm.console_log_name())
    }

    fn through_vmm(&self) -> Duration {
        let spec = VmSpec {
            node_id: Some(self.node),
            image_id: Some(self.image),
            hostname: Some("bench".into()),
            ssh_keys: vec![KEY.into()],
            ..VmSpec::new("bench", 1, MEMORY_MIB, 1)
        };
        let started = Instant::now();
        let (vm, task) = self.rt.block_on(self.vmm.create_vm(spec)).unwrap();
        let task = self.rt.block_on(self.vmm.wait_task(task.id, Duration::from_secs(300))).unwrap();
        assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
        wait_ready(&Self::log_of(vm.id));
        let took = started.elapsed();
        let delete = self.rt.block_on(self.vmm.delete_vm(vm.id)).unwrap();
        self.rt.block_on(self.vmm.wait_task(delete.id, Duration::from_secs(120))).unwrap();
        took
    }

    fn through_virt_install(&self) -> Duration {
        let vm = VmId::new();
        let name = format!("bench-vi-{}", &vm.to_string()[..8]);
        let (disk, seed_file, log) = (
            Path::new(POOL_DIR).join(format!("{name}.qcow2")),
            Path::new(POOL_DIR).join(format!("{name}-seed.img")),
            Path::new(POOL_DIR).join(format!("{name}.log")),
        );
        let started = Instant::now();
        copy_disk(&tiny_guest(), &disk);
        std::fs::write(&seed_file, seed(vm)).unwrap();
        run(Command::new("virt-install")
            .args(["--connect", "qemu:///system", "--name", &name, "--virt-type", "qemu", "--arch", "x86_64"])
            .args(["--memory", &MEMORY_MIB.to_string(), "--vcpus", "1", "--import", "--noautoconsole"])
            .args(["--osinfo", "detect=on,require=off", "--machine", "pc", "--network", "user,model=virtio"])
            .args(["--graphics", "vnc,listen=127.0.0.1", "--boot", "hd"])
            .arg("--disk")
            .arg(format!("path={},format=qcow2,bus=virtio", disk.display()))
            .arg("--disk")
            .arg(format!("path={},device=cdrom,bus=ide,format=raw", seed_file.display()))
            .arg("--serial")
            .arg(format!("pty,log.file={}", log.display())));
        wait_ready(&log);
        let took = started.elapsed();
        virsh(&["destroy", &name]);
        virsh(&["undefine", &name]);
        for f in [&disk, &seed_file, &log] {
            std::fs::remove_file(f).ok();
        }
        took
    }

    fn through_virsh_create(&self) -> Duration {
        let vm = VmId::new();
        let dir = Path::new(POOL_DIR);
        let (disk, seed_file, xml_file) = (
            dir.join(vm.volume_name()),
            dir.join(vm.seed_volume_name()),
            std::env::temp_dir().join(format!("{vm}.xml")),
        );
        let spec = DomainSpec {
            vm_id: vm,
            title: "bench".into(),
            vcpus: 1,
            memory_mib: MEMORY_MIB,
            virt_type: VirtType::Qemu,
            nics: vec![NicSpec { mac: vm.nic_mac(0), network: NicNetwork::User }],
            addresses: vec![],
            seed: true,
        };
        let at = Placement {
            storage_pool: POOL,
            network: None,
            console_log_dir: Some(POOL_DIR),
            vnc_password: None,
        };
        let started = Instant::now();
        copy_disk(&tiny_guest(), &disk);
        std::fs::write(&seed_file, seed(vm)).unwrap();
        std::fs::write(&xml_file, domain_xml(&spec, "qemu", &at).unwrap()).unwrap();
        virsh(&["pool-refresh", POOL]);
        virsh(&["create", xml_file.to_str().unwrap()]);
        wait_ready(&Self::log_of(vm));
        let took = started.elapsed();
        virsh(&["destroy", &vm.domain_name()]);
        for f in [disk, seed_file, xml_file, Self::log_of(vm)] {
            std::fs::remove_file(f).ok();
        }
        virsh(&["pool-refresh", POOL]);
        took
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let runs = if benching {
        std::env::var("GUEST_BOOT_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(5usize)
    } else {
        1
    };
    let Some(bench) = setup() else { return };
    let (mut vmm, mut vi, mut virsh_create) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        vmm.push(bench.through_vmm());
        vi.push(bench.through_virt_install());
        virsh_create.push(bench.through_virsh_create());
    }
    let show = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let (a, b, c) = (median(vmm), median(vi), median(virsh_create));
    println!("guest_boot: image to guest ready, median of {runs} (TCG, tiny guest)");
    println!("  vmm create_vm from image      {}", show(a));
    println!(
        "  virt-install --import         {}  (vmm / virt-install = {:.2})",
        show(b),
        a.as_secs_f64() / b.as_secs_f64()
    );
    println!(
        "  virsh create (vmm's XML)      {}  (vmm / virsh = {:.2})",
        show(c),
        a.as_secs_f64() / c.as_secs_f64()
    );
    bench.finish();
}
