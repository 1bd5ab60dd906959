//! The `vmm` binary against a real `vmmd` (SQLite, a `test:///default` node) over HTTP:
//! every output format, `--wait`, names for ids, fields typed by the schema, the config
//! file and the environment, and an exit code per kind of error.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use vmm_tests::{data_dir, Vmmd, VmmdConfig, TOKEN};

/// `vmm ARGS` against `vmmd` with the admin token from the environment.
fn vmm(vmmd: &Vmmd, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmm"))
        .args(args)
        .env("VMM_URL", &vmmd.base)
        .env("VMM_TOKEN", TOKEN)
        .env("HOME", "/nonexistent")
        .env_remove("VMM_CLI_CONFIG")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(Stdio::null())
        .output()
        .expect("vmm runs")
}

/// The stdout of a command that must succeed.
fn ok(vmmd: &Vmmd, args: &[&str]) -> String {
    let out = vmm(vmmd, args);
    assert!(out.status.success(), "vmm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The JSON answer of a command that must succeed.
fn json(vmmd: &Vmmd, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(vmmd, &all)).expect("JSON")
}

/// The exit code and the one line on stderr of a command that must fail.
fn fails(vmmd: &Vmmd, args: &[&str]) -> (i32, String) {
    let out = vmm(vmmd, args);
    assert!(!out.status.success(), "vmm {args:?} succeeded");
    let err = String::from_utf8(out.stderr).expect("UTF-8");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("vmm: error: "), "{err}");
    (out.status.code().expect("an exit code"), err)
}

fn server() -> Vmmd {
    let vmmd = Vmmd::start(&VmmdConfig::new(&data_dir()));
    let added = json(&vmmd, &["node", "add", "name=n1", "uri=test:///default"]);
    assert_eq!(added["name"], "n1");
    vmmd
}

#[test]
fn vms_are_created_listed_shown_and_driven_with_each_output() {
    let vmmd = server();
    // Fields are typed by the schema; --wait follows the task and shows it ended.
    let task =
        json(&vmmd, &["vm", "create", "name=web1", "vcpus=1", "memory_mib=256", "disk_gib=1", "--wait"]);
    assert_eq!(
        (task["kind"].as_str(), task["state"].as_str()),
        (Some("create_vm"), Some("succeeded")),
        "{task}"
    );
    let id = task["vm_id"].as_str().unwrap().to_owned();
    assert!(task["steps"][0]["message"].as_str().unwrap().starts_with("placed on n1 (score "), "{task}");

    // Placement answers what it would do, and why.
    let answer = json(&vmmd, &["placement", "what-if", "vcpus=1", "memory_mib=256", "disk_gib=1"]);
    let n1 = json(&vmmd, &["node", "show", "n1"])["id"].clone();
    assert_eq!((&answer["chosen"], &answer["candidates"][0]["node_name"]), (&n1, &json!("n1")), "{answer}");
    let group = json(&vmmd, &["group", "create", "name=spread", "policy=anti_affinity"]);
    assert_eq!(json(&vmmd, &["group", "show", "spread"])["id"], group["id"], "a name stands for the id");
    let joined = json(
        &vmmd,
        &[
            "vm",
            "create",
            "name=g1",
            "vcpus=1",
            "memory_mib=64",
            "disk_gib=1",
            "start=false",
            &format!("placement_group_id={}", group["id"].as_str().unwrap()),
            "--wait",
        ],
    );
    assert_eq!(joined["state"], "succeeded", "{joined}");
    let (code, err) = fails(&vmmd, &["group", "delete", "spread"]);
    assert!(code != 0 && err.contains("still has 1 VM"), "{code} {err}");
    ok(&vmmd, &["vm", "delete", "g1", "--wait"]);
    ok(&vmmd, &["group", "delete", "spread"]);
    let refused = json(&vmmd, &["placement", "what-if", "vcpus=1", "memory_mib=16777216", "disk_gib=1"]);
    assert_eq!(
        (&refused["chosen"], &refused["rejected"][0]["reasons"][0]["reason"]),
        (&Value::Null, &json!("memory"))
    );

    // Moving: a VM between two nodes, and a node in and out of maintenance.
    let m1 = json(&vmmd, &["node", "add", "name=m1", "uri=memory://m1"])["id"].as_str().unwrap().to_owned();
    let m2 = json(&vmmd, &["node", "add", "name=m2", "uri=memory://m2"])["id"].as_str().unwrap().to_owned();
    let spec = ["vm", "create", "name=mover", "vcpus=1", "memory_mib=64", "disk_gib=1", "--wait"];
    let made = json(&vmmd, &[&spec[..], &[&format!("node_id={m1}")]].concat());
    assert_eq!(made["state"], "succeeded", "{made}");
    let moved = json(&vmmd, &["vm", "migrate", "mover", &format!("node_id={m2}"), "--wait"]);
    assert_eq!((moved["kind"].as_str(), moved["state"].as_str()), (Some("migrate_vm"), Some("succeeded")));
    assert_eq!(json(&vmmd, &["vm", "show", "mover"])["node_id"].as_str(), Some(m2.as_str()));
    let (code, err) = fails(&vmmd, &["vm", "migrate", "mover", &format!("node_id={m2}")]);
    assert!(code != 0 && err.contains("on that node already") && err.lines().count() == 1, "{code} {err}");
    let kept = json(&vmmd, &["node", "maintenance", "m2", "evacuate=false", "--wait"]);
    assert_eq!(kept["state"], "succeeded", "{kept}");
    assert_eq!(json(&vmmd, &["node", "show", "m2"])["state"], "maintenance");
    let back = json(&vmmd, &["node", "end-maintenance", "m2", "return_vms=true", "--wait"]);
    assert_eq!((back["kind"].as_str(), back["state"].as_str()), (Some("end_maintenance"), Some("succeeded")));
    assert_eq!(json(&vmmd, &["node", "show", "m2"])["state"], "online");
    ok(&vmmd, &["vm", "delete", "mover", "--wait"]);

    // JSON is the API's own object.
    let (status, api) = vmmd.call("GET", &format!("/api/v1/vms/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(json(&vmmd, &["vm", "show", &id]), api);
    // A name stands for the id.
    assert_eq!(json(&vmmd, &["vm", "show", "web1"]), api);
    let yaml = ok(&vmmd, &["vm", "show", "web1", "-o", "yaml"]);
    assert!(yaml.contains(&format!("id: {id}")) && yaml.contains("name: web1"), "{yaml}");
    let table = ok(&vmmd, &["vm", "list"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().split_whitespace().eq([
        "ID",
        "NAME",
        "STATE",
        "VCPUS",
        "MEMORY_MIB",
        "DISK_GIB",
        "NODE",
        "ADDRESSES"
    ]));
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..6], [id.as_str(), "web1", "running", "1", "256", "1"]);

    // Without --wait the answer is the queued task; `task wait` follows it.
    let queued = json(&vmmd, &["vm", "stop", "web1"]);
    let stop = queued["task"]["id"].as_str().unwrap_or_else(|| queued["id"].as_str().unwrap()).to_owned();
    let ended = json(&vmmd, &["task", "wait", &stop]);
    assert_eq!(ended["state"], "succeeded", "{ended}");
    assert_eq!(json(&vmmd, &["vm", "show", "web1"])["state"], "stopped");
    let tasks = json(&vmmd, &["task", "list", &format!("vm_id={id}")]);
    assert_eq!(tasks.as_array().unwrap().len(), 2, "{tasks}");
    assert_eq!(json(&vmmd, &["task", "list", "--limit", "1"]).as_array().unwrap().len(), 1);

    // A list that spans pages comes whole.
    for i in 0..3 {
        let name = format!("many{i}");
        ok(
            &vmmd,
            &[
                "vm",
                "create",
                &format!("name={name}"),
                "vcpus=1",
                "memory_mib=64",
                "disk_gib=1",
                "start=false",
                "-w",
            ],
        );
    }
    let all = json(&vmmd, &["vm", "list"]);
    assert_eq!(all.as_array().unwrap().len(), 4);
    let (status, page) = vmmd.call("GET", "/api/v1/vms?limit=1000", None);
    assert_eq!(status, 200);
    assert_eq!(all, page["items"]);

    // Pages of any size make the same list.
    assert_eq!(json(&vmmd, &["vm", "list", "--page-size", "1"]), all);
    assert_eq!(json(&vmmd, &["vm", "list", "--page-size", "3", "--limit", "2"]).as_array().unwrap().len(), 2);
    // Filters are the server's: every VM listed as stopped is, and none is left out.
    let stopped = json(&vmmd, &["vm", "list", "state=stopped"]);
    let expected: Vec<_> = all.as_array().unwrap().iter().filter(|v| v["state"] == "stopped").collect();
    assert!(!expected.is_empty());
    assert_eq!(stopped.as_array().unwrap().iter().collect::<Vec<_>>(), expected);
    // A filter the list does not take is refused, not ignored.
    assert_eq!(fails(&vmmd, &["vm", "list", "vm_id=x"]).0, 2);

    // A token made and revoked by its id (`token` is also the global flag's name).
    let made = json(&vmmd, &["token", "create", "name=ci"]);
    let token_id = made["id"].as_str().unwrap().to_owned();
    assert!(made["token"].as_str().is_some_and(|t| !t.is_empty()), "shown once: {made}");
    ok(&vmmd, &["token", "delete", &token_id]);
    assert!(!json(&vmmd, &["token", "list"]).to_string().contains(&token_id));

    // PATCH and DELETE; the deleted VM is gone.
    let updated = json(&vmmd, &["vm", "update", "web1", "vcpus=2", "--wait"]);
    assert_eq!(updated["state"], "succeeded", "{updated}");
    assert_eq!(json(&vmmd, &["vm", "show", "web1"])["vcpus"], 2);
    ok(&vmmd, &["vm", "delete", "web1", "--wait", "-q"]);
    let (code, err) = fails(&vmmd, &["vm", "show", &id]);
    assert_eq!(code, 4, "{err}");
    // The raw escape hatch reaches every path.
    assert_eq!(json(&vmmd, &["api", "get", "/vms"])["items"].as_array().unwrap().len(), 3);
}

#[test]
fn each_kind_of_error_has_its_exit_code_and_one_line() {
    let vmmd = server();
    ok(&vmmd, &["vm", "create", "name=a", "vcpus=1", "memory_mib=64", "disk_gib=1", "start=false", "-w"]);
    // 4: not found (a name that names nothing, an id that names nothing).
    assert_eq!(fails(&vmmd, &["vm", "show", "nosuch"]).0, 4);
    assert_eq!(fails(&vmmd, &["vm", "show", "01a242ce-0000-7000-8000-000000000000"]).0, 4);
    // 5: conflict with the state.
    let (code, err) = fails(&vmmd, &["vm", "stop", "a"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("invalid_state") && err.contains("HTTP 409"), "{err}");
    // 8: refused by the server; 2: refused before asking it.
    assert_eq!(fails(&vmmd, &["vm", "create", "name=b", "vcpus=1", "memory_mib=64", "disk_gib=100000"]).0, 8);
    assert_eq!(fails(&vmmd, &["vm", "create", "vcpus=two"]).0, 2);
    assert_eq!(fails(&vmmd, &["vm", "create", "novalue"]).0, 2);
    assert_eq!(fails(&vmmd, &["snapshot", "delete", "a", ".."]).0, 2);
    // 7: no valid token; 6: a role that may not.
    assert_eq!(fails(&vmmd, &["--token", "not-a-token", "vm", "list"]).0, 7);
    let (status, user) = vmmd.call(
        "POST",
        "/api/v1/users",
        Some(json!({"email": "u@example.com", "password": "a long enough password", "role": "user"})),
    );
    assert_eq!(status, 201, "{user}");
    let (status, session) = vmmd.call_as(
        None,
        "POST",
        "/api/v1/auth/login",
        Some(json!({"email": "u@example.com", "password": "a long enough password"})),
    );
    assert_eq!(status, 200, "{session}");
    let token = session["token"].as_str().unwrap();
    assert_eq!(fails(&vmmd, &["--token", token, "node", "add", "name=n2", "uri=test:///default"]).0, 6);
    // 10: nothing listens there (after the retries).
    assert_eq!(fails(&vmmd, &["--url", "http://127.0.0.1:9", "vm", "list"]).0, 10);
    // 12: the task waited for failed (the test driver cannot read a disk for a backup).
    let dir = data_dir();
    let target = json(&vmmd, &["backup-target", "create", "name=t", &format!("url=dir://{}", dir.display())]);
    let (code, err) = fails(
        &vmmd,
        &["vm", "backup", "a", &format!("target_id={}", target["id"].as_str().unwrap()), "--wait"],
    );
    assert_eq!(code, 12, "{err}");
    assert!(err.contains("failed"), "{err}");
    // 11: a wait that runs out (the task goes on; `task wait` follows it to its end).
    let vm = json(&vmmd, &["vm", "show", "a"]);
    let (code, err) = fails(&vmmd, &["vm", "start", "a", "--wait", "--timeout", "0"]);
    assert_eq!(code, 11, "{err}");
    let task = err.split_whitespace().nth(3).expect("the task's id in the message").to_owned();
    assert_eq!(json(&vmmd, &["task", "wait", &task])["state"], "succeeded");
    assert_eq!(vm["name"], "a");
}

#[test]
fn the_config_file_the_environment_and_flags_in_that_order() {
    let vmmd = server();
    let dir = data_dir();
    let file = dir.join("config.toml");
    std::fs::write(&file, format!("url = \"{}\"\ntoken = \"{TOKEN}\"\noutput = \"json\"\n", vmmd.base))
        .unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmm"));
        cmd.args(args)
            .env_remove("VMM_URL")
            .env_remove("VMM_TOKEN")
            .env("HOME", &dir)
            .env("XDG_CONFIG_HOME", &dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // The file alone: its server, its token, its output.
    let out = run(&["node", "list"], &[("VMM_CLI_CONFIG", file.to_str().unwrap())]);
    assert!(out.status.success(), "{out:?}");
    let nodes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes[0]["name"], "n1");
    // The default place, $XDG_CONFIG_HOME/vmm/config.toml.
    std::fs::create_dir_all(dir.join("vmm")).unwrap();
    std::fs::copy(&file, dir.join("vmm/config.toml")).unwrap();
    assert!(run(&["node", "list"], &[]).status.success());
    // The environment wins over the file, and a flag over both.
    let out = run(&["node", "list"], &[("VMM_TOKEN", "wrong-token")]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let out = run(&["--token", TOKEN, "node", "list", "-o", "table"], &[("VMM_TOKEN", "wrong-token")]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with(" ID"), "{out:?}");
    // A bad file is a usage error that names the line, not the token.
    std::fs::write(&file, format!("token = \"{TOKEN}\"\nurll = \"x\"\n")).unwrap();
    let out = run(&["node", "list"], &[("VMM_CLI_CONFIG", file.to_str().unwrap())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2") && !err.contains(TOKEN), "{err}");
    // A file named explicitly must exist.
    let out = run(&["node", "list"], &[("VMM_CLI_CONFIG", "/nonexistent/vmm.toml")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // vmmd's VMM_CONFIG is not the CLI's.
    let out = run(
        &["node", "list"],
        &[("VMM_CONFIG", "/nonexistent/vmmd.toml"), ("VMM_TOKEN", TOKEN), ("VMM_URL", vmmd.base.as_str())],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!Path::new("/nonexistent").exists());
}

/// A server on loopback that answers each request with the next of `answers` (status,
/// body), then closes; returns its URL and the requests it got.
fn scripted(answers: Vec<(u16, &'static str)>) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, requests) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (status, body) in answers {
            let Ok((stream, _)) = listener.accept() else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut content = vec![0; length];
            reader.read_exact(&mut content).ok();
            seen.send(head).ok();
            let kind = if status >= 400 { "application/problem+json" } else { "application/json" };
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            (&stream).write_all(answer.as_bytes()).ok();
        }
    });
    (url, requests)
}

#[test]
fn reads_are_retried_when_the_server_is_busy_and_writes_are_not() {
    const BUSY: &str = r#"{"type":"urn:vmm:problem:unavailable","title":"Backend unavailable","status":503,"detail":"the store is busy","code":"unavailable"}"#;
    let run = |url: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vmm"))
            .args(args)
            .env("VMM_URL", url)
            .env("VMM_TOKEN", "t0ken")
            .output()
            .unwrap()
    };
    // A read: two 503s, then the answer.
    let (url, requests) = scripted(vec![(503, BUSY), (503, BUSY), (200, r#"{"items":[{"id":"n"}]}"#)]);
    let out = run(&url, &["node", "list", "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(requests.try_iter().count(), 3);
    // A write: one try, the error, its exit code; it carried an Idempotency-Key.
    let (url, requests) = scripted(vec![(503, BUSY), (200, "{}")]);
    let out = run(&url, &["pool", "create", "name=p", "cidr=198.51.100.0/24"]);
    assert_eq!(out.status.code(), Some(10), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the store is busy (unavailable, HTTP 503)"));
    let sent: Vec<String> = requests.try_iter().collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].to_ascii_lowercase().contains("idempotency-key: "), "{}", sent[0]);
    assert!(sent[0].contains("Bearer t0ken"));
    // An error status without a problem (a readiness report) is shown as it came, not retried.
    let (url, requests) =
        scripted(vec![(503, r#"{"status":"not_ready","store":"ok","nodes":1,"nodes_answering":0}"#)]);
    let out = run(&url, &["server", "ready"]);
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nodes_answering"), "{out:?}");
    assert_eq!(requests.try_iter().count(), 1);
}

#[test]
fn completions_and_the_man_page_are_generated() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_vmm")).args(args).output().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("vmm") && script.contains("snapshot"), "{shell}");
    }
    let man = String::from_utf8(run(&["man"]).stdout).unwrap();
    assert!(man.contains(".TH vmm") && man.contains("Exit codes"), "{man}");
    let out = run(&["vm", "create", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("FIELD=VALUE"));
}
