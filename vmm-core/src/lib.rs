//! vmm-core: the sans-IO domain of vmm, a KVM virtual-machine manager.
//!
//! It models VMs ([`vm`]), nodes ([`node`]) and their [`placement`], IP management
//! ([`ipam`]), durable tasks ([`task`]) and backups ([`backup`]), and puts every business rule
//! in one service, [`Vmm`]. The outside world sits behind two object-safe traits:
//!
//! - [`Hypervisor`]: one node. Implementations: [`memory::InMemoryHypervisor`] here;
//!   libvirt (`test:///default`, `qemu:///system`, `qemu+ssh://…`) in `vmm-backends`.
//! - [`Store`]: persistence with the atomic operations correctness needs, the sum of one
//!   sub-trait per area ([`NodeStore`], [`IpamStore`], [`VmStore`], [`TaskStore`]).
//!   Implementations: [`memory::InMemoryStore`] here; SQLite and PostgreSQL in
//!   `vmm-backends`.
//!
//! With the `conformance` feature, `conformance` holds the one test suite per trait that
//! every implementation passes. This crate does no IO of its own and depends on no async
//! runtime: the host runs [`Vmm::run_workers`] on the executor it has.
#![warn(missing_docs)]

pub mod audit;
pub mod backup;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod console;
pub mod crash;
pub mod directory;
mod error;
pub mod event;
pub mod guest;
pub mod ha;
pub mod hypervisor;
mod id;
pub mod idempotency;
pub mod image;
pub mod ipam;
pub mod memory;
pub mod metrics;
pub mod migration;
pub mod names;
pub mod network;
pub mod node;
pub mod page;
pub mod placement;
pub mod placement_group;
pub mod recipe;
pub mod reconcile;
mod secret;
mod service;
pub mod snapshot;
pub mod ssh_keys;
pub mod store;
pub mod task;
pub mod usage;
pub mod users;
pub mod vm;
pub mod webhook;

pub use audit::{AuditEntry, AuditFilter, AuditOutcome};
pub use backup::{
    Backup, BackupFilter, BackupMode, BackupSchedule, BackupSpec, BackupState, BackupTarget,
    BackupTargetConfig, BackupTargetSpec, RestoreSpec, RetentionPolicy,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use console::{ConsoleKind, ConsoleStream, ConsoleTicket};
pub use directory::{Directory, DirectoryUser, InMemoryDirectory};
pub use error::{error_chain, BoxError, Error, ErrorKind, Result};
pub use event::{Event, EventFilter, EventPattern, EventType};
pub use guest::{GuestRequest, GuestSettings};
pub use hypervisor::{
    Connector, DomainInfo, DomainSpec, Hypervisor, HypervisorCapabilities, LifecycleCallback, LifecycleWatch,
    NicNetwork, NicSpec, NodeInfo, PowerState, VolumeInfo,
};
pub use id::{
    AuditId, BackupId, BackupTargetId, DeliveryId, ImageId, NetworkId, NodeId, PlacementGroupId, PoolId,
    RecipeId, ScheduleId, SshKeyId, TaskId, TokenId, UserId, VmId, WebhookId,
};
pub use image::{
    Image, ImageFetcher, ImageFormat, ImageLimits, ImageRepo, ImageSpec, ImageState, OsInfo, StoredImage,
    UrlPolicy,
};
pub use ipam::{IpAllocator, IpLease, IpPool, IpPoolSpec, IpRange};
pub use migration::{EndMaintenanceSpec, MaintenanceSpec, MigrateSpec, MovedVm, MovesReport, UnmovedVm};
pub use network::{Network, NetworkKind, NetworkSpec};
pub use node::{Capacity, Node, NodePatch, NodeSpec, NodeState, NodeUriPolicy, Usage, VirtType};
pub use page::{Page, PageRequest};
pub use placement::{Candidate, Demand, Explanation, Placement, RejectReason, Rejection, Strategy, WhatIf};
pub use placement_group::{GroupPolicy, GroupRule, PlacementGroup, PlacementGroupSpec};
pub use recipe::{Recipe, RecipeSpec};
pub use secret::Secret;
pub use service::{
    ConsoleGrant, ConsoleSession, NodeDomains, Session, UsageCollector, Vmm, VmmBuilder, VmmConfig,
    TOKEN_PREFIX,
};
pub use ssh_keys::{SshKey, SshKeySpec};
pub use store::{
    AuditStore, BackupStore, ConsoleStore, EventStore, Finished, HaStore, IdempotencyStore, ImageStore,
    IpamStore, MigrationRequest, MigrationStore, NetworkStore, NodeImage, NodeStore, PlacementGroupStore,
    PlacementRequest, RecipeStore, SingletonStore, SnapshotStore, SshKeyStore, Store, StoredToken, TaskStore,
    UsageStore, UserStore, VmFilter, VmGuest, VmStore, WebhookStore,
};
pub use task::{Task, TaskDeadlines, TaskFilter, TaskKind, TaskLease, TaskParams, TaskState, TaskStep};
pub use users::{
    Access, Actor, ApiToken, Area, AuthSource, Decision, Quota, Role, Target, TokenKind, TokenSpec, User,
    UserPatch, UserSpec, UserState,
};
pub use vm::{
    AddressSpec, CloneSpec, PowerAction, ReinstallSpec, Vm, VmAction, VmNic, VmPatch, VmSpec, VmState,
};
