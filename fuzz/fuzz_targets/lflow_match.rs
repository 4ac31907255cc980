//! Fuzz target: any bytes as a Logical_Flow match — lexer, parser, round
//! trip and normalisation must never panic, and a parsed match must format
//! to text that parses to the same tree.
#![no_main]

use ironflow_pipeline::lflow::expr::parse_match;
use ironflow_pipeline::lflow::normalize::{normalize, Resolver};
use libfuzzer_sys::fuzz_target;

struct AnyName;

impl Resolver for AnyName {
    fn port_key(&self, name: &str) -> Option<u32> {
        Some(name.len() as u32)
    }
    fn address_set(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![name.to_string(), "10.0.0.0/8".into(), "fe80::/64".into()])
    }
    fn port_group(&self, name: &str) -> Option<Vec<String>> {
        Some(vec![name.to_string()])
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(e) = parse_match(text) {
        let again = parse_match(&e.to_string()).expect("formatted match re-parses");
        assert_eq!(again, e);
        let _ = normalize(&e, &AnyName);
    }
});
