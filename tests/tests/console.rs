//! Seeing a real VM end to end, against the real `vmmd` and the tiny guest on
//! `qemu:///system`: the serial console over its websocket (the boot text, and a command
//! typed into the guest's shell answered), the screen in a real browser (Debian's chromium,
//! headless, driven over the DevTools protocol: the console page's noVNC session connects
//! and the guest's screen is not blank), single-use tokens, `/metrics` parsed by
//! `prometheus_client`'s parser with the named series of the VM, and the usage graph's CPU
//! rising while the guest runs a busy loop its recipe started.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};
use vmm_tests::{data_dir, Vmmd, VmmdConfig, TOKEN};

/// How long a boot under TCG may take to report.
const BOOT: Duration = Duration::from_secs(180);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Opens the console websocket of `token`; the HTTP status when it is refused.
fn open_socket(vmmd: &Vmmd, token: &str) -> Result<Socket, u16> {
    let url = format!("{}/api/v1/console/{token}", vmmd.base.replace("http://", "ws://"));
    match tungstenite::connect(url) {
        Ok((socket, _)) => {
            if let MaybeTlsStream::Plain(s) = socket.get_ref() {
                s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            }
            Ok(socket)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("websocket: {e}"),
    }
}

/// Reads from `socket` until what it sent contains `wanted`; returns all it sent.
fn read_until(socket: &mut Socket, seen: &mut String, wanted: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while !seen.contains(wanted) {
        assert!(Instant::now() < deadline, "no {wanted:?} on the serial console; it showed:\n{seen}");
        match socket.read() {
            Ok(Message::Binary(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Message::Close(_)) => panic!("the console closed; it showed:\n{seen}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the console: {e}; it showed:\n{seen}"),
        }
    }
}

fn console_token(vmmd: &Vmmd, vm: &str, kind: &str) -> Value {
    let (status, token) =
        vmmd.call("POST", &format!("/api/v1/vms/{vm}/console"), Some(json!({"kind": kind})));
    assert_eq!(status, 201, "{token}");
    token
}

/// Headless chromium, driven over the DevTools protocol.
struct Browser {
    child: Child,
    page: Socket,
    next: u64,
    profile: PathBuf,
}

impl Browser {
    fn launch() -> Browser {
        let profile = data_dir();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts (the setup installs it)");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = loop {
            let line = lines.next().expect("chromium says where DevTools listen").unwrap();
            if let Some(rest) = line.split("DevTools listening on ").nth(1) {
                break rest.trim().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        // The page target of the browser at `endpoint` (ws://127.0.0.1:PORT/devtools/browser/…).
        let port = endpoint.split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
        let targets: Value =
            ureq::get(&format!("http://127.0.0.1:{port}/json/list")).call().unwrap().into_json().unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_owned();
        let (page, _) = tungstenite::connect(page).expect("the page's DevTools socket");
        Browser { child, page, next: 0, profile }
    }

    /// Calls a DevTools method and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.page
            .send(Message::text(json!({"id": id, "method": method, "params": params}).to_string()))
            .unwrap();
        loop {
            let Message::Text(text) = self.page.read().unwrap() else { continue };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true}));
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in the page; returns its value.
    fn wait_for(&mut self, expression: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(expression);
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            let state = self.eval("document.body && document.body.dataset.state");
            assert!(Instant::now() < deadline, "{expression} never held; the page is {state}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// How many colours a sample of the noVNC canvas has (0 before it has a size).
const CANVAS_COLOURS: &str = "(() => {
    const c = document.querySelector('#screen canvas');
    if (!c || !c.width || !c.height) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    for (let i = 0; i < d.length; i += 4 * 7) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    return seen.size > 1 ? seen.size : 0;
})()";

/// `/metrics` as `prometheus_client`'s parser reads it (that of the classic text format,
/// or with `openmetrics` that of OpenMetrics, asked for as Prometheus asks): each family's
/// name and the label sets of its samples.
fn parsed_metrics(vmmd: &Vmmd, openmetrics: bool) -> Value {
    let mut request =
        ureq::get(&format!("{}/metrics", vmmd.base)).set("Authorization", &format!("Bearer {TOKEN}"));
    if openmetrics {
        request = request.set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
    }
    let text = request.call().unwrap().into_string().unwrap();
    let parser =
        if openmetrics { "prometheus_client.openmetrics.parser" } else { "prometheus_client.parser" };
    let script = format!(
        "import json, sys\nfrom {parser} import text_string_to_metric_families\n\
         out = {{}}\nfor f in text_string_to_metric_families(sys.stdin.read()):\n    \
         out.setdefault(f.name, []).extend(s.labels for s in f.samples)\nprint(json.dumps(out))\n"
    );
    let mut python = Command::new(root().join(".venv/bin/python"))
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the setup's Python");
    std::io::Write::write_all(&mut python.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let mut out = String::new();
    python.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(python.wait().unwrap().success(), "the parser refused:\n{text}");
    serde_json::from_str(&out).unwrap()
}

#[test]
#[ignore = "needs libvirtd with QEMU (qemu:///system), the tiny guest and chromium; CI runs it"]
fn a_running_guest_is_seen_through_its_consoles_metrics_and_graphs() {
    let data = data_dir();
    let vmmd =
        Vmmd::start(&VmmdConfig::new(&data).with("VMM_USAGE_INTERVAL_S", "2").with("VMM_STATS_CACHE_S", "1"));
    let node = vmmd.add_node("qemu:///system");
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    // The recipe starts a busy loop half a minute after the guest is ready.
    let busy = "(sleep 30; while :; do :; done) >/dev/null 2>&1 &\nexit 0";
    let (status, recipe) = vmmd.call(
        "POST",
        "/api/v1/recipes",
        Some(json!({"name": format!("busy-{suffix}"), "os_families": ["linux"], "script": busy})),
    );
    assert_eq!(status, 201, "{recipe}");
    let image_id = vmmd.tiny_image(&format!("tiny-{suffix}"));
    let spec = json!({
        "name": format!("seen-{suffix}"), "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "node_id": id(&node),
        "image_id": image_id, "recipe_ids": [id(&recipe)],
    });
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);
    let vm = id(&created["vm"]);

    // The serial console, opened as the guest boots: its boot text, then its shell answers.
    let serial = console_token(&vmmd, &vm, "serial");
    let token = serial["token"].as_str().unwrap();
    let mut socket = open_socket(&vmmd, token).expect("the serial console opens");
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, "VMM-GUEST-BOOT", BOOT);
    read_until(&mut socket, &mut seen, "VMM-GUEST-READY", BOOT);
    std::thread::sleep(Duration::from_secs(1));
    socket.send(Message::binary(b"echo typed-$((6 * 7))\n".to_vec())).unwrap();
    read_until(&mut socket, &mut seen, "typed-42", Duration::from_secs(60));
    // The token was good once.
    assert_eq!(open_socket(&vmmd, token).err(), Some(401));
    socket.close(None).ok();

    // The screen, in a real browser: the page connects by itself and shows the guest.
    let vnc = console_token(&vmmd, &vm, "vnc");
    assert!(vnc["url"].as_str().unwrap().starts_with("/console/?token="), "{vnc}");
    let mut browser = Browser::launch();
    browser.call("Page.enable", json!({}));
    browser.call("Page.navigate", json!({"url": format!("{}{}", vmmd.base, vnc["url"].as_str().unwrap())}));
    browser.wait_for("document.body && document.body.dataset.state === 'connected'", Duration::from_secs(60));
    let colours = browser.wait_for(CANVAS_COLOURS, Duration::from_secs(60));
    let shot = browser.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = shot["data"].as_str().unwrap().len();
    // For a look (`base64 -d`): the page as the browser drew it.
    std::fs::write(root().join("target/console-screenshot.png.b64"), shot["data"].as_str().unwrap()).ok();
    assert!(png > 1000, "the screenshot is {png} bytes of base64");
    println!("the guest's screen has {colours} colours in a sample; screenshot: {png} bytes of base64");
    assert!(browser.eval("location.search.includes('token')") == json!(false), "the page drops its token");
    let used = vnc["token"].as_str().unwrap();
    assert_eq!(open_socket(&vmmd, used).err(), Some(401), "the page used the token up");
    drop(browser);

    // /metrics: parsed by prometheus_client, with the VM's series, in both formats.
    for metrics in [parsed_metrics(&vmmd, false), parsed_metrics(&vmmd, true)] {
        for family in [
            "libvirt_domain_info_cpu_time_seconds",
            "libvirt_domain_info_virtual_cpus",
            "libvirt_domain_info_maximum_memory_bytes",
            "libvirt_domain_block_stats_read_bytes",
            "libvirt_domain_block_stats_write_bytes",
        ] {
            let samples = metrics[family].as_array().unwrap_or_else(|| panic!("no {family} in {metrics}"));
            let ours = samples
                .iter()
                .find(|l| l["vm_id"] == vm.as_str())
                .unwrap_or_else(|| panic!("{family}: {samples:?}"));
            assert_eq!(ours["vm_name"], format!("seen-{suffix}"), "{ours}");
            assert_eq!(ours["node"], id(&node), "{ours}");
        }
        for family in ["vmm_task_runs", "vmm_http_requests", "vmm_node_up", "vmm_task_queue_wait_seconds"] {
            assert!(metrics[family].is_array(), "no {family} in {metrics}");
        }
    }

    // The usage graph: CPU % low while the guest idles, then high once the loop runs.
    let deadline = Instant::now() + Duration::from_secs(240);
    let points = loop {
        let (status, stats) = vmmd.call("GET", &format!("/api/v1/vms/{vm}/stats?step=2"), None);
        assert_eq!(status, 200, "{stats}");
        let cpu: Vec<f64> =
            stats["points"].as_array().unwrap().iter().map(|p| p["cpu_percent"].as_f64().unwrap()).collect();
        let idle = cpu.iter().position(|c| *c < 40.0);
        if idle.is_some_and(|i| cpu[i..].iter().any(|c| *c > 70.0)) {
            break cpu;
        }
        assert!(Instant::now() < deadline, "the CPU never rose after an idle point: {cpu:?}");
        std::thread::sleep(Duration::from_secs(2));
    };
    println!("CPU % of the guest, every 2 s: {points:?}");
    let (status, node_stats) = vmmd.call("GET", &format!("/api/v1/nodes/{}/stats?step=2", id(&node)), None);
    assert_eq!(status, 200, "{node_stats}");
    assert!(!node_stats["points"].as_array().unwrap().is_empty(), "{node_stats}");

    let (status, r) = vmmd.call("DELETE", &format!("/api/v1/vms/{vm}"), None);
    assert_eq!(status, 202, "{r}");
    vmmd.done(&r["task"]);
    assert_eq!(vmmd.call("DELETE", &format!("/api/v1/images/{image_id}"), None).0, 204);
    let (_, events) = vmmd.call("GET", "/api/v1/events?types=vm.console_opened,vm.console_closed", None);
    let kinds: Vec<&str> =
        events["items"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"vm.console_opened") && kinds.contains(&"vm.console_closed"), "{events}");
    // The tokens are credentials: the log names neither.
    let log = vmmd.log();
    assert!(log.contains("console opened"), "{log}");
    for token in [token, used] {
        assert!(!log.contains(token), "a console token is in the log");
    }
    vmmd.stop();
    std::fs::remove_dir_all(data).ok();
}

#[test]
fn bad_console_tokens_are_refused_before_the_upgrade() {
    let data = data_dir();
    let vmmd = Vmmd::start(&VmmdConfig::new(&data));
    for token in ["nothing", "vmmc_0123", &format!("vmmc_{}", "0".repeat(64))] {
        assert_eq!(open_socket(&vmmd, token).err(), Some(401), "{token}");
    }
    // The page is served without a token, with its libraries and a policy.
    let page = ureq::get(&format!("{}/console/", vmmd.base)).call().unwrap();
    assert_eq!(page.header("Referrer-Policy"), Some("no-referrer"));
    assert!(page.header("Content-Security-Policy").unwrap().contains("default-src 'self'"));
    for file in ["console.js", "novnc/core/rfb.js", "xterm/xterm.js", "novnc/LICENSE.txt", "xterm/LICENSE"] {
        let res = ureq::get(&format!("{}/console/{file}", vmmd.base)).call().unwrap();
        assert_eq!(res.status(), 200, "{file}");
    }
    assert!(matches!(
        ureq::get(&format!("{}/console/../Cargo.toml", vmmd.base)).call(),
        Err(ureq::Error::Status(404, _))
    ));
    vmmd.stop();
    std::fs::remove_dir_all(data).ok();
}
