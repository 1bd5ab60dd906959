//! Guest setup through cloud-init's NoCloud data source: what a VM is told at first boot
//! (its instance id, hostname, root password, SSH keys, addresses, recipes, the user's own
//! user-data), written as the three files cloud-init reads (`meta-data`, `user-data`,
//! `network-config` version 2) into a small VFAT volume labelled `CIDATA` that vmm attaches
//! as a CD-ROM. Every file is produced by a serializer (serde_json: JSON is YAML, and
//! cloud-init reads it as such); no user text is ever formatted into one.

use std::io::{Cursor, Write};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::id::{RecipeId, VmId};
use crate::recipe::Recipe;
use crate::secret::Secret;

/// Largest user-data accepted, in bytes.
pub const MAX_USER_DATA_BYTES: usize = 64 * 1024;
/// Most SSH keys one VM may be given.
pub const MAX_SSH_KEYS: usize = 64;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// What a user may say about the guest when creating or reinstalling a VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestRequest {
    /// The hostname (an RFC 1123 label); default from the VM's name.
    pub hostname: Option<String>,
    /// A root password (hashed before it is kept; never shown again).
    pub password: Option<Secret>,
    /// OpenSSH public keys for root.
    pub ssh_keys: Vec<String>,
    /// The user's own user-data (`#cloud-config` or a `#!` script), run after vmm's.
    pub user_data: Option<String>,
    /// Recipes to run.
    pub recipe_ids: Vec<RecipeId>,
}

/// What vmm keeps to write a VM's seed again (on reinstall, or when an address changes).
/// The password is kept only as its SHA-512 crypt hash.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSettings {
    /// The hostname.
    pub hostname: String,
    /// SHA-512 crypt hash of the root password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// OpenSSH public keys, normalised.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// The user's own user-data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// The recipes to run, as they were when the VM was installed (a recipe changed or
    /// deleted later does not change what a seed written again says).
    #[serde(default)]
    pub recipes: Vec<RecipeRun>,
    /// How many times the VM was installed; part of the instance id, so that cloud-init
    /// runs again after a reinstall.
    #[serde(default)]
    pub generation: u32,
}

/// A recipe as a VM's install runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeRun {
    /// The recipe.
    pub id: RecipeId,
    /// Its name.
    pub name: String,
    /// Its script.
    pub script: String,
}

impl From<&Recipe> for RecipeRun {
    fn from(r: &Recipe) -> Self {
        Self { id: r.id, name: r.name.clone(), script: r.script.clone() }
    }
}

impl std::fmt::Debug for GuestSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestSettings")
            .field("hostname", &self.hostname)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .field("ssh_keys", &self.ssh_keys.len())
            .field("user_data", &self.user_data.as_ref().map(String::len))
            .field("recipes", &self.recipes.iter().map(|r| &r.name).collect::<Vec<_>>())
            .field("generation", &self.generation)
            .finish()
    }
}

/// Checks an RFC 1123 host label: 1 to 63 characters of `a-z`, `0-9` and `-`, not at
/// either end.
///
/// ```
/// use vmm_core::guest::validate_hostname;
/// assert!(validate_hostname("web-1").is_ok());
/// for bad in ["", "-web", "web-", "Web", "web.example", "a".repeat(64).as_str(), "we b"] {
///     assert!(validate_hostname(bad).is_err(), "{bad}");
/// }
/// ```
pub fn validate_hostname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "hostname",
            "must be an RFC 1123 label: 1 to 63 of a-z, 0-9 and '-', not at either end",
        ))
    }
}

/// A hostname from a VM's display name: lower-cased, other characters turned into `-`;
/// `vm-<id>` when nothing is left.
pub fn default_hostname(name: &str, id: VmId) -> String {
    let mut out = String::new();
    for c in name.chars() {
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            _ if !out.ends_with('-') => out.push('-'),
            _ => {}
        }
    }
    let out: String = out.trim_matches('-').chars().take(63).collect();
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        format!("vm-{}", &id.to_string()[..8])
    } else {
        out
    }
}

/// Parses an OpenSSH public key line; the normalised line (`type base64 comment`).
pub fn parse_ssh_key(line: &str) -> Result<String> {
    let key = ssh_key::PublicKey::from_openssh(line.trim())
        .map_err(|_| Error::invalid("ssh_keys", "a key is not an OpenSSH public key"))?;
    key.to_openssh().map_err(|_| Error::invalid("ssh_keys", "a key cannot be written back"))
}

/// The SHA-256 fingerprint of an OpenSSH public key line (`SHA256:…`).
pub fn ssh_key_fingerprint(line: &str) -> Result<String> {
    let key = ssh_key::PublicKey::from_openssh(line.trim())
        .map_err(|_| Error::invalid("public_key", "is not an OpenSSH public key"))?;
    Ok(key.fingerprint(ssh_key::HashAlg::Sha256).to_string())
}

/// The SHA-512 crypt hash of a password (what `/etc/shadow` and cloud-init's
/// `hashed_passwd` take), with a random salt.
pub fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > 1024 {
        return Err(Error::invalid("password", format!("must be {MIN_PASSWORD_CHARS} to 1024 characters")));
    }
    if password.chars().any(char::is_control) {
        return Err(Error::invalid("password", "must not contain control characters"));
    }
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|_| Error::invalid("password", "cannot be hashed"))?;
    sha_crypt::sha512_simple(password, &params).map_err(|_| Error::invalid("password", "cannot be hashed"))
}

/// The first line of user-data: what kind it is. Only these are accepted.
fn user_data_kind(user_data: &str) -> Option<&'static str> {
    let first = user_data.lines().next().unwrap_or_default().trim_end();
    if first == "#cloud-config" {
        Some("text/cloud-config")
    } else if first.starts_with("#!") {
        Some("text/x-shellscript")
    } else {
        None
    }
}

impl GuestRequest {
    /// Checks the request and makes the settings to keep (the password hashed). `name` and
    /// `id` give the default hostname; `recipes` are those of `recipe_ids`, fetched and
    /// checked against the image by the caller.
    pub fn settings(&self, name: &str, id: VmId, recipes: &[Recipe]) -> Result<GuestSettings> {
        let hostname = match &self.hostname {
            Some(h) => {
                validate_hostname(h)?;
                h.clone()
            }
            None => default_hostname(name, id),
        };
        if self.ssh_keys.len() > MAX_SSH_KEYS {
            return Err(Error::invalid("ssh_keys", format!("at most {MAX_SSH_KEYS} keys")));
        }
        let ssh_keys = self.ssh_keys.iter().map(|k| parse_ssh_key(k)).collect::<Result<Vec<_>>>()?;
        if let Some(user_data) = &self.user_data {
            if user_data.len() > MAX_USER_DATA_BYTES {
                return Err(Error::invalid(
                    "user_data",
                    format!("is over {} KiB", MAX_USER_DATA_BYTES / 1024),
                ));
            }
            if user_data.contains('\0') {
                return Err(Error::invalid("user_data", "must not contain NUL bytes"));
            }
            if user_data_kind(user_data).is_none() {
                return Err(Error::invalid("user_data", "must start with #cloud-config or a #! script line"));
            }
        }
        let password_hash = self.password.as_ref().map(|p| hash_password(p.expose())).transpose()?;
        Ok(GuestSettings {
            hostname,
            password_hash,
            ssh_keys,
            user_data: self.user_data.clone(),
            recipes: recipes.iter().map(RecipeRun::from).collect(),
            generation: 0,
        })
    }
}

/// One NIC as the guest should configure it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSetup {
    /// Its MAC address.
    pub mac: String,
    /// Its addresses with their prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// The pool's gateway.
    pub gateway: Option<IpAddr>,
    /// The pool's DNS servers.
    pub dns: Vec<IpAddr>,
}

/// The three files of a NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFiles {
    /// `meta-data`: instance id and hostname.
    pub meta_data: String,
    /// `user-data`: `#cloud-config`, or a MIME multipart with the user's own part.
    pub user_data: String,
    /// `network-config`: version 2.
    pub network_config: String,
}

/// The instance id of a VM at an install generation: cloud-init runs again when it changes.
pub fn instance_id(vm: VmId, generation: u32) -> String {
    if generation == 0 {
        vm.to_string()
    } else {
        format!("{vm}-{generation}")
    }
}

/// JSON in which the characters YAML refuses (DEL, C1 controls, U+FFFE, U+FFFF) or reads as
/// line breaks (U+0085, U+2028, U+2029), and the byte order mark, are `\uXXXX` escapes:
/// cloud-init reads the files as YAML. Everything else stays UTF-8 as it is; characters
/// beyond U+FFFF in particular, which YAML readers do not join back from surrogate escapes.
fn pretty(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if yaml_refuses_or_folds(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters YAML 1.1 does not take as they are inside a quoted string (all in the BMP).
fn yaml_refuses_or_folds(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

/// The seed of a VM.
pub fn seed_files(vm: VmId, settings: &GuestSettings, nics: &[NicSetup]) -> SeedFiles {
    let meta_data = pretty(&json!({
        "instance-id": instance_id(vm, settings.generation),
        "local-hostname": settings.hostname,
    }));

    let mut root = Map::new();
    root.insert("name".into(), json!("root"));
    root.insert("lock_passwd".into(), json!(settings.password_hash.is_none()));
    if let Some(hash) = &settings.password_hash {
        root.insert("hashed_passwd".into(), json!(hash));
    }
    if !settings.ssh_keys.is_empty() {
        root.insert("ssh_authorized_keys".into(), json!(settings.ssh_keys));
    }
    let mut config = Map::new();
    config.insert("hostname".into(), json!(settings.hostname));
    config.insert("preserve_hostname".into(), json!(false));
    config.insert("disable_root".into(), json!(false));
    config.insert("ssh_pwauth".into(), json!(settings.password_hash.is_some()));
    config.insert("users".into(), json!([Value::Object(root)]));
    // The seed is rewritten when an address is added or removed, with the same instance
    // id: cloud-init applies the network config again at each boot to pick that up.
    config.insert("updates".into(), json!({"network": {"when": ["boot-new-instance", "boot", "hotplug"]}}));
    if !settings.recipes.is_empty() {
        let runcmd: Vec<Value> = settings.recipes.iter().map(|r| json!(["sh", "-c", r.script])).collect();
        config.insert("runcmd".into(), Value::Array(runcmd));
    }
    let cloud_config = format!("#cloud-config\n{}\n", pretty(&Value::Object(config)));
    let user_data = match &settings.user_data {
        None => cloud_config,
        Some(own) => multipart(&cloud_config, own),
    };

    let mut ethernets = Map::new();
    let mut default_v4 = false;
    let mut default_v6 = false;
    for (i, nic) in nics.iter().enumerate() {
        let mut eth = Map::new();
        eth.insert("match".into(), json!({ "macaddress": nic.mac }));
        eth.insert("set-name".into(), json!(format!("eth{i}")));
        let addresses: Vec<String> = nic.addresses.iter().map(|(a, p)| format!("{a}/{p}")).collect();
        eth.insert("addresses".into(), json!(addresses));
        if let Some(gw) = nic.gateway {
            // One default route per address family: the first NIC's that has one.
            let (to, taken) =
                if gw.is_ipv4() { ("0.0.0.0/0", &mut default_v4) } else { ("::/0", &mut default_v6) };
            if !*taken {
                *taken = true;
                eth.insert("routes".into(), json!([{ "to": to, "via": gw.to_string() }]));
            }
        }
        if !nic.dns.is_empty() {
            let dns: Vec<String> = nic.dns.iter().map(ToString::to_string).collect();
            eth.insert("nameservers".into(), json!({ "addresses": dns }));
        }
        ethernets.insert(format!("nic{i}"), Value::Object(eth));
    }
    let network_config = pretty(&json!({ "version": 2, "ethernets": ethernets }));
    SeedFiles { meta_data, user_data, network_config }
}

/// vmm's cloud-config and the user's own user-data as one MIME multipart: the user's part
/// comes second, and its lists add to vmm's instead of replacing them.
fn multipart(cloud_config: &str, own: &str) -> String {
    let mut boundary = format!("vmm-{}", uuid::Uuid::new_v4().simple());
    while cloud_config.contains(&boundary) || own.contains(&boundary) {
        boundary = format!("vmm-{}", uuid::Uuid::new_v4().simple());
    }
    let kind = user_data_kind(own).unwrap_or("text/x-shellscript");
    let mut out = String::new();
    out.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n"));
    out.push_str(&format!("--{boundary}\nContent-Type: text/cloud-config; charset=\"utf-8\"\n"));
    out.push_str("Content-Disposition: attachment; filename=\"vmm.cfg\"\n\n");
    out.push_str(cloud_config);
    out.push_str(&format!("\n--{boundary}\nContent-Type: {kind}; charset=\"utf-8\"\n"));
    out.push_str("Merge-Type: list(append)+dict(no_replace,recurse_list)+str()\n");
    out.push_str("Content-Disposition: attachment; filename=\"user-data\"\n\n");
    out.push_str(own);
    // The line break before a boundary belongs to the boundary: the part is `own` exactly.
    out.push_str(&format!("\n--{boundary}--\n"));
    out
}

/// Sector size of the seed volume: a CD-ROM reads in 2048-byte blocks, and Linux mounts a
/// FAT file system on one only when its sectors are that large.
const SEED_SECTOR: u16 = 2048;

/// The seed volume: a VFAT file system labelled `CIDATA` holding the three files.
pub fn seed_image(files: &SeedFiles) -> Result<Vec<u8>> {
    let payload = files.meta_data.len() + files.user_data.len() + files.network_config.len();
    let size = (payload * 2 + 512 * 1024).div_ceil(usize::from(SEED_SECTOR)) * usize::from(SEED_SECTOR);
    let mut disk = Cursor::new(vec![0u8; size.max(1024 * 1024)]);
    let fail = |e: std::io::Error| Error::backend("seed", e);
    let options = fatfs::FormatVolumeOptions::new()
        .bytes_per_sector(SEED_SECTOR)
        .volume_label(*b"CIDATA     ")
        .fat_type(fatfs::FatType::Fat12);
    fatfs::format_volume(&mut disk, options).map_err(fail)?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new()).map_err(fail)?;
        {
            let root = fs.root_dir();
            for (name, text) in [
                ("meta-data", &files.meta_data),
                ("user-data", &files.user_data),
                ("network-config", &files.network_config),
            ] {
                let mut file = root.create_file(name).map_err(fail)?;
                file.truncate().map_err(fail)?;
                file.write_all(text.as_bytes()).map_err(fail)?;
                file.flush().map_err(fail)?;
            }
        }
        fs.unmount().map_err(fail)?;
    }
    Ok(disk.into_inner())
}

/// Reads the three files back from a seed volume (for tests and fakes).
pub fn read_seed(image: &[u8]) -> Result<SeedFiles> {
    use std::io::Read;
    let fail = |e: std::io::Error| Error::backend("seed", e);
    let fs = fatfs::FileSystem::new(Cursor::new(image.to_vec()), fatfs::FsOptions::new()).map_err(fail)?;
    let read = |name: &str| -> Result<String> {
        let mut text = String::new();
        fs.root_dir().open_file(name).map_err(fail)?.read_to_string(&mut text).map_err(fail)?;
        Ok(text)
    };
    Ok(SeedFiles {
        meta_data: read("meta-data")?,
        user_data: read("user-data")?,
        network_config: read("network-config")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGz5Q2d5kq2xqk0fZ7J3o1n9Zr1v3p6yX7mWcJmQqG7A alice@example";

    fn settings() -> GuestSettings {
        GuestRequest {
            hostname: Some("web-1".into()),
            password: Some(Secret::new("correct horse battery")),
            ssh_keys: vec![KEY.into()],
            user_data: None,
            recipe_ids: vec![],
        }
        .settings("web 1", VmId::new(), &[])
        .unwrap()
    }

    #[test]
    fn requests_are_checked_and_passwords_kept_only_hashed() {
        let s = settings();
        assert!(s.password_hash.as_deref().unwrap().starts_with("$6$"));
        assert!(!format!("{s:?}").contains("correct horse"));
        let bad = |r: GuestRequest| r.settings("x", VmId::new(), &[]).unwrap_err().to_string();
        assert!(bad(GuestRequest { password: Some(Secret::new("short")), ..Default::default() })
            .contains("password"));
        assert!(bad(GuestRequest { ssh_keys: vec!["ssh-rsa nope".into()], ..Default::default() })
            .contains("ssh_keys"));
        assert!(bad(GuestRequest { hostname: Some("Bad_Host".into()), ..Default::default() })
            .contains("hostname"));
        let big = "#!/bin/sh\n".to_owned() + &"x".repeat(MAX_USER_DATA_BYTES);
        assert!(bad(GuestRequest { user_data: Some(big), ..Default::default() }).contains("user_data"));
        assert!(
            bad(GuestRequest { user_data: Some("hello".into()), ..Default::default() }).contains("user_data")
        );
        assert_eq!(default_hostname("Web Server #1 ", VmId::new()), "web-server-1");
        assert!(default_hostname("日本", VmId::new()).starts_with("vm-"));
    }

    #[test]
    fn hostile_text_stays_data() {
        let mut s = settings();
        s.hostname = "x".into();
        let recipe = Recipe {
            id: RecipeId::new(),
            name: "r".into(),
            os_families: vec!["linux".into()],
            script: "echo '\"}], \"evil\": true, #cloud-config\nrm -rf /'".into(),
            created_at: chrono::Utc::now(),
        };
        s.recipes = vec![RecipeRun::from(&recipe)];
        let files = seed_files(VmId::new(), &s, &[]);
        let parsed: Value =
            serde_json::from_str(files.user_data.strip_prefix("#cloud-config\n").unwrap()).unwrap();
        assert_eq!(parsed["runcmd"][0][2], recipe.script, "the script comes back byte for byte");
        assert!(parsed.get("evil").is_none());
        assert_eq!(
            parsed["updates"]["network"]["when"],
            json!(["boot-new-instance", "boot", "hotplug"]),
            "a rewritten network config applies at the next boot"
        );
    }

    #[test]
    fn files_are_yaml_whatever_the_text() {
        let mut s = settings();
        let odd = "é\u{85}\u{2028}\u{2029}\u{9f}\u{fffe}\u{feff}\u{7f}🚀";
        s.recipes = vec![RecipeRun { id: RecipeId::new(), name: "r".into(), script: odd.into() }];
        s.ssh_keys.push(format!("ssh-ed25519 AAAA {odd}"));
        let files = seed_files(VmId::new(), &s, &[]);
        // YAML 1.1's printable characters, less its line breaks other than \n.
        let yaml_safe = |c: char| {
            matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}'
                | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' | '\u{10000}'..)
        };
        for text in [&files.meta_data, &files.user_data, &files.network_config] {
            assert!(text.chars().all(yaml_safe), "{text}");
        }
        assert!(files.user_data.contains("é") && files.user_data.contains('🚀'), "the rest stays UTF-8");
        let parsed: Value =
            serde_json::from_str(files.user_data.strip_prefix("#cloud-config\n").unwrap()).unwrap();
        assert_eq!(parsed["runcmd"][0][2], odd, "escaped, and the same text");
    }

    #[test]
    fn network_config_has_one_default_route_per_family() {
        let nics = [
            NicSetup {
                mac: "52:54:00:00:00:01".into(),
                addresses: vec![("198.51.100.7".parse().unwrap(), 24)],
                gateway: Some("198.51.100.1".parse().unwrap()),
                dns: vec!["198.51.100.53".parse().unwrap()],
            },
            NicSetup {
                mac: "52:54:00:00:00:02".into(),
                addresses: vec![("203.0.113.9".parse().unwrap(), 24)],
                gateway: Some("203.0.113.1".parse().unwrap()),
                dns: vec![],
            },
        ];
        let files = seed_files(VmId::new(), &settings(), &nics);
        let net: Value = serde_json::from_str(&files.network_config).unwrap();
        assert_eq!(net["ethernets"]["nic0"]["addresses"][0], "198.51.100.7/24");
        assert_eq!(net["ethernets"]["nic0"]["routes"][0]["via"], "198.51.100.1");
        assert!(net["ethernets"]["nic1"].get("routes").is_none());
    }

    #[test]
    fn the_seed_volume_holds_the_files() {
        let mut s = settings();
        s.user_data = Some("#!/bin/sh\necho mine\n".into());
        let files = seed_files(VmId::new(), &s, &[]);
        assert!(files.user_data.starts_with("Content-Type: multipart/mixed"));
        let image = seed_image(&files).unwrap();
        assert_eq!(image.len() % 2048, 0);
        assert_eq!(read_seed(&image).unwrap(), files);
    }
}
