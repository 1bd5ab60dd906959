//! `POST /placement/what-if` and the explanation every create task records.

mod common;

use axum::http::{Method, StatusCode};
use common::{api, problem};
use serde_json::{json, Value};

async fn node(api: &common::Api, name: &str) -> String {
    let r = api.post("/api/v1/nodes", json!({"name": name, "uri": format!("memory://{name}")})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list[field].as_array().unwrap().iter().map(|c| c["node_name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn what_if_scores_every_node_and_reserves_nothing() {
    let api = api().await;
    let (n1, n2, n3) = (node(&api, "n1").await, node(&api, "n2").await, node(&api, "n3").await);
    let r =
        api.call(Method::PATCH, &format!("/api/v1/nodes/{n3}"), Some(json!({"state": "maintenance"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let made = api
        .post(
            "/api/v1/vms",
            json!({"name": "busy", "vcpus": 4, "memory_mib": 8192, "disk_gib": 10, "node_id": n1}),
        )
        .await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);

    let question = json!({"vcpus": 2, "memory_mib": 2048, "disk_gib": 20});
    let r = api.post("/api/v1/placement/what-if", question.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["chosen"], json!(n2), "spread takes the emptier node");
    assert_eq!(names(&r.body, "candidates"), ["n2", "n1"]);
    let scores: Vec<f64> =
        r.body["candidates"].as_array().unwrap().iter().map(|c| c["score"].as_f64().unwrap()).collect();
    assert!(scores[0] > scores[1], "{scores:?}");
    assert_eq!(names(&r.body, "rejected"), ["n3"]);
    assert_eq!(r.body["rejected"][0]["reasons"], json!([{"reason": "maintenance"}]));
    // Asking twice answers the same: nothing was taken.
    assert_eq!(api.post("/api/v1/placement/what-if", question).await.body, r.body);
    assert_eq!(api.get(&format!("/api/v1/nodes/{n2}")).await.body["allocated"]["vcpus"], 0);

    // No node fits: still an answer, every node with every reason.
    let r = api
        .post("/api/v1/placement/what-if", json!({"vcpus": 1, "memory_mib": 16777216, "disk_gib": 5000}))
        .await;
    assert_eq!((r.status, &r.body["chosen"]), (StatusCode::OK, &Value::Null), "{}", r.body);
    assert_eq!(r.body["candidates"], json!([]));
    let n3_reasons =
        &r.body["rejected"].as_array().unwrap().iter().find(|x| x["node_id"] == json!(n3)).unwrap()
            ["reasons"];
    let kinds: Vec<_> =
        n3_reasons.as_array().unwrap().iter().map(|x| x["reason"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["maintenance", "memory", "storage"]);

    // Pinned: only that node is considered.
    let r = api
        .post(
            "/api/v1/placement/what-if",
            json!({"vcpus": 1, "memory_mib": 64, "disk_gib": 1, "node_id": n1}),
        )
        .await;
    assert_eq!((r.body["chosen"].clone(), names(&r.body, "candidates")), (json!(n1), vec!["n1".to_owned()]));
    let unknown = json!({"vcpus": 1, "memory_mib": 64, "disk_gib": 1, "node_id": "0190a5b2-0000-7000-8000-00000000abcd"});
    problem(&api.post("/api/v1/placement/what-if", unknown).await, 404, "node_not_found");
    let pool = json!({"vcpus": 1, "memory_mib": 64, "disk_gib": 1, "ip_pool_ids": ["0190a5b2-0000-7000-8000-00000000abcd"]});
    problem(&api.post("/api/v1/placement/what-if", pool).await, 404, "pool_not_found");
    problem(
        &api.post("/api/v1/placement/what-if", json!({"vcpus": 0, "memory_mib": 64, "disk_gib": 1})).await,
        422,
        "invalid",
    );
    let extra = json!({"vcpus": 1, "memory_mib": 64, "disk_gib": 1, "name": "x"});
    assert_eq!(api.post("/api/v1/placement/what-if", extra).await.status.as_u16(), 422);
}

#[tokio::test]
async fn a_create_task_records_why_its_node_was_chosen() {
    let api = api().await;
    node(&api, "n1").await;
    let n2 = node(&api, "n2").await;
    let r =
        api.call(Method::PATCH, &format!("/api/v1/nodes/{n2}"), Some(json!({"state": "maintenance"}))).await;
    assert_eq!(r.status, StatusCode::OK);
    let made =
        api.post("/api/v1/vms", json!({"name": "v", "vcpus": 1, "memory_mib": 512, "disk_gib": 1})).await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
    let first = |task: &Value| task["steps"][0]["message"].as_str().unwrap().to_owned();
    let expected = "placed on n1 (score 1.977); rejected: n2: node is in maintenance";
    assert_eq!(first(&made.body["task"]), expected, "the answer carries it");
    let task = api.wait(&made.body["task"]).await;
    assert_eq!(first(&task), expected, "and the stored task keeps it");
}

#[tokio::test]
async fn placement_groups_keep_vms_apart_and_what_if_says_so() {
    let api = api().await;
    node(&api, "n1").await;
    let n2 = node(&api, "n2").await;
    // n2 busy: spreading alone would put every small VM on n1; the group must not.
    let busy = json!({"name": "busy", "vcpus": 8, "memory_mib": 32768, "disk_gib": 10, "node_id": n2});
    assert_eq!(api.post("/api/v1/vms", busy).await.status, StatusCode::ACCEPTED);
    let r = api.post("/api/v1/placement-groups", json!({"name": "db", "policy": "anti_affinity"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let group = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/api/v1/placement-groups/{group}"));
    problem(
        &api.post("/api/v1/placement-groups", json!({"name": "db", "policy": "affinity"})).await,
        409,
        "conflict",
    );
    problem(
        &api.post("/api/v1/placement-groups", json!({"name": "x", "policy": "nearby"})).await,
        422,
        "invalid",
    );
    assert_eq!(api.get("/api/v1/placement-groups").await.body["items"][0]["policy"], "anti_affinity");

    let member = |name: &str| json!({"name": name, "vcpus": 1, "memory_mib": 64, "disk_gib": 1, "placement_group_id": group});
    let mut nodes = Vec::new();
    for name in ["db1", "db2"] {
        let made = api.post("/api/v1/vms", member(name)).await;
        assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
        assert_eq!(made.body["vm"]["placement_group_id"], json!(group));
        assert_eq!(api.wait(&made.body["task"]).await["state"], "succeeded");
        nodes.push(made.body["vm"]["node_id"].as_str().unwrap().to_owned());
    }
    assert_ne!(nodes[0], nodes[1], "each on its own node");
    // A clone stays on its source's node, so it joins no group.
    let db1 = api.get("/api/v1/vms?name=db1").await.body["items"][0]["id"].as_str().unwrap().to_owned();
    let stop = api.call(Method::POST, &format!("/api/v1/vms/{db1}/stop"), None).await;
    api.wait(&stop.body["task"]).await;
    let copy =
        api.post(&format!("/api/v1/vms/{db1}/clone"), json!({"name": "db1-copy", "start": false})).await;
    assert_eq!(copy.status, StatusCode::ACCEPTED, "{}", copy.body);
    assert_eq!(
        (&copy.body["vm"]["node_id"], copy.body["vm"].get("placement_group_id")),
        (&json!(nodes[0]), None)
    );
    // A third: what-if says why not, and the create is refused for the same reasons.
    let question = json!({"vcpus": 1, "memory_mib": 64, "disk_gib": 1, "placement_group_id": group});
    let answer = api.post("/api/v1/placement/what-if", question).await.body;
    assert_eq!(answer["chosen"], Value::Null, "{answer}");
    assert_eq!(answer["rejected"][0]["reasons"], json!([{"reason": "anti_affinity", "group": "db"}]));
    let refused = api.post("/api/v1/vms", member("db3")).await;
    problem(&refused, 409, "no_capacity");
    problem(
        &api.call(Method::DELETE, &format!("/api/v1/placement-groups/{group}"), None).await,
        409,
        "conflict",
    );
    let unknown = json!({"name": "v", "vcpus": 1, "memory_mib": 64, "disk_gib": 1, "placement_group_id": "0190a5b2-0000-7000-8000-00000000abcd"});
    problem(&api.post("/api/v1/vms", unknown).await, 404, "placement_group_not_found");

    let empty = api.post("/api/v1/placement-groups", json!({"name": "web", "policy": "affinity"})).await.body;
    let path = format!("/api/v1/placement-groups/{}", empty["id"].as_str().unwrap());
    assert_eq!(api.call(Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
    problem(&api.get(&path).await, 404, "placement_group_not_found");
}
