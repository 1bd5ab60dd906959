//! vmmd's configuration: a TOML file, then `VMM_*` environment variables over it, then
//! defaults. Secrets never appear in `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vmm_core::{Error, Result};

use crate::AdminToken;

/// The TOML file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// `listen = "127.0.0.1:8080"`.
    pub listen: Option<String>,
    /// `database_url = "sqlite://…"` or `postgres://…`.
    pub database_url: Option<String>,
    /// `data_dir = "./data"`.
    pub data_dir: Option<PathBuf>,
    /// `admin_token = "…"`.
    pub admin_token: Option<String>,
    /// `local_node = false` stops vmmd from registering the local libvirt on first start.
    pub local_node: Option<bool>,
    /// `storage_path = "/var/lib/vmm/images"`: where libvirt nodes keep VM disks.
    pub storage_path: Option<String>,
}

/// Resolved settings.
#[derive(Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Store URL.
    pub database_url: String,
    /// Data directory (SQLite file, token file).
    pub data_dir: PathBuf,
    /// The admin token, if configured (else read from or written to the token file).
    pub admin_token: Option<AdminToken>,
    /// Register `qemu:///system` as node `local` on first start when libvirtd answers.
    pub local_node: bool,
    /// Where libvirt nodes keep VM disks.
    pub storage_path: String,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = vmm_backends::StoreConfig::parse(&self.database_url);
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database", &store.map(|s| format!("{s:?}")).unwrap_or_else(|_| "<invalid>".into()))
            .field("data_dir", &self.data_dir)
            .field("admin_token", &self.admin_token)
            .field("local_node", &self.local_node)
            .field("storage_path", &self.storage_path)
            .finish()
    }
}

impl Settings {
    /// Reads `file` (if any), then `env` (a lookup such as `std::env::var`) over it.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let from_file: FileConfig = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::invalid("config", format!("cannot read {}: {e}", path.display())))?;
                toml::from_str(&text)
                    .map_err(|e| Error::invalid("config", format!("{}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        let data_dir =
            env("VMM_DATA_DIR").map(PathBuf::from).or(from_file.data_dir).unwrap_or_else(|| "data".into());
        let listen = env("VMM_LISTEN").or(from_file.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen
            .parse()
            .map_err(|_| Error::invalid("listen", format!("{listen:?} is not an address:port")))?;
        let database_url = env("VMM_DATABASE_URL")
            .or(from_file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("vmm.db").display()));
        vmm_backends::StoreConfig::parse(&database_url)?;
        let admin_token =
            env("VMM_ADMIN_TOKEN").or(from_file.admin_token).map(AdminToken::new).transpose()?;
        let local_node = match env("VMM_LOCAL_NODE") {
            Some(v) => matches!(v.as_str(), "1" | "true" | "yes"),
            None => from_file.local_node.unwrap_or(true),
        };
        let storage_path = env("VMM_STORAGE_PATH")
            .or(from_file.storage_path)
            .unwrap_or_else(|| "/var/lib/vmm/images".into());
        Ok(Self { listen, database_url, data_dir, admin_token, local_node, storage_path })
    }

    /// The token: the configured one, else the one in `<data dir>/admin.token`, else a new
    /// one written there with mode 0600. Returns the token and, when it came from the file,
    /// the file's path.
    pub fn admin_token(&self) -> Result<(AdminToken, Option<PathBuf>)> {
        if let Some(token) = &self.admin_token {
            return Ok((token.clone(), None));
        }
        let path = self.data_dir.join("admin.token");
        let io = |e: std::io::Error| Error::backend(path.display().to_string(), e);
        if path.exists() {
            return Ok((AdminToken::new(std::fs::read_to_string(&path).map_err(io)?)?, Some(path)));
        }
        std::fs::create_dir_all(&self.data_dir).map_err(io)?;
        let token = AdminToken::generate();
        write_private(&path, token.expose()).map_err(io)?;
        Ok((token, Some(path)))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(
            (s.listen.to_string(), s.database_url.as_str()),
            ("127.0.0.1:8080".into(), "sqlite://data/vmm.db")
        );
        let dir = std::env::temp_dir().join(format!("vmmd-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("vmmd.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/vmm\"\nlocal_node = false\n")
            .unwrap();
        let s = Settings::load(Some(&file), env(&[])).unwrap();
        assert_eq!(
            (s.listen.port(), s.database_url.as_str(), s.local_node),
            (9000, "sqlite:///srv/vmm/vmm.db", false)
        );
        let s = Settings::load(
            Some(&file),
            env(&[("VMM_LISTEN", "127.0.0.1:9001"), ("VMM_ADMIN_TOKEN", "0123456789abcdef0")]),
        )
        .unwrap();
        assert_eq!(s.listen.port(), 9001);
        assert!(!format!("{s:?}").contains("0123456789abcdef0"));
        std::fs::write(&file, "lisen = 1\n").unwrap();
        assert!(Settings::load(Some(&file), env(&[])).is_err(), "unknown keys are refused");
        assert!(Settings::load(None, env(&[("VMM_LISTEN", "nowhere")])).is_err());
        assert!(Settings::load(None, env(&[("VMM_DATABASE_URL", "mysql://x")])).is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_generated_token_is_written_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("vmmd-token-{}", uuid::Uuid::new_v4()));
        let s = Settings::load(None, env(&[("VMM_DATA_DIR", dir.to_str().unwrap())])).unwrap();
        let (first, path) = s.admin_token().unwrap();
        let path = path.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (again, _) = s.admin_token().unwrap();
        assert!(again.matches(first.expose()), "the same token on the next start");
        std::fs::remove_dir_all(dir).ok();
    }
}
