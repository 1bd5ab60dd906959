//! [`SshKeyStore`] on SQL.

use async_trait::async_trait;
use vmm_core::{Error, Page, PageRequest, Result, SshKey, SshKeyId, SshKeyStore, UserId};

use super::users::is_foreign_key_violation;
use super::{from_json, is_unique_violation, signed, to_json, Columns, SqlStore};

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
        let limit = page.limit()?;
        let before: Option<SshKeyId> = page.cursor()?;
        // Only the conditions asked for, so that each form uses the index it has.
        let mut sql = String::from("SELECT record FROM ssh_keys WHERE TRUE");
        let mut values = Vec::new();
        if let Some(o) = owner {
            values.push(o.to_string());
            sql.push_str(&format!(" AND owner_id = ${}", values.len()));
        }
        if let Some(b) = before {
            values.push(b.to_string());
            sql.push_str(&format!(" AND id < ${}", values.len()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", values.len() + 1));
        let mut query = sqlx::query(&sql);
        for v in values {
            query = query.bind(v);
        }
        let rows =
            query.bind(signed(limit as u64 + 1)).fetch_all(&self.read).await.map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| from_json(&r.text("record")?)).collect::<Result<Vec<SshKey>>>()?;
        Ok(Page::from_overfetch(items, limit, |k| k.id.to_string()))
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
