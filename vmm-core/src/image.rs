//! OS images: the library VMs are installed from. An image is imported (by upload or from
//! a URL), checked (`qemu-img info` under its declared format: no backing file, no external
//! data file, the format it claims, a virtual size under the limit), kept by an
//! [`ImageRepo`](crate::ImageRepo) on the vmmd host, and copied to a node as a libvirt
//! storage volume the first time a VM there is created from it.
//!
//! The rules here are pure: what a spec may say, what `qemu-img info` must show, and which
//! URLs may be fetched ([`UrlPolicy`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::ImageId;

/// Largest image accepted, in bytes (the file itself), unless the operator says otherwise.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Largest virtual size accepted, in bytes, unless the operator says otherwise.
pub const DEFAULT_MAX_VIRTUAL_BYTES: u64 = 2 * 1024 * 1024 * 1024 * 1024;

/// The on-disk format of an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ImageFormat {
    /// QEMU copy-on-write v2.
    #[default]
    Qcow2,
    /// A raw disk.
    Raw,
}

impl ImageFormat {
    /// The format's name as qemu-img and libvirt spell it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where an image is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ImageState {
    /// Waiting for its data (an upload, or a fetch task).
    Importing,
    /// Checked and usable.
    Ready,
    /// The import failed; see `error`.
    Error,
}

/// The operating system an image carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OsInfo {
    /// The family recipes are written for: `debian`, `ubuntu`, `alma`, `alpine`, `linux`…
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 32, pattern = "^[a-z0-9-]+$"))]
    pub family: String,
    /// Its version, free text (`12`, `24.04`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub version: String,
}

/// What a user gives to add an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Unique display name.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub name: String,
    /// Its OS.
    pub os: OsInfo,
    /// Its format; checked against the data.
    pub format: ImageFormat,
    /// The smallest disk a VM made from it may have, in GiB (default: its virtual size).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 65536))]
    pub min_disk_gib: Option<u64>,
    /// Fetch the data from here (HTTP or HTTPS) instead of an upload.
    #[serde(default)]
    pub source_url: Option<String>,
}

/// An image in the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Image {
    /// The id.
    pub id: ImageId,
    /// Unique display name.
    pub name: String,
    /// Its OS.
    pub os: OsInfo,
    /// Its format.
    pub format: ImageFormat,
    /// Where it is in its life.
    pub state: ImageState,
    /// The file's size in bytes, once imported.
    pub size_bytes: Option<u64>,
    /// The disk size a guest sees, in bytes, once imported.
    pub virtual_size_bytes: Option<u64>,
    /// The smallest disk a VM made from it may have, in GiB.
    pub min_disk_gib: Option<u64>,
    /// SHA-256 of the file, hex, once imported.
    pub sha256: Option<String>,
    /// Where it was fetched from.
    pub source_url: Option<String>,
    /// Why the import failed.
    pub error: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Longest OS family or version accepted.
const MAX_OS_CHARS: usize = 64;

impl ImageSpec {
    /// Checks every field; the URL only for its shape ([`UrlPolicy`] decides whether it may
    /// be fetched).
    pub fn validate(&self) -> Result<()> {
        crate::names::check_name(&self.name)?;
        validate_family(&self.os.family).map_err(|reason| Error::invalid("os.family", reason))?;
        if self.os.version.chars().count() > MAX_OS_CHARS || self.os.version.chars().any(char::is_control) {
            return Err(Error::invalid("os.version", format!("at most {MAX_OS_CHARS} characters")));
        }
        if self.min_disk_gib.is_some_and(|g| !(1..=crate::vm::MAX_DISK_GIB).contains(&g)) {
            return Err(Error::invalid("min_disk_gib", "must be between 1 and the largest disk"));
        }
        if let Some(url) = &self.source_url {
            UrlPolicy::parse(url)?;
        }
        Ok(())
    }
}

/// Checks an OS family: lower-case letters, digits and `-`, 1 to 32 characters.
pub fn validate_family(family: &str) -> std::result::Result<(), &'static str> {
    let ok = !family.is_empty()
        && family.len() <= 32
        && family.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 32 lower-case letters, digits or '-'")
    }
}

impl Image {
    /// A new image in state `importing`.
    pub fn from_spec(spec: &ImageSpec, now: DateTime<Utc>) -> Result<Self> {
        spec.validate()?;
        Ok(Self {
            id: ImageId::new(),
            name: spec.name.clone(),
            os: spec.os.clone(),
            format: spec.format,
            state: ImageState::Importing,
            size_bytes: None,
            virtual_size_bytes: None,
            min_disk_gib: spec.min_disk_gib,
            sha256: None,
            source_url: spec.source_url.clone(),
            error: None,
            created_at: now,
        })
    }

    /// The smallest disk a VM made from this image may have, in GiB: the declared minimum,
    /// and never less than the image's virtual size.
    pub fn min_disk(&self) -> u64 {
        let virtual_gib = self.virtual_size_bytes.map_or(1, |b| b.div_ceil(1 << 30).max(1));
        self.min_disk_gib.unwrap_or(virtual_gib).max(virtual_gib)
    }

    /// The image once its data is stored and checked.
    pub fn imported(mut self, stored: &StoredImage) -> Self {
        self.state = ImageState::Ready;
        self.size_bytes = Some(stored.size_bytes);
        self.virtual_size_bytes = Some(stored.virtual_size_bytes);
        self.sha256 = Some(stored.sha256.clone());
        self.error = None;
        self
    }

    /// Whether a VM of `disk_gib` may be made from it; an error naming `disk_gib` if not.
    pub fn check_disk(&self, disk_gib: u64) -> Result<()> {
        if self.state != ImageState::Ready {
            return Err(Error::conflict(format!("image {} is {}", self.id, self.state)));
        }
        let min = self.min_disk();
        if disk_gib < min {
            return Err(Error::invalid("disk_gib", format!("image {} needs at least {min} GiB", self.name)));
        }
        Ok(())
    }
}

/// What storing an image found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredImage {
    /// The file's size.
    pub size_bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// The disk size a guest sees.
    pub virtual_size_bytes: u64,
}

/// Limits on imported images. Operator settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLimits {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Largest virtual size, in bytes.
    pub max_virtual_bytes: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self { max_bytes: DEFAULT_MAX_IMAGE_BYTES, max_virtual_bytes: DEFAULT_MAX_VIRTUAL_BYTES }
    }
}

/// What `qemu-img info --output=json` says of a file, in the fields that decide whether
/// it is a safe image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QemuImgInfo {
    /// The format qemu-img found.
    pub format: String,
    /// The disk size a guest sees.
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    /// A backing file, if the image has one.
    #[serde(rename = "backing-filename", default)]
    pub backing_filename: Option<String>,
    /// Its full path, if the image has one.
    #[serde(rename = "full-backing-filename", default)]
    pub full_backing_filename: Option<String>,
    /// Format-specific details (a qcow2 external data file is here).
    #[serde(rename = "format-specific", default)]
    pub format_specific: Option<serde_json::Value>,
}

/// Checks `qemu-img info --output=json -f <declared>` output: the format is the declared
/// one, there is no backing file and no external data file, the virtual size is within
/// `limits`. Returns the virtual size.
///
/// ```
/// use vmm_core::image::{check_image_info, ImageFormat, ImageLimits};
/// let ok = r#"{"format": "qcow2", "virtual-size": 1073741824, "format-specific": {"type": "qcow2", "data": {}}}"#;
/// assert_eq!(check_image_info(ok, ImageFormat::Qcow2, &ImageLimits::default()).unwrap(), 1 << 30);
/// let backed = r#"{"format": "qcow2", "virtual-size": 1, "backing-filename": "/etc/shadow"}"#;
/// assert!(check_image_info(backed, ImageFormat::Qcow2, &ImageLimits::default()).is_err());
/// ```
pub fn check_image_info(json: &str, declared: ImageFormat, limits: &ImageLimits) -> Result<u64> {
    let info: QemuImgInfo = serde_json::from_str(json)
        .map_err(|_| Error::invalid("data", format!("is not a {declared} image qemu-img can read")))?;
    if info.format != declared.as_str() {
        return Err(Error::invalid("format", format!("the data is {}, not {declared}", info.format)));
    }
    if info.backing_filename.is_some() || info.full_backing_filename.is_some() {
        return Err(Error::invalid("data", "images with a backing file are refused"));
    }
    let data_file = info
        .format_specific
        .as_ref()
        .and_then(|f| f.get("data"))
        .and_then(|d| d.get("data-file"))
        .is_some_and(|f| !f.is_null());
    if data_file {
        return Err(Error::invalid("data", "images with an external data file are refused"));
    }
    if info.virtual_size == 0 || info.virtual_size > limits.max_virtual_bytes {
        return Err(Error::invalid(
            "data",
            format!(
                "virtual size {} is over the limit of {} bytes",
                info.virtual_size, limits.max_virtual_bytes
            ),
        ));
    }
    Ok(info.virtual_size)
}

/// Which URLs images may be fetched from: HTTP and HTTPS, hosts the operator allows, and
/// never a loopback, link-local, private, unspecified, multicast or IPv4-mapped address
/// unless the operator allows private addresses. Names are resolved once, each address
/// checked, and the connection made to a checked address; redirects are checked the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlPolicy {
    /// Hosts that may be fetched from: a name (`images.example`), or `*.example` for its
    /// subdomains, or `*` for any. Empty: none (URL imports are off).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Allow loopback, private and link-local addresses (tests, labs).
    #[serde(default)]
    pub allow_private: bool,
    /// These addresses may be fetched from even when they are private (a mirror on the
    /// operator's own network).
    #[serde(default)]
    pub allowed_addresses: Vec<IpAddr>,
}

impl UrlPolicy {
    /// Parses a URL and checks its shape: HTTP or HTTPS, a host, no user or password.
    pub fn parse(url: &str) -> Result<url::Url> {
        let bad = |why: &str| Error::invalid("source_url", why.to_owned());
        if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("must be a URL of at most 2048 characters without white space"));
        }
        let parsed = url::Url::parse(url).map_err(|_| bad("is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("only http and https URLs are fetched"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("names no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("must not carry a user or password"));
        }
        Ok(parsed)
    }

    /// Checks a URL against the policy's hosts (not its addresses: see [`Self::check_ip`]).
    pub fn check_url(&self, url: &str) -> Result<url::Url> {
        let parsed = Self::parse(url)?;
        let host = parsed.host_str().unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
        let allowed = self.allowed_hosts.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            pattern == "*"
                || pattern == host
                || pattern.strip_prefix("*.").is_some_and(|suffix| host.ends_with(&format!(".{suffix}")))
        });
        if !allowed {
            return Err(Error::invalid("source_url", format!("host {host:?} is not allowed by this server")));
        }
        if let Some(ip) = parsed.host().and_then(|h| match h {
            url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
            url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
            url::Host::Domain(_) => None,
        }) {
            self.check_ip(ip)?;
        }
        Ok(parsed)
    }

    /// Checks an address a URL's host resolved to.
    ///
    /// ```
    /// use vmm_core::image::UrlPolicy;
    /// let p = UrlPolicy { allowed_hosts: vec!["*".into()], ..UrlPolicy::default() };
    /// for good in ["198.51.100.7", "2001:db8::7", "64:ff9b::c633:6407", "2002:c633:6407::1"] {
    ///     assert!(p.check_ip(good.parse().unwrap()).is_ok(), "{good}");
    /// }
    /// for bad in ["127.0.0.1", "169.254.169.254", "10.1.2.3", "::1", "::ffff:127.0.0.1", "fe80::1", "0.0.0.0",
    ///             "64:ff9b::7f00:1", "2002:a9fe:a9fe::1", "fec0::1", "64:ff9b:1::5", "2001:0:4136:e378::1",
    ///             "192.0.0.8", "198.18.0.1"] {
    ///     assert!(p.check_ip(bad.parse().unwrap()).is_err(), "{bad}");
    /// }
    /// ```
    pub fn check_ip(&self, ip: IpAddr) -> Result<()> {
        if self.allow_private || self.allowed_addresses.contains(&ip) {
            return Ok(());
        }
        if let Some(why) = forbidden(ip) {
            return Err(Error::invalid("source_url", format!("resolves to {ip}, {why}")));
        }
        Ok(())
    }
}

/// Why an address may not be fetched from, if it may not.
fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4).map(|_| "an IPv4-mapped address of a forbidden one");
            }
            if let Some(v4) = embedded_v4(v6) {
                return forbidden_v4(v4).map(|_| "a translated address of a forbidden IPv4 one");
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("a private address")
    } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || a == 0 || a >= 240 {
        Some("not a unicast address")
    } else if (a, b, ip.octets()[2]) == (192, 0, 0) || (a == 198 && (b & 0xfe) == 18) {
        // IETF protocol assignments and the benchmarking range: never a public server.
        Some("a reserved address")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address carries by a translation scheme (NAT64's well-known
/// prefix 64:ff9b::/96, 6to4's 2002::/16), which a gateway would connect to.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(v4(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(v4(s[1], s[2]))
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some("not a unicast address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 || ip.segments()[..3] == [0x64, 0xff9b, 1]
    {
        // Unique local, the old site-local, and NAT64's local-use prefix 64:ff9b:1::/48.
        Some("a private address")
    } else if ip.segments()[..2] == [0x2001, 0] {
        Some("a Teredo address, which tunnels to an IPv4 one")
    } else if ip.to_ipv4().is_some() {
        // IPv4-compatible ::a.b.c.d, deprecated and never a real peer.
        Some("an IPv4-compatible address")
    } else {
        None
    }
}

/// Where the library keeps image files (on the vmmd host): it stores an image's data while
/// checking it, and opens it again to copy to nodes. Implementations:
/// [`InMemoryImageRepo`](crate::memory::InMemoryImageRepo) here, a directory checked by
/// `qemu-img` in `vmm-backends`.
#[async_trait::async_trait]
pub trait ImageRepo: Send + Sync + std::fmt::Debug {
    /// Reads `data` to its end (at most `limits.max_bytes`, else [`Error::Invalid`]),
    /// keeps it for `image`, and checks it under the image's declared format
    /// ([`check_image_info`]). The data is kept only if the check passes.
    async fn store(
        &self,
        image: &Image,
        data: Box<dyn std::io::Read + Send>,
        limits: ImageLimits,
    ) -> Result<StoredImage>;
    /// The stored data of `image`, and its size.
    async fn open(&self, image: ImageId) -> Result<(Box<dyn std::io::Read + Send>, u64)>;
    /// The format the repo keeps `image` in, and so the format of the nodes' copies: the
    /// declared one unless the repo converts (a directory repo keeps raw images as qcow2,
    /// so that no node ever guesses the format of data a user wrote).
    fn stored_format(&self, image: &Image) -> ImageFormat {
        image.format
    }
    /// Forgets `image`'s data (nothing happens if there is none).
    async fn delete(&self, image: ImageId) -> Result<()>;
}

/// Fetches image data from a URL under a [`UrlPolicy`]: resolves the host once, checks
/// every address, connects to a checked one, and follows redirects only to URLs that pass
/// the same checks. Implementations: HTTP in `vmm-backends`; none here (core does no IO).
#[async_trait::async_trait]
pub trait ImageFetcher: Send + Sync + std::fmt::Debug {
    /// Checks that `url` can be fetched: resolves it, connects, and follows its redirects
    /// to a success, reading no data. Run when the image is added, so that a refused
    /// address or redirect is refused there and then; the fetch checks everything again.
    async fn probe(&self, url: &str, policy: &UrlPolicy) -> Result<()>;
    /// The response body of `url`, to read to its end.
    async fn fetch(&self, url: &str, policy: &UrlPolicy) -> Result<Box<dyn std::io::Read + Send>>;
}

/// What a qcow2 header says, for checking image data without qemu-img (the in-memory repo,
/// fuzzing): its virtual size, whether it names a backing file, whether it has an
/// external data file. `None` when `data` is not qcow2.
pub fn qcow2_header(data: &[u8]) -> Option<(u64, bool, bool)> {
    let be64 = |at: usize| data.get(at..at + 8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
    if data.get(..4) != Some(b"QFI\xfb") {
        return None;
    }
    let version = data.get(4..8).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))?;
    let backing = be64(8)? != 0;
    let size = be64(24)?;
    // Version 3: incompatible feature bit 2 is "external data file".
    let data_file = version >= 3 && be64(72).is_some_and(|f| f & 0b100 != 0);
    Some((size, backing, data_file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(extra: &str) -> String {
        format!(r#"{{"format": "qcow2", "virtual-size": 1048576{extra}}}"#)
    }

    #[test]
    fn hostile_images_are_refused() {
        let limits = ImageLimits { max_bytes: 1 << 30, max_virtual_bytes: 1 << 30 };
        let check = |json: &str, f| check_image_info(json, f, &limits);
        assert_eq!(check(&info(""), ImageFormat::Qcow2).unwrap(), 1 << 20);
        let backing = info(r#", "backing-filename": "/etc/shadow", "full-backing-filename": "/etc/shadow""#);
        assert!(check(&backing, ImageFormat::Qcow2).unwrap_err().to_string().contains("backing file"));
        let data_file = info(r#", "format-specific": {"type": "qcow2", "data": {"data-file": "/dev/sda"}}"#);
        assert!(check(&data_file, ImageFormat::Qcow2).unwrap_err().to_string().contains("data file"));
        let raw = r#"{"format": "raw", "virtual-size": 1048576}"#;
        assert!(check(raw, ImageFormat::Qcow2).unwrap_err().to_string().contains("not qcow2"));
        let huge = r#"{"format": "qcow2", "virtual-size": 1099511627776}"#;
        assert!(check(huge, ImageFormat::Qcow2).unwrap_err().to_string().contains("over the limit"));
        assert!(check("garbage", ImageFormat::Raw).is_err());
    }

    #[test]
    fn urls_and_hosts_follow_the_policy() {
        let p = UrlPolicy {
            allowed_hosts: vec!["images.example".into(), "*.mirror.example".into()],
            ..UrlPolicy::default()
        };
        assert!(p.check_url("https://images.example/debian.qcow2").is_ok());
        assert!(p.check_url("http://a.mirror.example/x").is_ok());
        assert!(p.check_url("https://evil.example/x").is_err());
        assert!(p.check_url("ftp://images.example/x").is_err());
        assert!(p.check_url("https://user:pw@images.example/x").is_err());
        let any = UrlPolicy { allowed_hosts: vec!["*".into()], ..UrlPolicy::default() };
        for bad in [
            "http://127.0.0.1/x",
            "http://169.254.169.254/latest",
            "http://[::ffff:127.0.0.1]/x",
            "http://[::1]/x",
        ] {
            assert!(any.check_url(bad).is_err(), "{bad}");
        }
        let lab = UrlPolicy { allowed_hosts: vec!["*".into()], allow_private: true, ..UrlPolicy::default() };
        assert!(lab.check_url("http://127.0.0.1:8000/x").is_ok());
        let mirror = UrlPolicy { allowed_addresses: vec!["127.0.0.2".parse().unwrap()], ..any.clone() };
        assert!(mirror.check_url("http://127.0.0.2:8000/x").is_ok(), "an address the operator allows");
        assert!(mirror.check_url("http://127.0.0.1:8000/x").is_err(), "only that address");
        assert!(
            UrlPolicy::default().check_url("https://images.example/x").is_err(),
            "URL imports are off by default"
        );
    }

    #[test]
    fn min_disk_is_never_below_the_virtual_size() {
        let spec = ImageSpec {
            name: "debian".into(),
            os: OsInfo { family: "debian".into(), version: "12".into() },
            format: ImageFormat::Qcow2,
            min_disk_gib: Some(1),
            source_url: None,
        };
        let image = Image::from_spec(&spec, Utc::now()).unwrap();
        let stored = StoredImage { size_bytes: 1 << 20, sha256: "x".into(), virtual_size_bytes: 3 << 30 };
        let image = image.imported(&stored);
        assert_eq!(image.min_disk(), 3);
        assert!(image.check_disk(2).is_err());
        assert!(image.check_disk(3).is_ok());
        let bad = ImageSpec { os: OsInfo { family: "Debian!".into(), version: String::new() }, ..spec };
        assert!(bad.validate().is_err());
    }
}
