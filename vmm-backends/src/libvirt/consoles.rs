//! Consoles through libvirt: the screen is the socket `virDomainOpenGraphicsFD` hands over,
//! already past VNC's password (the domain's password guards the VNC port itself, and never
//! leaves libvirt); the serial console is a non-blocking libvirt stream
//! (`virDomainOpenConsole`) pumped by a thread of its own. libvirt passes a socket only over
//! a local connection, so the screen of a node reached over the network is refused as
//! unsupported (its VNC port stays on that node's loopback); its serial console works.

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
        let uri = self.link.uri();
        let local = uri.split_once("://").is_some_and(|(_, rest)| rest.starts_with('/'));
        if !local {
            return Err(vmm_core::Error::unsupported(
                uri,
                "the screen of a node reached over the network (libvirt passes the screen's socket over a local connection only); its serial console works",
            ));
        }
        // The socket is adopted where it is opened: if the call is abandoned past its
        // deadline, dropping it closes it.
        let opened = self
            .call("open a screen", move |c| {
                let Some(d) = lookup_domain(c, vm)? else { return Ok(None) };
                let fd = d.open_graphics_fd(0, virt::sys::VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)?;
                let socket = adopt_socket(fd)?;
                socket.set_nonblocking(true)?;
                Ok(Some(socket))
            })
            .await?;
        let socket = opened.ok_or(vmm_core::Error::VmNotFound { id: vm })?;
        let socket =
            tokio::net::UnixStream::from_std(socket).map_err(|e| self.to_error("open a screen", e.into()))?;
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
                let stream = Aborting(Some(Stream::new(c, virt::sys::VIR_STREAM_NONBLOCK)?));
                d.open_console(None, stream.get(), virt::sys::VIR_DOMAIN_CONSOLE_FORCE)?;
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

/// A libvirt stream that is aborted when dropped, however its owner ends (libvirt wants a
/// stream finished or aborted before it is freed, or the console stays attached).
struct Aborting(Option<Stream>);

impl Aborting {
    fn get(&self) -> &Stream {
        self.0.as_ref().expect("the stream until drop")
    }
}

impl Drop for Aborting {
    fn drop(&mut self) {
        if let Some(stream) = self.0.take() {
            let _ = stream.abort();
        }
    }
}

/// Moves bytes between a non-blocking libvirt stream and the session's channels until
/// either side closes, never blocking on either: while the client does not take the
/// guest's output, the guest's side is not read (libvirt and the guest hold back), but its
/// input still goes in. `_conn` keeps the connection open as long as the stream.
fn pump_serial(
    _conn: Arc<Connect>,
    stream: Aborting,
    mut input: mpsc::Receiver<Vec<u8>>,
    mut output: mpsc::Sender<Vec<u8>>,
) {
    let stream = stream.get();
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    // The guest's output the client has not taken yet.
    let mut held: Option<Vec<u8>> = None;
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
        // From the guest, once the client took what came before.
        if let Some(chunk) = held.take() {
            match output.try_send(chunk) {
                Ok(()) => busy = true,
                Err(e) if e.is_disconnected() => break "closed by the client",
                Err(e) => held = Some(e.into_inner()),
            }
        }
        if held.is_none() {
            match stream.recv(&mut buf) {
                Ok(0) => break "closed by the guest",
                Ok(n) if n > 0 => {
                    held = Some(buf[..usize::try_from(n).unwrap_or(0)].to_vec());
                    busy = true;
                }
                Ok(_) => {}
                Err(_) => break "the stream failed",
            }
        }
        if !busy {
            std::thread::sleep(IDLE);
        }
    };
    tracing::debug!(why = ended, "serial console ended");
}
