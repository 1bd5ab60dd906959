//! Opening a ready [`Vmm`] from configuration: a store URL and node URIs, each parsed into a
//! typed config first, so that a bad one is a clear [`Error::Invalid`] before anything opens.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use vmm_core::memory::MemoryStore;
use vmm_core::{Connector, Error, NodeSpec, PageRequest, Result, Store, VirtType, Vmm, VmmConfig};

/// Where vmm keeps its state, parsed from a URL.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreConfig {
    /// `memory://`: in memory, gone with the process.
    Memory,
    /// `sqlite::memory:`: SQLite in memory.
    SqliteMemory,
    /// `sqlite://PATH` or `sqlite:PATH`: a SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// `postgres://…` or `postgresql://…`.
    Postgres {
        /// The whole URL, password included (hidden from `Debug`).
        url: String,
    },
}

impl StoreConfig {
    /// Parses a store URL.
    ///
    /// ```
    /// use vmm_backends::StoreConfig;
    /// let pg = StoreConfig::parse("postgres://vmm:s3cret@db.example:5432/vmm").unwrap();
    /// assert!(!format!("{pg:?}").contains("s3cret"));
    /// assert!(StoreConfig::parse("mysql://x").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid("database_url", format!("{}: {why}", redact(url)));
        let url = url.trim();
        if url.chars().any(char::is_control) {
            return Err(bad("contains control characters"));
        }
        if url == "memory://" {
            return Ok(Self::Memory);
        }
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(Self::SqliteMemory);
        }
        if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(bad("names no file"));
            }
            return Ok(Self::Sqlite { path: PathBuf::from(path) });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
            if parsed.host_str().is_none_or(str::is_empty) && !url.contains("host=") {
                return Err(bad("names no host"));
            }
            return Ok(Self::Postgres { url: url.to_owned() });
        }
        Err(bad("expected sqlite://PATH, sqlite::memory:, postgres://… or memory://"))
    }

    /// Opens the store (creating a SQLite file and running migrations as needed).
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        match self {
            Self::Memory => Ok(Arc::new(MemoryStore::new())),
            #[cfg(feature = "sqlite")]
            Self::SqliteMemory => Ok(Arc::new(crate::SqlStore::connect("sqlite::memory:").await?)),
            #[cfg(feature = "sqlite")]
            Self::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| Error::backend("sqlite", e))?;
                }
                let url = format!("sqlite://{}", path.display());
                Ok(Arc::new(crate::SqlStore::connect(&url).await?))
            }
            #[cfg(feature = "postgres")]
            Self::Postgres { url } => Ok(Arc::new(crate::SqlStore::connect(url).await?)),
            #[allow(unreachable_patterns)]
            other => Err(Error::unsupported(
                format!("{other:?}"),
                "this build (enable the sqlite/postgres features)",
            )),
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::SqliteMemory => f.write_str("SqliteMemory"),
            Self::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Self::Postgres { url } => f.debug_struct("Postgres").field("url", &redact(url)).finish(),
        }
    }
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Cannot fail: the URL has a host, since it has a password.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => url.split('@').next_back().map_or_else(String::new, |host| format!("***@{host}")),
    }
}

/// A node to register at start, parsed from its URI.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Its name.
    pub name: String,
    /// Its URI: a libvirt URI or `memory://NAME`.
    pub uri: String,
    /// How guests run on it.
    pub virt_type: VirtType,
}

impl NodeConfig {
    /// Checks the URI and makes the config.
    ///
    /// ```
    /// use vmm_backends::NodeConfig;
    /// use vmm_core::VirtType;
    /// assert!(NodeConfig::new("local", "qemu:///system", VirtType::Qemu).is_ok());
    /// assert!(NodeConfig::new("far", "qemu+ssh://root@hv1.example/system", VirtType::Kvm).is_ok());
    /// assert!(NodeConfig::new("bad", "http://hv1/", VirtType::Kvm).is_err());
    /// ```
    pub fn new(name: &str, uri: &str, virt_type: VirtType) -> Result<Self> {
        let uri = uri.trim();
        let known = uri.starts_with("memory://") || is_libvirt_uri(uri);
        if !known || url::Url::parse(uri).is_err() {
            return Err(Error::invalid(
                "uri",
                format!(
                    "{}: expected qemu:///system, qemu+ssh://host/system, test:///default or memory://NAME",
                    redact(uri)
                ),
            ));
        }
        NodeSpec::new(name, uri).validate()?;
        Ok(Self { name: name.to_owned(), uri: uri.to_owned(), virt_type })
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("uri", &redact(&self.uri))
            .field("virt_type", &self.virt_type)
            .finish()
    }
}

/// Whether `uri` names a libvirt driver vmm serves (`qemu` or `test`, any transport).
pub fn is_libvirt_uri(uri: &str) -> bool {
    let Some((scheme, _)) = uri.split_once("://") else { return false };
    let (driver, transport) = scheme.split_once('+').unwrap_or((scheme, ""));
    matches!(driver, "qemu" | "test")
        && matches!(transport, "" | "ssh" | "tcp" | "tls" | "unix" | "libssh" | "libssh2")
}

/// Everything needed to open a [`Vmm`].
#[derive(Debug, Clone)]
pub struct OpenConfig {
    /// The store.
    pub store: StoreConfig,
    /// Nodes registered at start when no node of that name exists yet.
    pub nodes: Vec<NodeConfig>,
    /// Where libvirt nodes keep disks and which network they use.
    #[cfg(feature = "libvirt")]
    pub libvirt: crate::libvirt::LibvirtConfig,
    /// Task engine settings.
    pub vmm: VmmConfig,
}

impl OpenConfig {
    /// A config for `database_url` with no nodes and default settings.
    pub fn new(database_url: &str) -> Result<Self> {
        Ok(Self {
            store: StoreConfig::parse(database_url)?,
            nodes: Vec::new(),
            #[cfg(feature = "libvirt")]
            libvirt: crate::libvirt::LibvirtConfig::default(),
            vmm: VmmConfig::default(),
        })
    }

    /// The same config with one more node.
    pub fn with_node(mut self, node: NodeConfig) -> Self {
        self.nodes.push(node);
        self
    }
}

/// Opens the store, builds the [`Vmm`] with a connector for libvirt and `memory://` nodes,
/// and registers the configured nodes that are not registered yet.
pub async fn open(config: &OpenConfig) -> Result<Vmm> {
    let store = config.store.open().await?;
    #[cfg(feature = "libvirt")]
    let connector: Arc<dyn Connector> =
        Arc::new(crate::libvirt::LibvirtConnector::new(config.libvirt.clone()));
    #[cfg(not(feature = "libvirt"))]
    let connector: Arc<dyn Connector> = Arc::new(vmm_core::memory::MemoryConnector::new());
    let vmm =
        Vmm::builder().with_store(store).with_connector(connector).with_config(config.vmm.clone()).build();
    let mut existing = Vec::new();
    let mut page = PageRequest::first(vmm_core::page::MAX_LIMIT);
    loop {
        let got = vmm.list_nodes(&page).await?;
        existing.extend(got.items.into_iter().map(|n| n.name));
        match got.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    for node in &config.nodes {
        if existing.contains(&node.name) {
            continue;
        }
        let added = vmm.add_node(NodeSpec::new(&node.name, &node.uri).with_virt_type(node.virt_type)).await?;
        tracing::info!(node = %added.name, uri = %redact(&added.uri), "registered node");
    }
    Ok(vmm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_into_typed_configs() {
        assert_eq!(StoreConfig::parse("memory://").unwrap(), StoreConfig::Memory);
        assert_eq!(StoreConfig::parse("sqlite::memory:").unwrap(), StoreConfig::SqliteMemory);
        assert_eq!(
            StoreConfig::parse("sqlite:///var/lib/vmm/vmm.db").unwrap(),
            StoreConfig::Sqlite { path: "/var/lib/vmm/vmm.db".into() }
        );
        assert_eq!(
            StoreConfig::parse("sqlite://data/vmm.db").unwrap(),
            StoreConfig::Sqlite { path: "data/vmm.db".into() }
        );
        for bad in
            ["", "sqlite://", "sqlite://a\0b", "mysql://db/x", "postgres://", "postgres://:5432/x", "banana"]
        {
            match StoreConfig::parse(bad) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "database_url"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let pg = StoreConfig::parse("postgresql://vmm:hunter2@127.0.0.1/vmm").unwrap();
        let shown = format!("{pg:?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
        let err = StoreConfig::parse("mysql://root:hunter2@db/x").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let node = NodeConfig::new("n", "qemu+ssh://root:hunter2@hv/system", VirtType::Kvm).unwrap();
        assert!(!format!("{node:?}").contains("hunter2"));
    }

    #[test]
    fn node_uris_are_checked() {
        for ok in [
            "qemu:///system",
            "qemu+ssh://hv1/system",
            "qemu+tcp://10.0.0.1/system",
            "test:///default",
            "memory://n1",
        ] {
            assert!(NodeConfig::new("n", ok, VirtType::Kvm).is_ok(), "{ok}");
        }
        for bad in ["", "qemu", "xen:///system", "qemu+carrier-pigeon://x/system", "http://hv/"] {
            assert!(NodeConfig::new("n", bad, VirtType::Kvm).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_memory_config_opens_a_ready_vmm_with_its_nodes() {
        let config = OpenConfig::new("memory://")
            .unwrap()
            .with_node(NodeConfig::new("m1", "memory://m1", VirtType::Qemu).unwrap());
        let vmm = open(&config).await.unwrap();
        let nodes = vmm.list_nodes(&vmm_core::PageRequest::default()).await.unwrap().items;
        assert_eq!((nodes.len(), nodes[0].name.as_str(), nodes[0].virt_type), (1, "m1", VirtType::Qemu));
    }
}
