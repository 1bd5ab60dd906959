//! vmm-tests: black-box end-to-end tests across crates. They run the real `vmmd` binary on
//! a loopback port against SQLite or PostgreSQL and real libvirt nodes, and talk to it over
//! HTTP as a user would. This library holds what the tests share: starting and stopping
//! `vmmd`, a fresh PostgreSQL database, and a loopback proxy to the machine's libvirtd that
//! a test can make go silent.
//!
//! The `vmmd` binary is `$VMM_TEST_VMMD` when set (`make test` points it at the one `cargo
//! test --workspace` just built); otherwise it is built here with `cargo build`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The admin token every test `vmmd` gets.
pub const TOKEN: &str = "e2e-token-0123456789abcdef";

/// The `vmmd` binary to run.
pub fn vmmd_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("VMM_TEST_VMMD") {
                return PathBuf::from(path);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "vmm-server", "--bin", "vmmd"])
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building vmmd failed");
            // target/debug/deps/<this test> → target/debug/vmmd
            let exe = std::env::current_exe().expect("the test binary's path");
            exe.parent().and_then(Path::parent).expect("target/debug").join("vmmd")
        })
        .clone()
}

/// A fresh data directory.
pub fn data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmmd-e2e-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a data directory");
    dir
}

/// How to start a `vmmd`.
#[derive(Debug, Clone)]
pub struct VmmdConfig {
    /// `VMM_DATA_DIR`.
    pub data: PathBuf,
    /// `VMM_DATABASE_URL`, if not the default SQLite file under the data directory.
    pub database_url: Option<String>,
    /// More `VMM_*` variables.
    pub env: Vec<(String, String)>,
    /// Open-file limit of the process (`ulimit -n`), if lowered.
    pub max_open_files: Option<u32>,
    /// A configuration file (`--config`), if any.
    pub config_file: Option<PathBuf>,
}

impl VmmdConfig {
    /// SQLite under `data`, test nodes on, the local libvirt not registered.
    pub fn new(data: &Path) -> Self {
        Self {
            data: data.to_owned(),
            database_url: None,
            env: Vec::new(),
            max_open_files: None,
            config_file: None,
        }
    }

    /// The same config with `key=value` in the environment.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A running `vmmd`, killed when dropped.
#[derive(Debug)]
pub struct Vmmd {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Vmmd {
    /// Starts `vmmd` and waits until it listens.
    pub fn start(config: &VmmdConfig) -> Self {
        let binary = vmmd_binary();
        let mut command = match config.max_open_files {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        command.arg("serve");
        if let Some(file) = &config.config_file {
            command.arg("--config").arg(file);
        }
        command
            .env("VMM_LISTEN", "127.0.0.1:0")
            .env("VMM_DATA_DIR", &config.data)
            .env("VMM_ADMIN_TOKEN", TOKEN)
            .env("VMM_LOCAL_NODE", "false")
            .env("VMM_TEST_NODES", "true")
            .env("VMM_STORAGE_PATH", "/var/lib/vmm/e2e-images")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = &config.database_url {
            command.env("VMM_DATABASE_URL", url);
        }
        for (k, v) in &config.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("vmmd starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let base = loop {
            let line = lines.next().expect("vmmd logs its address").expect("a log line");
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().expect("an address").to_owned();
            }
        };
        // Keep draining the log so that vmmd never blocks on a full pipe.
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self { child, base, log }
    }

    /// What vmmd has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Calls the API with the admin token; returns the status and the JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_with_timeout(method, path, body, Duration::from_secs(90))
    }

    /// [`call`](Self::call) with a client timeout.
    pub fn call_with_timeout(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> (u16, Value) {
        self.request(Some(TOKEN), method, path, body, timeout)
    }

    /// Calls the API with `token` (none: no `Authorization` header).
    pub fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.request(token, method, path, body, Duration::from_secs(90))
    }

    fn request(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> (u16, Value) {
        let mut req = ureq::request(method, &format!("{}{path}", self.base)).timeout(timeout);
        if let Some(token) = token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let res = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = res.status();
        let text = res.into_string().expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// PUTs the file at `file` as the body of `path` (streamed, with its length).
    pub fn upload(&self, path: &str, file: &Path) -> (u16, Value) {
        let data = std::fs::File::open(file).expect("the file to upload");
        let len = data.metadata().expect("its size").len();
        let res = ureq::put(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .set("Content-Type", "application/octet-stream")
            .set("Content-Length", &len.to_string())
            .timeout(Duration::from_secs(120))
            .send(data);
        let res = match res {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("PUT {path}: {e}"),
        };
        let status = res.status();
        (status, serde_json::from_str(&res.into_string().expect("a body")).unwrap_or(Value::Null))
    }

    /// The VM's console log as text.
    pub fn console_log(&self, vm: &str) -> String {
        let res = ureq::get(&format!("{}/api/v1/vms/{vm}/console-log?tail_bytes=1048576", self.base))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .timeout(Duration::from_secs(60))
            .call();
        match res {
            Ok(r) => r.into_string().expect("text"),
            Err(e) => panic!("console-log of {vm}: {e}"),
        }
    }

    /// Waits (up to `within`) until the VM's console log has a complete line starting with
    /// `prefix` after `skip` earlier ones, and returns the rest of that line.
    pub fn console_line(&self, vm: &str, prefix: &str, skip: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.console_log(vm);
            // The log is written in pieces: only complete lines count.
            let complete = match log.rfind('\n') {
                Some(end) => &log[..end],
                None => "",
            };
            let found: Vec<&str> =
                complete.lines().filter_map(|l| l.trim_end_matches('\r').strip_prefix(prefix)).collect();
            if let Some(line) = found.get(skip) {
                return (*line).to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix:?} line #{skip} from {vm} in time; the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits up to a minute for a task to end and returns it.
    pub fn wait(&self, task: &Value) -> Value {
        let id = task["id"].as_str().expect("a task id");
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (status, t) = self.call("GET", &format!("/api/v1/tasks/{id}/wait?timeout_s=60"), None);
            assert_eq!(status, 200, "{t}");
            if !matches!(t["state"].as_str(), Some("queued" | "running")) {
                return t;
            }
            assert!(Instant::now() < deadline, "task {id} never ended: {t}");
        }
    }

    /// Waits for a task to end; it must succeed.
    pub fn done(&self, task: &Value) {
        let t = self.wait(task);
        assert_eq!(t["state"], "succeeded", "{t}");
    }

    /// Makes the image `name` of the tiny guest (built by `tests/guest/build.sh`, which the
    /// setup runs) and uploads its data; returns the image's id once it is ready.
    pub fn tiny_image(&self, name: &str) -> String {
        let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/out/tiny.qcow2");
        assert!(tiny.exists(), "{} is missing: run tests/guest/build.sh (the setup does)", tiny.display());
        let spec = serde_json::json!({"name": name, "os": {"family": "linux"}, "format": "qcow2"});
        let (status, image) = self.call("POST", "/api/v1/images", Some(spec));
        assert_eq!(status, 201, "{image}");
        let id = image["id"].as_str().expect("an image id").to_owned();
        let (status, image) = self.upload(&format!("/api/v1/images/{id}/data"), &tiny);
        assert_eq!((status, image["state"].as_str()), (200, Some("ready")), "{image}");
        id
    }

    /// Registers node `n1` at `uri` (domain type `qemu`); returns it.
    pub fn add_node(&self, uri: &str) -> Value {
        let (status, node) = self.call(
            "POST",
            "/api/v1/nodes",
            Some(serde_json::json!({"name": "n1", "uri": uri, "virt_type": "qemu"})),
        );
        assert_eq!(status, 201, "{node}");
        node
    }

    /// Asks for a change that answers 202 with a task, and waits until the task succeeded.
    pub fn act(&self, method: &str, path: &str) {
        let (status, r) = self.call(method, path, None);
        assert_eq!(status, 202, "{method} {path}: {r}");
        self.done(&r["task"]);
    }

    /// SIGTERM, and waits for a clean exit.
    pub fn stop(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "vmmd exits cleanly on SIGTERM: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "vmmd did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to `within`) for the process to end by itself; its exit status.
    pub fn wait_exit(mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "vmmd did not exit in time");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill(mut self) {
        self.signal("KILL");
        self.child.wait().expect("reaped");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().expect("kill").success());
    }
}

impl Drop for Vmmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The PostgreSQL server the tests use.
pub fn postgres_base() -> String {
    std::env::var("VMM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database of its own; its URL.
pub fn postgres_db() -> String {
    let base = postgres_base();
    let name = format!("vmm_e2e_{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&base).await.expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create database");
    });
    let (prefix, _) = base.rsplit_once('/').expect("a database in the URL");
    format!("{prefix}/{name}")
}

/// A loopback proxy to the machine's libvirtd: while `silent` is set it holds what it gets
/// and answers nothing, as a frozen daemon would; once unset, what it held goes through.
/// Runs on its own threads.
#[derive(Debug, Clone)]
pub struct LibvirtProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    silent: Arc<AtomicBool>,
}

impl LibvirtProxy {
    /// Starts the proxy, forwarding.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let silent = Arc::new(AtomicBool::new(false));
        let flag = silent.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().map_while(Result::ok) {
                let Ok(unix) = std::os::unix::net::UnixStream::connect("/run/libvirt/libvirt-sock") else {
                    continue;
                };
                let pump = |mut from: Box<dyn std::io::Read + Send>,
                            mut to: Box<dyn std::io::Write + Send>,
                            flag: Arc<AtomicBool>| {
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            while flag.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                };
                let (Ok(tcp2), Ok(unix2)) = (tcp.try_clone(), unix.try_clone()) else { continue };
                pump(Box::new(tcp), Box::new(unix), flag.clone());
                pump(Box::new(unix2), Box::new(tcp2), flag.clone());
            }
        });
        Self { port, silent }
    }

    /// The node URI that reaches libvirtd through the proxy.
    pub fn uri(&self) -> String {
        format!("qemu+tcp://127.0.0.1:{}/system", self.port)
    }

    /// Stops (or resumes) answering.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }
}

/// A loopback listener that accepts connections and never answers; closed when dropped.
#[derive(Debug)]
pub struct Tarpit {
    listener: std::net::TcpListener,
}

impl Tarpit {
    /// Opens one.
    pub fn start() -> Self {
        Self { listener: std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port") }
    }

    /// The node URI that reaches it.
    pub fn uri(&self) -> String {
        format!("qemu+tcp://127.0.0.1:{}/system", self.listener.local_addr().expect("its address").port())
    }
}

/// A `slapd` of the test's own on a loopback port, serving `dc=example,dc=com` from a
/// temporary directory; stopped and removed when dropped.
#[derive(Debug)]
pub struct Slapd {
    child: Child,
    dir: PathBuf,
    /// `ldap://127.0.0.1:PORT`.
    pub url: String,
}

impl Slapd {
    /// The directory manager.
    pub const ROOT_DN: &'static str = "cn=admin,dc=example,dc=com";
    /// Its password.
    pub const ROOT_PASSWORD: &'static str = "directory-manager-password";

    /// Starts slapd and adds the entries of `ldif` (the suffix entry included).
    pub fn start(ldif: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vmm-slapd-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("db")).expect("slapd's directory");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             pidfile {dir}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             database mdb\n\
             maxsize 10485760\n\
             suffix \"dc=example,dc=com\"\n\
             rootdn \"{}\"\n\
             rootpw {}\n\
             directory {dir}/db\n",
            Self::ROOT_DN,
            Self::ROOT_PASSWORD,
            dir = dir.display()
        );
        std::fs::write(dir.join("slapd.conf"), conf).expect("slapd.conf");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("ldap://127.0.0.1:{port}");
        // `-d 0`: stay in the foreground, so that the test owns the process.
        let child = Command::new("slapd")
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .args(["-h", &format!("{url}/"), "-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd starts (Debian package slapd)");
        let slapd = Self { child, dir, url };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not listen on {}", slapd.url);
            std::thread::sleep(Duration::from_millis(50));
        }
        slapd.apply("ldapadd", ldif);
        slapd
    }

    /// Runs `ldapmodify` with `ldif` as the directory manager.
    pub fn modify(&self, ldif: &str) {
        self.apply("ldapmodify", ldif);
    }

    fn apply(&self, tool: &str, ldif: &str) {
        let file = self.dir.join(format!("{}.ldif", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, ldif).expect("an LDIF file");
        let out = Command::new(tool)
            .args(["-x", "-H", &self.url, "-D", Self::ROOT_DN, "-w", Self::ROOT_PASSWORD, "-f"])
            .arg(&file)
            .output()
            .expect("ldap-utils");
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `done` holds, for at most `within`; panics naming `what` otherwise.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `moto` S3 server (from the setup's `.venv`) of the test's own on a loopback port;
/// stopped when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto and makes `bucket` in it.
    pub fn start(bucket: &str) -> Self {
        let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
        assert!(server.exists(), "moto_server comes from the setup's .venv (make setup)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen on {}", moto.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
        // moto takes an unsigned request to make a bucket.
        let made = ureq::put(&format!("{}/{bucket}", moto.endpoint)).call();
        assert!(made.is_ok(), "moto makes bucket {bucket}: {made:?}");
        moto
    }

    /// The keys of `bucket`, as moto lists them (first 1000).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let body = ureq::get(&format!("{}/{bucket}?list-type=2", self.endpoint))
            .call()
            .expect("moto lists the bucket")
            .into_string()
            .expect("a listing");
        body.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_owned).collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `virsh -c URI ARGS…`: whether it succeeded, and what it printed (trimmed).
pub fn virsh_at(uri: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh").arg("-c").arg(uri).args(args).output().expect("virsh runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The second libvirt host `tests/node2.sh` makes on this machine.
pub mod node2 {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// How vmmd reaches it.
    pub const URI: &str = "qemu+tcp://203.0.113.251/system";

    /// `tests/node2.sh`.
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("node2.sh")
    }

    /// Runs `tests/node2.sh VERB` with its state under `dir`.
    pub fn run(dir: &Path, verb: &str) -> Output {
        Command::new("bash").arg(script()).arg(verb).env("VMM_NODE2_DIR", dir).output().expect("bash runs")
    }

    /// Runs `tests/node2.sh VERB`, which must succeed.
    pub fn must(dir: &Path, verb: &str) {
        let out = run(dir, verb);
        assert!(out.status.success(), "node2.sh {verb}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Takes the second host down (its state under the path) however the test ends.
    #[derive(Debug)]
    pub struct Down(pub PathBuf);

    impl Drop for Down {
        fn drop(&mut self) {
            let _ = run(&self.0, "down");
        }
    }
}
