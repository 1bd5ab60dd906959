//! Consoles through libvirt, so they work wherever the node's connection reaches: the
//! screen is the socket `virDomainOpenGraphicsFD` hands over, already past VNC's password
//! (the domain's password guards the VNC port itself, and never leaves libvirt); the serial
//! console is a non-blocking libvirt stream (`virDomainOpenConsole`) pumped by a thread of
//! its own.

use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use virt::connect::Connect;
use virt::stream::Stream;
use vmm_core::{ConsoleStream, Result, VmId};

use super::domains::lookup_domain;
use super::ffi::adopt_socket;
use super::LibvirtHypervisor;

/// Chunks in flight each way.
const QUEUE: usize = 64;
/// How long the serial pump sleeps when neither side had anything.
const IDLE: Duration = Duration::from_millis(15);

impl LibvirtHypervisor {
    /// The domain's screen: RFB bytes, authenticated already.
    pub(super) async fn open_screen(&self, vm: VmId) -> Result<ConsoleStream> {
        let fd = self
            .on_domain("open a screen", vm, |d| {
                d.open_graphics_fd(0, virt::sys::VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)
            })
            .await?;
        let socket = adopt_socket(fd)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UnixStream::from_std)
            .map_err(|e| self.to_error("open a screen", e.into()))?;
        let (mut reader, mut writer) = socket.into_split();
        let (to_guest, mut input) = mpsc::channel::<Vec<u8>>(QUEUE);
        let (mut output, from_guest) = mpsc::channel::<Vec<u8>>(QUEUE);
        tokio::spawn(async move {
            while let Some(bytes) = input.next().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if output.send(buf[..n].to_vec()).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(ConsoleStream { to_guest, from_guest })
    }

    /// The domain's first serial console, taken over from any other session on it.
    pub(super) async fn open_serial(&self, vm: VmId) -> Result<ConsoleStream> {
        let conn = self.link.connection().await?;
        let opened = self
            .call("open a serial console", move |c| {
                let Some(d) = lookup_domain(c, vm)? else {
                    return Ok(None);
                };
                let stream = Stream::new(c, virt::sys::VIR_STREAM_NONBLOCK)?;
                d.open_console(None, &stream, virt::sys::VIR_DOMAIN_CONSOLE_FORCE)?;
                Ok(Some(stream))
            })
            .await?;
        let stream = opened.ok_or(vmm_core::Error::VmNotFound { id: vm })?;
        let (to_guest, input) = mpsc::channel::<Vec<u8>>(QUEUE);
        let (output, from_guest) = mpsc::channel::<Vec<u8>>(QUEUE);
        let uri = self.link.uri().to_owned();
        std::thread::Builder::new()
            .name(format!("serial {vm}"))
            .spawn(move || pump_serial(conn, stream, input, output))
            .map_err(|e| vmm_core::Error::backend(uri, e))?;
        Ok(ConsoleStream { to_guest, from_guest })
    }
}

/// Moves bytes between a non-blocking libvirt stream and the session's channels until
/// either side closes. `_conn` keeps the connection open as long as the stream.
fn pump_serial(
    _conn: Arc<Connect>,
    stream: Stream,
    mut input: mpsc::Receiver<Vec<u8>>,
    mut output: mpsc::Sender<Vec<u8>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let ended = loop {
        let mut busy = false;
        // To the guest: what is pending first, then whatever came in.
        if pending.is_empty() {
            match input.try_recv() {
                Ok(bytes) => pending = bytes,
                Err(mpsc::TryRecvError::Closed) => break "closed by the client",
                Err(mpsc::TryRecvError::Empty) => {}
            }
        }
        if !pending.is_empty() {
            match stream.send(&pending) {
                Ok(n) if n > 0 => {
                    pending.drain(..usize::try_from(n).unwrap_or(0).min(pending.len()));
                    busy = true;
                }
                Ok(_) => {}
                Err(_) => break "the stream failed",
            }
        }
        // From the guest.
        match stream.recv(&mut buf) {
            Ok(0) => break "closed by the guest",
            Ok(n) if n > 0 => {
                let chunk = buf[..usize::try_from(n).unwrap_or(0)].to_vec();
                if futures::executor::block_on(output.send(chunk)).is_err() {
                    break "closed by the client";
                }
                busy = true;
            }
            Ok(_) => {}
            Err(_) => break "the stream failed",
        }
        if !busy {
            std::thread::sleep(IDLE);
        }
    };
    tracing::debug!(why = ended, "serial console ended");
    let _ = stream.abort();
}
