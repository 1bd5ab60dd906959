//! Images: the library VMs are installed from. Data arrives by upload (checked as it is
//! stored) or from a URL (an `import_image` task); a node gets its copy the first time a VM
//! there is installed from the image, uploaded through the hypervisor.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use futures_timer::Delay;

use super::Vmm;
use crate::error::{error_chain, Error, Result};
use crate::hypervisor::Hypervisor;
use crate::id::ImageId;
use crate::image::{Image, ImageSpec, ImageState};
use crate::node::Node;
use crate::page::{Page, PageRequest};
use crate::store::NodeImage;
use crate::task::{Task, TaskKind, TaskParams};

impl Vmm {
    /// Adds an image. Without `source_url` it waits for its data
    /// ([`upload_image`](Self::upload_image)); with one, an `import_image` task fetches it,
    /// and the task is returned.
    pub async fn create_image(&self, spec: ImageSpec) -> Result<(Image, Option<Task>)> {
        let image = Image::from_spec(&spec, self.now())?;
        if let Some(url) = &image.source_url {
            self.inner.config.image_urls.check_url(url)?;
            let fetcher = self
                .inner
                .fetcher
                .as_ref()
                .ok_or_else(|| Error::unsupported("this server", "importing images from URLs"))?;
            fetcher.probe(url, &self.inner.config.image_urls).await?;
        }
        self.inner.store.create_image(&image).await?;
        let task = match image.source_url {
            None => None,
            Some(_) => {
                let task = self.new_task(
                    TaskKind::ImportImage,
                    None,
                    TaskParams::ImportImage { image_id: image.id },
                    self.now(),
                );
                if let Err(e) = self.inner.store.enqueue_task(&task, None).await {
                    self.inner.store.delete_image(image.id).await.ok();
                    return Err(e);
                }
                self.notify();
                Some(task)
            }
        };
        Ok((image, task))
    }

    /// Stores an image's data, read from `data` to its end, and checks it; the image is then
    /// ready. Refused for an image that is ready or fetched from a URL; bad data is refused
    /// and changes nothing (the upload may be tried again).
    pub async fn upload_image(&self, id: ImageId, data: Box<dyn Read + Send>) -> Result<Image> {
        // Taken first: an upload that ends between this one's check and its start cannot be
        // overwritten by it.
        let _uploading = UploadGuard::take(self, id)?;
        let image = self.inner.store.get_image(id).await?;
        if image.source_url.is_some() {
            return Err(Error::conflict(format!("image {id} is fetched from its URL")));
        }
        if image.state == ImageState::Ready {
            return Err(Error::conflict(format!("image {id} already has its data")));
        }
        let stored = self.inner.images.store(&image, data, self.inner.config.image_limits).await?;
        let ready = image.imported(&stored);
        if let Err(e) = self.inner.store.update_image(&ready).await {
            self.inner.images.delete(id).await.ok();
            return Err(e);
        }
        Ok(ready)
    }

    /// One image.
    pub async fn get_image(&self, id: ImageId) -> Result<Image> {
        self.inner.store.get_image(id).await
    }

    /// Images, newest first.
    pub async fn list_images(&self, page: &PageRequest) -> Result<Page<Image>> {
        self.inner.store.list_images(page).await
    }

    /// Deletes an image, its data and the nodes' copies of it; refused while a VM is being
    /// installed from it. A node that cannot be reached keeps its copy (logged).
    pub async fn delete_image(&self, id: ImageId) -> Result<()> {
        let image = self.inner.store.get_image(id).await?;
        let nodes = self.inner.store.delete_image(id).await?;
        for node in nodes {
            let removed = async {
                let node = self.inner.store.get_node(node).await?;
                let hv = self.hypervisor(&node).await?;
                let stored = self.inner.images.stored_format(&image);
                hv.delete_image(id, stored).await?;
                if image.format != stored {
                    // A copy made before the repo converted images, under the declared format.
                    hv.delete_image(id, image.format).await?;
                }
                Ok::<_, Error>(())
            };
            if let Err(e) = removed.await {
                tracing::warn!(image = %id, node = %node, error = %error_chain(&e), "a node keeps its copy of a deleted image");
            }
        }
        self.inner.images.delete(id).await
    }

    /// Makes sure `node` holds a complete copy of `image`, uploading it if needed. One
    /// upload per node and image at a time: the others wait for it (up to `wait`).
    pub(super) async fn ensure_image_on_node(
        &self,
        node: &Node,
        hv: &Arc<dyn Hypervisor>,
        image: &Image,
        wait: Duration,
    ) -> Result<()> {
        let store = &self.inner.store;
        let format = self.inner.images.stored_format(image);
        let started = std::time::Instant::now();
        loop {
            match store.node_image(node.id, image.id).await? {
                Some(NodeImage::Ready) => {
                    if hv.has_image(image.id, format).await? {
                        return Ok(());
                    }
                    // The node lost its copy: upload it again.
                    store.forget_node_image(node.id, image.id).await?;
                }
                Some(NodeImage::Uploading { until }) if until > self.now() => {
                    if started.elapsed() > wait {
                        return Err(Error::timeout(wait));
                    }
                    Delay::new(Duration::from_millis(500)).await;
                    continue;
                }
                _ => {}
            }
            let now = self.now();
            let until = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
            if !store.claim_node_image(node.id, image.id, now, until).await? {
                continue;
            }
            let upload = async {
                let (data, size) = self.inner.images.open(image.id).await?;
                hv.upload_image(image.id, format, data, size).await?;
                // The image may have been deleted meanwhile: then the claim is gone.
                store.set_node_image_ready(node.id, image.id).await
            };
            if let Err(e) = upload.await {
                // No partial copy stays behind, nor a claim.
                hv.delete_image(image.id, format).await.ok();
                store.forget_node_image(node.id, image.id).await.ok();
                return Err(e);
            }
            return Ok(());
        }
    }
}

/// Holds an image's upload slot in this service until dropped (also when the request is).
struct UploadGuard<'a> {
    vmm: &'a Vmm,
    id: ImageId,
}

impl<'a> UploadGuard<'a> {
    fn take(vmm: &'a Vmm, id: ImageId) -> Result<Self> {
        if !vmm.inner.uploads.lock().unwrap_or_else(|e| e.into_inner()).insert(id) {
            return Err(Error::conflict(format!("image {id} is being uploaded")));
        }
        Ok(Self { vmm, id })
    }
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        self.vmm.inner.uploads.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}
