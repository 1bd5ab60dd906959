//! One node's libvirt connection, with deadlines. `virt` is blocking FFI and a node can
//! stop answering at any point, so:
//!
//! - opening runs on a thread of its own, at most one attempt per node at a time; callers
//!   wait for it up to the connect deadline, and while an attempt hangs past it the node is
//!   reported unavailable at once (no lock is held while anyone waits, and no thread piles
//!   up behind a dead node); an attempt that has not returned after `abandon_open_after`
//!   is left behind and a new one made;
//! - every call runs on tokio's blocking pool under the call deadline; a call past it is
//!   [`Error::Unavailable`] and the connection is dropped, so the next call reconnects;
//! - libvirt's keepalive runs on the connection (with libvirt's default event loop running
//!   on a thread of its own), so calls stuck on a dead connection return within seconds.

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use futures::future::{FutureExt, Shared};
use tokio::sync::oneshot;
use virt::connect::Connect;
use vmm_core::{Error, Result};

/// Deadlines and keepalive of libvirt connections. Operator settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// How long opening a connection may take.
    pub connect: Duration,
    /// How long one libvirt call may take.
    pub call: Duration,
    /// Seconds between keepalive messages (0 turns keepalive off).
    pub keepalive_interval: i32,
    /// Keepalive messages unanswered before the connection is closed.
    pub keepalive_count: u32,
    /// How long an attempt to open that never returns is waited for before a new one is
    /// made (its thread is left behind). libvirt has no deadline of its own on opening: an
    /// attempt whose request reached a host that then died can wait forever.
    pub abandon_open_after: Duration,
    /// How long a guest is given to release a NIC being unplugged from the running domain
    /// (QEMU unplugs it only when the guest lets go; a guest without an OS never does).
    pub unplug: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            call: Duration::from_secs(120),
            keepalive_interval: 5,
            keepalive_count: 3,
            abandon_open_after: Duration::from_secs(300),
            unplug: Duration::from_secs(20),
        }
    }
}

type Opening = Shared<oneshot::Receiver<std::result::Result<Arc<Connect>, String>>>;

#[derive(Default)]
struct State {
    open: Option<Arc<Connect>>,
    /// An attempt to open, and when it began.
    opening: Option<(Instant, Opening)>,
}

/// What to do on every newly opened connection, on its opening thread (such as making
/// sure a storage pool exists); its failures are the caller's to log.
pub(super) type OnOpen = Arc<dyn Fn(&Connect) + Send + Sync>;

/// A node's connection, opened on first use and again after it breaks.
pub(super) struct Link {
    uri: String,
    deadlines: Deadlines,
    on_open: OnOpen,
    state: Mutex<State>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("uri", &self.uri).field("deadlines", &self.deadlines).finish()
    }
}

/// Registers libvirt's default event loop and runs it on a thread of its own, once per
/// process, before the first connection opens: keepalive needs it.
fn start_event_loop() {
    static START: Once = Once::new();
    START.call_once(|| {
        // libvirt prints every error to stderr by default; vmm reports them itself.
        virt::error::clear_error_callback();
        if let Err(e) = virt::event::event_register_default_impl() {
            tracing::warn!(error = %e, "libvirt's event loop is not available; keepalive is off");
            return;
        }
        let spawned = std::thread::Builder::new().name("libvirt-events".into()).spawn(|| loop {
            if let Err(e) = virt::event::event_run_default_impl() {
                tracing::warn!(error = %e, "libvirt's event loop failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start libvirt's event loop; keepalive is off");
        }
    });
}

impl Link {
    pub(super) fn new(uri: &str, deadlines: Deadlines, on_open: OnOpen) -> Self {
        Self { uri: uri.to_owned(), deadlines, on_open, state: Mutex::new(State::default()) }
    }

    pub(super) fn uri(&self) -> &str {
        &self.uri
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::unavailable(self.uri.clone(), reason)
    }

    /// The open connection, opening it if needed, within the connect deadline.
    pub(super) async fn connection(&self) -> Result<Arc<Connect>> {
        let (opening, left) = {
            let mut state = self.state();
            // A connection the node closed since the last call (libvirtd restarted, the
            // host lost power) is reopened now rather than failing the next call: the
            // client learns of the close from the event loop, and asking costs no RPC. A
            // driver that cannot say is taken at its word that it is open (the call
            // itself then finds out).
            match &state.open {
                Some(conn) if conn.is_alive().unwrap_or(true) => return Ok(conn.clone()),
                Some(_) => {
                    tracing::info!(uri = %self.uri, "the node closed the connection; reopening");
                    state.open = None;
                }
                None => {}
            }
            if let Some((since, opening)) = &state.opening {
                match opening.clone().now_or_never() {
                    Some(Ok(Ok(conn))) => {
                        state.opening = None;
                        state.open = Some(conn.clone());
                        return Ok(conn);
                    }
                    // It failed: try again below.
                    Some(_) => state.opening = None,
                    None if since.elapsed() >= self.deadlines.abandon_open_after => {
                        tracing::warn!(uri = %self.uri, "an attempt to connect never returned; trying again");
                        state.opening = None;
                    }
                    None if since.elapsed() >= self.deadlines.connect => {
                        return Err(self.unavailable(format!(
                            "the node has not answered for {}s",
                            since.elapsed().as_secs()
                        )));
                    }
                    None => {}
                }
            }
            if state.opening.is_none() {
                state.opening = Some((Instant::now(), self.open_on_a_thread()?));
            }
            let (since, opening) = state.opening.as_ref().expect("set above");
            (opening.clone(), self.deadlines.connect.saturating_sub(since.elapsed()))
        };
        match tokio::time::timeout(left, opening).await {
            Ok(Ok(Ok(conn))) => {
                let mut state = self.state();
                state.opening = None;
                Ok(state.open.get_or_insert(conn).clone())
            }
            Ok(Ok(Err(message))) => {
                self.state().opening = None;
                tracing::warn!(uri = %self.uri, error = %message, "cannot connect to the node");
                Err(self.unavailable("cannot connect to the node"))
            }
            Ok(Err(_)) => {
                self.state().opening = None;
                Err(self.unavailable("cannot connect to the node"))
            }
            Err(_) => Err(self.unavailable(format!(
                "the node did not answer within {}s",
                self.deadlines.connect.as_secs()
            ))),
        }
    }

    /// Starts opening the connection on a thread of its own (it may never return).
    fn open_on_a_thread(&self) -> Result<Opening> {
        start_event_loop();
        let (tx, rx) = oneshot::channel();
        let (uri, deadlines, on_open) = (self.uri.clone(), self.deadlines, self.on_open.clone());
        std::thread::Builder::new()
            .name("libvirt-connect".into())
            .spawn(move || {
                let opened = Connect::open(Some(&uri)).map_err(|e| e.to_string()).map(|c| {
                    if deadlines.keepalive_interval > 0 {
                        if let Err(e) =
                            c.set_keep_alive(deadlines.keepalive_interval, deadlines.keepalive_count)
                        {
                            // The test driver has no keepalive.
                            tracing::debug!(uri = %uri, error = %e, "no keepalive on this connection");
                        }
                    }
                    on_open(&c);
                    Arc::new(c)
                });
                let _ = tx.send(opened);
            })
            .map_err(|e| Error::backend(self.uri.clone(), e))?;
        Ok(rx.shared())
    }

    /// Forgets `conn` if it is still the open connection: the next call reconnects. The
    /// last reference is dropped on a blocking thread, since closing may wait for the node.
    pub(super) fn drop_connection(&self, conn: Arc<Connect>) {
        {
            let mut state = self.state();
            if state.open.as_ref().is_some_and(|open| Arc::ptr_eq(open, &conn)) {
                state.open = None;
            }
        }
        tokio::task::spawn_blocking(move || drop(conn));
    }

    /// The call deadline.
    pub(super) fn call_deadline(&self) -> Duration {
        self.deadlines.call
    }
}
