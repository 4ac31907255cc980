//! Fuzz target: Geneve decapsulation with OVN's option on any frame.
#![no_main]

use ironflow_tunnel::geneve::decap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decap(data) {
        assert!(d.inner_offset <= data.len());
    }
});
