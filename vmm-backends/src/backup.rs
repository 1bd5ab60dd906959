//! Backup targets on the `object_store` crate: a directory on the vmmd host (`dir:///path`,
//! local or NFS-mounted; puts go to a staging file renamed into place, so a reader sees a
//! whole object or none) and S3-compatible object storage (`s3://bucket/prefix`, whose
//! puts are atomic by nature). [`Targets`] opens them from their records.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig};
use vmm_core::backup::target::check_key;
use vmm_core::backup::{BackupTarget, BackupTargetConfig, TargetOpener, TargetUrl};
use vmm_core::memory::InMemoryTargets;
use vmm_core::{Error, Result};

/// A target on an [`ObjectStore`], every key under `prefix`.
#[derive(Debug)]
pub struct ObjectTarget {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    /// For a directory target: the directory (where an interrupted put leaves a staging
    /// file that listings do not show).
    dir: Option<std::path::PathBuf>,
}

impl ObjectTarget {
    fn path(&self, key: &str) -> Result<Path> {
        check_key(key)?;
        Path::parse(format!("{}{key}", self.prefix)).map_err(|e| Error::invalid("key", e.to_string()))
    }

    /// A failure of the store in vmm's words. A full disk says so; the rest is
    /// unavailable, with the store's words kept for the log.
    fn error(&self, op: &str, e: object_store::Error) -> Error {
        tracing::warn!(target = %self.url, op, error = %e, "backup target call failed");
        // The target's URL stays in the log: users who read task errors may not see targets.
        if is_storage_full(&e) {
            return Error::conflict("the backup target is full");
        }
        Error::unavailable("backup target", format!("could not {op}"))
    }
}

/// Whether `e` comes from a full disk (ENOSPC, or a quota).
fn is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

#[async_trait]
impl BackupTarget for ObjectTarget {
    fn describe(&self) -> &str {
        &self.url
    }

    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        let path = self.path(key)?;
        self.store
            .put(&path, PutPayload::from(data))
            .await
            .map(drop)
            .map_err(|e| self.error("store an object", e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match self.store.get(&path).await {
            Ok(got) => {
                got.bytes().await.map(|b| Some(b.to_vec())).map_err(|e| self.error("read an object", e))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read an object", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let under = Path::parse(format!("{}{prefix}", self.prefix))
            .map_err(|e| Error::invalid("prefix", e.to_string()))?;
        let found: Vec<_> =
            self.store.list(Some(&under)).try_collect().await.map_err(|e| self.error("list objects", e))?;
        Ok(found
            .into_iter()
            .filter_map(|meta| meta.location.as_ref().strip_prefix(self.prefix.as_str()).map(str::to_owned))
            .filter(|key| key.starts_with(prefix))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete an object", e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let Some(dir) = &self.dir else {
            for key in self.list(prefix).await? {
                self.delete(&key).await?;
            }
            return Ok(());
        };
        // The whole directory, staging files of interrupted puts included.
        check_key(prefix.trim_end_matches('/'))?;
        let under = dir.join(prefix.trim_end_matches('/'));
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&under) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .map_err(|e| Error::backend("backup target", e))?;
        removed.map_err(|e| {
            tracing::warn!(target = %self.url, error = %e, "removing a directory of a backup target failed");
            Error::unavailable("backup target", "could not remove a backup's directory")
        })
    }
}

/// Opens `dir://` and `s3://` targets (and `memory://` ones, which live as long as it does,
/// for tests).
#[derive(Debug, Default)]
pub struct Targets {
    memory: InMemoryTargets,
}

impl Targets {
    /// An opener.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TargetOpener for Targets {
    async fn open(&self, config: &BackupTargetConfig) -> Result<Arc<dyn BackupTarget>> {
        let url = config.url.clone();
        let mut dir = None;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match TargetUrl::parse(&config.url)? {
            TargetUrl::Memory(_) => return self.memory.open(config).await,
            TargetUrl::Dir(path) => {
                let fs = LocalFileSystem::new_with_prefix(&path)
                    .map_err(|_| Error::invalid("url", format!("{path} is not a directory vmmd can use")))?
                    .with_automatic_cleanup(true);
                dir = Some(std::path::PathBuf::from(&path));
                (Arc::new(fs), String::new())
            }
            TargetUrl::S3 { bucket, prefix } => {
                let s3 = config
                    .s3
                    .as_ref()
                    .ok_or_else(|| Error::invalid("s3", "an s3:// target needs its keys"))?;
                // A target that does not answer fails its call within a minute, not after
                // object_store's default of retrying for three.
                let retry = RetryConfig {
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(30),
                    backoff: BackoffConfig::default(),
                };
                let client = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60));
                let mut builder = AmazonS3Builder::new()
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_bucket_name(bucket)
                    .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()))
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(s3.secret_access_key.expose());
                if let Some(endpoint) = &s3.endpoint {
                    builder =
                        builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                let store = builder.build().map_err(|e| Error::invalid("s3", e.to_string()))?;
                (Arc::new(store), prefix)
            }
        };
        Ok(Arc::new(ObjectTarget { store, prefix, url, dir }))
    }
}
