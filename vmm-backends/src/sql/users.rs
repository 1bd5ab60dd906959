//! [`UserStore`] on SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use vmm_core::{ApiToken, Error, Page, PageRequest, Result, StoredToken, TokenId, User, UserId, UserStore};

use super::{from_json, is_unique_violation, signed, to_json, Columns, SqlStore};

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &User, password_hash: Option<&str>) -> Result<()> {
        sqlx::query("INSERT INTO users (id, email, password_hash, record) VALUES ($1, $2, $3, $4)")
            .bind(user.id.to_string())
            .bind(&user.email)
            .bind(password_hash)
            .bind(to_json(user)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("a user with email {:?} exists", user.email))
                } else {
                    self.err(e)
                }
            })
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        let query = sqlx::query("SELECT record FROM users WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::UserNotFound { id }).await?;
        from_json(&row.text("record")?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<(User, Option<String>)>> {
        let rows = sqlx::query("SELECT record, password_hash FROM users WHERE email = $1")
            .bind(email)
            .fetch_all(&self.read)
            .await
            .map_err(|e| self.err(e))?;
        rows.first().map(|r| Ok((from_json(&r.text("record")?)?, r.opt_text("password_hash")?))).transpose()
    }

    async fn list_users(&self, page: &PageRequest) -> Result<Page<User>> {
        let limit = page.limit()?;
        let before: Option<UserId> = page.cursor()?;
        let over = signed(limit as u64 + 1);
        let rows = match before {
            Some(b) => {
                sqlx::query("SELECT record FROM users WHERE id < $1 ORDER BY id DESC LIMIT $2")
                    .bind(b.to_string())
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                sqlx::query("SELECT record FROM users ORDER BY id DESC LIMIT $1")
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| from_json(&r.text("record")?)).collect::<Result<Vec<User>>>()?;
        Ok(Page::from_overfetch(items, limit, |u| u.id.to_string()))
    }

    async fn update_user(&self, user: &User, password_hash: Option<&str>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE users SET record = $1, password_hash = COALESCE($2, password_hash) WHERE id = $3",
        )
        .bind(to_json(user)?)
        .bind(password_hash)
        .bind(user.id.to_string())
        .execute(&self.write)
        .await
        .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::UserNotFound { id: user.id });
        }
        Ok(())
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        // The tokens go by the foreign key's cascade, in the same statement; a VM of theirs
        // holds the user by its own key.
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::conflict("the user owns VMs: delete them or give them to another user first")
                } else {
                    self.err(e)
                }
            })?;
        if done.rows_affected() == 0 {
            return Err(Error::UserNotFound { id });
        }
        Ok(())
    }

    async fn create_token(&self, token: &ApiToken, prefix: &str, hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO tokens (id, user_id, prefix, hash, record) VALUES ($1, $2, $3, $4, $5)")
            .bind(token.id.to_string())
            .bind(token.user_id.to_string())
            .bind(prefix)
            .bind(hash)
            .bind(to_json(token)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict("a token with this prefix exists")
                } else if is_foreign_key_violation(&e) {
                    Error::UserNotFound { id: token.user_id }
                } else {
                    self.err(e)
                }
            })
    }

    async fn token_by_prefix(&self, prefix: &str) -> Result<Option<StoredToken>> {
        let rows = sqlx::query(
            "SELECT t.record AS token, t.hash AS hash, u.record AS usr \
             FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.prefix = $1",
        )
        .bind(prefix)
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.err(e))?;
        rows.first()
            .map(|r: &AnyRow| {
                Ok(StoredToken {
                    token: from_json(&r.text("token")?)?,
                    hash: r.text("hash")?,
                    user: from_json(&r.text("usr")?)?,
                })
            })
            .transpose()
    }

    async fn get_token(&self, id: TokenId) -> Result<ApiToken> {
        let query = sqlx::query("SELECT record FROM tokens WHERE id = $1").bind(id.to_string());
        let row = self.row(query, &self.read, Error::TokenNotFound { id }).await?;
        from_json(&row.text("record")?)
    }

    async fn list_tokens(&self, user: Option<UserId>, page: &PageRequest) -> Result<Page<ApiToken>> {
        let limit = page.limit()?;
        let before: Option<TokenId> = page.cursor()?;
        let over = signed(limit as u64 + 1);
        // Only the conditions asked for, so that each form uses the index it has.
        let mut sql = String::from("SELECT record FROM tokens WHERE TRUE");
        let mut values = Vec::new();
        if let Some(u) = user {
            values.push(u.to_string());
            sql.push_str(&format!(" AND user_id = ${}", values.len()));
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
        let rows = query.bind(over).fetch_all(&self.read).await.map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| from_json(&r.text("record")?)).collect::<Result<Vec<ApiToken>>>()?;
        Ok(Page::from_overfetch(items, limit, |t| t.id.to_string()))
    }

    async fn delete_token(&self, id: TokenId) -> Result<()> {
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.write)
            .await
            .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::TokenNotFound { id });
        }
        Ok(())
    }
}
