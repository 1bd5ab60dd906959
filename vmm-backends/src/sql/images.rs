//! [`ImageStore`] on SQL. An image row is locked before anything that depends on it (a
//! task that installs from it, its deletion), so a delete never slips between the check
//! for active tasks and a new one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vmm_core::{Error, Image, ImageId, ImageStore, NodeId, NodeImage, Page, PageRequest, Result};

use super::{first, from_json, from_us, is_unique_violation, signed, to_json, Columns, SqlStore, Tx};

impl SqlStore {
    /// Locks an image's row for the transaction; `ImageNotFound` when there is none.
    pub(super) async fn lock_image(&self, tx: &mut Tx, id: ImageId) -> Result<Image> {
        let sql = format!("SELECT image FROM images WHERE id = $1{}", self.dialect.lock());
        let row =
            self.row(sqlx::query(&sql).bind(id.to_string()), &mut **tx, Error::ImageNotFound { id }).await?;
        from_json(&row.text("image")?)
    }
}

#[async_trait]
impl ImageStore for SqlStore {
    async fn create_image(&self, image: &Image) -> Result<()> {
        sqlx::query("INSERT INTO images (id, name, image) VALUES ($1, $2, $3)")
            .bind(image.id.to_string())
            .bind(&image.name)
            .bind(to_json(image)?)
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(format!("an image named {:?} exists", image.name))
                } else {
                    self.err(e)
                }
            })
    }

    async fn get_image(&self, id: ImageId) -> Result<Image> {
        let row = self
            .row(
                sqlx::query("SELECT image FROM images WHERE id = $1").bind(id.to_string()),
                &self.read,
                Error::ImageNotFound { id },
            )
            .await?;
        from_json(&row.text("image")?)
    }

    async fn list_images(&self, page: &PageRequest) -> Result<Page<Image>> {
        let limit = page.limit()?;
        let before: Option<ImageId> = page.cursor()?;
        let over = signed(limit as u64 + 1);
        let rows = match before {
            Some(b) => {
                sqlx::query("SELECT image FROM images WHERE id < $1 ORDER BY id DESC LIMIT $2")
                    .bind(b.to_string())
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                sqlx::query("SELECT image FROM images ORDER BY id DESC LIMIT $1")
                    .bind(over)
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(|e| self.err(e))?;
        let items = rows.iter().map(|r| from_json(&r.text("image")?)).collect::<Result<Vec<Image>>>()?;
        Ok(Page::from_overfetch(items, limit, |i| i.id.to_string()))
    }

    async fn update_image(&self, image: &Image) -> Result<()> {
        let mut tx = self.begin().await?;
        let stored = self.lock_image(&mut tx, image.id).await?;
        let image = Image { name: stored.name, created_at: stored.created_at, ..image.clone() };
        sqlx::query("UPDATE images SET image = $2 WHERE id = $1")
            .bind(image.id.to_string())
            .bind(to_json(&image)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await
    }

    async fn delete_image(&self, id: ImageId) -> Result<Vec<NodeId>> {
        let mut tx = self.begin().await?;
        self.lock_image(&mut tx, id).await?;
        let active =
            sqlx::query("SELECT id FROM tasks WHERE image_id = $1 AND state IN ('queued', 'running')")
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await
                .map(first)
                .map_err(|e| self.err(e))?;
        if let Some(task) = active {
            return Err(Error::conflict(format!("task {} installs from image {id}", task.text("id")?)));
        }
        let nodes = sqlx::query("SELECT node_id FROM node_images WHERE image_id = $1")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| r.parsed("node_id"))
            .collect::<Result<Vec<NodeId>>>()?;
        for q in ["DELETE FROM node_images WHERE image_id = $1", "DELETE FROM images WHERE id = $1"] {
            sqlx::query(q).bind(id.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        self.commit(tx).await?;
        Ok(nodes)
    }

    async fn node_image(&self, node: NodeId, image: ImageId) -> Result<Option<NodeImage>> {
        let row = sqlx::query(
            "SELECT ready, claimed_until_us FROM node_images WHERE node_id = $1 AND image_id = $2",
        )
        .bind(node.to_string())
        .bind(image.to_string())
        .fetch_all(&self.read)
        .await
        .map(first)
        .map_err(|e| self.err(e))?;
        row.map(|r| node_image(&r)).transpose()
    }

    async fn claim_node_image(
        &self,
        node: NodeId,
        image: ImageId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        self.lock_image(&mut tx, image).await?;
        let sql = format!(
            "SELECT ready, claimed_until_us FROM node_images WHERE node_id = $1 AND image_id = $2{}",
            self.dialect.lock()
        );
        let held = sqlx::query(&sql)
            .bind(node.to_string())
            .bind(image.to_string())
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(|e| self.err(e))?
            .map(|r| node_image(&r))
            .transpose()?;
        let statement = match held {
            Some(NodeImage::Ready) => return Ok(false),
            Some(NodeImage::Uploading { until: theirs }) if theirs > now => return Ok(false),
            Some(NodeImage::Uploading { .. }) => {
                "UPDATE node_images SET claimed_until_us = $3 WHERE node_id = $1 AND image_id = $2"
            }
            None => {
                "INSERT INTO node_images (node_id, image_id, ready, claimed_until_us) VALUES ($1, $2, 0, $3)"
            }
        };
        sqlx::query(statement)
            .bind(node.to_string())
            .bind(image.to_string())
            .bind(until.timestamp_micros())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await?;
        Ok(true)
    }

    async fn set_node_image_ready(&self, node: NodeId, image: ImageId) -> Result<()> {
        let done = sqlx::query(
            "UPDATE node_images SET ready = 1, claimed_until_us = NULL WHERE node_id = $1 AND image_id = $2",
        )
        .bind(node.to_string())
        .bind(image.to_string())
        .execute(&self.write)
        .await
        .map_err(|e| self.err(e))?;
        if done.rows_affected() == 0 {
            return Err(Error::conflict(format!("node {node} has no claim on image {image}")));
        }
        Ok(())
    }

    async fn forget_node_image(&self, node: NodeId, image: ImageId) -> Result<()> {
        sqlx::query("DELETE FROM node_images WHERE node_id = $1 AND image_id = $2")
            .bind(node.to_string())
            .bind(image.to_string())
            .execute(&self.write)
            .await
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

fn node_image(r: &sqlx::any::AnyRow) -> Result<NodeImage> {
    if r.int("ready")? != 0 {
        return Ok(NodeImage::Ready);
    }
    Ok(NodeImage::Uploading { until: from_us(r.opt_int("claimed_until_us")?.unwrap_or(0)) })
}
