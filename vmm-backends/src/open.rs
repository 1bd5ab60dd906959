//! Opening a ready [`Vmm`] from configuration: a store URL and node URIs, each parsed into a
//! typed config first, so that a bad one is a clear [`Error::Invalid`] before anything opens.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vmm_core::memory::InMemoryStore;
use vmm_core::{Connector, Error, NodeSpec, PageRequest, Result, Store, VirtType, Vmm, VmmConfig};

/// The query parameters a PostgreSQL store URL may carry: the connection settings sqlx
/// knows, less `password` (a password goes in the URL's user part, where it is redacted).
pub const POSTGRES_QUERY_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
];

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
        /// The whole URL, password included (never shown: `Debug` describes it without).
        url: String,
    },
}

impl StoreConfig {
    /// Parses a store URL. A SQLite URL names a file and nothing else; a PostgreSQL URL
    /// names a host and may carry only [`POSTGRES_QUERY_PARAMS`], no fragment, and a
    /// database name of letters, digits, `_`, `-` and `.`: so no part of it can carry a
    /// password into `Debug`, a log line or an error.
    ///
    /// ```
    /// use vmm_backends::StoreConfig;
    /// let pg = StoreConfig::parse("postgres://vmm:s3cret@db.example:5432/vmm?sslmode=require").unwrap();
    /// assert!(!format!("{pg:?}").contains("s3cret"));
    /// assert!(StoreConfig::parse("postgres://vmm:s3cret@db.example/vmm#s3cret").is_err());
    /// assert!(StoreConfig::parse("postgres://db.example/vmm?password=s3cret").is_err());
    /// assert!(StoreConfig::parse("mysql://x").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid("database_url", format!("{}: {why}", Self::describe(url)));
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
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.contains(['?', '#']) {
                return Err(bad("a SQLite URL names a file and takes no parameters"));
            }
            if path.contains('@') {
                return Err(bad("a SQLite URL names a file: no user, password or host ('@')"));
            }
            if path.is_empty() {
                return Err(bad("names no file"));
            }
            return Ok(Self::Sqlite { path: PathBuf::from(path) });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed = url::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
            if parsed.fragment().is_some() {
                return Err(bad("must not have a fragment (#…)"));
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad("names no host"));
            }
            for (key, _) in parsed.query_pairs() {
                if !POSTGRES_QUERY_PARAMS.contains(&key.as_ref()) {
                    // Named only when it is a plain name: any other text of the URL may hold
                    // the password (fuzzing found one in a parameter's name).
                    let plain = key.len() <= 40
                        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    let which = if plain {
                        format!("query parameter {key:?}")
                    } else {
                        "a query parameter".to_owned()
                    };
                    return Err(bad(&format!("{which} is not one of {}", POSTGRES_QUERY_PARAMS.join(", "))));
                }
            }
            let db = parsed.path().trim_start_matches('/');
            if !db.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
                return Err(bad("the database name may hold only letters, digits, '_', '-' and '.'"));
            }
            return Ok(Self::Postgres { url: url.to_owned() });
        }
        Err(bad("expected sqlite://PATH, sqlite::memory:, postgres://… or memory://"))
    }

    /// A store URL described without secrets: scheme, user, host, port and database of a
    /// PostgreSQL URL (never its password, parameters or fragment); the path of a SQLite
    /// one; the scheme alone of anything else.
    pub fn describe(url: &str) -> String {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split(['?', '#']).next().unwrap_or_default();
            // A `user:password@` someone wrote by mistake is not shown.
            let path = match path.rsplit_once('@') {
                Some((_, after)) => format!("…@{after}"),
                None => path.to_owned(),
            };
            let path: String = path.chars().take(200).collect();
            return format!("sqlite://{}", path.escape_debug());
        }
        let scheme: String = url
            .split("://")
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect();
        match url::Url::parse(url) {
            Ok(u) if u.has_host() => {
                let user = if u.username().is_empty() { String::new() } else { format!("{}@", u.username()) };
                let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                let db: String = u
                    .path()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'))
                    .take(64)
                    .collect();
                format!("{scheme}://{user}{}{port}{db}", u.host_str().unwrap_or_default())
            }
            _ => format!("{scheme}://…"),
        }
    }

    /// Where images are kept by default: `images/` beside a SQLite file, `data/images` for
    /// PostgreSQL, in memory for an in-memory store.
    pub fn default_image_dir(&self) -> Option<PathBuf> {
        match self {
            Self::Memory | Self::SqliteMemory => None,
            Self::Sqlite { path } => Some(
                path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("images"),
            ),
            Self::Postgres { .. } => Some("data/images".into()),
        }
    }

    /// Opens the store (creating a SQLite file and running migrations as needed).
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        match self {
            Self::Memory => Ok(Arc::new(InMemoryStore::new())),
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
            Self::Postgres { url } => f.debug_struct("Postgres").field("url", &Self::describe(url)).finish(),
        }
    }
}

/// A node to register at start.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Its name.
    pub name: String,
    /// Its URI: a libvirt URI or `memory://NAME`; checked against the node URI policy
    /// when the node is registered.
    pub uri: String,
    /// How guests run on it.
    pub virt_type: VirtType,
}

impl NodeConfig {
    /// Checks the name and the URI's shape and makes the config.
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
        vmm_core::NodeUriPolicy::for_tests().check(uri)?;
        NodeSpec::new(name, uri).validate()?;
        Ok(Self { name: name.to_owned(), uri: uri.to_owned(), virt_type })
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("uri", &self.uri)
            .field("virt_type", &self.virt_type)
            .finish()
    }
}

/// Everything needed to open a [`Vmm`].
#[derive(Debug, Clone)]
pub struct OpenConfig {
    /// The store.
    pub store: StoreConfig,
    /// Nodes registered at start when no node of that name exists yet.
    pub nodes: Vec<NodeConfig>,
    /// Where libvirt nodes keep disks, which network they use, and their deadlines.
    #[cfg(feature = "libvirt")]
    pub libvirt: crate::libvirt::LibvirtConfig,
    /// Task engine settings, the node URI policy, image limits and the image URL policy.
    pub vmm: VmmConfig,
    /// Where image files are kept on this host; in memory when `None` (an in-memory store).
    pub image_dir: Option<PathBuf>,
    /// The LDAP directory users with auth source `ldap` sign in against, if any.
    pub ldap: Option<crate::ldap::LdapConfig>,
}

impl OpenConfig {
    /// A config for `database_url` with no nodes and default settings.
    pub fn new(database_url: &str) -> Result<Self> {
        let store = StoreConfig::parse(database_url)?;
        let image_dir = store.default_image_dir();
        Ok(Self {
            store,
            nodes: Vec::new(),
            #[cfg(feature = "libvirt")]
            libvirt: crate::libvirt::LibvirtConfig::default(),
            vmm: VmmConfig::default(),
            image_dir,
            ldap: None,
        })
    }

    /// The same config with one more node.
    pub fn with_node(mut self, node: NodeConfig) -> Self {
        self.nodes.push(node);
        self
    }

    /// The same config accepting `test:///default` and `memory://` nodes.
    pub fn with_test_nodes(mut self) -> Self {
        self.vmm.node_uris.test_nodes = true;
        self
    }
}

/// Opens the store, builds the [`Vmm`] with a connector for libvirt and `memory://` nodes,
/// and registers the configured nodes that are not registered yet.
pub async fn open(config: &OpenConfig) -> Result<Vmm> {
    let store = config.store.open().await?;
    #[cfg(feature = "libvirt")]
    let connector: Arc<dyn Connector> = Arc::new(crate::libvirt::LibvirtConnector::with_policy(
        config.libvirt.clone(),
        config.vmm.node_uris.clone(),
    ));
    #[cfg(not(feature = "libvirt"))]
    let connector: Arc<dyn Connector> = Arc::new(vmm_core::memory::InMemoryConnector::new());
    let mut builder = Vmm::builder()
        .with_store(store)
        .with_connector(connector)
        .with_config(config.vmm.clone())
        .with_image_fetcher(Arc::new(crate::images::HttpFetcher::default()))
        .with_targets(Arc::new(crate::backup::Targets::new()))
        .with_fencer(Arc::new(crate::fence::CommandFencer::new(
            config.vmm.fence_agents.0.clone(),
            config.vmm.fence_timeout,
        )));
    if let Some(dir) = &config.image_dir {
        builder = builder.with_image_repo(Arc::new(crate::images::DirImageRepo::open(dir)?));
    }
    if let Some(ldap) = &config.ldap {
        builder = builder.with_directory(Arc::new(crate::ldap::LdapDirectory::new(ldap.clone())?));
    }
    let vmm = builder.build();
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
        let added =
            vmm.create_node(NodeSpec::new(&node.name, &node.uri).with_virt_type(node.virt_type)).await?;
        tracing::info!(node = %added.name, uri = %added.uri, "registered node");
    }
    Ok(vmm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_parameter_is_named_only_when_it_is_a_plain_name() {
        let e =
            StoreConfig::parse("postgres://u:s3cret-pw@db.example/vmm?colour=red").unwrap_err().to_string();
        assert!(e.contains("\"colour\""), "{e}");
        // Found by fuzzing: the password again inside a parameter's name.
        let url = "postgresql://u:s3cret-pw@db.example/vmm?x:s3cret-pw@y=1";
        let e = StoreConfig::parse(url).unwrap_err().to_string();
        assert!(!e.contains("s3cret-pw"), "{e}");
    }

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
        assert!(StoreConfig::parse("postgresql://vmm@127.0.0.1:5432/vmm?sslmode=disable").is_ok());
        for bad in [
            "",
            "sqlite://",
            "sqlite://a\0b",
            "sqlite://data/vmm.db?mode=memory",
            "mysql://db/x",
            "postgres://",
            "postgres://:5432/x",
            "banana",
            "postgres://u:pw@h/db#frag",
            "postgres://u@h/db?password=pw",
            "postgres://u@h/db?sslmode=require&exec=1",
            "postgres://u:pw@h/:pw@",
        ] {
            match StoreConfig::parse(bad) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "database_url"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let pg = StoreConfig::parse("postgresql://vmm:hunter2@127.0.0.1/vmm?application_name=x").unwrap();
        let shown = format!("{pg:?}");
        assert!(!shown.contains("hunter2") && shown.contains("vmm@127.0.0.1/vmm"), "{shown}");
        for bad in [
            "mysql://root:hunter2@db/x",
            "postgres://u:hunter2@h/db#hunter2",
            "postgres://u:hunter2@h/db?password=hunter2",
            "postgres://u:hunter2@h/db?x=hunter2",
            "postgresql://meml@~sql--t:MMMM@~#Q#QQQQQQQsql://meml@~sql--t:MMMM@~#Q#QQQQQQ0Q",
            "sqlite://\0\0\0\0\0\0\0\u{1f}sqlm\u{1}\0\0@~sql--t:MMMM@~#/#r//obb]a",
            "sqlite://u:hunter2@host/db",
        ] {
            let err = StoreConfig::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("hunter2") && !err.contains("MMMM"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_memory_config_opens_a_ready_vmm_with_its_nodes() {
        let config = OpenConfig::new("memory://")
            .unwrap()
            .with_test_nodes()
            .with_node(NodeConfig::new("m1", "memory://m1", VirtType::Qemu).unwrap());
        let vmm = open(&config).await.unwrap();
        let nodes = vmm.list_nodes(&vmm_core::PageRequest::default()).await.unwrap().items;
        assert_eq!((nodes.len(), nodes[0].name.as_str(), nodes[0].virt_type), (1, "m1", VirtType::Qemu));
    }

    #[tokio::test]
    async fn test_nodes_need_the_operator() {
        let config = OpenConfig::new("memory://")
            .unwrap()
            .with_node(NodeConfig::new("m1", "memory://m1", VirtType::Qemu).unwrap());
        assert!(matches!(open(&config).await, Err(Error::Invalid { .. })));
    }
}
