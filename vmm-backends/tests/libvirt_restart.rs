//! A libvirtd that restarts under a live connection: the call that finds the connection
//! broken fails with a retryable error instead of hanging, and the next call reconnects.
//! It restarts the machine's libvirtd, so it lives in a test binary of its own.
#![cfg(feature = "libvirt")]

use std::process::Command;
use std::time::{Duration, Instant};

use vmm_backends::libvirt::{LibvirtConfig, LibvirtHypervisor};
use vmm_core::{Error, Hypervisor, VirtType};

/// `pgrep` or `pkill` of this host's libvirtd only: one in another network namespace (the
/// second test host of tests/node2.sh) is another host's.
fn this_hosts_libvirtd(program: &str) -> Command {
    let mut command = Command::new(program);
    command.args(["-x", "libvirtd", "--ns", &std::process::id().to_string(), "--nslist", "net"]);
    command
}

fn libvirtd_running() -> bool {
    this_hosts_libvirtd("pgrep").output().is_ok_and(|o| o.status.success())
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "restarts the machine's libvirtd; CI runs it"]
async fn a_restarted_libvirtd_is_reconnected() {
    let config = LibvirtConfig {
        storage_pool: "vmm-ci".into(),
        storage_path: "/var/lib/vmm/ci-images".into(),
        ..LibvirtConfig::default()
    };
    let hv = LibvirtHypervisor::connect("qemu:///system", VirtType::Qemu, config).await.unwrap();
    hv.node_info().await.expect("connected");

    assert!(this_hosts_libvirtd("pkill").status().unwrap().success());
    wait_for("libvirtd to exit", || !libvirtd_running());
    let during = tokio::time::timeout(Duration::from_secs(30), hv.node_info()).await.expect("no hang");
    match during {
        Err(e @ Error::Unavailable { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Unavailable while libvirtd is down, got {other:?}"),
    }

    assert!(Command::new("libvirtd").arg("-d").status().unwrap().success());
    wait_for("libvirtd to answer", || {
        Command::new("virsh")
            .args(["-c", "qemu:///system", "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let info = hv.node_info().await.expect("reconnected after the restart");
    assert!(info.capacity.cpus > 0);
}
