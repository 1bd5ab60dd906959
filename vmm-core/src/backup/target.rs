//! Backup targets: where backups are kept. A target is a flat store of objects named by
//! keys vmm makes (`vms/<vm>/<backup>/…`); [`BackupTarget`] is its trait, implemented in
//! memory here ([`InMemoryTarget`](crate::memory::InMemoryTarget)) and for directories and
//! S3-compatible object storage in `vmm-backends`. A [`TargetOpener`] opens a target from
//! its record.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::BackupTargetId;
use crate::names::check_name;
use crate::secret::Secret;

/// A store of objects under keys. Every key is made by vmm and passes [`check_key`].
#[async_trait]
pub trait BackupTarget: Send + Sync + Debug {
    /// What the target is, for messages (its URL; never a credential).
    fn describe(&self) -> &str;

    /// Stores `data` under `key`, replacing an older object. Atomic: a reader sees the
    /// whole new object or none (or the old one), never a part, even after a crash.
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<()>;

    /// The object under `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// The keys under `prefix` (which ends with `/`), in any order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>>;

    /// Removes the object under `key`; nothing happens if there is none.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Removes everything under `prefix` (which ends with `/`), what an interrupted put
    /// may have left included.
    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for key in self.list(prefix).await? {
            self.delete(&key).await?;
        }
        Ok(())
    }
}

/// Opens targets from their records.
#[async_trait]
pub trait TargetOpener: Send + Sync + Debug {
    /// The target `config` describes; [`Error::Invalid`] for a URL this opener does not
    /// serve.
    async fn open(&self, config: &BackupTargetConfig) -> Result<Arc<dyn BackupTarget>>;
}

/// Checks a key: relative, `/`-separated parts of `[A-Za-z0-9._-]`, none `.` or `..`.
pub fn check_key(key: &str) -> Result<()> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if key.len() <= 512 && key.split('/').all(part_ok) {
        Ok(())
    } else {
        Err(Error::invalid("key", format!("{key:?} is not a key vmm makes")))
    }
}

/// Credentials and place of an S3-compatible service.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct S3Access {
    /// The service's address (`https://s3.example.net`); AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: String,
    /// The secret key: accepted, stored, used, never shown again.
    // Not `skip_serializing`: utoipa would leave the field out of the schema, which a
    // request must be able to carry.
    #[serde(default, skip_serializing_if = "never_shown")]
    #[cfg_attr(feature = "openapi", schema(write_only))]
    pub secret_access_key: Secret,
}

/// The secret key is never serialized.
fn never_shown(_: &Secret) -> bool {
    true
}

impl Debug for S3Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Access")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What makes a backup target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackupTargetSpec {
    /// Its name, unique.
    pub name: String,
    /// `dir:///absolute/path` (a directory on the vmmd host, local or NFS-mounted) or
    /// `s3://bucket/prefix`.
    pub url: String,
    /// For `s3://`: where the service is and the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Access>,
}

/// A backup target as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupTargetConfig {
    /// The id.
    pub id: BackupTargetId,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// For `s3://`: the service and the access key (the secret is never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Access>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl BackupTargetConfig {
    /// The same target without its S3 secret (for showing).
    pub fn without_secret(mut self) -> Self {
        if let Some(s3) = &mut self.s3 {
            s3.secret_access_key = Secret::default();
        }
        self
    }
}

/// A target URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUrl {
    /// A directory on the vmmd host.
    Dir(String),
    /// A bucket, and the prefix of every key in it (empty, or ending with `/`).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix.
        prefix: String,
    },
    /// An in-memory target (tests).
    Memory(String),
}

impl TargetUrl {
    /// Parses and checks a target URL.
    ///
    /// ```
    /// use vmm_core::backup::TargetUrl;
    /// assert_eq!(TargetUrl::parse("dir:///srv/backups").unwrap(), TargetUrl::Dir("/srv/backups".into()));
    /// assert_eq!(
    ///     TargetUrl::parse("s3://vmm-backups/site-a").unwrap(),
    ///     TargetUrl::S3 { bucket: "vmm-backups".into(), prefix: "site-a/".into() },
    /// );
    /// assert!(TargetUrl::parse("dir://relative").is_err());
    /// assert!(TargetUrl::parse("dir:///srv/../etc").is_err());
    /// assert!(TargetUrl::parse("s3://Bad_Bucket").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid("url", why.to_owned());
        if let Some(path) = url.strip_prefix("dir://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad("a dir:// URL names an absolute path: dir:///srv/backups"));
            }
            let path = path.trim_end_matches('/');
            let parts_ok = path[1..].split('/').all(|p| !p.is_empty() && p != "." && p != "..");
            if !parts_ok || path.chars().any(char::is_control) {
                return Err(bad("the path must be plain: no empty, `.` or `..` parts"));
            }
            return Ok(Self::Dir(path.to_owned()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !bucket_ok {
                return Err(bad("a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens"));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() {
                check_key(prefix).map_err(|_| bad("the prefix is made of [A-Za-z0-9._-] parts"))?;
            }
            let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
            return Ok(Self::S3 { bucket: bucket.to_owned(), prefix });
        }
        if let Some(name) = url.strip_prefix("memory://") {
            check_key(name).map_err(|_| bad("memory://NAME"))?;
            return Ok(Self::Memory(name.to_owned()));
        }
        Err(bad("a target is dir:///path or s3://bucket/prefix"))
    }
}

impl BackupTargetSpec {
    /// Checks the spec: the name, the URL, and S3 settings exactly for `s3://`.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        let url = TargetUrl::parse(&self.url)?;
        match (&url, &self.s3) {
            (TargetUrl::S3 { .. }, None) => {
                Err(Error::invalid("s3", "an s3:// target needs its access key and secret"))
            }
            (TargetUrl::S3 { .. }, Some(s3)) => s3.validate(),
            (_, Some(_)) => Err(Error::invalid("s3", "only s3:// targets take S3 settings")),
            (_, None) => Ok(()),
        }
    }
}

impl S3Access {
    fn validate(&self) -> Result<()> {
        if let Some(endpoint) = &self.endpoint {
            let parsed = url::Url::parse(endpoint)
                .map_err(|_| Error::invalid("s3.endpoint", "must be an http:// or https:// URL"))?;
            if !matches!(parsed.scheme(), "http" | "https")
                || parsed.host().is_none()
                || !parsed.username().is_empty()
                || parsed.password().is_some()
                || parsed.query().is_some()
            {
                return Err(Error::invalid(
                    "s3.endpoint",
                    "must be an http:// or https:// URL without credentials",
                ));
            }
        }
        if let Some(region) = &self.region {
            if region.is_empty()
                || region.len() > 64
                || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(Error::invalid("s3.region", "letters, digits and hyphens"));
            }
        }
        let printable = |s: &str| !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic());
        if !printable(&self.access_key_id) {
            return Err(Error::invalid("s3.access_key_id", "1 to 256 printable characters"));
        }
        if !printable(self.secret_access_key.expose()) {
            return Err(Error::invalid("s3.secret_access_key", "1 to 256 printable characters"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_relative_paths() {
        for good in ["vms/a/b/manifest.json", "x", "a-b_c.d/e"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/", "a b", "a\\b", "ü"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_need_s3_settings_exactly_for_s3() {
        let s3 = S3Access {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: None,
            access_key_id: "AKIA".into(),
            secret_access_key: Secret::new("shh"),
        };
        let spec =
            |url: &str, s3: Option<S3Access>| BackupTargetSpec { name: "t".into(), url: url.into(), s3 };
        assert!(spec("s3://bucket", Some(s3.clone())).validate().is_ok());
        assert!(spec("s3://bucket", None).validate().is_err());
        assert!(spec("dir:///srv/b", Some(s3.clone())).validate().is_err());
        assert!(spec("dir:///srv/b", None).validate().is_ok());
        let creds = S3Access { endpoint: Some("http://user:pw@host".into()), ..s3.clone() };
        assert!(spec("s3://bucket", Some(creds)).validate().is_err());
        assert!(!format!("{s3:?}").contains("shh"));
        assert!(!serde_json::to_string(&s3).unwrap().contains("shh"));
    }
}
