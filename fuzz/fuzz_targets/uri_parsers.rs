//! Store and node URI parsers: arbitrary text never panics, and whatever parses has a
//! `Debug` that does not show a password.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_backends::{NodeConfig, StoreConfig};
use vmm_core::VirtType;

fuzz_target!(|input: &str| {
    if let Ok(store) = StoreConfig::parse(input) {
        let shown = format!("{store:?}");
        if let Some(password) = url_password(input) {
            assert!(!shown.contains(&format!(":{password}@")), "{shown}");
        }
    }
    let _ = NodeConfig::new("fuzz", input, VirtType::Qemu).map(|n| format!("{n:?}"));
});

fn url_password(s: &str) -> Option<String> {
    let rest = s.split("://").nth(1)?;
    let userinfo = rest.split('@').next().filter(|_| rest.contains('@'))?;
    let password = userinfo.split_once(':')?.1;
    (password.len() > 3).then(|| password.to_owned())
}
