//! Store and node URI parsers: arbitrary text never panics, and a PostgreSQL URL that
//! parses has a `Debug` that does not show its password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_backends::{NodeConfig, StoreConfig};
use vmm_core::VirtType;

fuzz_target!(|input: &str| {
    if let Ok(store @ StoreConfig::Postgres { .. }) = StoreConfig::parse(input) {
        let shown = format!("{store:?}");
        if let Some(password) = url_password(input) {
            assert!(!shown.contains(&format!(":{password}@")), "{shown}");
        }
    }
    let _ = NodeConfig::new("fuzz", input, VirtType::Qemu).map(|n| format!("{n:?}"));
});

fn url_password(s: &str) -> Option<String> {
    let password = url::Url::parse(s).ok()?.password()?.to_owned();
    (password.len() > 3).then_some(password)
}
