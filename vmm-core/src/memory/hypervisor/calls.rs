//! What a test can make the fake do: fail a call (and how), and what a fake volume holds.

/// A call on a [`InMemoryHypervisor`](super::InMemoryHypervisor), to make it fail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HypervisorCall {
    /// [`Hypervisor::node_info`](crate::Hypervisor::node_info).
    NodeInfo,
    /// [`Hypervisor::list_domains`](crate::Hypervisor::list_domains).
    ListDomains,
    /// [`Hypervisor::domain`](crate::Hypervisor::domain).
    Domain,
    /// [`Hypervisor::define_domain`](crate::Hypervisor::define_domain).
    DefineDomain,
    /// [`Hypervisor::undefine_domain`](crate::Hypervisor::undefine_domain).
    UndefineDomain,
    /// [`Hypervisor::start`](crate::Hypervisor::start).
    Start,
    /// [`Hypervisor::stop`](crate::Hypervisor::stop).
    Stop,
    /// [`Hypervisor::shutdown`](crate::Hypervisor::shutdown).
    Shutdown,
    /// [`Hypervisor::reboot`](crate::Hypervisor::reboot).
    Reboot,
    /// [`Hypervisor::suspend`](crate::Hypervisor::suspend).
    Suspend,
    /// [`Hypervisor::resume`](crate::Hypervisor::resume).
    Resume,
    /// [`Hypervisor::create_volume`](crate::Hypervisor::create_volume).
    CreateVolume,
    /// [`Hypervisor::volume`](crate::Hypervisor::volume).
    Volume,
    /// [`Hypervisor::resize_volume`](crate::Hypervisor::resize_volume).
    ResizeVolume,
    /// [`Hypervisor::delete_volume`](crate::Hypervisor::delete_volume).
    DeleteVolume,
    /// [`Hypervisor::upload_image`](crate::Hypervisor::upload_image).
    UploadImage,
    /// [`Hypervisor::has_image`](crate::Hypervisor::has_image).
    HasImage,
    /// [`Hypervisor::delete_image`](crate::Hypervisor::delete_image).
    DeleteImage,
    /// [`Hypervisor::create_volume_from_image`](crate::Hypervisor::create_volume_from_image).
    CreateVolumeFromImage,
    /// [`Hypervisor::copy_volume`](crate::Hypervisor::copy_volume).
    CopyVolume,
    /// [`Hypervisor::read_volume`](crate::Hypervisor::read_volume).
    ReadVolume,
    /// [`Hypervisor::write_volume`](crate::Hypervisor::write_volume).
    WriteVolume,
    /// [`Hypervisor::migrate`](crate::Hypervisor::migrate).
    Migrate,
    /// [`Hypervisor::create_snapshot`](crate::Hypervisor::create_snapshot).
    CreateSnapshot,
    /// [`Hypervisor::revert_snapshot`](crate::Hypervisor::revert_snapshot).
    RevertSnapshot,
    /// [`Hypervisor::delete_snapshot`](crate::Hypervisor::delete_snapshot).
    DeleteSnapshot,
    /// [`Hypervisor::save_previous_volume`](crate::Hypervisor::save_previous_volume).
    SavePreviousVolume,
    /// [`Hypervisor::restore_previous_volume`](crate::Hypervisor::restore_previous_volume).
    RestorePreviousVolume,
    /// [`Hypervisor::delete_previous_volume`](crate::Hypervisor::delete_previous_volume).
    DeletePreviousVolume,
    /// [`Hypervisor::write_seed`](crate::Hypervisor::write_seed).
    WriteSeed,
    /// [`Hypervisor::delete_seed`](crate::Hypervisor::delete_seed).
    DeleteSeed,
    /// [`Hypervisor::console_log`](crate::Hypervisor::console_log).
    ConsoleLog,
    /// [`Hypervisor::delete_console_log`](crate::Hypervisor::delete_console_log).
    DeleteConsoleLog,
    /// [`Hypervisor::ensure_network`](crate::Hypervisor::ensure_network).
    EnsureNetwork,
    /// [`Hypervisor::remove_network`](crate::Hypervisor::remove_network).
    RemoveNetwork,
    /// [`Hypervisor::attach_nic`](crate::Hypervisor::attach_nic).
    AttachNic,
    /// [`Hypervisor::detach_nic`](crate::Hypervisor::detach_nic).
    DetachNic,
    /// [`Hypervisor::domain_stats`](crate::Hypervisor::domain_stats).
    DomainStats,
    /// [`Hypervisor::node_stats`](crate::Hypervisor::node_stats).
    NodeStats,
    /// [`Hypervisor::open_console`](crate::Hypervisor::open_console).
    OpenConsole,
}

/// A disk volume of the fake: its size and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVolume {
    /// Its size in GiB.
    pub size_gib: u64,
    /// What was written to it: `empty`, `image:<id>`, or the content of the volume it was
    /// copied from.
    pub content: String,
}

/// What an injected failure looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// [`Error::Backend`](crate::Error::Backend): the call failed.
    Backend,
    /// [`Error::Unavailable`](crate::Error::Unavailable): the node did not answer (retryable).
    Unavailable,
    /// [`Error::Unsupported`](crate::Error::Unsupported): the node does not implement the call.
    Unsupported,
    /// The call never returns, and does nothing (a node that stopped answering).
    Hang,
    /// The call does what it does, then never returns (a node that stopped answering
    /// before it could say so; or a worker that died right after).
    HangAfter,
}
