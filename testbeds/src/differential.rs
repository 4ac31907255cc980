//! Differential tracing: the same probe packet through real `ovn-trace`
//! and through ironflow, on the same live Southbound database.
//!
//! `ovn-trace --minimal` prints only the actions that change the packet
//! (with moves resolved to constants) and the outputs, nesting generated
//! packets and recirculations in braces; [`ovn_trace_outputs`] replays
//! that into the final header fields of each output.

use crate::central::OvnCentral;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::process::Command;

/// A probe: where it enters and what it is, in `ovn-trace`'s terms.
pub struct Probe {
    pub name: &'static str,
    pub datapath: &'static str,
    pub microflow: &'static str,
    /// `--ct` flags, one per recirculation.
    pub ct: &'static [&'static str],
    pub lb_dst: Option<&'static str>,
}

/// One output: the port and the header fields that were set on the way.
pub type Seen = (String, BTreeMap<String, String>);

/// Runs `ovn-trace --minimal` for `probe` and replays its output.
pub fn ovn_trace_outputs(central: &OvnCentral, probe: &Probe) -> Result<Vec<Seen>> {
    let mut cmd = Command::new("ovn-trace");
    cmd.arg(format!("--db={}", central.sb_remote()))
        .arg("--minimal");
    for ct in probe.ct {
        cmd.arg(format!("--ct={ct}"));
    }
    if let Some(lb) = probe.lb_dst {
        cmd.arg(format!("--lb-dst={lb}"));
    }
    let out = cmd
        .arg(probe.datapath)
        .arg(probe.microflow)
        .output()
        .context("run ovn-trace")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "ovn-trace failed for {}: {}",
            probe.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(replay_minimal(&text))
}

/// The pseudo-field recording which controller action made a packet.
pub const GENERATED_BY: &str = "generated_by";

/// Actions whose block runs on a new packet.
const GENERATORS: [&str; 10] = [
    "arp",
    "nd_ns",
    "nd_na",
    "nd_na_router",
    "icmp4",
    "icmp4_error",
    "icmp6",
    "icmp6_error",
    "tcp_reset",
    "sctp_abort",
];

/// Replays `ovn-trace --minimal` text: assignments per nesting level,
/// a snapshot at every `output("port");`.
pub fn replay_minimal(text: &str) -> Vec<Seen> {
    let mut stack: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    let mut outputs = Vec::new();
    let mut ttl = None;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(flow) = line.strip_prefix("# ") {
            // The microflow line: the starting TTL, for `ip.ttl--`.
            ttl = flow
                .split(',')
                .find_map(|kv| kv.strip_prefix("nw_ttl="))
                .and_then(|v| v.parse::<u32>().ok());
        } else if line.ends_with('{') {
            let mut top = stack.last().cloned().unwrap_or_default();
            // A block that makes a new packet names it, as ironflow's
            // `generated_by` does.
            let block = line.split([' ', '(']).next().unwrap_or("");
            if GENERATORS.contains(&block) {
                top.insert(GENERATED_BY.to_string(), block.to_string());
            }
            stack.push(top);
        } else if line.starts_with('}') {
            if stack.len() > 1 {
                stack.pop();
            }
        } else if let Some(port) = line
            .strip_prefix("output(\"")
            .and_then(|r| r.strip_suffix("\");"))
        {
            outputs.push((port.to_string(), stack.last().cloned().unwrap_or_default()));
        } else if line == "ip.ttl--;" {
            let top = stack.last_mut().expect("stack never empty");
            let now = top
                .get("ip.ttl")
                .and_then(|v| v.parse::<u32>().ok())
                .or(ttl)
                .unwrap_or(0);
            top.insert("ip.ttl".into(), now.saturating_sub(1).to_string());
        } else if let Some((field, value)) =
            line.strip_suffix(';').and_then(|l| l.split_once(" = "))
        {
            stack
                .last_mut()
                .expect("stack never empty")
                .insert(field.to_string(), value.to_string());
        }
    }
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_nested_minimal_output() {
        let text = "# ip,reg14=0x2,nw_ttl=64,nw_frag=no\nct_lb_mark /* default */ {\n    reg0[6] = 0;\n    ip.ttl--;\n    eth.src = 00:00:00:c0:2e:c7;\n    icmp4 {\n        icmp4.type = 11;\n        output(\"web-1\");\n    };\n    output(\"sshd-2\");\n};\n";
        let seen = replay_minimal(text);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, "web-1");
        assert_eq!(seen[0].1["icmp4.type"], "11");
        assert_eq!(seen[0].1[GENERATED_BY], "icmp4");
        assert_eq!(seen[1].0, "sshd-2");
        assert_eq!(seen[1].1["ip.ttl"], "63");
        assert!(!seen[1].1.contains_key("icmp4.type"));
        assert!(!seen[1].1.contains_key(GENERATED_BY));
    }
}
