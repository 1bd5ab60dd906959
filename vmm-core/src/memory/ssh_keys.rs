//! [`SshKeyStore`] in memory.

use async_trait::async_trait;

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::id::{SshKeyId, UserId};
use crate::page::{Page, PageRequest};
use crate::ssh_keys::SshKey;
use crate::store::SshKeyStore;

#[async_trait]
impl SshKeyStore for InMemoryStore {
    async fn create_ssh_key(&self, key: &SshKey) -> Result<()> {
        let mut s = self.state();
        if !s.users.contains_key(&key.owner_id) {
            return Err(Error::UserNotFound { id: key.owner_id });
        }
        if s.ssh_keys.values().any(|k| k.owner_id == key.owner_id && k.fingerprint == key.fingerprint) {
            return Err(Error::conflict(format!("the key {} is in the library already", key.fingerprint)));
        }
        s.ssh_keys.insert(key.id, key.clone());
        Ok(())
    }

    async fn get_ssh_key(&self, id: SshKeyId) -> Result<SshKey> {
        self.state().ssh_keys.get(&id).cloned().ok_or(Error::SshKeyNotFound { id })
    }

    async fn list_ssh_keys(&self, owner: Option<UserId>, page: &PageRequest) -> Result<Page<SshKey>> {
        super::page_of(&self.state().ssh_keys, page, |k| owner.is_none_or(|o| k.owner_id == o))
    }

    async fn delete_ssh_key(&self, id: SshKeyId) -> Result<()> {
        self.state().ssh_keys.remove(&id).map(drop).ok_or(Error::SshKeyNotFound { id })
    }
}
