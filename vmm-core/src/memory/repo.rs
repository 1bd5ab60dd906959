//! [`InMemoryImageRepo`]: image data kept in memory, checked by reading the qcow2 header
//! instead of running qemu-img.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::lock;
use crate::error::{Error, Result};
use crate::id::ImageId;
use crate::image::{check_image_info, qcow2_header, Image, ImageFormat, ImageLimits, ImageRepo, StoredImage};

/// Image data in memory.
#[derive(Debug, Default)]
pub struct InMemoryImageRepo {
    images: Mutex<HashMap<ImageId, Vec<u8>>>,
}

impl InMemoryImageRepo {
    /// An empty repo.
    pub fn new() -> Self {
        Self::default()
    }

    /// What `qemu-img info --output=json -f <format>` would say of `data`, as far as the
    /// checks go.
    fn info(data: &[u8], format: ImageFormat) -> Result<String> {
        match (format, qcow2_header(data)) {
            (ImageFormat::Qcow2, Some((size, backing, data_file))) => {
                let mut info = serde_json::json!({"format": "qcow2", "virtual-size": size});
                if backing {
                    info["backing-filename"] = serde_json::json!("(backing file)");
                }
                if data_file {
                    info["format-specific"] =
                        serde_json::json!({"type": "qcow2", "data": {"data-file": "(data file)"}});
                }
                Ok(info.to_string())
            }
            (ImageFormat::Qcow2, None) => Err(Error::invalid("format", "the data is raw, not qcow2")),
            (ImageFormat::Raw, Some(_)) => Err(Error::invalid("format", "the data is qcow2, not raw")),
            (ImageFormat::Raw, None) => {
                Ok(serde_json::json!({"format": "raw", "virtual-size": data.len()}).to_string())
            }
        }
    }
}

#[async_trait]
impl ImageRepo for InMemoryImageRepo {
    async fn store(
        &self,
        image: &Image,
        data: Box<dyn Read + Send>,
        limits: ImageLimits,
    ) -> Result<StoredImage> {
        // The reader may block (an HTTP body bridged from async code): read it on a thread
        // of its own and wait for that without blocking.
        let (done, read) = futures::channel::oneshot::channel();
        let max = limits.max_bytes;
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let result = data.take(max + 1).read_to_end(&mut bytes).map(|_| bytes);
            done.send(result).ok();
        });
        let bytes = read
            .await
            .map_err(|e| Error::backend("image data", e))?
            .map_err(|_| Error::invalid("data", "the data could not be read to its end"))?;
        if bytes.len() as u64 > limits.max_bytes {
            return Err(Error::invalid("data", format!("is over the limit of {} bytes", limits.max_bytes)));
        }
        let virtual_size = check_image_info(&Self::info(&bytes, image.format)?, image.format, &limits)?;
        let stored = StoredImage {
            size_bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
            virtual_size_bytes: virtual_size,
        };
        lock(&self.images).insert(image.id, bytes);
        Ok(stored)
    }

    async fn open(&self, image: ImageId) -> Result<(Box<dyn Read + Send>, u64)> {
        let bytes = lock(&self.images).get(&image).cloned().ok_or(Error::ImageNotFound { id: image })?;
        let size = bytes.len() as u64;
        Ok((Box::new(std::io::Cursor::new(bytes)), size))
    }

    async fn delete(&self, image: ImageId) -> Result<()> {
        lock(&self.images).remove(&image);
        Ok(())
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
