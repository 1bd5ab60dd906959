//! Where the server is and who calls it: flags, then `VMM_URL`/`VMM_TOKEN`, then the config
//! file, then the defaults.
//!
//! The file is TOML, at `--config`, `$VMM_CLI_CONFIG` (not `VMM_CONFIG`: that is vmmd's), `$XDG_CONFIG_HOME/vmm/config.toml` or
//! `~/.config/vmm/config.toml` (the first that is set; only a file named explicitly must
//! exist):
//!
//! ```toml
//! url = "https://vmm.example.net"   # the vmmd to talk to (default http://127.0.0.1:8080)
//! token = "…"                        # an API token (or token_file = "/path/to/token")
//! output = "table"                   # table | json | yaml
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::output::Format;

/// The server when nothing names one: `vmmd serve`'s default listen address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The config file's keys, all optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    url: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    output: Option<Format>,
}

/// What the command line says, before the environment and the file fill the gaps.
#[derive(Default)]
pub struct Given {
    /// `--config`.
    pub file: Option<PathBuf>,
    /// `--url`.
    pub url: Option<String>,
    /// `--token`.
    pub token: Option<String>,
    /// `--output`.
    pub output: Option<Format>,
}

/// The settings a command runs with.
pub struct Config {
    /// The server's base URL (without `/api/v1`).
    pub url: String,
    /// The API token, if any.
    pub token: Option<String>,
    /// How answers are shown.
    pub output: Format,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("output", &self.output)
            .finish()
    }
}

impl Config {
    /// The settings from `given`, the environment (`VMM_URL`, `VMM_TOKEN`, `VMM_CLI_CONFIG`)
    /// and the config file.
    pub fn load(given: Given) -> Result<Self> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let (path, required) = match given.file.or_else(|| env("VMM_CLI_CONFIG").map(PathBuf::from)) {
            Some(path) => (Some(path), true),
            None => (default_path(), false),
        };
        let file = match path {
            Some(path) => read(&path, required)?,
            None => File::default(),
        };
        let token = match given.token.or_else(|| env("VMM_TOKEN")).or(file.token) {
            Some(token) => Some(token),
            None => match &file.token_file {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(Error::io(format!("reading the token file {}", path.display())))?
                        .trim()
                        .to_owned(),
                ),
                None => None,
            },
        };
        let url = given.url.or_else(|| env("VMM_URL")).or(file.url).unwrap_or_else(|| DEFAULT_URL.into());
        let url = url.trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Usage(format!(
                "the server URL must start with http:// or https://, not {url:?}"
            )));
        }
        Ok(Self { url, token, output: given.output.or(file.output).unwrap_or_default() })
    }
}

/// `$XDG_CONFIG_HOME/vmm/config.toml`, else `~/.config/vmm/config.toml`.
fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("vmm").join("config.toml"))
}

fn read(path: &Path, required: bool) -> Result<File> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!("the config file {} does not exist", path.display())))
        }
        Err(e) => return Err(Error::io(format!("reading the config file {}", path.display()))(e)),
    };
    // The message names the key and the line, never a value (the file holds a token).
    toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
        Error::Usage(format!(
            "the config file {}{} is not valid: {}",
            path.display(),
            at.map(|line| format!(" (line {line})")).unwrap_or_default(),
            e.message()
        ))
    })
}
