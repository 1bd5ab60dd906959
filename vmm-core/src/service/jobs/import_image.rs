//! `import_image`: an image's data fetched from its URL (under the URL policy) and checked
//! as it is stored. A failure leaves the image in state `error` with why.

use super::{Outcome, Run, Vmm};
use crate::error::{Error, Result};
use crate::image::ImageState;
use crate::task::TaskParams;

fn image_of(run: &Run) -> Result<crate::id::ImageId> {
    match run.task.params {
        TaskParams::ImportImage { image_id } => Ok(image_id),
        _ => Err(Error::invalid("task", "an import without its image")),
    }
}

pub(super) async fn run(vmm: &Vmm, run: &mut Run) -> Result<Outcome> {
    let image = vmm.inner.store.get_image(image_of(run)?).await?;
    if image.state == ImageState::Ready {
        return Ok(Outcome::Done);
    }
    let url = image.source_url.clone().ok_or_else(|| Error::invalid("source_url", "the image has no URL"))?;
    let fetcher = vmm
        .inner
        .fetcher
        .clone()
        .ok_or_else(|| Error::unsupported("this server", "importing images from URLs"))?;
    if vmm.cancel_requested(run).await? {
        return Ok(Outcome::Cancelled);
    }
    vmm.step(run, 10, "fetching the image").await?;
    let data = fetcher.fetch(&url, &vmm.inner.config.image_urls).await?;
    vmm.step(run, 20, "storing and checking the image").await?;
    let stored = vmm.inner.images.store(&image, data, vmm.inner.config.image_limits).await?;
    vmm.inner.store.update_image(&image.imported(&stored)).await?;
    Ok(Outcome::Done)
}

/// Marks the image failed, with why (the task's error).
pub(super) async fn undo(vmm: &Vmm, run: &mut Run) -> Result<()> {
    let mut image = match vmm.inner.store.get_image(image_of(run)?).await {
        Err(Error::ImageNotFound { .. }) => return Ok(()),
        other => other?,
    };
    if image.state != ImageState::Ready {
        image.state = ImageState::Error;
        image.error = run.task.steps.last().map(|s| s.message.clone());
        vmm.inner.store.update_image(&image).await?;
    }
    Ok(())
}
