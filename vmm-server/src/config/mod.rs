//! vmmd's configuration: a TOML file, then `VMM_*` environment variables over it, then
//! defaults. Secrets never appear in `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use vmm_backends::libvirt::Deadlines;
use vmm_core::{Error, ImageLimits, NodeUriPolicy, Result, UrlPolicy, VirtType};

use crate::serve::ServeOptions;
use crate::{AdminToken, Limits, ThrottleConfig};

mod show;
pub use show::REDACTED;

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
    /// `admin_email = "admin@localhost"`: the first admin, whom the admin token acts as.
    pub admin_email: Option<String>,
    /// `session_ttl_s = 43200`: how long a sign-in lasts.
    pub session_ttl_s: Option<u64>,
    /// `event_retention_days = 30`: how long events are kept.
    pub event_retention_days: Option<u64>,
    /// `local_node = false` stops vmmd from registering the local libvirt on first start.
    pub local_node: Option<bool>,
    /// `local_node_virt_type = "qemu"`: the local node's domain type (default `kvm` when
    /// /dev/kvm exists; `qemu` where KVM guests cannot run, such as nested).
    pub local_node_virt_type: Option<String>,
    /// `storage_path = "/var/lib/vmm/images"`: where libvirt nodes keep VM disks.
    pub storage_path: Option<String>,
    /// `storage_pool = "vmm"`: the libvirt storage pool (a directory pool at
    /// `storage_path`) vmm keeps VM disks in on every node.
    pub storage_pool: Option<String>,
    /// `storage_shared = true`: every node sees the same `storage_path` (NFS, a cluster
    /// filesystem), so migrations move no disk.
    pub storage_shared: Option<bool>,
    /// `test_nodes = true` accepts `test:///default` and `memory://` nodes (tests, demos).
    pub test_nodes: Option<bool>,
    /// `node_uri_params = ["keyfile"]`: query parameters allowed on node URIs.
    pub node_uri_params: Option<Vec<String>>,
    /// `header_read_timeout_s = 10`: how long a client may take to send a request head.
    pub header_read_timeout_s: Option<u64>,
    /// `request_timeout_s = 90`: how long a request may take.
    pub request_timeout_s: Option<u64>,
    /// `max_connections = 1024`: connections served at once.
    pub max_connections: Option<usize>,
    /// `libvirt_connect_timeout_s = 15`: how long connecting to a node may take.
    pub libvirt_connect_timeout_s: Option<u64>,
    /// `libvirt_call_timeout_s = 120`: how long one libvirt call may take.
    pub libvirt_call_timeout_s: Option<u64>,
    /// `auth_max_failures = 10`: bad tokens per client address per minute before 429.
    pub auth_max_failures: Option<u32>,
    /// `task_lease_s = 30`: how long a worker's lease on a task lasts unless renewed.
    pub task_lease_s: Option<u64>,
    /// `node_lease_s = 30`: how long a node counts as alive after it last answered (HA).
    pub node_lease_s: Option<u64>,
    /// `ha_interval_s = 5`: how often HA probes the nodes and acts.
    pub ha_interval_s: Option<u64>,
    /// `fence_timeout_s = 60`: how long a fence agent may run.
    pub fence_timeout_s: Option<u64>,
    /// `[fence_agents]`, `NAME = ["/usr/local/sbin/fence-node", "--hard"]`: the commands
    /// HA runs to power a dead node off (the node's id, name and URI in `VMM_NODE_ID`,
    /// `VMM_NODE_NAME`, `VMM_NODE_URI`; exit 0: it is off). Nodes name theirs in `fence`.
    pub fence_agents: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// `image_dir = "./data/images"`: where image files are kept on this host.
    pub image_dir: Option<PathBuf>,
    /// `image_max_bytes = 68719476736`: the largest image file accepted.
    pub image_max_bytes: Option<u64>,
    /// `image_max_virtual_bytes = 2199023255552`: the largest virtual disk size accepted.
    pub image_max_virtual_bytes: Option<u64>,
    /// `image_url_hosts = ["images.example", "*.mirror.example"]`: hosts images may be
    /// fetched from (none by default: URL imports are off).
    pub image_url_hosts: Option<Vec<String>>,
    /// `image_url_addresses = ["10.0.0.5"]`: private addresses images may still be fetched from.
    pub image_url_addresses: Option<Vec<String>>,
    /// `image_url_allow_private = false`: allow every loopback, private or link-local address.
    pub image_url_allow_private: Option<bool>,
    /// `webhook_url_hosts = ["*"]`: hosts webhooks may deliver to (any by default).
    pub webhook_url_hosts: Option<Vec<String>>,
    /// `webhook_url_addresses = ["10.0.0.7"]`: private addresses webhooks may still reach.
    pub webhook_url_addresses: Option<Vec<String>>,
    /// `webhook_url_allow_private = false`: allow every loopback, private or link-local address.
    pub webhook_url_allow_private: Option<bool>,
    /// `webhook_max_failures = 10`: failed deliveries in a row that disable a webhook.
    pub webhook_max_failures: Option<u32>,
    /// `reconcile_interval_s = 30`: how often nodes are probed and compared with the database.
    pub reconcile_interval_s: Option<u64>,
    /// `metrics_token = "…"`: a read-only token for `GET /metrics` only (at least 16
    /// characters); the admin token works there too.
    pub metrics_token: Option<String>,
    /// `console_ttl_s = 60`: how long a console token can be used.
    pub console_ttl_s: Option<u64>,
    /// `console_sessions = 4`: console sessions open at once per VM.
    pub console_sessions: Option<usize>,
    /// `usage_interval_s = 60`: how often the usage collector samples VMs and nodes.
    pub usage_interval_s: Option<u64>,
    /// `stats_cache_s = 5`: how long a node's bulk statistics serve `/metrics` scrapes.
    pub stats_cache_s: Option<u64>,
    /// `[ldap]`: the directory users with auth source `ldap` sign in against.
    pub ldap: Option<LdapFile>,
    /// `[smtp]`: the mail server email notification channels send through (`host`, `port`,
    /// `security = "starttls" | "tls" | "plain"`, `username`, `password`, `from`).
    pub smtp: Option<vmm_backends::notify::SmtpConfig>,
    /// `[telegram]`: the bot Telegram notification channels send through (`bot_token`,
    /// `api_base`).
    pub telegram: Option<vmm_backends::notify::TelegramConfig>,
}

/// The `[ldap]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LdapFile {
    /// `url = "ldaps://ldap.example.com"` (plain `ldap://` only on loopback or with StartTLS).
    url: String,
    /// `starttls = false`.
    starttls: Option<bool>,
    /// `bind_dn = "cn=vmm,ou=services,dc=example,dc=com"`: the account users are searched
    /// as (anonymously if absent).
    bind_dn: Option<String>,
    /// `bind_password = "…"`.
    bind_password: Option<String>,
    /// `user_base = "ou=people,dc=example,dc=com"`.
    user_base: String,
    /// `user_filter = "(mail={email})"`.
    user_filter: Option<String>,
    /// `group_base = "ou=groups,dc=example,dc=com"`.
    group_base: String,
    /// `roles = [{ group = "cn=vmm-admins,ou=groups,dc=example,dc=com", role = "admin" }]`:
    /// the first group a user is a member of decides their role.
    roles: Vec<LdapRole>,
    /// `timeout_s = 10`.
    timeout_s: Option<u64>,
}

/// One group → role of `[ldap] roles`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LdapRole {
    group: String,
    role: vmm_core::Role,
}

impl LdapFile {
    fn resolve(self) -> Result<vmm_backends::ldap::LdapConfig> {
        let config = vmm_backends::ldap::LdapConfig {
            url: self.url,
            starttls: self.starttls.unwrap_or(false),
            bind_dn: self.bind_dn,
            bind_password: self.bind_password.map(vmm_core::Secret::new),
            user_base: self.user_base,
            user_filter: self.user_filter.unwrap_or_else(|| "(mail={email})".into()),
            group_base: self.group_base,
            roles: self.roles.into_iter().map(|r| (r.group, r.role)).collect(),
            timeout: Duration::from_secs(self.timeout_s.unwrap_or(10).max(1)),
        };
        config.validate()?;
        Ok(config)
    }
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
    /// The first admin's email.
    pub admin_email: String,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// How long events are kept.
    pub event_retention: Duration,
    /// The LDAP directory, if configured.
    pub ldap: Option<vmm_backends::ldap::LdapConfig>,
    /// The mail server for email channels, if configured.
    pub smtp: Option<vmm_backends::notify::SmtpConfig>,
    /// The bot for Telegram channels, if configured.
    pub telegram: Option<vmm_backends::notify::TelegramConfig>,
    /// Register `qemu:///system` as node `local` on first start when libvirtd answers.
    pub local_node: bool,
    /// The local node's domain type.
    pub local_node_virt_type: VirtType,
    /// Where libvirt nodes keep VM disks.
    pub storage_path: String,
    /// The libvirt storage pool's name.
    pub storage_pool: String,
    /// Whether every node sees the same storage path.
    pub storage_shared: bool,
    /// How long a node counts as alive after it last answered.
    pub node_lease: Duration,
    /// How often HA acts.
    pub ha_interval: Duration,
    /// How long a fence agent may run.
    pub fence_timeout: Duration,
    /// Fence agents by name (`Debug` shows the names only).
    pub fence_agents: vmm_core::ha::FenceAgents,
    /// Which node URIs are accepted.
    pub node_uris: NodeUriPolicy,
    /// Connection limits.
    pub serve: ServeOptions,
    /// Request timeouts.
    pub limits: Limits,
    /// libvirt deadlines.
    pub libvirt: Deadlines,
    /// Bad tokens per client address.
    pub throttle: ThrottleConfig,
    /// How long a worker's lease on a task lasts unless renewed.
    pub task_lease: Duration,
    /// Where image files are kept.
    pub image_dir: PathBuf,
    /// Image size limits.
    pub image_limits: ImageLimits,
    /// Which URLs images may be fetched from.
    pub image_urls: UrlPolicy,
    /// Which URLs webhooks may deliver to.
    pub webhook_urls: UrlPolicy,
    /// Failed deliveries in a row that disable a webhook.
    pub webhook_max_failures: u32,
    /// How often nodes are probed and compared with the database.
    pub reconcile_interval: Duration,
    /// The read-only token for `GET /metrics`, if configured.
    pub metrics_token: Option<AdminToken>,
    /// How long a console token can be used.
    pub console_ttl: Duration,
    /// Console sessions open at once per VM.
    pub console_sessions: usize,
    /// How often usage is sampled.
    pub usage_interval: Duration,
    /// How long a node's bulk statistics serve scrapes.
    pub stats_cache: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = vmm_backends::StoreConfig::parse(&self.database_url);
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database", &store.map(|s| format!("{s:?}")).unwrap_or_else(|_| "<invalid>".into()))
            .field("data_dir", &self.data_dir)
            .field("admin_token", &self.admin_token)
            .field("admin_email", &self.admin_email)
            .field("session_ttl", &self.session_ttl)
            .field("event_retention", &self.event_retention)
            .field("ldap", &self.ldap)
            .field("smtp", &self.smtp)
            .field("telegram", &self.telegram)
            .field("local_node", &self.local_node)
            .field("local_node_virt_type", &self.local_node_virt_type)
            .field("storage_path", &self.storage_path)
            .field("storage_pool", &self.storage_pool)
            .field("storage_shared", &self.storage_shared)
            .field("node_lease", &self.node_lease)
            .field("ha_interval", &self.ha_interval)
            .field("fence_timeout", &self.fence_timeout)
            .field("fence_agents", &self.fence_agents)
            .field("node_uris", &self.node_uris)
            .field("serve", &self.serve)
            .field("limits", &self.limits)
            .field("libvirt", &self.libvirt)
            .field("throttle", &self.throttle)
            .field("task_lease", &self.task_lease)
            .field("image_dir", &self.image_dir)
            .field("image_limits", &self.image_limits)
            .field("image_urls", &self.image_urls)
            .field("webhook_urls", &self.webhook_urls)
            .field("webhook_max_failures", &self.webhook_max_failures)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("metrics_token", &self.metrics_token)
            .field("console_ttl", &self.console_ttl)
            .field("console_sessions", &self.console_sessions)
            .field("usage_interval", &self.usage_interval)
            .field("stats_cache", &self.stats_cache)
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
        let admin_email = env("VMM_ADMIN_EMAIL")
            .or(from_file.admin_email)
            .unwrap_or_else(|| crate::DEFAULT_ADMIN_EMAIL.to_owned());
        let admin_email = vmm_core::users::normalize_email(&admin_email)
            .map_err(|_| Error::invalid("admin_email", format!("{admin_email:?} is not an email address")))?;
        let ldap = from_file.ldap.map(LdapFile::resolve).transpose()?;
        let (smtp, telegram) = (from_file.smtp, from_file.telegram);
        if let Some(s) = &smtp {
            s.check()?;
        }
        if let Some(t) = &telegram {
            t.check()?;
        }
        let session_ttl = Duration::from_secs(from_file.session_ttl_s.unwrap_or(12 * 3600));
        if session_ttl.is_zero() {
            return Err(Error::invalid("session_ttl_s", "must be at least 1"));
        }
        let event_retention = match env("VMM_EVENT_RETENTION_DAYS") {
            Some(v) => Some(
                v.parse().map_err(|_| Error::invalid("event_retention_days", "must be a number of days"))?,
            ),
            None => from_file.event_retention_days,
        };
        let event_retention = match event_retention.unwrap_or(30) {
            0 => return Err(Error::invalid("event_retention_days", "must be at least 1")),
            days => Duration::from_secs(days.saturating_mul(86_400)),
        };
        let local_node_virt_type = match env("VMM_LOCAL_NODE_VIRT_TYPE").or(from_file.local_node_virt_type) {
            Some(v) => {
                v.parse().map_err(|_| Error::invalid("local_node_virt_type", "must be kvm or qemu"))?
            }
            None if Path::new("/dev/kvm").exists() => VirtType::Kvm,
            None => VirtType::Qemu,
        };
        let local_node = match env("VMM_LOCAL_NODE") {
            Some(v) => matches!(v.as_str(), "1" | "true" | "yes"),
            None => from_file.local_node.unwrap_or(true),
        };
        let storage_path = env("VMM_STORAGE_PATH")
            .or(from_file.storage_path)
            .unwrap_or_else(|| "/var/lib/vmm/images".into());
        let storage_pool = env("VMM_STORAGE_POOL").or(from_file.storage_pool).unwrap_or_else(|| "vmm".into());
        if storage_pool.is_empty()
            || storage_pool.len() > 64
            || !storage_pool.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::invalid("storage_pool", "1 to 64 letters, digits, '-', '_' or '.'"));
        }
        let storage_shared = flag(&env, "VMM_STORAGE_SHARED")?.or(from_file.storage_shared).unwrap_or(false);
        let mut node_uris = NodeUriPolicy {
            test_nodes: flag(&env, "VMM_TEST_NODES")?.or(from_file.test_nodes).unwrap_or(false),
            ..NodeUriPolicy::default()
        };
        let params = match env("VMM_NODE_URI_PARAMS") {
            Some(list) => {
                list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect()
            }
            None => from_file.node_uri_params.unwrap_or_default(),
        };
        for param in params {
            node_uris = node_uris.allow_query_param(&param)?;
        }
        let seconds = |key: &str, file: Option<u64>, default: u64| -> Result<Duration> {
            let n = number(&env, key)?.or(file).unwrap_or(default);
            if n == 0 {
                return Err(Error::invalid(key, "must be at least 1 second"));
            }
            Ok(Duration::from_secs(n))
        };
        let serve = ServeOptions {
            header_read_timeout: seconds("VMM_HEADER_READ_TIMEOUT_S", from_file.header_read_timeout_s, 10)?,
            max_connections: number(&env, "VMM_MAX_CONNECTIONS")?
                .or(from_file.max_connections)
                .unwrap_or_else(default_max_connections),
            ..ServeOptions::default()
        };
        if serve.max_connections == 0 {
            return Err(Error::invalid("max_connections", "must be at least 1"));
        }
        let limits = Limits {
            request_timeout: seconds("VMM_REQUEST_TIMEOUT_S", from_file.request_timeout_s, 90)?,
            ..Limits::default()
        };
        let libvirt = Deadlines {
            connect: seconds("VMM_LIBVIRT_CONNECT_TIMEOUT_S", from_file.libvirt_connect_timeout_s, 15)?,
            call: seconds("VMM_LIBVIRT_CALL_TIMEOUT_S", from_file.libvirt_call_timeout_s, 120)?,
            ..Deadlines::default()
        };
        let throttle = ThrottleConfig {
            max_failures: number(&env, "VMM_AUTH_MAX_FAILURES")?
                .or(from_file.auth_max_failures)
                .unwrap_or(10),
            ..ThrottleConfig::default()
        };
        let task_lease = seconds("VMM_TASK_LEASE_S", from_file.task_lease_s, 30)?;
        let node_lease = seconds("VMM_NODE_LEASE_S", from_file.node_lease_s, 30)?;
        let ha_interval = seconds("VMM_HA_INTERVAL_S", from_file.ha_interval_s, 5)?;
        let fence_timeout = seconds("VMM_FENCE_TIMEOUT_S", from_file.fence_timeout_s, 60)?;
        let fence_agents = vmm_core::ha::FenceAgents(from_file.fence_agents.unwrap_or_default());
        if let Some((name, _)) =
            fence_agents.0.iter().find(|(_, argv)| argv.first().is_none_or(|p| p.is_empty()))
        {
            return Err(Error::invalid("fence_agents", format!("agent {name:?} has no command")));
        }
        let image_dir = env("VMM_IMAGE_DIR")
            .map(PathBuf::from)
            .or(from_file.image_dir)
            .unwrap_or_else(|| data_dir.join("images"));
        // libvirt scans the storage pool's directory and guesses each file's format: the
        // image library's files, partial uploads among them, must never be in it.
        if resolved(&image_dir).starts_with(resolved(Path::new(&storage_path))) {
            return Err(Error::invalid(
                "image_dir",
                format!("{} is inside storage_path {storage_path}", image_dir.display()),
            ));
        }
        let defaults = ImageLimits::default();
        let image_limits = ImageLimits {
            max_bytes: number(&env, "VMM_IMAGE_MAX_BYTES")?
                .or(from_file.image_max_bytes)
                .unwrap_or(defaults.max_bytes),
            max_virtual_bytes: number(&env, "VMM_IMAGE_MAX_VIRTUAL_BYTES")?
                .or(from_file.image_max_virtual_bytes)
                .unwrap_or(defaults.max_virtual_bytes),
        };
        let list = |key: &str, file: Option<Vec<String>>| -> Vec<String> {
            match env(key) {
                Some(v) => v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect(),
                None => file.unwrap_or_default(),
            }
        };
        let addresses = |field: &str, list: Vec<String>| -> Result<Vec<std::net::IpAddr>> {
            list.iter()
                .map(|a| a.parse().map_err(|_| Error::invalid(field, format!("{a:?} is not an address"))))
                .collect()
        };
        let image_urls = UrlPolicy {
            allowed_hosts: list("VMM_IMAGE_URL_HOSTS", from_file.image_url_hosts),
            allowed_addresses: addresses(
                "image_url_addresses",
                list("VMM_IMAGE_URL_ADDRESSES", from_file.image_url_addresses),
            )?,
            allow_private: flag(&env, "VMM_IMAGE_URL_ALLOW_PRIVATE")?
                .or(from_file.image_url_allow_private)
                .unwrap_or(false),
        };
        let webhook_hosts =
            list("VMM_WEBHOOK_URL_HOSTS", from_file.webhook_url_hosts.or(Some(vec!["*".into()])));
        let webhook_urls = UrlPolicy {
            allowed_hosts: webhook_hosts,
            allowed_addresses: addresses(
                "webhook_url_addresses",
                list("VMM_WEBHOOK_URL_ADDRESSES", from_file.webhook_url_addresses),
            )?,
            allow_private: flag(&env, "VMM_WEBHOOK_URL_ALLOW_PRIVATE")?
                .or(from_file.webhook_url_allow_private)
                .unwrap_or(false),
        };
        let webhook_max_failures = match env("VMM_WEBHOOK_MAX_FAILURES") {
            Some(v) => {
                Some(v.parse().map_err(|_| Error::invalid("webhook_max_failures", "must be a number"))?)
            }
            None => from_file.webhook_max_failures,
        }
        .unwrap_or(10);
        if webhook_max_failures == 0 {
            return Err(Error::invalid("webhook_max_failures", "must be at least 1"));
        }
        let reconcile_interval = match env("VMM_RECONCILE_INTERVAL_S") {
            Some(v) => Some(
                v.parse()
                    .map_err(|_| Error::invalid("reconcile_interval_s", "must be a number of seconds"))?,
            ),
            None => from_file.reconcile_interval_s,
        };
        let reconcile_interval = match reconcile_interval.unwrap_or(30) {
            0 => return Err(Error::invalid("reconcile_interval_s", "must be at least 1")),
            s => Duration::from_secs(s),
        };
        let metrics_token = env("VMM_METRICS_TOKEN")
            .or(from_file.metrics_token)
            .map(|t| {
                AdminToken::new(t).map_err(|_| {
                    Error::invalid("metrics_token", "must be at least 16 characters, no white space")
                })
            })
            .transpose()?;
        let console_ttl = seconds("VMM_CONSOLE_TTL_S", from_file.console_ttl_s, 60)?;
        let console_sessions =
            number(&env, "VMM_CONSOLE_SESSIONS")?.or(from_file.console_sessions).unwrap_or(4);
        if console_sessions == 0 {
            return Err(Error::invalid("console_sessions", "must be at least 1"));
        }
        let usage_interval = seconds("VMM_USAGE_INTERVAL_S", from_file.usage_interval_s, 60)?;
        let stats_cache = seconds("VMM_STATS_CACHE_S", from_file.stats_cache_s, 5)?;
        Ok(Self {
            metrics_token,
            console_ttl,
            console_sessions,
            usage_interval,
            stats_cache,
            image_dir,
            image_limits,
            image_urls,
            webhook_urls,
            webhook_max_failures,
            reconcile_interval,
            task_lease,
            listen,
            database_url,
            data_dir,
            admin_token,
            admin_email,
            session_ttl,
            event_retention,
            ldap,
            smtp,
            telegram,
            local_node,
            local_node_virt_type,
            storage_path,
            storage_pool,
            storage_shared,
            node_lease,
            ha_interval,
            fence_timeout,
            fence_agents,
            node_uris,
            serve,
            limits,
            libvirt,
            throttle,
        })
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

/// 1024 connections, or fewer when the process may not open that many files: room is kept
/// for the database, libvirt connections and logs (128 descriptors).
/// `path` as the system finds it: symbolic links followed as far as the path exists, the
/// rest made absolute with `.` and `..` taken lexically.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in absolute.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    match (out.parent(), out.file_name()) {
        // The part that exists may itself be or hold a link.
        (Some(parent), Some(name)) => resolved(parent).join(name),
        _ => out,
    }
}

fn default_max_connections() -> usize {
    let soft_limit = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse::<usize>().ok()
    });
    match soft_limit {
        Some(limit) => limit.saturating_sub(128).clamp(16, 1024),
        None => 1024,
    }
}

/// A boolean variable: `1`, `true`, `yes` or `0`, `false`, `no`.
fn flag(env: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Option<bool>> {
    match env(key).as_deref() {
        None => Ok(None),
        Some("1" | "true" | "yes") => Ok(Some(true)),
        Some("0" | "false" | "no") => Ok(Some(false)),
        Some(_) => Err(Error::invalid(key, "must be true or false")),
    }
}

/// A numeric variable.
fn number<T: FromStr>(env: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Option<T>> {
    env(key)
        .map(|v| v.trim().parse().map_err(|_| Error::invalid(key, format!("{v:?} is not a number"))))
        .transpose()
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
mod tests;
