//! [`SshKeyStore`] on SQL.

use async_trait::async_trait;
use vmm_core::{Error, Page, PageRequest, Result, SshKey, SshKeyId, SshKeyStore, UserId};

use super::users::is_foreign_key_violation;
use super::{from_json, is_unique_violation, to_json, Columns, SqlStore};

#[async_trait]
impl SshKeyStore for SqlStore {
    async fn create_ssh_key(&self, key: &SshKey) -> Result<()> {
        sqlx::query("INSERT INTO ssh_keys (id, owner_id, fingerprint, record) VALUES ($1, $2, $3, $4)")
            .bind(key.id.to_string())
            .bind(key.owner_id.to_string())
            .bind(&key.fingerprint)
            .bind(to_json(key)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("the key {} is in the library already", key.fingerprint))
                } else if is_foreign_key_violation(&e) {
                    Error::UserNotFound { id: key.owner_id }
                } else {
                    self.err(e)
                }
            })
    }

    async fn get_ssh_key(&self, id: SshKeyId) -> Result<SshKey> {
        let query = sqlx::query("SELECT record FROM ssh_keys WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::SshKeyNotFound { id }).await?;
        from_json(&row.text("record")?)
    }

    async fn list_ssh_keys(&self, owner: Option<UserId>, page: &PageRequest) -> Result<Page<SshKey>> {
        let only: Vec<_> = owner.map(|o| ("owner_id", o.to_string())).into_iter().collect();
        self.records("ssh_keys", &only, page).await
    }

    async fn delete_ssh_key(&self, id: SshKeyId) -> Result<()> {
        let done = sqlx::query("DELETE FROM ssh_keys WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::SshKeyNotFound { id });
        }
        Ok(())
    }
}
