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
        .post(
            "/api/v1/vms",
            json!({"name": "m", "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "node_id": nodes[0]}),
        )
        .await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
    assert_eq!(api.wait(&made.body["task"]).await["state"], "succeeded");
    let vm = made.body["vm"]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/vms/{vm}/migrate");

    // Problems: nothing is queued, nothing held.
    problem(&api.post(&path, json!({"node_id": nodes[0]})).await, 422, "invalid");
    problem(&api.post(&path, json!({"live": false})).await, 409, "conflict");
    problem(
        &api.post(&path, json!({"node_id": "01900000-0000-7000-8000-00000000dead"})).await,
        404,
        "node_not_found",
    );
    let r = api.post(&path, json!({"to": nodes[1]})).await;
    assert_eq!(r.status.as_u16(), 422, "unknown fields are refused: {}", r.body);
    let missing = "/api/v1/vms/01900000-0000-7000-8000-00000000dead/migrate";
    problem(&api.post(missing, json!({})).await, 404, "vm_not_found");
    assert_eq!(api.get(&format!("/api/v1/nodes/{}", nodes[1])).await.body["allocated"]["vms"], 0);

    let r = api.post(&path, json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let task = &r.body["task"];
    assert_eq!(task["kind"], "migrate_vm");
    assert_eq!(
        task["params"],
        json!({"type": "migrate", "from": nodes[0], "to": nodes[1], "live": true, "shared": false})
    );
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

async fn nodes(api: &common::Api, names: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for name in names {
        let r = api.post("/api/v1/nodes", json!({"name": name, "uri": format!("memory://{name}")})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn vm_on(api: &common::Api, name: &str, node: &str) -> String {
    let spec = json!({"name": name, "vcpus": 1, "memory_mib": 256, "disk_gib": 1, "node_id": node});
    let made = api.post("/api/v1/vms", spec).await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
    assert_eq!(api.wait(&made.body["task"]).await["state"], "succeeded");
    made.body["vm"]["id"].as_str().unwrap().to_owned()
}

async fn node_of(api: &common::Api, vm: &str) -> String {
    api.get(&format!("/api/v1/vms/{vm}")).await.body["node_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn maintenance_empties_a_node_and_brings_its_vms_back() {
    let api = api().await;
    let ids = nodes(&api, &["n1", "n2", "n3"]).await;
    let mut vms = Vec::new();
    for name in ["a", "b", "c"] {
        vms.push(vm_on(&api, name, &ids[0]).await);
    }
    let path = format!("/api/v1/nodes/{}/maintenance", ids[0]);
    let r = api.post(&path, json!({"evacuate": true})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // Out of placement at once.
    assert_eq!(api.get(&format!("/api/v1/nodes/{}", ids[0])).await.body["state"], "maintenance");
    problem(&api.post(&path, json!({"evacuate": true})).await, 409, "conflict");
    let ended = api.wait(&r.body["task"]).await;
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert_eq!(ended["result"]["moved"].as_array().unwrap().len(), 3, "{ended}");
    assert_eq!(ended["result"]["unmoved"], json!([]));
    for vm in &vms {
        assert_ne!(node_of(&api, vm).await, ids[0]);
    }
    assert_eq!(api.get(&format!("/api/v1/nodes/{}", ids[0])).await.body["allocated"]["vms"], 0);
    let steps: Vec<_> =
        ended["steps"].as_array().unwrap().iter().map(|s| s["message"].as_str().unwrap()).collect();
    assert!(steps.iter().any(|s| s.starts_with("moving VM b away from n1 (2 of 3)")), "{steps:?}");

    // Out of maintenance, with the VMs back.
    let r = api.call(axum::http::Method::DELETE, &format!("{path}?return_vms=true"), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(api.get(&format!("/api/v1/nodes/{}", ids[0])).await.body["state"], "online");
    let ended = api.wait(&r.body["task"]).await;
    assert_eq!(ended["state"], "succeeded", "{ended}");
    for vm in &vms {
        assert_eq!(node_of(&api, vm).await, ids[0]);
    }
    let r = api.call(axum::http::Method::DELETE, &path, None).await;
    problem(&r, 409, "conflict");
    let listed = api.get("/api/v1/tasks?kind=maintain_node").await.body;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn a_vm_that_cannot_move_fails_the_evacuation_or_is_stopped() {
    let api = api().await;
    let ids = nodes(&api, &["n1", "n2"]).await;
    let mover = vm_on(&api, "mover", &ids[0]).await;
    let stuck = vm_on(&api, "stuck", &ids[0]).await;
    let r = api.post(&format!("/api/v1/vms/{stuck}/suspend"), json!({})).await;
    assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded");
    let path = format!("/api/v1/nodes/{}/maintenance", ids[0]);
    let r = api.post(&path, json!({"evacuate": true})).await;
    let ended = api.wait(&r.body["task"]).await;
    assert_eq!(ended["state"], "failed", "{ended}");
    assert!(ended["error"].as_str().unwrap().contains("1 of the VMs could not move: stuck ("), "{ended}");
    assert_eq!(ended["result"]["unmoved"][0]["vm_name"], "stuck");
    assert_eq!(node_of(&api, &mover).await, ids[1], "the others moved");
    assert_eq!(node_of(&api, &stuck).await, ids[0]);

    // Asked to, it stops what cannot move.
    let r = api.call(axum::http::Method::DELETE, &path, None).await;
    assert_eq!(api.wait(&r.body["task"]).await["state"], "succeeded");
    let r = api.post(&path, json!({"evacuate": true, "stop_unmovable": true})).await;
    let ended = api.wait(&r.body["task"]).await;
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert_eq!(ended["result"]["unmoved"][0]["stopped"], true, "{ended}");
    assert_eq!(api.get(&format!("/api/v1/vms/{stuck}")).await.body["state"], "stopped");
}
