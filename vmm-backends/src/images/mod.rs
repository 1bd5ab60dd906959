//! Where image files live on the vmmd host, and how they are fetched from URLs:
//! [`DirImageRepo`] keeps each image as one file in a directory, written while its SHA-256
//! is computed and checked by `qemu-img info` before it counts; [`HttpFetcher`] fetches
//! HTTP and HTTPS URLs under the operator's [`UrlPolicy`](vmm_core::UrlPolicy).

pub(crate) mod fetch;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use vmm_core::image::{check_image_info, qcow2_header};
use vmm_core::{Error, Image, ImageFormat, ImageId, ImageLimits, ImageRepo, Result, StoredImage};

pub use fetch::HttpFetcher;

/// How long `qemu-img info` may take on one image before it is killed and the image
/// refused.
const QEMU_IMG_DEADLINE: Duration = Duration::from_secs(60);

/// How long converting a raw image to qcow2 may take.
const QEMU_IMG_CONVERT_DEADLINE: Duration = Duration::from_secs(3600);

/// Removes its files when dropped.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            std::fs::remove_file(path).ok();
        }
    }
}

/// Bytes read and written at a time.
const CHUNK: usize = 1 << 20;

/// Image files in a directory: `<id>.qcow2` (raw images are converted once checked). Data
/// being stored goes to a hidden temporary file first and is renamed into place only once
/// checked, so a crash or a bad image leaves nothing that counts (temporary files are
/// removed when the store call ends, and when the repo opens).
#[derive(Debug, Clone)]
pub struct DirImageRepo {
    dir: PathBuf,
    qemu_img: PathBuf,
}

impl DirImageRepo {
    /// A repo in `dir` (created if missing), checking images with `qemu-img` from `PATH`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::backend("image directory", e))?;
        let repo = Self { dir, qemu_img: PathBuf::from("qemu-img") };
        let entries = std::fs::read_dir(&repo.dir).map_err(|e| Error::backend("image directory", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".partial-") {
                std::fs::remove_file(entry.path()).ok();
            } else if let Some(id) = name.strip_suffix(".raw").and_then(|id| id.parse::<ImageId>().ok()) {
                repo.convert_kept_raw(id)?;
            }
        }
        Ok(repo)
    }

    /// Converts a raw image kept by an earlier version (which kept raw images as they came)
    /// to the qcow2 file this version looks for. Runs once, when the repo opens.
    fn convert_kept_raw(&self, id: ImageId) -> Result<()> {
        let (raw, qcow2) = (self.path(id, ImageFormat::Raw), self.path(id, ImageFormat::Qcow2));
        let partial = self.dir.join(format!(".partial-{id}-convert.qcow2"));
        let _cleanup = RemoveOnDrop(vec![partial.clone()]);
        let out = std::process::Command::new(&self.qemu_img)
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&partial)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::backend("qemu-img", e))?;
        if !out.status.success() {
            return Err(Error::backend("qemu-img", String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        std::fs::rename(&partial, &qcow2).map_err(|e| Error::backend("image directory", e))?;
        std::fs::remove_file(&raw).map_err(|e| Error::backend("image directory", e))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: ImageId, format: ImageFormat) -> PathBuf {
        self.dir.join(format!("{id}.{format}"))
    }

    /// The file holding `id`.
    fn find(&self, id: ImageId) -> Option<PathBuf> {
        Some(self.path(id, ImageFormat::Qcow2)).filter(|p| p.exists())
    }

    /// Converts raw `from` to qcow2 `to`, under a deadline.
    async fn to_qcow2(&self, from: &Path, to: &Path) -> Result<()> {
        let run = tokio::process::Command::new(&self.qemu_img)
            .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
            .arg(from)
            .arg(to)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(QEMU_IMG_CONVERT_DEADLINE, run)
            .await
            .map_err(|_| Error::backend("qemu-img", "converting the image took too long"))?
            .map_err(|e| Error::backend("qemu-img", e))?;
        if !out.status.success() {
            return Err(Error::backend("qemu-img", String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        Ok(())
    }

    /// `qemu-img info --output=json -f <format>` of `file`, under a deadline.
    async fn info(&self, file: &Path, format: ImageFormat) -> Result<String> {
        let run = tokio::process::Command::new(&self.qemu_img)
            .args(["info", "--output=json", "-f", format.as_str()])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(QEMU_IMG_DEADLINE, run)
            .await
            .map_err(|_| Error::invalid("data", "qemu-img could not read the image in time"))?
            .map_err(|e| Error::backend("qemu-img", e))?;
        if !out.status.success() {
            tracing::info!(stderr = %String::from_utf8_lossy(&out.stderr).trim(), "qemu-img refused an image");
            return Err(Error::invalid("data", format!("is not a {format} image qemu-img can read")));
        }
        String::from_utf8(out.stdout).map_err(|e| Error::backend("qemu-img", e))
    }
}

/// What copying the data found.
struct Copied {
    size: u64,
    sha256: String,
    head: Vec<u8>,
}

/// Copies `data` into `file` (at most `max` bytes), hashing it on the way, keeping its
/// first bytes for a look at the header.
fn copy(mut data: Box<dyn Read + Send>, file: &Path, max: u64) -> Result<Copied> {
    let mut out = std::fs::File::create(file).map_err(|e| Error::backend("image directory", e))?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut head = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::info!(error = %e, "image data stopped coming");
                return Err(Error::invalid("data", "the data could not be read to its end"));
            }
        };
        size += n as u64;
        if size > max {
            return Err(Error::invalid("data", format!("is over the limit of {max} bytes")));
        }
        if head.len() < 512 {
            head.extend_from_slice(&buf[..n.min(512 - head.len())]);
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| Error::backend("image directory", e))?;
    }
    out.sync_all().map_err(|e| Error::backend("image directory", e))?;
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Copied { size, sha256, head })
}

/// Refuses what the header alone shows: qcow2 data declared raw, a backing file or an
/// external data file (before qemu-img opens anything the image names).
fn check_header(head: &[u8], format: ImageFormat) -> Result<()> {
    match (format, qcow2_header(head)) {
        (ImageFormat::Raw, Some(_)) => Err(Error::invalid("format", "the data is qcow2, not raw")),
        (ImageFormat::Qcow2, Some((_, true, _))) => {
            Err(Error::invalid("data", "images with a backing file are refused"))
        }
        (ImageFormat::Qcow2, Some((_, _, true))) => {
            Err(Error::invalid("data", "images with an external data file are refused"))
        }
        (ImageFormat::Qcow2, None) => Err(Error::invalid("format", "the data is not qcow2")),
        _ => Ok(()),
    }
}

#[async_trait]
impl ImageRepo for DirImageRepo {
    async fn store(
        &self,
        image: &Image,
        data: Box<dyn Read + Send>,
        limits: ImageLimits,
    ) -> Result<StoredImage> {
        let partial = self.dir.join(format!(".partial-{}-{}", image.id, uuid::Uuid::new_v4()));
        let converted = partial.with_extension("qcow2");
        // Whatever happens (a refusal, a dropped request), no partial file stays.
        let _cleanup = RemoveOnDrop(vec![partial.clone(), converted.clone()]);
        let checked = async {
            let (file, max) = (partial.clone(), limits.max_bytes);
            let copied = tokio::task::spawn_blocking(move || copy(data, &file, max))
                .await
                .map_err(|e| Error::backend("image directory", e))??;
            check_header(&copied.head, image.format)?;
            let virtual_size =
                check_image_info(&self.info(&partial, image.format).await?, image.format, &limits)?;
            if image.format == ImageFormat::Raw {
                // Kept as qcow2: a node refreshing its storage pool guesses the format of
                // every file from its first bytes, and raw data a user wrote could pass for
                // a VMDK descriptor naming the node's own files.
                self.to_qcow2(&partial, &converted).await?;
                std::fs::rename(&converted, self.path(image.id, ImageFormat::Qcow2))
            } else {
                std::fs::rename(&partial, self.path(image.id, ImageFormat::Qcow2))
            }
            .map_err(|e| Error::backend("image directory", e))?;
            Ok(StoredImage {
                size_bytes: copied.size,
                sha256: copied.sha256,
                virtual_size_bytes: virtual_size,
            })
        };
        checked.await
    }

    fn stored_format(&self, _image: &Image) -> ImageFormat {
        ImageFormat::Qcow2
    }

    async fn open(&self, image: ImageId) -> Result<(Box<dyn Read + Send>, u64)> {
        let path = self.find(image).ok_or(Error::ImageNotFound { id: image })?;
        let file = std::fs::File::open(&path).map_err(|e| Error::backend("image directory", e))?;
        let size = file.metadata().map_err(|e| Error::backend("image directory", e))?.len();
        Ok((Box::new(std::io::BufReader::with_capacity(CHUNK, file)), size))
    }

    async fn delete(&self, image: ImageId) -> Result<()> {
        match std::fs::remove_file(self.path(image, ImageFormat::Qcow2)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::backend("image directory", e)),
            _ => Ok(()),
        }
    }
}
