//! vmm-backends: the real implementations of vmm-core's traits, opened by URI.
//!
//! - [`libvirt::LibvirtHypervisor`] (feature `libvirt`): one node through libvirt
//!   (`test:///default`, `qemu:///system`, `qemu+ssh://…`, `qemu+tcp://…`), every call on
//!   tokio's blocking pool. [`libvirt::LibvirtConnector`] opens them by URI.
//! - [`SqlStore`] (features `sqlite`, `postgres`): the store on SQLite or PostgreSQL.
//! - [`images::DirImageRepo`] and [`images::HttpFetcher`]: image files in a directory,
//!   checked by `qemu-img`, and fetched from HTTP(S) URLs under the operator's policy.
//! - [`backup::Targets`]: backup targets in a directory or S3-compatible object storage.
//!
//! Build without libvirt installed with `--no-default-features --features sqlite,postgres`.

#[cfg(feature = "libvirt")]
pub mod libvirt;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

pub mod backup;
pub mod fence;
pub mod images;
pub mod ldap;
pub mod notify;
mod open;
pub mod webhooks;

pub use open::{open, NodeConfig, OpenConfig, StoreConfig, POSTGRES_QUERY_PARAMS};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlStore;
pub use webhooks::HttpWebhookSender;

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "libvirt", feature = "sqlite"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
