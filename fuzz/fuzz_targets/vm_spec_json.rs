//! Arbitrary bytes as a VM spec: parsing and validation never panic, and a spec that
//! validates survives a JSON round trip (but its password, which is never written out).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::VmSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<VmSpec>(data) else { return };
    if spec.validate().is_ok() {
        let again: VmSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(again, VmSpec { password: None, ..spec });
    }
});
