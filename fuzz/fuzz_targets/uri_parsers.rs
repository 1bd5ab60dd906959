//! Store and node URI parsers: arbitrary text never panics; a PostgreSQL URL shows its
//! password neither in `Debug` nor in an error; a node URI the policy accepts can neither
//! run a program nor reach anything but a node's `/system` daemon.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_backends::{NodeConfig, StoreConfig};
use vmm_core::{NodeUriPolicy, VirtType};

fuzz_target!(|input: &str| {
    let password = url_password(input);
    match StoreConfig::parse(input) {
        Ok(store @ StoreConfig::Postgres { .. }) => {
            let shown = format!("{store:?}");
            if let Some(password) = &password {
                assert!(!shown.contains(&format!(":{password}@")), "{shown}");
            }
        }
        Ok(_) => {}
        Err(e) => {
            if let Some(password) = &password {
                let shown = e.to_string();
                assert!(!shown.contains(&format!(":{password}@")), "{shown}");
            }
        }
    }
    let policy = NodeUriPolicy::for_tests().allow_query_param("keyfile").expect("allowable");
    if policy.check(input).is_ok() && !input.starts_with("memory://") {
        let url = url::Url::parse(input).expect("an accepted URI parses");
        assert!(
            input == "test:///default" || url.path() == "/system",
            "accepted a path other than /system: {input}"
        );
        for (key, _) in url.query_pairs() {
            assert_eq!(key, "keyfile", "accepted a query parameter the operator did not allow: {input}");
        }
        assert!(url.fragment().is_none() && url.password().is_none(), "{input}");
    }
    let _ = NodeConfig::new("fuzz", input, VirtType::Qemu).map(|n| format!("{n:?}"));
});

fn url_password(s: &str) -> Option<String> {
    let password = url::Url::parse(s).ok()?.password()?.to_owned();
    (password.len() > 3).then_some(password)
}
