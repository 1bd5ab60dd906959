//! The event log of the real `vmmd`: an SSE client that disconnects half-way, and resumes
//! with `Last-Event-ID` after a restart of the server, reads every event of a VM's life
//! exactly once, on SQLite and on PostgreSQL (`--include-ignored`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vmm_tests::{data_dir, postgres_db, Vmmd, VmmdConfig, TOKEN};

/// An SSE client on a raw connection (HTTP/1.0, so the body comes unframed).
struct Sse {
    lines: BufReader<TcpStream>,
}

impl Sse {
    fn open(vmmd: &Vmmd, last_id: Option<u64>) -> Self {
        let addr = vmmd.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).expect("vmmd answers");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let resume = last_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        write!(
            stream,
            "GET /api/v1/events/stream HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n{resume}\r\n"
        )
        .unwrap();
        let mut lines = BufReader::new(stream);
        let mut status = String::new();
        lines.read_line(&mut status).unwrap();
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut header = String::new();
            lines.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
        }
        Self { lines }
    }

    /// The next event: its id, type and JSON.
    fn next(&mut self) -> (u64, String, Value) {
        let (mut id, mut kind, mut data) = (None, None, None);
        loop {
            let mut line = String::new();
            let n = self.lines.read_line(&mut line).expect("an event within 30 s");
            assert!(n > 0, "the stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if let (Some(id), Some(kind), Some(data)) = (id.take(), kind.take(), data.take()) {
                    return (id, kind, data);
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            }
        }
    }

    /// Events until one of `kind` about `vm` came; all of them.
    fn until(&mut self, kind: &str, vm: &str) -> Vec<(u64, String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no {kind} for {vm}: {got:?}");
            let event = self.next();
            let done = event.1 == kind && event.2["vm_id"] == vm;
            got.push(event);
            if done {
                return got;
            }
        }
    }
}

fn resumed_across_a_restart(config: VmmdConfig) {
    let vmmd = Vmmd::start(&config);
    vmmd.add_node("test:///default");
    let mut sse = Sse::open(&vmmd, None);
    let spec = json!({"name": "sse <vm>", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    let vm = created["vm"]["id"].as_str().unwrap().to_owned();
    vmmd.done(&created["task"]);
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/stop"));
    let mut seen = sse.until("vm.stopped", &vm);
    let last = seen.last().unwrap().0;
    drop(sse);

    // While nobody listens: more happens, and the server restarts.
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/start"));
    vmmd.stop();
    let vmmd = Vmmd::start(&config);
    vmmd.act("DELETE", &format!("/api/v1/vms/{vm}"));

    let mut sse = Sse::open(&vmmd, Some(last));
    seen.extend(sse.until("vm.deleted", &vm));
    let (_, all) = vmmd.call("GET", "/api/v1/events?limit=1000", None);
    let logged: Vec<u64> =
        all["items"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    // What followed the delete (its task's end) comes too.
    while seen.last().unwrap().0 < *logged.last().unwrap() {
        seen.push(sse.next());
    }
    let ids: Vec<u64> = seen.iter().map(|e| e.0).collect();
    assert_eq!(ids, logged, "every event exactly once, in order");
    let vm_events: Vec<&str> = seen
        .iter()
        .filter(|e| e.2["vm_id"] == vm.as_str() && e.1.starts_with("vm."))
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(vm_events, ["vm.created", "vm.stopped", "vm.started", "vm.deleted"]);
    for (_, kind, data) in &seen {
        assert_eq!(data["type"], kind.as_str());
    }
    drop(sse);
    vmmd.stop();
}

#[test]
fn an_sse_client_resumes_across_a_restart_on_sqlite() {
    resumed_across_a_restart(VmmdConfig::new(&data_dir()));
}

#[test]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432; CI runs it"]
fn an_sse_client_resumes_across_a_restart_on_postgres() {
    let config = VmmdConfig { database_url: Some(postgres_db()), ..VmmdConfig::new(&data_dir()) };
    resumed_across_a_restart(config);
}
