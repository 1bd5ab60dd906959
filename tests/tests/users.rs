//! Users, sign-in and tokens against the real `vmmd` on SQLite and PostgreSQL: what a
//! revocation, a disabled user, an expiry and a run of bad passwords do to the next request,
//! that all of it survives a restart, and that no password or token is kept or logged in
//! clear.

use serde_json::{json, Value};
use vmm_tests::{data_dir, postgres_db, Vmmd, VmmdConfig, TOKEN};

const PASSWORD: &str = "correct horse battery staple";

fn login(vmmd: &Vmmd, email: &str, password: &str) -> (u16, Value) {
    vmmd.call_as(None, "POST", "/api/v1/auth/login", Some(json!({"email": email, "password": password})))
}

/// Everything the users area promises, on one `vmmd` configuration; the tokens it made.
fn users_on(config: &VmmdConfig) -> Vec<String> {
    let vmmd = Vmmd::start(config);
    let (status, me) = vmmd.call("GET", "/api/v1/users/me", None);
    assert_eq!((status, me["role"].as_str()), (200, Some("admin")), "{me}");
    let (status, ann) = vmmd.call(
        "POST",
        "/api/v1/users",
        Some(json!({"email": "ann@example.com", "password": PASSWORD, "role": "operator"})),
    );
    assert_eq!(status, 201, "{ann}");
    let ann_id = ann["id"].as_str().unwrap().to_owned();

    let (status, session) = login(&vmmd, "ann@example.com", PASSWORD);
    assert_eq!(status, 200, "{session}");
    let session = session["token"].as_str().unwrap().to_owned();
    let (status, made) = vmmd.call_as(
        Some(&session),
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "deploy", "role": "user"})),
    );
    assert_eq!(status, 201, "{made}");
    let deploy = made["token"].as_str().unwrap().to_owned();
    assert_eq!(vmmd.call_as(Some(&deploy), "GET", "/api/v1/users/me", None).0, 200);
    assert_eq!(vmmd.call_as(Some(&deploy), "GET", "/api/v1/nodes", None).0, 403, "narrower than its user");
    assert_eq!(vmmd.call_as(Some(&session), "GET", "/api/v1/nodes", None).0, 200);

    // A restart keeps users and tokens.
    vmmd.stop();
    let vmmd = Vmmd::start(config);
    assert_eq!(vmmd.call_as(Some(&deploy), "GET", "/api/v1/users/me", None).0, 200);

    // Revoked: the next request is refused.
    let (status, _) = vmmd.call_as(
        Some(&session),
        "DELETE",
        &format!("/api/v1/tokens/{}", made["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(vmmd.call_as(Some(&deploy), "GET", "/api/v1/users/me", None).0, 401);

    // Disabled: the session stops and sign-in is refused, like a wrong password.
    let (status, _) =
        vmmd.call("PATCH", &format!("/api/v1/users/{ann_id}"), Some(json!({"state": "disabled"})));
    assert_eq!(status, 200);
    assert_eq!(vmmd.call_as(Some(&session), "GET", "/api/v1/users/me", None).0, 401);
    let (status, refused) = login(&vmmd, "ann@example.com", PASSWORD);
    let (_, wrong) = login(&vmmd, "nobody@example.com", PASSWORD);
    assert_eq!((status, &refused["detail"]), (401, &wrong["detail"]));
    vmmd.call("PATCH", &format!("/api/v1/users/{ann_id}"), Some(json!({"state": "active"})));

    // A token that has expired is refused; one that has not works.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let (status, brief) = vmmd.call_as(
        Some(&session),
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "brief", "expires_at": soon})),
    );
    assert_eq!(status, 201, "{brief}");
    let brief = brief["token"].as_str().unwrap().to_owned();
    assert_eq!(vmmd.call_as(Some(&brief), "GET", "/api/v1/users/me", None).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert_eq!(vmmd.call_as(Some(&brief), "GET", "/api/v1/users/me", None).0, 401);

    // Tenancy: a user's VM is theirs; another user finds nothing, by list or by id.
    let (status, node) =
        vmmd.call("POST", "/api/v1/nodes", Some(json!({"name": "n1", "uri": "test:///default"})));
    assert_eq!(status, 201, "{node}");
    for email in ["bea@example.com", "cal@example.com"] {
        let (status, r) = vmmd.call(
            "POST",
            "/api/v1/users",
            Some(json!({"email": email, "password": PASSWORD, "role": "user"})),
        );
        assert_eq!(status, 201, "{r}");
    }
    let bea = login(&vmmd, "bea@example.com", PASSWORD).1["token"].as_str().unwrap().to_owned();
    let cal = login(&vmmd, "cal@example.com", PASSWORD).1["token"].as_str().unwrap().to_owned();
    let (status, made) = vmmd.call_as(
        Some(&bea),
        "POST",
        "/api/v1/vms",
        Some(json!({"name": "bea-1", "vcpus": 1, "memory_mib": 128, "disk_gib": 1})),
    );
    assert_eq!(status, 202, "{made}");
    vmmd.done(&made["task"]);
    let vm = made["vm"]["id"].as_str().unwrap();
    assert_eq!(vmmd.call_as(Some(&bea), "GET", &format!("/api/v1/vms/{vm}"), None).1["state"], "running");
    assert_eq!(vmmd.call_as(Some(&cal), "GET", &format!("/api/v1/vms/{vm}"), None).0, 404);
    assert_eq!(vmmd.call_as(Some(&cal), "POST", &format!("/api/v1/vms/{vm}/stop"), None).0, 404);
    assert_eq!(vmmd.call_as(Some(&cal), "GET", "/api/v1/vms", None).1["items"], json!([]));
    assert_eq!(vmmd.call_as(Some(&cal), "GET", "/api/v1/tasks", None).1["items"], json!([]));
    let (status, gone) = vmmd.call_as(Some(&bea), "DELETE", &format!("/api/v1/vms/{vm}"), None);
    assert_eq!(status, 202, "{gone}");
    vmmd.done(&gone["task"]);

    // A run of wrong passwords from one address: 429 with Retry-After, even for the right one.
    let statuses: Vec<u16> =
        (0..12).map(|_| login(&vmmd, "ann@example.com", "wrong horse battery").0).collect();
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(login(&vmmd, "ann@example.com", PASSWORD).0, 429);
    let log = vmmd.log();
    vmmd.stop();
    for secret in [PASSWORD, &session, &deploy, &brief, &bea, &cal, TOKEN] {
        assert!(!log.contains(secret), "vmmd's log holds a secret in clear");
    }
    vec![session, deploy, brief, bea, cal]
}

/// 32 creates at once over HTTP by a user with room for one VM: one is made.
fn quota_race(config: &VmmdConfig) {
    let vmmd = Vmmd::start(config);
    let (status, node) =
        vmmd.call("POST", "/api/v1/nodes", Some(json!({"name": "n1", "uri": "test:///default"})));
    assert_eq!(status, 201, "{node}");
    let (status, r) = vmmd.call(
        "POST",
        "/api/v1/users",
        Some(
            json!({"email": "q@example.com", "password": PASSWORD, "role": "user", "quota": {"max_vms": 1}}),
        ),
    );
    assert_eq!(status, 201, "{r}");
    let token = login(&vmmd, "q@example.com", PASSWORD).1["token"].as_str().unwrap().to_owned();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..32)
            .map(|i| {
                let (vmmd, token) = (&vmmd, &token);
                scope.spawn(move || {
                    let spec = json!({"name": format!("q-{i}"), "vcpus": 1, "memory_mib": 64, "disk_gib": 1, "start": false});
                    vmmd.call_as(Some(token), "POST", "/api/v1/vms", Some(spec)).0
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let made = statuses.iter().filter(|s| **s == 202).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((made, refused), (1, 31), "{statuses:?}");
    let (_, vms) = vmmd.call_as(Some(&token), "GET", "/api/v1/vms", None);
    assert_eq!(vms["items"].as_array().unwrap().len(), 1);
    vmmd.stop();
}

#[test]
fn a_quota_race_over_http_makes_one_vm_on_sqlite() {
    let data = data_dir();
    quota_race(&VmmdConfig::new(&data));
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_quota_race_over_http_makes_one_vm_on_postgres() {
    let data = data_dir();
    quota_race(&VmmdConfig { database_url: Some(postgres_db()), ..VmmdConfig::new(&data) });
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn users_and_tokens_on_sqlite_keep_no_secret_in_clear() {
    let data = data_dir();
    let tokens = users_on(&VmmdConfig::new(&data));
    // Every byte of the database (with its write-ahead log): hashes, never the secrets.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("vmm.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert_no_secret_in(&String::from_utf8_lossy(&bytes), &tokens);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn users_and_tokens_on_postgres_keep_no_secret_in_clear() {
    let data = data_dir();
    let url = postgres_db();
    let tokens = users_on(&VmmdConfig { database_url: Some(url.clone()), ..VmmdConfig::new(&data) });
    let dump = std::process::Command::new("pg_dump").arg(&url).output().expect("pg_dump (postgresql-client)");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    assert_no_secret_in(&String::from_utf8_lossy(&dump.stdout), &tokens);
    let _ = std::fs::remove_dir_all(&data);
}

/// `text` (a database's bytes or dump) holds password hashes, and neither the password nor
/// any of `tokens`, nor a token's secret half.
fn assert_no_secret_in(text: &str, tokens: &[String]) {
    assert!(text.contains("argon2id"), "the password is kept as an Argon2id hash");
    for secret in tokens.iter().map(String::as_str).chain([PASSWORD]) {
        assert!(!text.contains(secret), "the database holds a secret in clear");
        if let Some(rest) = secret.strip_prefix("vmm_") {
            assert!(!text.contains(&rest[12..]), "the database holds a token's secret half");
        }
    }
}
