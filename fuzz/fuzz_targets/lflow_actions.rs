//! Fuzz target: any bytes as a Logical_Flow actions column — the parser,
//! the round trip and the symbol-table check must never panic, and a
//! parsed program must format to text that parses to the same program.
#![no_main]

use ironflow_pipeline::lflow::action_check::check_actions;
use ironflow_pipeline::lflow::actions::parse_actions;
use ironflow_pipeline::network::Pipeline;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(a) = parse_actions(text) {
        let again = parse_actions(&a.to_string()).expect("formatted actions re-parse");
        assert_eq!(again, a);
        let _ = check_actions(&a, Pipeline::Ingress);
        let _ = check_actions(&a, Pipeline::Egress);
    }
});
