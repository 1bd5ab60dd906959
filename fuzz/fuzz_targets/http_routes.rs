//! The HTTP routes, driven with arbitrary requests over the in-memory fakes: no request may
//! crash the server or earn a 500, and every error answer is problem+json.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use vmm_core::{IpPoolSpec, NodeSpec, Vmm};
use vmm_server::{app, AdminToken, AppState, Throttle, ThrottleConfig};

const TOKEN: &str = "fuzz-token-0123456789abcdef";

#[derive(Debug, Arbitrary)]
struct Input {
    method: u8,
    route: u8,
    id: u8,
    tail: String,
    authorized: bool,
    json: bool,
    body: Vec<u8>,
}

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    ids: Vec<String>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let vmm = Vmm::in_memory();
        let ids = rt.block_on(async {
            let node = vmm.create_node(NodeSpec::new("n1", "memory://n1")).await.unwrap();
            let pool = vmm.create_ip_pool(IpPoolSpec::new("p", "192.0.2.0/24")).await.unwrap();
            let spec = vmm_core::VmSpec { ip_pool_id: Some(pool.id), ..vmm_core::VmSpec::new("vm", 1, 256, 1) };
            let (vm, task) = vmm.create_vm(spec).await.unwrap();
            vmm.run_until_idle().await.unwrap();
            vec![node.id.to_string(), pool.id.to_string(), vm.id.to_string(), task.id.to_string()]
        });
        // Bad tokens are counted per address; here every request comes from one, and the
        // fuzzer's unauthorized requests must not lock the authorized ones out.
        let throttle = Throttle::new(ThrottleConfig { max_failures: u32::MAX, ..ThrottleConfig::default() });
        let state = AppState { throttle: Arc::new(throttle), ..AppState::new(vmm, AdminToken::new(TOKEN).unwrap()) };
        let app = app(state);
        World { rt, app, ids }
    })
}

const METHODS: [&str; 6] = ["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"];
const ROUTES: [&str; 12] = [
    "/api/v1",
    "/api/v1/health",
    "/api/v1/nodes",
    "/api/v1/nodes/{id}",
    "/api/v1/ip-pools",
    "/api/v1/ip-pools/{id}",
    "/api/v1/ip-pools/{id}/leases",
    "/api/v1/vms",
    "/api/v1/vms/{id}",
    "/api/v1/vms/{id}/",
    "/api/v1/tasks",
    "/api/v1/tasks/{id}/",
];

fuzz_target!(|input: Input| {
    let w = world();
    let id = &w.ids[usize::from(input.id) % w.ids.len()];
    let path = ROUTES[usize::from(input.route) % ROUTES.len()].replace("{id}", id);
    let tail: String = input.tail.chars().filter(|c| c.is_ascii_graphic() && !"#%".contains(*c)).take(64).collect();
    let uri = format!("{path}{tail}");
    let mut req = Request::builder().method(METHODS[usize::from(input.method) % METHODS.len()]).uri(&uri);
    if input.authorized {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    if input.json {
        req = req.header("content-type", "application/json");
    }
    let head = METHODS[usize::from(input.method) % METHODS.len()] == "HEAD";
    let Ok(req) = req.body(Body::from(input.body)) else { return };
    w.rt.block_on(async {
        let res = w.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let problem = res.headers().get("content-type").is_some_and(|v| v == "application/problem+json");
        // An event stream goes on until the client leaves: it is an answer once it begins.
        if status.is_success() && res.headers().get("content-type").is_some_and(|v| v == "text/event-stream") {
            return;
        }
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert!(status.as_u16() != 500, "{uri}: 500 {}", String::from_utf8_lossy(&bytes));
        // A HEAD answer has no body.
        if !head && (status.is_client_error() || status.is_server_error()) {
            assert!(problem, "{uri}: {status} without problem+json");
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("problem bodies are JSON");
            assert_eq!(v["status"], status.as_u16());
        }
    });
});
