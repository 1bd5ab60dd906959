//! The images area of the [`Store`](super::Store): the library, and which node holds a
//! copy of which image.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::id::{ImageId, NodeId};
use crate::image::Image;
use crate::page::{Page, PageRequest};

/// Whether a node holds an image's volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeImage {
    /// Uploaded and complete.
    Ready,
    /// Being uploaded by a task until then (its claim lapses after).
    Uploading {
        /// When the claim lapses.
        until: DateTime<Utc>,
    },
}

/// OS images.
#[async_trait]
pub trait ImageStore: Send + Sync {
    /// Adds an image. A duplicate name is a conflict.
    async fn create_image(&self, image: &Image) -> Result<()>;
    /// One image.
    async fn get_image(&self, id: ImageId) -> Result<Image>;
    /// Images, newest first.
    async fn list_images(&self, page: &PageRequest) -> Result<Page<Image>>;
    /// Saves an image's state, sizes, checksum and error.
    async fn update_image(&self, image: &Image) -> Result<()>;
    /// Removes an image; a conflict while a queued or running task installs from it.
    /// Returns the nodes that hold a copy (to remove it there).
    async fn delete_image(&self, id: ImageId) -> Result<Vec<NodeId>>;
    /// Whether `node` holds `image`.
    async fn node_image(&self, node: NodeId, image: ImageId) -> Result<Option<NodeImage>>;
    /// Claims uploading `image` to `node` until `until`: true when the caller now holds the
    /// claim (nobody held it, or the holder's claim lapsed at `now`), false when another
    /// holds it or the copy is ready.
    async fn claim_node_image(
        &self,
        node: NodeId,
        image: ImageId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Marks `node`'s copy of `image` complete.
    async fn set_node_image_ready(&self, node: NodeId, image: ImageId) -> Result<()>;
    /// Forgets `node`'s copy of `image` (a failed upload, a volume found missing).
    async fn forget_node_image(&self, node: NodeId, image: ImageId) -> Result<()>;
}
