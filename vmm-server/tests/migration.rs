//! `POST /vms/{id}/migrate` over the API, on in-memory nodes: placement's choice, the task
//! that moves the VM, and the problems that change nothing.

mod common;

use axum::http::StatusCode;
use common::{api, problem};
use serde_json::json;

#[tokio::test]
async fn a_vm_moves_and_bad_requests_are_problems() {
    let api = api().await;
    let mut nodes = Vec::new();
    for name in ["n1", "n2"] {
        let r = api.post("/api/v1/nodes", json!({"name": name, "uri": format!("memory://{name}")})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        nodes.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let made = api
        .post("/api/v1/vms", json!({"name": "m", "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "node_id": nodes[0]}))
        .await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
    assert_eq!(api.wait(&made.body["task"]).await["state"], "succeeded");
    let vm = made.body["vm"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/vms/{vm}/migrate");

    // Problems: nothing is queued, nothing held.
    problem(&api.post(&path, json!({"node_id": nodes[0]})).await, 422, "invalid");
    problem(&api.post(&path, json!({"live": false})).await, 409, "conflict");
    problem(&api.post(&path, json!({"node_id": "01900000-0000-7000-8000-00000000dead"})).await, 404, "node_not_found");
    let r = api.post(&path, json!({"to": nodes[1]})).await;
    assert_eq!(r.status.as_u16(), 422, "unknown fields are refused: {}", r.body);
    let missing = "/api/v1/vms/01900000-0000-7000-8000-00000000dead/migrate";
    problem(&api.post(missing, json!({})).await, 404, "vm_not_found");
    assert_eq!(api.get(&format!("/api/v1/nodes/{}", nodes[1])).await.body["allocated"]["vms"], 0);

    let r = api.post(&path, json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let task = &r.body["task"];
    assert_eq!(task["kind"], "migrate_vm");
    assert_eq!(task["params"], json!({"type": "migrate", "from": nodes[0], "to": nodes[1], "live": true}));
    assert!(task["steps"][0]["message"].as_str().unwrap().contains("n1: the VM is on this node"), "{task}");
    let ended = api.wait(task).await;
    assert_eq!(ended["state"], "succeeded", "{ended}");
    let got = api.get(&format!("/api/v1/vms/{vm}")).await.body;
    assert_eq!((got["node_id"].as_str(), got["state"].as_str()), (Some(nodes[1].as_str()), Some("running")));
    assert!(got.get("migrating_to").is_none(), "{got}");
    for (node, vms) in [(&nodes[0], 0), (&nodes[1], 1)] {
        assert_eq!(api.get(&format!("/api/v1/nodes/{node}")).await.body["allocated"]["vms"], vms);
    }
    let events = api.get("/api/v1/events?types=vm.migrated").await.body;
    assert_eq!(events["items"][0]["data"]["from_node_id"], json!(nodes[0]), "{events}");
}
