//! Every route of the OpenAPI document, asked by admin, operator, user A, user B and
//! read-only about A's objects, answered as the rules table (`vmm_core::users::decide`)
//! says: allowed (whatever the state makes of it), 403 or 404. And B finds none of A's
//! objects in any list.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use vmm_core::users::{decide, Access, Area, Decision, Role, Target};

mod common;

use common::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx5ZWNR0v1Jbf5Jz1Ubs5YqQ2t4aH1r0WAXLrNQHdCX you@laptop";

/// A fresh app with users of every role and objects of A's.
struct World {
    api: Api,
    tokens: Vec<(Role, &'static str, String)>,
    a: String,
    node: String,
    pool: String,
    lease: String,
    network: String,
    image: String,
    recipe: String,
    group: String,
    vm: String,
    vm_address: String,
    task: String,
    key: String,
    token: String,
    webhook: String,
    channel: String,
    target: String,
    backup: String,
    schedule: String,
}

async fn json_of(r: &Reply, what: &str) -> Value {
    assert!(r.status.is_success(), "{what}: {} {}", r.status, r.body);
    r.body.clone()
}

async fn world() -> World {
    let (api, vmm) = api_with_vmm().await;
    // Users made through the core as directory users, with API tokens: no password to
    // hash, so that a fresh world per route stays cheap.
    let mut tokens = vec![(Role::Admin, "admin", TOKEN.to_owned())];
    let mut a = String::new();
    for (email, role, who) in [
        ("o@example.com", Role::Operator, "operator"),
        ("a@example.com", Role::User, "A"),
        ("b@example.com", Role::User, "B"),
        ("r@example.com", Role::Readonly, "readonly"),
    ] {
        let (user, token) = user_with_token(&vmm, email, role).await;
        if who == "A" {
            a = user.id.to_string();
        }
        tokens.push((role, who, token));
    }
    let a_token = tokens.iter().find(|t| t.1 == "A").unwrap().2.clone();
    let node =
        json_of(&api.post("/api/v1/nodes", json!({"name": "n1", "uri": "memory://n1"})).await, "node").await;
    let network =
        json_of(&api.post("/api/v1/networks", json!({"name": "net", "kind": "managed"})).await, "network")
            .await;
    let pool = json_of(
        &api.post(
            "/api/v1/ip-pools",
            json!({"name": "p", "cidr": "198.51.100.0/24", "network_id": network["id"]}),
        )
        .await,
        "pool",
    )
    .await;
    let pool_id = pool["id"].as_str().unwrap().to_owned();
    let lease =
        json_of(&api.post(&format!("/api/v1/ip-pools/{pool_id}/leases"), json!({})).await, "lease").await;
    let image = json_of(
        &api.post(
            "/api/v1/images",
            json!({"name": "debian-12", "os": {"family": "debian", "version": "12"}, "format": "raw"}),
        )
        .await,
        "image",
    )
    .await;
    let group = json_of(
        &api.post("/api/v1/placement-groups", json!({"name": "g", "policy": "anti_affinity"})).await,
        "group",
    )
    .await;
    let recipe = json_of(
        &api.post("/api/v1/recipes", json!({"name": "r", "os_families": ["debian"], "script": "true"})).await,
        "recipe",
    )
    .await;
    let made = api
        .call_as(
            &a_token,
            Method::POST,
            "/api/v1/vms",
            Some(json!({"name": "a-vm", "vcpus": 1, "memory_mib": 128, "disk_gib": 1, "ip_pool_ids": [pool_id]})),
        )
        .await;
    let made = json_of(&made, "A's VM").await;
    let task = made["task"]["id"].as_str().unwrap().to_owned();
    api.call_as(&a_token, Method::GET, &format!("/api/v1/tasks/{task}/wait?timeout_s=30"), None).await;
    let key = json_of(
        &api.call_as(
            &a_token,
            Method::POST,
            "/api/v1/ssh-keys",
            Some(json!({"name": "k", "public_key": KEY})),
        )
        .await,
        "key",
    )
    .await;
    let token = json_of(
        &api.call_as(&a_token, Method::POST, "/api/v1/tokens", Some(json!({"name": "t"}))).await,
        "token",
    )
    .await;
    let webhook = json_of(
        &api.call_as(
            &a_token,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"url": "https://hooks.example/a", "events": ["vm.*"]})),
        )
        .await,
        "webhook",
    )
    .await;
    let channel = json_of(
        &api.call_as(
            &a_token,
            Method::POST,
            "/api/v1/notification-channels",
            Some(json!({"kind": "email", "to": "a@example.com", "events": ["vm.*"]})),
        )
        .await,
        "channel",
    )
    .await;
    let target = json_of(
        &api.post("/api/v1/backup-targets", json!({"name": "t", "url": "memory://roles"})).await,
        "backup target",
    )
    .await;
    let backup = api
        .call_as(
            &a_token,
            Method::POST,
            &format!("/api/v1/vms/{}/backups", made["vm"]["id"].as_str().unwrap()),
            Some(json!({"target_id": target["id"]})),
        )
        .await;
    let backup = json_of(&backup, "A's backup").await;
    let backup_task = backup["task"]["id"].as_str().unwrap();
    api.call_as(&a_token, Method::GET, &format!("/api/v1/tasks/{backup_task}/wait?timeout_s=30"), None).await;
    let schedule = api
        .call_as(
            &a_token,
            Method::POST,
            "/api/v1/backup-schedules",
            Some(json!({"name": "s", "cron": "0 3 * * *", "target_id": target["id"], "all": true})),
        )
        .await;
    let schedule = json_of(&schedule, "A's schedule").await;
    let snapshot = api
        .call_as(
            &a_token,
            Method::POST,
            &format!("/api/v1/vms/{}/snapshots", made["vm"]["id"].as_str().unwrap()),
            Some(json!({"name": "s"})),
        )
        .await;
    let snapshot = json_of(&snapshot, "A's snapshot").await;
    let snapshot_task = snapshot["task"]["id"].as_str().unwrap();
    api.call_as(&a_token, Method::GET, &format!("/api/v1/tasks/{snapshot_task}/wait?timeout_s=30"), None)
        .await;
    World {
        schedule: schedule["id"].as_str().unwrap().to_owned(),
        target: target["id"].as_str().unwrap().to_owned(),
        backup: backup["backup"]["id"].as_str().unwrap().to_owned(),
        webhook: webhook["id"].as_str().unwrap().to_owned(),
        channel: channel["id"].as_str().unwrap().to_owned(),
        api,
        tokens,
        a,
        node: node["id"].as_str().unwrap().to_owned(),
        pool: pool_id,
        lease: lease["address"].as_str().unwrap().to_owned(),
        network: network["id"].as_str().unwrap().to_owned(),
        image: image["id"].as_str().unwrap().to_owned(),
        recipe: recipe["id"].as_str().unwrap().to_owned(),
        group: group["id"].as_str().unwrap().to_owned(),
        vm: made["vm"]["id"].as_str().unwrap().to_owned(),
        vm_address: made["vm"]["addresses"][0].as_str().unwrap().to_owned(),
        task,
        key: key["id"].as_str().unwrap().to_owned(),
        token: token["id"].as_str().unwrap().to_owned(),
    }
}

impl World {
    /// The route with A's objects in it, and a body that is valid for it.
    fn request(&self, method: &Method, template: &str) -> (String, Option<Value>) {
        let area = template.split('/').nth(3).unwrap_or("");
        let id = match area {
            "nodes" => &self.node,
            "ip-pools" => &self.pool,
            "networks" => &self.network,
            "images" => &self.image,
            "recipes" => &self.recipe,
            "placement-groups" => &self.group,
            "vms" => &self.vm,
            "tasks" => &self.task,
            "users" => &self.a,
            "tokens" => &self.token,
            "ssh-keys" => &self.key,
            "webhooks" => &self.webhook,
            "notification-channels" => &self.channel,
            "backup-targets" => &self.target,
            "backups" => &self.backup,
            "backup-schedules" => &self.schedule,
            _ => "",
        };
        let address = if area == "vms" { &self.vm_address } else { &self.lease };
        let path = template
            .replace("{id}", id)
            .replace("{address}", address)
            .replace("{action}", "stop")
            .replace("{name}", "s");
        let body = match (method.as_str(), template) {
            (_, t) if !matches!(*method, Method::POST | Method::PATCH | Method::PUT) => {
                let _ = t;
                None
            }
            ("POST", "/api/v1/nodes") => Some(json!({"name": "n2", "uri": "memory://n2"})),
            ("PATCH", "/api/v1/nodes/{id}") => Some(json!({"state": "maintenance"})),
            ("POST", "/api/v1/ip-pools") => Some(json!({"name": "p2", "cidr": "203.0.113.0/24"})),
            ("POST", "/api/v1/ip-pools/{id}/leases") => Some(json!({})),
            ("POST", "/api/v1/networks") => Some(json!({"name": "net2", "kind": "managed"})),
            ("POST", "/api/v1/images") => {
                Some(json!({"name": "other", "os": {"family": "debian", "version": "12"}, "format": "raw"}))
            }
            ("PUT", "/api/v1/images/{id}/data") => Some(json!("bytes")),
            ("POST", "/api/v1/recipes") => {
                Some(json!({"name": "r2", "os_families": ["debian"], "script": "true"}))
            }
            ("POST", "/api/v1/vms") => {
                Some(json!({"name": "v", "vcpus": 1, "memory_mib": 128, "disk_gib": 1}))
            }
            ("PATCH", "/api/v1/vms/{id}") => Some(json!({"name": "renamed"})),
            ("POST", "/api/v1/vms/{id}/{action}") | ("POST", "/api/v1/tasks/{id}/cancel") => None,
            ("POST", "/api/v1/vms/{id}/reinstall") => Some(json!({"image_id": self.image})),
            ("POST", "/api/v1/vms/{id}/clone") => Some(json!({"name": "copy"})),
            ("POST", "/api/v1/vms/{id}/migrate") => Some(json!({})),
            ("POST", "/api/v1/nodes/{id}/maintenance") => Some(json!({"evacuate": false})),
            ("POST", "/api/v1/nodes/{id}/fence") => None,
            ("POST", "/api/v1/vms/{id}/console") => Some(json!({"kind": "vnc"})),
            ("POST", "/api/v1/vms/{id}/addresses") => Some(json!({"ip_pool_id": self.pool})),
            ("POST", "/api/v1/auth/logout") => None,
            ("POST", "/api/v1/users") => {
                Some(json!({"email": "new@example.com", "password": "correct horse battery", "role": "user"}))
            }
            ("PATCH", "/api/v1/users/{id}") => Some(json!({"quota": {"max_vms": 10}})),
            ("POST", "/api/v1/tokens") => Some(json!({"name": "another"})),
            ("POST", "/api/v1/ssh-keys") => {
                Some(json!({"name": "k2", "public_key": KEY.replace("you@", "me@")}))
            }
            ("POST", "/api/v1/webhooks") => {
                Some(json!({"url": "https://hooks.example/b", "events": ["task.failed"]}))
            }
            ("PATCH", "/api/v1/webhooks/{id}") => Some(json!({"enabled": false})),
            ("POST", "/api/v1/reconcile") => Some(json!({"dry_run": true})),
            ("POST", "/api/v1/placement-groups") => Some(json!({"name": "g2", "policy": "affinity"})),
            ("POST", "/api/v1/placement/what-if") => {
                Some(json!({"vcpus": 1, "memory_mib": 128, "disk_gib": 1, "ip_pool_ids": [self.pool]}))
            }
            ("POST", "/api/v1/vms/{id}/snapshots") => Some(json!({"name": "s2"})),
            ("POST", "/api/v1/vms/{id}/snapshots/{name}/revert") => None,
            ("POST", "/api/v1/backup-targets") => Some(json!({"name": "t2", "url": "memory://roles-2"})),
            ("POST", "/api/v1/vms/{id}/backups") => Some(json!({"target_id": self.target})),
            ("POST", "/api/v1/backups/{id}/restore") => Some(json!({"new_vm": {"name": "restored"}})),
            ("POST", "/api/v1/backups/{id}/verify") | ("POST", "/api/v1/backup-schedules/{id}/run") => None,
            ("POST", "/api/v1/backup-schedules") => {
                Some(json!({"name": "s2", "cron": "0 4 * * *", "target_id": self.target, "all": true}))
            }
            ("PATCH", "/api/v1/backup-schedules/{id}") => Some(json!({"enabled": false})),
            ("POST", "/api/v1/notification-channels") => {
                Some(json!({"kind": "telegram", "to": "123456789", "events": ["task.failed"]}))
            }
            other => panic!("no request body for {other:?}: add one, and the route to the rules"),
        };
        (path, body)
    }
}

/// The area the rules know a route by, and whether it names one of A's objects.
fn area_of(template: &str) -> Option<(Area, bool)> {
    // Where a VM runs is the operator's business: moving one is gated as nodes are.
    if template.ends_with("/migrate") {
        return Some((Area::Nodes, true));
    }
    let area = match template.split('/').nth(3)? {
        "nodes" => Area::Nodes,
        "ip-pools" => Area::IpPools,
        "networks" => Area::Networks,
        "images" => Area::Images,
        "recipes" => Area::Recipes,
        "vms" => Area::Vms,
        "tasks" => Area::Tasks,
        "users" if template.ends_with("/me") => return None,
        "users" => Area::Users,
        "tokens" => Area::Tokens,
        "ssh-keys" => Area::SshKeys,
        "audit" => Area::Audit,
        "reconcile" | "placement" | "placement-groups" => Area::Nodes,
        "webhooks" => Area::Webhooks,
        "notification-channels" => Area::Webhooks,
        "backup-targets" => Area::Nodes,
        "backups" | "backup-schedules" => Area::Vms,
        _ => return None,
    };
    Some((area, template.contains("{id}")))
}

#[tokio::test]
async fn every_route_for_every_role_on_a_users_objects_follows_the_rules() {
    let spec = serde_json::to_value(vmm_server::openapi()).unwrap();
    let mut checked = 0;
    for (template, ops) in spec["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            if op["security"] == json!([{}]) {
                continue; // health and sign-in need no token
            }
            let Some((area, names_object)) = area_of(template) else { continue };
            // A fresh world for each route: a change made by one actor does not hide the
            // objects from the next.
            for who in ["B", "readonly", "operator", "A", "admin"] {
                let w = world().await;
                let (role, _, token) = w.tokens.iter().find(|t| t.1 == who).unwrap().clone();
                // Asking placement is a POST that only reads the nodes.
                let reads = method == Method::GET || template == "/api/v1/placement/what-if";
                let access = if reads { Access::Read } else { Access::Write };
                let target = if !names_object || !area.is_owned() {
                    Target::Any
                } else if who == "A" {
                    Target::Own
                } else {
                    Target::Other
                };
                let (path, body) = w.request(&method, template);
                let r = w.api.call_as(&token, method.clone(), &path, body).await;
                let want = decide(role, area, access, target);
                let got = r.status.as_u16();
                let ok = match want {
                    Decision::Allow => !matches!(got, 401 | 403 | 404),
                    Decision::Forbidden => got == 403,
                    Decision::Hidden => got == 404,
                };
                assert!(ok, "{method} {template} as {who} ({role}): want {want:?}, got {got} {}", r.body);
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "{checked} answers checked");
}

#[tokio::test]
async fn b_finds_none_of_as_objects_in_any_list() {
    let w = world().await;
    let b = w.tokens.iter().find(|t| t.1 == "B").unwrap().2.clone();
    let theirs = [&w.vm, &w.task, &w.key, &w.token, &w.a, &w.webhook, &w.channel, &w.backup, &w.schedule];
    let spec = serde_json::to_value(vmm_server::openapi()).unwrap();
    for (template, ops) in spec["paths"].as_object().unwrap() {
        // The stream never ends; it is checked in events.rs.
        if template.contains('{') || ops.get("get").is_none() || template.ends_with("/stream") {
            continue;
        }
        let r = w.api.get_as_token(&b, template).await;
        if r.status == StatusCode::OK {
            let text = r.body.to_string();
            for id in theirs {
                assert!(!text.contains(id.as_str()), "B finds {id} in {template}: {text}");
            }
        }
    }
    // Filters name A's objects: still nothing.
    for uri in [
        format!("/api/v1/tasks?vm_id={}", w.vm),
        format!("/api/v1/audit?target_id={}", w.vm),
        format!("/api/v1/audit?actor_id={}", w.a),
        format!("/api/v1/backups?vm_id={}", w.vm),
    ] {
        let r = w.api.get_as_token(&b, &uri).await;
        assert_eq!(r.body["items"], json!([]), "{uri}");
    }
}

impl Api {
    async fn get_as_token(&self, token: &str, uri: &str) -> Reply {
        self.call_as(token, Method::GET, uri, None).await
    }
}
