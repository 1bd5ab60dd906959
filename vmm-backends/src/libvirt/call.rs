//! Calls to a node: each runs on tokio's blocking pool under a deadline, a broken or
//! stalled connection is dropped (the next call reopens it), and libvirt's failures become
//! vmm's errors in vmm's words.

use std::time::Duration;

use virt::connect::Connect;
use virt::error::{ErrorDomain, ErrorNumber};
use vmm_core::{Error, Result};

use super::storage::pool_is_busy;
use super::LibvirtHypervisor;

/// libvirt failures, before they become [`vmm_core::Error`]s.
#[derive(Debug, thiserror::Error)]
pub(super) enum LibvirtError {
    #[error(transparent)]
    Virt(#[from] virt::error::Error),
    #[error("Cannot serialize XML")]
    Xml(#[from] quick_xml::SeError),
    #[error("Unreadable domain XML: {0}")]
    Parse(String),
    #[error("The blocking call was lost")]
    Join(#[from] tokio::task::JoinError),
    #[error("Cannot read the data to send")]
    Io(#[from] std::io::Error),
}

/// Whether `e` says the connection itself is broken.
fn is_connection_error(e: &virt::error::Error) -> bool {
    let code = e.code();
    let broken_code =
        [ErrorNumber::NoConnect, ErrorNumber::InvalidConn, ErrorNumber::SystemError, ErrorNumber::AuthFailed];
    broken_code.iter().any(|&c| code.is_known_and(|k| k == c))
        || e.domain().is_known_and(|d| matches!(d, ErrorDomain::Rpc | ErrorDomain::Remote))
}

/// Whether `e` has one of `codes`.
pub(super) fn code_is(e: &virt::error::Error, codes: &[ErrorNumber]) -> bool {
    codes.iter().any(|&c| e.code().is_known_and(|k| k == c))
}

/// Transfers (uploads, copies, downloads) get the call deadline plus one second for each
/// this many bytes: a node that moves data slower than this is treated as gone.
const SLOWEST_TRANSFER_BYTES_PER_SEC: u64 = 4 * 1024 * 1024;

impl LibvirtHypervisor {
    /// Runs `f` (which does `op`) on the blocking pool with the connection, under the call
    /// deadline. A call past it, or on a broken connection, drops the connection (the next
    /// call reopens it) and is reported as unavailable.
    pub(super) async fn call<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    {
        self.call_moving(op, 0, f).await
    }

    /// [`call`](Self::call) for a call that moves `bytes` of data: its deadline grows with
    /// them.
    pub(super) async fn call_moving<T, F>(&self, op: &'static str, bytes: u64, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connect) -> Result<T, LibvirtError> + Send + 'static,
    {
        let conn = self.link.connection().await?;
        let running = tokio::task::spawn_blocking({
            let conn = conn.clone();
            move || {
                let result = f(&conn);
                let broken = matches!(&result, Err(LibvirtError::Virt(e)) if is_connection_error(e))
                    && !conn.is_alive().unwrap_or(false);
                (result, broken)
            }
        });
        let deadline =
            self.link.call_deadline() + Duration::from_secs(bytes / SLOWEST_TRANSFER_BYTES_PER_SEC);
        match tokio::time::timeout(deadline, running).await {
            Err(_) => {
                tracing::warn!(uri = %self.link.uri(), op, "libvirt call ran past its deadline; dropping the connection");
                self.link.drop_connection(conn);
                Err(Error::unavailable(
                    self.link.uri(),
                    format!("the node did not {op} within {}s", deadline.as_secs()),
                ))
            }
            Ok(Err(join)) => Err(self.to_error(op, LibvirtError::Join(join))),
            Ok(Ok((result, broken))) => {
                if broken {
                    tracing::warn!(uri = %self.link.uri(), "libvirt connection lost; reopening on the next call");
                    self.link.drop_connection(conn);
                }
                result.map_err(|e| self.to_error(op, e))
            }
        }
    }

    /// A libvirt failure in vmm's terms. libvirt's message is logged here and kept only as
    /// the source of internal errors (which reach the log, never users).
    pub(super) fn to_error(&self, op: &'static str, e: LibvirtError) -> Error {
        let uri = self.link.uri();
        if let LibvirtError::Virt(v) = &e {
            tracing::info!(uri = %uri, op, error = %v, "libvirt refused a call");
        }
        match e {
            LibvirtError::Virt(v) if is_connection_error(&v) => {
                Error::unavailable(uri, format!("the connection broke while trying to {op}"))
            }
            LibvirtError::Virt(v)
                if code_is(&v, &[ErrorNumber::NoSupport, ErrorNumber::OperationUnsupported]) =>
            {
                Error::unsupported(uri, op)
            }
            LibvirtError::Virt(v) if pool_is_busy(&v) => Error::unavailable(
                uri,
                format!("the storage pool stayed busy building or copying a volume; could not {op}"),
            ),
            LibvirtError::Virt(v) if code_is(&v, &[ErrorNumber::OperationInvalid]) => {
                Error::conflict(format!("the node cannot {op} in the domain's current state"))
            }
            other => Error::backend(uri, other),
        }
    }
}
