//! What vmm writes into a NoCloud seed, checked by the real cloud-init (Debian's
//! `cloud-init` package): `cloud-init schema` validates every cloud-config part of the
//! user-data, Python's `email` parser (the one cloud-init uses) splits a multipart, PyYAML
//! loads the meta-data, and `cloud-init devel net-convert` parses the network-config into
//! cloud-init's network state and renders it. Hostile text in keys, scripts and user-data
//! comes through as data.

use std::path::Path;
use std::process::Command;

use vmm_core::guest::{seed_files, GuestRequest, NicSetup, SeedFiles};
use vmm_core::recipe::{Recipe, RecipeSpec};
use vmm_core::{Secret, VmId};

const KEYS: [&str; 2] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz5Q2d5kq2xqk0fZ7J3o1n9Zr1v3p6yX7mWcJmQqG7A alice@example",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0sR3Ugb5pJm1vWcJc5jJ7p1b9n2kqzXc0Jm8c1y4Yb bob \"quoted\": #not-a-comment",
];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} does not run ({e}); is cloud-init installed?"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} refused it:\n{text}");
    text
}

fn recipe(name: &str, script: &str) -> Recipe {
    let spec = RecipeSpec { name: name.into(), os_families: vec!["debian".into()], script: script.into() };
    Recipe::from_spec(&spec, chrono::Utc::now()).unwrap()
}

fn nics(vm: VmId) -> Vec<NicSetup> {
    vec![
        NicSetup {
            mac: vm.nic_mac(0),
            addresses: vec![("198.51.100.7".parse().unwrap(), 24)],
            gateway: Some("198.51.100.1".parse().unwrap()),
            dns: vec!["198.51.100.53".parse().unwrap(), "2001:db8::53".parse().unwrap()],
        },
        NicSetup {
            mac: vm.nic_mac(1),
            addresses: vec![("203.0.113.9".parse().unwrap(), 24), ("2001:db8:1::9".parse().unwrap(), 64)],
            gateway: Some("2001:db8:1::1".parse().unwrap()),
            dns: vec![],
        },
    ]
}

/// Writes the files and has cloud-init's own tools read each of them.
fn validate(dir: &Path, files: &SeedFiles) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in [
        ("meta-data", &files.meta_data),
        ("user-data", &files.user_data),
        ("network-config", &files.network_config),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let meta = run(Command::new("python3").arg("-c").arg(
        "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); print(d['instance-id'], d['local-hostname'])",
    ).arg(dir.join("meta-data")));
    // Split the user-data as cloud-init does; each cloud-config part must pass the schema.
    let split = r##"
import email, sys, os
raw = open(sys.argv[1]).read()
out = sys.argv[2]
if raw.startswith("#cloud-config"):
    parts = [("text/cloud-config", raw)]
else:
    msg = email.message_from_string(raw)
    assert msg.is_multipart(), "neither cloud-config nor multipart"
    parts = [(p.get_content_type(), p.get_payload()) for p in msg.walk() if not p.is_multipart()]
for i, (kind, body) in enumerate(parts):
    name = os.path.join(out, "part-%d.%s" % (i, "cfg" if kind == "text/cloud-config" else "sh"))
    open(name, "w").write(body)
    print(kind)
"##;
    let parts_dir = dir.join("parts");
    std::fs::create_dir_all(&parts_dir).unwrap();
    let kinds = run(Command::new("python3").arg("-c").arg(split).arg(dir.join("user-data")).arg(&parts_dir));
    let mut parts: Vec<_> = std::fs::read_dir(&parts_dir).unwrap().map(|e| e.unwrap().path()).collect();
    parts.sort();
    for part in parts.iter().filter(|p| p.extension().is_some_and(|e| e == "cfg")) {
        let said = run(Command::new("cloud-init").args(["schema", "--config-file"]).arg(part));
        assert!(said.contains("Valid cloud-config"), "{said}");
    }
    let rendered = dir.join("rendered");
    run(Command::new("cloud-init")
        .args(["devel", "net-convert", "-k", "yaml", "-D", "debian", "-O", "eni", "-p"])
        .arg(dir.join("network-config"))
        .arg("-d")
        .arg(&rendered));
    let eni = std::fs::read_to_string(rendered.join("etc/network/interfaces.d/50-cloud-init")).unwrap();
    let mut out = vec![meta.trim().to_owned(), kinds.trim().to_owned(), eni];
    out.extend(parts.iter().map(|p| std::fs::read_to_string(p).unwrap()));
    out
}

#[test]
fn the_seed_passes_cloud_init_s_own_checks() {
    let dir = std::env::temp_dir().join(format!("vmm-cloud-init-{}", uuid::Uuid::new_v4().simple()));
    let vm = VmId::new();
    let hostile = "echo '$(touch /tmp/pwned)' \"; rm -rf / #\n---\nusers: []\n";
    // Characters YAML refuses raw (DEL, C1 controls, U+FFFE) or reads as line breaks.
    let odd = "echo 'é\u{85}\u{2028}\u{2029}\u{9f}\u{fffe}\u{feff}\u{7f}🚀 𝄞'";
    let recipes = [recipe("hello", "echo hi > /tmp/hi"), recipe("hostile", hostile), recipe("odd", odd)];
    let base = GuestRequest {
        hostname: Some("web-1".into()),
        password: Some(Secret::new("correct horse battery staple")),
        ssh_keys: KEYS.iter().map(|k| (*k).to_owned()).collect(),
        user_data: None,
        recipe_ids: recipes.iter().map(|r| r.id).collect(),
    };
    let settings = base.settings("web 1", vm, &recipes).unwrap();

    let out = validate(&dir.join("plain"), &seed_files(vm, &settings, &nics(vm)));
    assert_eq!(out[0], format!("{vm} web-1"));
    assert_eq!(out[1], "text/cloud-config");
    let eni = &out[2];
    for want in ["198.51.100.7/24", "203.0.113.9/24", "2001:db8:1::9/64", "198.51.100.1", "198.51.100.53"] {
        assert!(eni.contains(want), "{want} missing from\n{eni}");
    }
    // As cloud-init reads it: YAML.
    let loaded = run(Command::new("python3")
        .arg("-c")
        // Written as UTF-8, which fails on a lone surrogate as cloud-init's own writes would.
        .arg("import json, sys, yaml; r = yaml.safe_load(open(sys.argv[1], encoding='utf-8'))['runcmd']; sys.stdout.buffer.write(json.dumps(r, ensure_ascii=False).encode('utf-8'))")
        .arg(dir.join("plain/parts/part-0.cfg")));
    let runcmd: serde_json::Value = serde_json::from_str(&loaded).unwrap();
    assert_eq!(runcmd[1], serde_json::json!(["sh", "-c", hostile]), "the recipe is data");
    assert_eq!(runcmd[2], serde_json::json!(["sh", "-c", odd]), "every character comes back");

    let own_config = "#cloud-config\npackages: [nginx]\nruncmd:\n  - [touch, /tmp/mine]\n";
    let with_config = GuestRequest { user_data: Some(own_config.into()), ..base.clone() }
        .settings("web 1", vm, &recipes)
        .unwrap();
    let out = validate(&dir.join("multipart-config"), &seed_files(vm, &with_config, &nics(vm)));
    assert_eq!(out[1], "text/cloud-config\ntext/cloud-config", "vmm's part, then the user's");
    assert_eq!(out[4], own_config, "the user's part comes through unchanged");

    let script = "#!/bin/sh\necho \"--vmm-boundary\" && exit 0\n";
    let with_script =
        GuestRequest { user_data: Some(script.into()), ..base }.settings("web 1", vm, &recipes).unwrap();
    let out = validate(&dir.join("multipart-script"), &seed_files(vm, &with_script, &nics(vm)));
    assert_eq!(out[1], "text/cloud-config\ntext/x-shellscript");
    assert_eq!(out[4], script);
    std::fs::remove_dir_all(dir).ok();
}
