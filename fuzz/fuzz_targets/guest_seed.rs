//! Arbitrary guest settings and NICs through the NoCloud seed: whatever the text (hostname,
//! keys, recipes, the user's own user-data), the files are well-formed JSON (or a MIME
//! multipart whose parts come back exactly), every value comes back as given, and the
//! VFAT image reads back to the same files.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vmm_core::guest::{read_seed, seed_files, seed_image, GuestSettings, NicSetup, RecipeRun};
use vmm_core::{RecipeId, VmId};

#[derive(Debug, Arbitrary)]
struct Input {
    hostname: String,
    password_hash: Option<String>,
    ssh_keys: Vec<String>,
    user_data: Option<String>,
    scripts: Vec<String>,
    generation: u32,
    nics: Vec<(u32, u8, Option<u32>)>,
}

fuzz_target!(|input: Input| {
    let vm: VmId = "0190a5b2-0000-7000-8000-00000000abcd".parse().unwrap();
    let settings = GuestSettings {
        hostname: input.hostname,
        password_hash: input.password_hash,
        ssh_keys: input.ssh_keys,
        user_data: input.user_data,
        recipes: input
            .scripts
            .into_iter()
            .map(|script| RecipeRun { id: "0190a5b2-0000-7000-8000-00000000abce".parse::<RecipeId>().unwrap(), name: "r".into(), script })
            .collect(),
        generation: input.generation,
    };
    let nics: Vec<NicSetup> = input
        .nics
        .iter()
        .take(16)
        .enumerate()
        .map(|(i, (a, p, gw))| NicSetup {
            mac: vm.nic_mac(i as u8),
            addresses: vec![(IpAddr::V4(Ipv4Addr::from(*a)), p % 33)],
            gateway: gw.map(|g| IpAddr::V4(Ipv4Addr::from(g))),
            dns: vec![],
        })
        .collect();
    let files = seed_files(vm, &settings, &nics);
    // YAML 1.1's printable characters less its line breaks other than \n, whatever the text:
    // YAML readers refuse or fold some characters JSON leaves raw.
    let yaml_safe = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' | '\u{10000}'..)
    };
    let mut generated = vec![&files.meta_data, &files.network_config];
    if settings.user_data.is_none() {
        // With the user's own user-data, the multipart carries it as they wrote it.
        generated.push(&files.user_data);
    }
    assert!(generated.iter().all(|t| t.chars().all(yaml_safe)));

    let meta: serde_json::Value = serde_json::from_str(&files.meta_data).expect("meta-data is JSON");
    assert_eq!(meta["local-hostname"], settings.hostname.as_str());
    let net: serde_json::Value = serde_json::from_str(&files.network_config).expect("network-config is JSON");
    assert_eq!(net["ethernets"].as_object().map_or(0, |e| e.len()), nics.len());

    let config_text = match &settings.user_data {
        None => files.user_data.as_str(),
        Some(own) => {
            let first = files.user_data.lines().next().unwrap();
            let boundary = first.split("boundary=\"").nth(1).unwrap().trim_end_matches('"');
            let delimiter = format!("\n--{boundary}");
            let parts: Vec<&str> = files.user_data.split(delimiter.as_str()).collect();
            assert_eq!(parts.len(), 4, "preamble, two parts, the closing delimiter");
            let body = |part: &str| part.split_once("\n\n").map(|(_, b)| b.to_owned()).unwrap();
            assert_eq!(&body(parts[2]), own, "the user's part comes back exactly");
            assert_eq!(parts[3], "--\n");
            let config = body(parts[1]);
            assert!(config.starts_with("#cloud-config\n"));
            let config: serde_json::Value = serde_json::from_str(&config["#cloud-config\n".len()..]).unwrap();
            check_config(&config, &settings);
            return roundtrip(&files);
        }
    };
    let config = config_text.strip_prefix("#cloud-config\n").expect("a #cloud-config document");
    let config: serde_json::Value = serde_json::from_str(config).expect("user-data is JSON");
    check_config(&config, &settings);
    roundtrip(&files);
});

fn check_config(config: &serde_json::Value, settings: &GuestSettings) {
    assert_eq!(config["hostname"], settings.hostname.as_str());
    let keys = &config["users"][0]["ssh_authorized_keys"];
    if settings.ssh_keys.is_empty() {
        assert!(keys.is_null());
    } else {
        assert_eq!(keys, &serde_json::json!(settings.ssh_keys));
    }
    for (i, r) in settings.recipes.iter().enumerate() {
        assert_eq!(config["runcmd"][i], serde_json::json!(["sh", "-c", r.script]));
    }
}

fn roundtrip(files: &vmm_core::guest::SeedFiles) {
    let image = seed_image(files).expect("a seed image");
    assert_eq!(&read_seed(&image).expect("it reads back"), files);
}
