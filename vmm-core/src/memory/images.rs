//! [`ImageStore`] in memory.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::InMemoryStore;
use crate::error::{Error, Result};
use crate::id::{ImageId, NodeId};
use crate::image::Image;
use crate::page::{Page, PageRequest};
use crate::store::{ImageStore, NodeImage};

#[async_trait]
impl ImageStore for InMemoryStore {
    async fn create_image(&self, image: &Image) -> Result<()> {
        let mut s = self.state();
        if s.images.contains_key(&image.id) || s.images.values().any(|i| i.name == image.name) {
            return Err(Error::conflict(format!("an image named {:?} exists", image.name)));
        }
        s.images.insert(image.id, image.clone());
        Ok(())
    }

    async fn get_image(&self, id: ImageId) -> Result<Image> {
        self.state().images.get(&id).cloned().ok_or(Error::ImageNotFound { id })
    }

    async fn list_images(&self, page: &PageRequest) -> Result<Page<Image>> {
        let limit = page.limit()?;
        let before: Option<ImageId> = page.cursor()?;
        let s = self.state();
        let items = match before {
            Some(b) => s.images.range(..b),
            None => s.images.range(..),
        };
        let items = items.rev().take(limit + 1).map(|(_, i)| i.clone()).collect();
        Ok(Page::from_overfetch(items, limit, |i: &Image| i.id.to_string()))
    }

    async fn update_image(&self, image: &Image) -> Result<()> {
        let mut s = self.state();
        let stored = s.images.get_mut(&image.id).ok_or(Error::ImageNotFound { id: image.id })?;
        *stored = Image { name: stored.name.clone(), created_at: stored.created_at, ..image.clone() };
        Ok(())
    }

    async fn delete_image(&self, id: ImageId) -> Result<Vec<NodeId>> {
        let mut s = self.state();
        if !s.images.contains_key(&id) {
            return Err(Error::ImageNotFound { id });
        }
        if let Some(task) = s.active.iter().find(|t| s.tasks[*t].image_id() == Some(id)) {
            return Err(Error::conflict(format!("task {task} installs from image {id}")));
        }
        s.images.remove(&id);
        let nodes: Vec<NodeId> = s.node_images.keys().filter(|(_, i)| *i == id).map(|(n, _)| *n).collect();
        for n in &nodes {
            s.node_images.remove(&(*n, id));
        }
        Ok(nodes)
    }

    async fn node_image(&self, node: NodeId, image: ImageId) -> Result<Option<NodeImage>> {
        Ok(self.state().node_images.get(&(node, image)).copied())
    }

    async fn claim_node_image(
        &self,
        node: NodeId,
        image: ImageId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let mut s = self.state();
        match s.node_images.get(&(node, image)) {
            Some(NodeImage::Ready) => Ok(false),
            Some(NodeImage::Uploading { until: held }) if *held > now => Ok(false),
            _ => {
                s.node_images.insert((node, image), NodeImage::Uploading { until });
                Ok(true)
            }
        }
    }

    async fn set_node_image_ready(&self, node: NodeId, image: ImageId) -> Result<()> {
        match self.state().node_images.get_mut(&(node, image)) {
            Some(held) => {
                *held = NodeImage::Ready;
                Ok(())
            }
            None => Err(Error::conflict(format!("node {node} has no claim on image {image}"))),
        }
    }

    async fn forget_node_image(&self, node: NodeId, image: ImageId) -> Result<()> {
        self.state().node_images.remove(&(node, image));
        Ok(())
    }
}
