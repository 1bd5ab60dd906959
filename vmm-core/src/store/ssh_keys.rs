//! The SSH keys area of the [`Store`](super::Store).

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{SshKeyId, UserId};
use crate::page::{Page, PageRequest};
use crate::ssh_keys::SshKey;

/// Users' SSH key libraries.
#[async_trait]
pub trait SshKeyStore: Send + Sync {
    /// Adds a key. A fingerprint already in the owner's library is a conflict; a key of no
    /// user is [`UserNotFound`](crate::Error::UserNotFound).
    async fn create_ssh_key(&self, key: &SshKey) -> Result<()>;
    /// One key.
    async fn get_ssh_key(&self, id: SshKeyId) -> Result<SshKey>;
    /// Keys, newest first: `owner`'s, or everyone's.
    async fn list_ssh_keys(&self, owner: Option<UserId>, page: &PageRequest) -> Result<Page<SshKey>>;
    /// Removes a key (VMs given it keep it).
    async fn delete_ssh_key(&self, id: SshKeyId) -> Result<()>;
}
