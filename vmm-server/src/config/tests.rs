//! The settings: defaults, file and environment; `config show`; the sample config.

use super::*;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    move |k| map.get(k).cloned()
}

#[test]
fn defaults_then_file_then_environment() {
    let s = Settings::load(None, env(&[])).unwrap();
    assert_eq!(
        (s.listen.to_string(), s.database_url.as_str()),
        ("127.0.0.1:8080".into(), "sqlite://data/vmm.db")
    );
    let dir = std::env::temp_dir().join(format!("vmmd-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vmmd.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/vmm\"\nlocal_node = false\n")
        .unwrap();
    let s = Settings::load(Some(&file), env(&[])).unwrap();
    assert_eq!(
        (s.listen.port(), s.database_url.as_str(), s.local_node),
        (9000, "sqlite:///srv/vmm/vmm.db", false)
    );
    let s = Settings::load(
        Some(&file),
        env(&[("VMM_LISTEN", "127.0.0.1:9001"), ("VMM_ADMIN_TOKEN", "0123456789abcdef0")]),
    )
    .unwrap();
    assert_eq!(s.listen.port(), 9001);
    assert!(!format!("{s:?}").contains("0123456789abcdef0"));
    std::fs::write(&file, "lisen = 1\n").unwrap();
    assert!(Settings::load(Some(&file), env(&[])).is_err(), "unknown keys are refused");
    assert!(Settings::load(None, env(&[("VMM_LISTEN", "nowhere")])).is_err());
    assert!(Settings::load(None, env(&[("VMM_DATABASE_URL", "mysql://x")])).is_err());
    assert!(Settings::load(None, env(&[("VMM_NODE_URI_PARAMS", "command")])).is_err(), "never allowable");
    assert!(Settings::load(None, env(&[("VMM_MAX_CONNECTIONS", "many")])).is_err());
    for image_dir in ["/srv/pool/../pool/images", "/srv/x/../pool", "/srv/./pool/a/../b"] {
        let nested = env(&[("VMM_STORAGE_PATH", "/srv/pool"), ("VMM_IMAGE_DIR", image_dir)]);
        assert!(Settings::load(None, nested).unwrap_err().to_string().contains("image_dir"), "{image_dir}");
    }
    let beside = env(&[("VMM_STORAGE_PATH", "/srv/pool"), ("VMM_IMAGE_DIR", "/srv/pool-images")]);
    assert!(Settings::load(None, beside).is_ok());
    let link = dir.join("link-to-pool");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let through_link = link.join("images").display().to_string();
    let storage = dir.display().to_string();
    let linked = env(&[("VMM_STORAGE_PATH", storage.as_str()), ("VMM_IMAGE_DIR", through_link.as_str())]);
    assert!(Settings::load(None, linked).is_err(), "a link into the pool");
    let s = Settings::load(
        None,
        env(&[
            ("VMM_TEST_NODES", "true"),
            ("VMM_NODE_URI_PARAMS", "keyfile, known_hosts"),
            ("VMM_HEADER_READ_TIMEOUT_S", "3"),
        ]),
    )
    .unwrap();
    assert!(s.node_uris.test_nodes);
    assert!(s.node_uris.check("qemu+ssh://h/system?keyfile=/k&known_hosts=/kh").is_ok());
    assert_eq!(s.serve.header_read_timeout, Duration::from_secs(3));
    let s = Settings::load(None, env(&[])).unwrap();
    assert!(!s.node_uris.test_nodes, "test nodes are off unless the operator enables them");
    std::fs::remove_dir_all(dir).ok();
}

/// The keys of the config file, as serde reads them.
fn file_keys() -> std::collections::BTreeSet<&'static str> {
    serde_aux::serde_introspection::serde_introspect::<FileConfig>().iter().copied().collect()
}

#[test]
fn show_gives_every_key_in_effect_and_no_secret() {
    let dir = std::env::temp_dir().join(format!("vmmd-show-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vmmd.toml");
    let secrets = [
        "admin-secret-0123456789",
        "metrics-secret-0123456789",
        "ldap-secret",
        "smtp-secret",
        "tg-secret",
        "db-secret",
    ];
    std::fs::write(
        &file,
        r#"
admin_token = "admin-secret-0123456789"
metrics_token = "metrics-secret-0123456789"
database_url = "postgres://vmm:db-secret@127.0.0.1:5432/vmm"
listen = "127.0.0.1:9000"
[ldap]
url = "ldaps://ldap.example.com"
bind_dn = "cn=vmm,dc=example,dc=com"
bind_password = "ldap-secret"
user_base = "ou=people,dc=example,dc=com"
group_base = "ou=groups,dc=example,dc=com"
roles = [{ group = "cn=admins,ou=groups,dc=example,dc=com", role = "admin" }]
[smtp]
host = "smtp.example.com"
username = "vmm"
password = "smtp-secret"
from = "vmm@example.com"
[telegram]
bot_token = "tg-secret"
"#,
    )
    .unwrap();
    let s = Settings::load(Some(&file), env(&[("VMM_LISTEN", "127.0.0.1:9001")])).unwrap();
    let shown = s.to_redacted_toml();
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    let table: toml::Table = toml::from_str(&shown).unwrap();
    assert_eq!(table["listen"].as_str(), Some("127.0.0.1:9001"), "the environment wins");
    assert_eq!(table["admin_token"].as_str(), Some(REDACTED));
    assert_eq!(table["database_url"].as_str(), Some("postgres://vmm:%3Credacted%3E@127.0.0.1:5432/vmm"));
    assert_eq!(table.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(), file_keys());
    // What it shows reads back as the same settings once the secrets are put back.
    let mut back = shown.replace("%3Credacted%3E", "db-secret");
    for (key, secret) in [
        ("admin_token", "admin-secret-0123456789"),
        ("metrics_token", "metrics-secret-0123456789"),
        ("bind_password", "ldap-secret"),
        ("\npassword", "smtp-secret"),
        ("bot_token", "tg-secret"),
    ] {
        back = back.replace(&format!("{key} = \"{REDACTED}\""), &format!("{key} = \"{secret}\""));
    }
    std::fs::write(&file, back).unwrap();
    let again = Settings::load(Some(&file), env(&[])).unwrap();
    assert_eq!(again.to_redacted_toml(), shown);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_sample_config_names_every_key_and_reads_when_uncommented() {
    let sample = include_str!("../../../packaging/vmmd.toml");
    let mut keys = std::collections::BTreeSet::new();
    let mut uncommented = String::new();
    let mut in_table = false;
    for line in sample.lines() {
        let Some(line) = line.strip_prefix("# ") else { continue };
        let key = line.split([' ', '=']).next().unwrap_or("");
        let table = line.strip_prefix('[').and_then(|l| l.strip_suffix(']'));
        let is_setting = line.contains(" = ") && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if let Some(table) = table {
            keys.insert(table.to_owned());
            in_table = true;
        } else if is_setting && !in_table {
            keys.insert(key.to_owned());
        }
        if table.is_some() || is_setting {
            uncommented.push_str(line);
            uncommented.push('\n');
        }
    }
    assert_eq!(keys.iter().map(String::as_str).collect::<std::collections::BTreeSet<_>>(), file_keys());
    // Every example value is of the right type (the file parses with unknown keys refused).
    let parsed: std::result::Result<FileConfig, _> = toml::from_str(&uncommented);
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn a_generated_token_is_written_once_with_mode_0600() {
    let dir = std::env::temp_dir().join(format!("vmmd-token-{}", uuid::Uuid::new_v4()));
    let s = Settings::load(None, env(&[("VMM_DATA_DIR", dir.to_str().unwrap())])).unwrap();
    let (first, path) = s.admin_token().unwrap();
    let path = path.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (again, _) = s.admin_token().unwrap();
    assert!(again.matches(first.expose()), "the same token on the next start");
    std::fs::remove_dir_all(dir).ok();
}
