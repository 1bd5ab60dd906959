//! [`UserStore`] on SQL.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::any::AnyRow;
use vmm_core::event::{token_event, user_event, user_update_event};
use vmm_core::users::UserUsage;
use vmm_core::{
    ApiToken, Error, EventType, Page, PageRequest, Result, StoredToken, TokenId, User, UserId, UserPatch,
    UserStore,
};

use super::{from_json, is_unique_violation, to_json, unsigned, Columns, SqlStore, Tx};

pub(super) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_foreign_key_violation())
}

impl SqlStore {
    /// What `owner`'s VMs hold, read through `executor` in one statement.
    async fn usage_through<'c, E>(&self, executor: E, owner: UserId) -> Result<UserUsage>
    where
        E: sqlx::Executor<'c, Database = sqlx::Any>,
    {
        let row = sqlx::query(
            "SELECT COUNT(*) AS vms, CAST(COALESCE(SUM(vcpus), 0) AS BIGINT) AS vcpus, \
             CAST(COALESCE(SUM(memory_mib), 0) AS BIGINT) AS memory_mib, \
             CAST(COALESCE(SUM(disk_gib), 0) AS BIGINT) AS disk_gib, \
             (SELECT COUNT(*) FROM ip_leases WHERE vm_id IN (SELECT id FROM vms WHERE owner_id = $1)) AS addresses \
             FROM vms WHERE owner_id = $1",
        )
        .bind(owner.to_string())
        .fetch_one(executor)
        .await
        .map_err(|e| self.err(e))?;
        Ok(UserUsage {
            vms: unsigned(&row, "vms")?,
            vcpus: unsigned(&row, "vcpus")?,
            memory_mib: unsigned(&row, "memory_mib")?,
            disk_gib: unsigned(&row, "disk_gib")?,
            addresses: unsigned(&row, "addresses")?,
        })
    }

    /// Locks the row of `owner` (if any) in `tx` and checks that `adding` fits in their
    /// quota beside what their VMs hold. The lock makes concurrent changes of one user's
    /// VMs check one after the other. Lock order: a VM or the nodes first, then the user,
    /// then IP pools; every transaction that takes more than one keeps to it.
    pub(super) async fn check_quota(
        &self,
        tx: &mut Tx,
        owner: Option<UserId>,
        adding: &UserUsage,
    ) -> Result<()> {
        let Some(owner) = owner else { return Ok(()) };
        let sql = format!("SELECT record FROM users WHERE id = $1{}", self.dialect.lock());
        let query = sqlx::query(&sql).bind(owner.to_string());
        let row = self.row(query, &mut **tx, Error::UserNotFound { id: owner }).await?;
        let user: User = from_json(&row.text("record")?)?;
        if user.quota.is_unlimited() {
            return Ok(());
        }
        let usage = self.usage_through(&mut **tx, owner).await?;
        user.quota.check(&usage, adding)
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &User, password_hash: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO users (id, email, password_hash, record) VALUES ($1, $2, $3, $4)")
            .bind(user.id.to_string())
            .bind(&user.email)
            .bind(password_hash)
            .bind(to_json(user)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("a user with email {:?} exists", user.email))
                } else {
                    self.err(e)
                }
            })?;
        self.emit(&mut tx, vec![user_event(EventType::UserCreated, user, Utc::now())]).await?;
        self.commit(tx).await
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
        self.records("users", &[], page).await
    }

    async fn update_user(&self, id: UserId, patch: &UserPatch, password_hash: Option<&str>) -> Result<User> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT record FROM users WHERE id = $1{}", self.dialect.lock());
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &mut *tx, Error::UserNotFound { id }).await?;
        let mut user: User = from_json(&row.text("record")?)?;
        user.apply(patch)?;
        if patch.quota.is_some() {
            user.quota.admits(&self.usage_through(&mut *tx, id).await?)?;
        }
        sqlx::query(
            "UPDATE users SET record = $1, password_hash = COALESCE($2, password_hash) WHERE id = $3",
        )
        .bind(to_json(&user)?)
        .bind(password_hash)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        self.emit(&mut tx, user_update_event(&user, patch, Utc::now()).into_iter().collect()).await?;
        self.commit(tx).await?;
        Ok(user)
    }

    async fn user_usage(&self, id: UserId) -> Result<UserUsage> {
        self.get_user(id).await?;
        self.usage_through(&self.read, id).await
    }

    async fn delete_user(&self, id: UserId) -> Result<()> {
        // The tokens go by the foreign key's cascade, in the same statement; a VM of theirs
        // holds the user by its own key.
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT record FROM users WHERE id = $1")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = rows.first() else { return Err(Error::UserNotFound { id }) };
        let user: User = from_json(&row.text("record")?)?;
        sqlx::query("DELETE FROM users WHERE id = $1").bind(id.to_string()).execute(&mut *tx).await.map_err(
            |e| {
                if is_foreign_key_violation(&e) {
                    Error::conflict("the user owns VMs: delete them or give them to another user first")
                } else {
                    self.err(e)
                }
            },
        )?;
        self.emit(&mut tx, vec![user_event(EventType::UserDeleted, &user, Utc::now())]).await?;
        self.commit(tx).await
    }

    async fn create_token(&self, token: &ApiToken, prefix: &str, hash: &str) -> Result<()> {
        let insert =
            sqlx::query("INSERT INTO tokens (id, user_id, prefix, hash, record) VALUES ($1, $2, $3, $4, $5)")
                .bind(token.id.to_string())
                .bind(token.user_id.to_string())
                .bind(prefix)
                .bind(hash)
                .bind(to_json(token)?);
        let refused = |e: sqlx::Error| {
            if is_unique_violation(&e) {
                Error::conflict("a token with this prefix exists")
            } else if is_foreign_key_violation(&e) {
                Error::UserNotFound { id: token.user_id }
            } else {
                self.err(e)
            }
        };
        // A sign-in's session is no event: one statement, no transaction to open.
        let Some(event) = token_event(EventType::TokenCreated, token, Utc::now()) else {
            return insert.execute(&self.write).await.map(drop).map_err(refused);
        };
        let mut tx = self.begin().await?;
        insert.execute(&mut *tx).await.map_err(refused)?;
        self.emit(&mut tx, vec![event]).await?;
        self.commit(tx).await
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
        let only: Vec<_> = user.map(|u| ("user_id", u.to_string())).into_iter().collect();
        self.records("tokens", &only, page).await
    }

    async fn delete_token(&self, id: TokenId) -> Result<()> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT record FROM tokens WHERE id = $1")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let Some(row) = rows.first() else { return Err(Error::TokenNotFound { id }) };
        let token: ApiToken = from_json(&row.text("record")?)?;
        sqlx::query("DELETE FROM tokens WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.emit(&mut tx, token_event(EventType::TokenDeleted, &token, Utc::now()).into_iter().collect())
            .await?;
        self.commit(tx).await
    }
}
