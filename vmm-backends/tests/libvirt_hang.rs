//! A node whose libvirtd stops answering in the middle of its work: its calls end at the
//! call deadline as unavailable, the connection is dropped, other nodes are not held up,
//! and once the node answers again the next calls reconnect. The node is the machine's
//! libvirtd reached over `qemu+tcp://` through a loopback proxy to its unix socket that the
//! test can make go silent.
#![cfg(feature = "libvirt")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmm_backends::libvirt::{LibvirtConfig, LibvirtConnector};
use vmm_core::{Connector, Error, VirtType, VmId};

/// Forwards loopback TCP to libvirtd's unix socket while `silent` is false; while it is
/// true, bytes are swallowed and nothing comes back, as from a hung daemon.
async fn proxy(silent: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let silent = silent.clone();
            tokio::spawn(async move {
                let Ok(unix) = tokio::net::UnixStream::connect("/run/libvirt/libvirt-sock").await else {
                    return;
                };
                let (mut tr, mut tw) = tcp.into_split();
                let (mut ur, mut uw) = unix.into_split();
                let up = {
                    let silent = silent.clone();
                    async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n @ 1..) = tr.read(&mut buf).await {
                            if !silent.load(Ordering::SeqCst) && uw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n @ 1..) = ur.read(&mut buf).await {
                        if !silent.load(Ordering::SeqCst) && tw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::join!(up, down);
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs libvirtd with QEMU (qemu:///system); CI runs it"]
async fn a_node_that_goes_silent_mid_work_fails_its_calls_at_the_deadline_and_recovers() {
    let silent = Arc::new(AtomicBool::new(false));
    let port = proxy(silent.clone()).await;
    let mut config = LibvirtConfig {
        storage_pool: "vmm-ci".into(),
        storage_path: "/var/lib/vmm/ci-images".into(),
        ..LibvirtConfig::default()
    };
    config.deadlines.connect = Duration::from_secs(3);
    config.deadlines.call = Duration::from_secs(2);
    let c = LibvirtConnector::new(config);
    let node = c.connect(&format!("qemu+tcp://127.0.0.1:{port}/system"), VirtType::Qemu).await.unwrap();
    let other = c.connect("test:///default", VirtType::Qemu).await.unwrap();
    node.node_info().await.expect("answers through the proxy");

    silent.store(true, Ordering::SeqCst);
    let stuck = tokio::spawn({
        let node = node.clone();
        async move { node.domain(VmId::new()).await }
    });
    other.node_info().await.expect("another node answers meanwhile");
    let ended = tokio::time::timeout(Duration::from_secs(30), stuck).await.expect("the call deadline held");
    match ended.unwrap() {
        Err(Error::Unavailable { reason, .. }) => assert!(reason.contains("within 2s"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }

    silent.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match node.node_info().await {
            Ok(info) => {
                assert!(info.capacity.cpus > 0);
                break;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                assert!(std::time::Instant::now() < deadline, "never reconnected: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
