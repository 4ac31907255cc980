//! Fuzz target: flow-key extraction and the header rewrites on any frame.
#![no_main]

use ironflow_datapath::extract::extract_packet;
use ironflow_datapath::packet::Packet;
use ironflow_datapath::rewrite;
use ironflow_pipeline::lflow::symbols::KeyField;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(mut pkt) = Packet::from_slice(data) else {
        return;
    };
    let (mut key, _) = extract_packet(&mut pkt, 1);
    // Rewrites must leave malformed packets alone, never panic.
    let _ = rewrite::dec_ttl(&mut pkt, &mut key);
    for field in [KeyField::EthSrc, KeyField::Nw4Dst, KeyField::Ip6Src, KeyField::TpDst, KeyField::NdTarget] {
        let _ = rewrite::set(&mut pkt, &mut key, field, 0x0102_0304);
    }
});
