//! Domain lifecycle events of one node's connection, for the reconciler.
//!
//! The `virt` crate has no safe wrapper for `virConnectDomainEventRegisterAny`, so this is
//! the one module of vmm with `unsafe` code (`make lint` checks that no other has any). It
//! registers a lifecycle callback on a connection whose events libvirt's default event loop
//! delivers (started by [`super::link`] before any connection is opened), and deregisters it
//! when the watch is dropped. The callback only wakes the reconciler: it reads nothing but
//! the domain's name, never unwinds into C, and the wake it calls returns at once.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use virt::connect::Connect;
use virt::error::Error as VirtError;
use vmm_core::{Error, LifecycleCallback, LifecycleWatch, Result};

use super::link::Link;

/// How long registering a lifecycle watch may take.
const WATCH_DEADLINE: Duration = Duration::from_secs(10);

/// Registers one node's lifecycle watches, one at a time: a node that does not answer gets
/// no pile of threads blocked in registrations.
#[derive(Debug, Default)]
pub(super) struct Watcher {
    registering: Arc<AtomicBool>,
}

impl Watcher {
    /// A watch calling `wake` on the node `link` reaches, registered within
    /// [`WATCH_DEADLINE`].
    pub(super) async fn watch(&self, link: &Link, wake: LifecycleCallback) -> Result<Watch> {
        if self.registering.swap(true, Ordering::AcqRel) {
            return Err(Error::unavailable(
                link.uri(),
                "an earlier lifecycle watch is still being registered",
            ));
        }
        let conn = match link.connection().await {
            Ok(conn) => conn,
            Err(e) => {
                self.registering.store(false, Ordering::Release);
                return Err(e);
            }
        };
        let registering = self.registering.clone();
        let registered = tokio::task::spawn_blocking(move || {
            let watch = watch(conn, wake);
            registering.store(false, Ordering::Release);
            watch
        });
        match tokio::time::timeout(WATCH_DEADLINE, registered).await {
            Ok(Ok(Ok(watch))) => Ok(watch),
            Ok(Ok(Err(e))) => Err(Error::backend(link.uri().to_owned(), e)),
            Ok(Err(e)) => Err(Error::backend(link.uri().to_owned(), e)),
            Err(_) => Err(Error::unavailable(link.uri(), "the node did not take a lifecycle watch in time")),
        }
    }
}

/// A registered lifecycle callback; dropping it deregisters it (on a thread of its own:
/// deregistering asks the node, which may not answer).
pub(super) struct Watch {
    conn: Arc<Connect>,
    callback: c_int,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("callback", &self.callback).finish()
    }
}

impl LifecycleWatch for Watch {
    fn is_alive(&self) -> bool {
        self.conn.is_alive().unwrap_or(false)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let (conn, callback) = (self.conn.clone(), self.callback);
        let deregister = move || {
            // SAFETY: `conn` holds a reference to the connection the callback was
            // registered on, so the pointer is valid for the call.
            let _ = unsafe { virt_sys::virConnectDomainEventDeregisterAny(conn.as_ptr(), callback) };
        };
        let on_a_thread =
            std::thread::Builder::new().name("libvirt-unwatch".into()).spawn(deregister.clone());
        if on_a_thread.is_err() {
            // No thread to be had: here, rather than never (the registration would keep the
            // connection open and the callback called).
            deregister();
        }
    }
}

/// Calls `wake` on every lifecycle event of a domain of vmm's (named `vmm-…`) on `conn`.
/// Blocking: call it off the async runtime.
fn watch(conn: Arc<Connect>, wake: LifecycleCallback) -> std::result::Result<Watch, VirtError> {
    let opaque = Box::into_raw(Box::new(wake)).cast::<c_void>();
    // libvirt calls each kind of domain callback through the generic pointer type, cast
    // back to the signature of its event (`VIR_DOMAIN_EVENT_CALLBACK` in C does the same).
    let lifecycle: unsafe extern "C" fn(
        virt_sys::virConnectPtr,
        virt_sys::virDomainPtr,
        c_int,
        c_int,
        *mut c_void,
    ) -> c_int = on_lifecycle;
    // SAFETY: both function pointer types are C ABI with pointer-sized arguments; libvirt
    // calls the pointer with the lifecycle signature for VIR_DOMAIN_EVENT_ID_LIFECYCLE.
    let generic: unsafe extern "C" fn(virt_sys::virConnectPtr, virt_sys::virDomainPtr, *mut c_void) =
        unsafe { std::mem::transmute(lifecycle) };
    // SAFETY: `conn` is a live connection; `opaque` is a leaked box that libvirt hands to
    // `free_wake` exactly once, when a registered callback is removed. A registration that
    // fails leaves it to the caller.
    let callback = unsafe {
        virt_sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            std::ptr::null_mut(),
            virt_sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            Some(generic),
            opaque,
            Some(free_wake),
        )
    };
    if callback < 0 {
        let error = VirtError::last_error();
        // SAFETY: the registration failed, so libvirt kept no pointer to the box.
        drop(unsafe { Box::from_raw(opaque.cast::<LifecycleCallback>()) });
        return Err(error);
    }
    Ok(Watch { conn, callback })
}

/// The lifecycle callback: wakes the reconciler for domains of vmm's.
unsafe extern "C" fn on_lifecycle(
    _conn: virt_sys::virConnectPtr,
    dom: virt_sys::virDomainPtr,
    _event: c_int,
    _detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    // SAFETY: libvirt passes the domain of the event, valid for the call; its name is a
    // string the domain owns.
    let name = unsafe { virt_sys::virDomainGetName(dom) };
    let ours = !name.is_null() && unsafe { CStr::from_ptr(name) }.to_bytes().starts_with(b"vmm-");
    if ours {
        // SAFETY: `opaque` is the box `watch` leaked, alive until `free_wake`.
        let wake = unsafe { &*opaque.cast::<LifecycleCallback>() };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wake()));
    }
    0
}

/// Frees the wake callback when libvirt is done with it.
unsafe extern "C" fn free_wake(opaque: *mut c_void) {
    // SAFETY: `opaque` is the box `watch` leaked; libvirt calls this once.
    drop(unsafe { Box::from_raw(opaque.cast::<LifecycleCallback>()) });
}
