//! Webhooks from the real `vmmd` to a receiver on loopback: every event of a VM's life
//! arrives in order with a valid signature; while the receiver is down, deliveries fail and
//! are retried, and once it is back nothing is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use vmm_core::webhook::signature;
use vmm_core::Secret;
use vmm_tests::{data_dir, wait_until, Vmmd, VmmdConfig};

const SECRET: &str = "whsec_e2e_0123456789abcdef";

/// A webhook receiver on a loopback port: checks each signature, keeps each event.
struct Receiver {
    addr: SocketAddr,
    events: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(addr: SocketAddr, events: Arc<Mutex<Vec<Value>>>) -> Self {
        let listener = TcpListener::bind(addr).expect("a loopback port");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (events, stop) = (events.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            serve(stream, &events);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Self { addr, events, stop, thread: Some(thread) }
    }

    /// Stops listening: connections are refused until it starts again.
    fn stop(mut self) -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        (self.addr, self.events.clone())
    }
}

fn serve(stream: std::net::TcpStream, events: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let header = |name: &str| {
        head.iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let sig = header("vmm-signature").expect("a signed delivery");
    let t: i64 = sig.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
    assert_eq!(sig, signature(&Secret::new(SECRET), t, &body), "a valid signature");
    assert!(head[0].starts_with("POST /hook "), "{}", head[0]);
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(header("vmm-event").as_deref(), event["type"].as_str());
    events.lock().unwrap().push(event);
    let mut stream = stream;
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
}

#[test]
fn a_receiver_gets_every_event_in_order_also_after_an_outage() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap(), events.clone());
    let config = VmmdConfig::new(&data_dir()).with("VMM_WEBHOOK_URL_ALLOW_PRIVATE", "true");
    let vmmd = Vmmd::start(&config);
    vmmd.add_node("test:///default");
    let url = format!("http://{}/hook", receiver.addr);
    let (status, hook) = vmmd.call(
        "POST",
        "/api/v1/webhooks",
        Some(json!({"url": url, "events": ["vm.*", "task.*"], "secret": SECRET})),
    );
    assert_eq!(status, 201, "{hook}");
    assert!(!hook.to_string().contains(SECRET), "the secret is never shown: {hook}");
    let hook_id = hook["id"].as_str().unwrap().to_owned();

    let spec = json!({"name": "hooked", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    let vm = created["vm"]["id"].as_str().unwrap().to_owned();
    vmmd.done(&created["task"]);
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/stop"));
    let seen = |kind: &str| {
        let events = events.clone();
        let (kind, vm) = (kind.to_owned(), vm.clone());
        move || events.lock().unwrap().iter().any(|e| e["type"] == kind.as_str() && e["vm_id"] == vm.as_str())
    };
    wait_until("vm.stopped at the receiver", Duration::from_secs(90), seen("vm.stopped"));

    // The receiver goes away; what happens meanwhile fails to arrive and is retried.
    let (addr, events) = receiver.stop();
    vmmd.act("POST", &format!("/api/v1/vms/{vm}/start"));
    vmmd.act("DELETE", &format!("/api/v1/vms/{vm}"));
    wait_until("a failed delivery", Duration::from_secs(90), || {
        let (_, d) = vmmd.call("GET", &format!("/api/v1/webhooks/{hook_id}/deliveries"), None);
        d["items"].as_array().unwrap().iter().any(|d| d["status"] == "failed")
    });
    let receiver = Receiver::start(addr, events.clone());
    wait_until("vm.deleted at the receiver after the outage", Duration::from_secs(90), seen("vm.deleted"));

    let (_, log) = vmmd.call("GET", "/api/v1/events?types=vm.*,task.*&limit=1000", None);
    let want: Vec<u64> = log["items"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    wait_until("every event", Duration::from_secs(90), || events.lock().unwrap().len() >= want.len());
    let got: Vec<u64> = events.lock().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(got, want, "each event once, in order, none lost");
    let (_, hook) = vmmd.call("GET", &format!("/api/v1/webhooks/{hook_id}"), None);
    assert_eq!((hook["enabled"].as_bool(), hook["failures"].as_u64()), (Some(true), Some(0)), "{hook}");
    receiver.stop();
    vmmd.stop();
}
