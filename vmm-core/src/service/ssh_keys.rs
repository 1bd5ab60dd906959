//! SSH keys: `impl Vmm` for each user's key library, and the keys a VM is given by id.

use super::Vmm;
use crate::error::{Error, Result};
use crate::id::SshKeyId;
use crate::page::{Page, PageRequest};
use crate::ssh_keys::{SshKey, SshKeySpec};
use crate::users::{sees_all, Access, Actor, Area};

impl Vmm {
    /// Adds a key to the actor's library.
    pub async fn create_ssh_key(&self, actor: &Actor, spec: SshKeySpec) -> Result<SshKey> {
        actor.may(Area::SshKeys, Access::Write)?;
        let key = SshKey::from_spec(&spec, actor.user_id, self.now())?;
        self.inner.store.create_ssh_key(&key).await?;
        Ok(key)
    }

    /// One key the actor may see.
    pub async fn get_ssh_key(&self, actor: &Actor, id: SshKeyId) -> Result<SshKey> {
        let key = self.inner.store.get_ssh_key(id).await?;
        actor.check(Area::SshKeys, Access::Read, actor.target(key.owner_id), || Error::SshKeyNotFound {
            id,
        })?;
        Ok(key)
    }

    /// The actor's keys (everyone's for those who see all), newest first.
    pub async fn list_ssh_keys(&self, actor: &Actor, page: &PageRequest) -> Result<Page<SshKey>> {
        actor.may(Area::SshKeys, Access::Read)?;
        let owner = (!sees_all(actor.role, Area::SshKeys)).then_some(actor.user_id);
        self.inner.store.list_ssh_keys(owner, page).await
    }

    /// Removes a key from its library (VMs given it keep it).
    pub async fn delete_ssh_key(&self, actor: &Actor, id: SshKeyId) -> Result<()> {
        let key = self.inner.store.get_ssh_key(id).await?;
        actor.check(Area::SshKeys, Access::Write, actor.target(key.owner_id), || Error::SshKeyNotFound {
            id,
        })?;
        self.inner.store.delete_ssh_key(id).await
    }

    /// The public keys of `ids` added to `keys` (once each), for a VM's guest. With an
    /// actor, only keys they may see.
    pub(crate) async fn with_library_keys(
        &self,
        actor: Option<&Actor>,
        ids: &[SshKeyId],
        mut keys: Vec<String>,
    ) -> Result<Vec<String>> {
        if ids.len() > crate::guest::MAX_SSH_KEYS {
            return Err(Error::invalid(
                "ssh_key_ids",
                format!("at most {} keys", crate::guest::MAX_SSH_KEYS),
            ));
        }
        for id in ids {
            let key = match actor {
                Some(actor) => self.get_ssh_key(actor, *id).await,
                None => self.inner.store.get_ssh_key(*id).await,
            };
            let key = key.map_err(|e| match e {
                Error::SshKeyNotFound { id } => Error::invalid("ssh_key_ids", format!("no SSH key {id}")),
                other => other,
            })?;
            if !keys.contains(&key.public_key) {
                keys.push(key.public_key);
            }
        }
        Ok(keys)
    }
}
