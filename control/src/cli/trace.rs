//! `ironflow trace`: ovn-trace's arguments, and its output as text or JSON,
//! on a network read from the SB or a snapshot, or (`--live`) on the
//! program a running node forwards with.

use ironflow_pipeline::classifier::Key;
use ironflow_pipeline::interp::Outcome;
use ironflow_pipeline::network::{LogicalNetwork, Pipeline};
use ironflow_pipeline::program::Program;
use ironflow_pipeline::trace::header_fields;
use serde_json::{json, Value};
use std::fmt::Write;

/// How much to print (ovn-trace's `--detailed`, `--summary`, `--minimal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Detail {
    Detailed,
    Summary,
    Minimal,
}

/// What to trace and how to print it: the command line's arguments, or
/// the same carried in a `trace` request to a running node.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub datapath: String,
    pub microflow: String,
    pub ct: Vec<String>,
    pub lb_dst: Option<String>,
    pub chassis: Option<String>,
    pub detail: Detail,
    /// `text` or `json`.
    pub format: String,
}

impl TraceOptions {
    /// As a management request.
    pub fn to_request(&self) -> Value {
        json!({
            "command": "trace",
            "datapath": self.datapath,
            "microflow": self.microflow,
            "ct": self.ct,
            "lb_dst": self.lb_dst,
            "detail": match self.detail {
                Detail::Detailed => "detailed",
                Detail::Summary => "summary",
                Detail::Minimal => "minimal",
            },
            "format": self.format,
        })
    }

    fn from_request(r: &Value, chassis: &str) -> Result<TraceOptions, String> {
        let text = |name: &str| r.get(name).and_then(Value::as_str).map(str::to_string);
        let detail = match text("detail").as_deref() {
            None | Some("detailed") => Detail::Detailed,
            Some("summary") => Detail::Summary,
            Some("minimal") => Detail::Minimal,
            Some(other) => return Err(format!("unknown detail {other:?}")),
        };
        Ok(TraceOptions {
            datapath: text("datapath").ok_or("the request lacks \"datapath\"")?,
            microflow: text("microflow").ok_or("the request lacks \"microflow\"")?,
            ct: r
                .get("ct")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            lb_dst: text("lb_dst"),
            chassis: Some(chassis.to_string()),
            detail,
            format: text("format").unwrap_or_else(|| "text".into()),
        })
    }
}

/// Traces `opts` through `program` (compiled from `net`) and renders it.
pub fn render(
    net: &LogicalNetwork,
    program: &Program,
    opts: &TraceOptions,
) -> Result<String, String> {
    let ct = opts
        .ct
        .iter()
        .map(|f| ironflow_pipeline::trace::parse_ct_flags(f))
        .collect::<Result<Vec<_>, _>>()?;
    let lb_dst = opts.lb_dst.as_deref().map(parse_lb_dst).transpose()?;
    let req = ironflow_pipeline::trace::TraceRequest {
        datapath: &opts.datapath,
        microflow: &opts.microflow,
        ct,
        lb_dst,
        chassis: opts.chassis.as_deref(),
    };
    let outcome = ironflow_pipeline::trace::trace(program, net, &req)?;
    match opts.format.as_str() {
        "json" => Ok(format!("{}\n", to_json(&outcome))),
        "text" => {
            let dp = net
                .find_datapath(&opts.datapath)
                .ok_or_else(|| format!("no datapath {:?}", opts.datapath))?;
            let input = ironflow_pipeline::trace::microflow_key(net, dp, &opts.microflow)?;
            Ok(to_text(&outcome, &input, opts.detail, net))
        }
        other => Err(format!("unknown --format {other:?}: use text or json")),
    }
}

/// A running node's answer to a `trace` request: the trace, as this
/// chassis forwards (ports elsewhere are reached through tunnels), on the
/// program it is forwarding with right now.
pub fn live(
    net: &LogicalNetwork,
    program: &Program,
    chassis: &str,
    request: &Value,
) -> Result<Value, String> {
    let opts = TraceOptions::from_request(request, chassis)?;
    let output = render(net, program, &opts)?;
    Ok(json!({ "chassis": chassis, "output": output }))
}

/// Parses `--lb-dst`: `IP`, `IP:PORT` or `[IPv6]:PORT`.
pub fn parse_lb_dst(text: &str) -> Result<(u128, Option<u16>), String> {
    let bad = || format!("bad --lb-dst {text:?}: write IP, IP:PORT or [IPv6]:PORT");
    let (addr, port) = if let Some(rest) = text.strip_prefix('[') {
        let (a, p) = rest.split_once(']').ok_or_else(bad)?;
        (a, p.strip_prefix(':'))
    } else if text.matches(':').count() == 1 {
        let (a, p) = text.split_once(':').ok_or_else(bad)?;
        (a, Some(p))
    } else {
        (text, None)
    };
    let ip = match addr.parse::<std::net::IpAddr>().map_err(|_| bad())? {
        std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => u128::from(v6),
    };
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| bad()))
        .transpose()?;
    Ok((ip, port))
}

pub fn to_json(out: &Outcome) -> Value {
    let fields = |key: &Key| -> Value {
        header_fields(key)
            .into_iter()
            .map(|(name, value)| {
                let v = match value {
                    ironflow_pipeline::trace::FieldValue::Number(n) => json!(n as u64),
                    other => json!(other.to_string()),
                };
                (name.to_string(), v)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "outputs": out.outputs.iter().map(|o| json!({
            "port": o.port,
            "datapath": o.datapath,
            "generated_by": o.generated_by,
            "tunnel": o.tunnel.as_ref().map(|t| json!({
                "chassis": t.chassis,
                "vni": t.datapath_key,
                "inport_key": t.inport_key,
                "outport_key": t.outport_key,
            })),
            "fields": fields(&o.key),
        })).collect::<Vec<_>>(),
        "drops": out.drops.iter().map(|d| json!({"datapath": d.datapath, "reason": d.reason})).collect::<Vec<_>>(),
        "conntrack": out.conntrack.iter().map(|c| json!({
            "datapath": c.datapath,
            "zone": c.zone,
            "ct_state": ct_flags(c.state),
        })).collect::<Vec<_>>(),
        "steps": out.steps.iter().map(|s| json!({
            "depth": s.depth,
            "datapath": s.datapath,
            "pipeline": s.pipeline.to_string(),
            "table": s.table,
            "stage": s.stage,
            "priority": s.flow.as_ref().map(|f| f.priority),
            "match": s.flow.as_ref().map(|f| f.match_text.clone()),
            "actions": s.flow.as_ref().map(|f| f.actions.to_string()),
            "lflow": s.flow.as_ref().map(|f| f.uuid.to_string()),
        })).collect::<Vec<_>>(),
    })
}

/// `ct_state` bits as `--ct` writes them (`est|trk`).
fn ct_flags(state: u32) -> String {
    use ironflow_pipeline::interp::ct_state::*;
    let names = [
        (NEW, "new"),
        (EST, "est"),
        (REL, "rel"),
        (RPL, "rpl"),
        (INV, "inv"),
        (TRK, "trk"),
        (SNAT, "snat"),
        (DNAT, "dnat"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| state & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    set.join("|")
}

pub fn to_text(out: &Outcome, input: &Key, detail: Detail, net: &LogicalNetwork) -> String {
    let mut s = String::new();
    if detail != Detail::Minimal {
        for c in &out.conntrack {
            let _ = writeln!(
                s,
                "conntrack on {}: zone {}, ct_state {}",
                c.datapath,
                c.zone,
                ct_flags(c.state)
            );
        }
    }
    if detail != Detail::Minimal {
        let name = |dp, key| net.port_name(dp, key).unwrap_or("").to_string();
        let mut previous: Option<&ironflow_pipeline::interp::Step> = None;
        for step in &out.steps {
            let indent = "    ".repeat(step.depth);
            let stage = step.stage.as_deref().unwrap_or("-");
            if detail == Detail::Detailed {
                // A header where a pipeline starts, as ovn-trace prints it.
                let new_pipeline = previous.is_none_or(|p| {
                    p.dp != step.dp
                        || p.pipeline != step.pipeline
                        || p.depth != step.depth
                        || p.table >= step.table
                });
                if new_pipeline {
                    let header = match step.pipeline {
                        Pipeline::Ingress => format!(
                            "ingress(dp={:?}, inport={:?})",
                            step.datapath,
                            name(step.dp, step.inport)
                        ),
                        Pipeline::Egress => format!(
                            "egress(dp={:?}, inport={:?}, outport={:?})",
                            step.datapath,
                            name(step.dp, step.inport),
                            name(step.dp, step.outport)
                        ),
                    };
                    let _ = writeln!(
                        s,
                        "\n{indent}{header}\n{indent}{}",
                        "-".repeat(header.len())
                    );
                }
                previous = Some(step);
            }
            match (&step.flow, detail) {
                (Some(f), Detail::Detailed) => {
                    let source = f
                        .source
                        .as_deref()
                        .map(|src| format!(" ({src})"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        s,
                        "{indent}{:>2}. {stage}{source}: {}, priority {}, uuid {}",
                        step.table,
                        f.match_text,
                        f.priority,
                        f.uuid.short()
                    );
                    for action in &f.actions.0 {
                        let _ = writeln!(s, "{indent}    {action};");
                    }
                }
                (Some(f), _) => {
                    let _ = writeln!(
                        s,
                        "{indent}{} {} {} ({stage}): {}",
                        step.datapath, step.pipeline, step.table, f.actions
                    );
                }
                (None, _) => {
                    let _ = writeln!(
                        s,
                        "{indent}{:>2}. {stage}: no match (implicit drop)",
                        step.table
                    );
                }
            }
        }
        s.push('\n');
    }
    let before: std::collections::BTreeMap<_, _> = header_fields(input).into_iter().collect();
    for o in &out.outputs {
        if let Some(g) = o.generated_by {
            let _ = writeln!(s, "{g} {{");
        }
        for (name, value) in header_fields(&o.key) {
            if before.get(name) != Some(&value) {
                let _ = writeln!(s, "    {name} = {value};");
            }
        }
        match &o.tunnel {
            Some(t) => {
                let _ = writeln!(
                    s,
                    "    output({:?}); /* on {}: tunnel to chassis {:?}, vni {}, ports {} -> {} */",
                    o.port, o.datapath, t.chassis, t.datapath_key, t.inport_key, t.outport_key
                );
            }
            None => {
                let _ = writeln!(s, "    output({:?}); /* on {} */", o.port, o.datapath);
            }
        }
        if o.generated_by.is_some() {
            let _ = writeln!(s, "}};");
        }
    }
    for d in &out.drops {
        let _ = writeln!(s, "drop on {}: {}", d.datapath, d.reason);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lb_destinations() {
        assert_eq!(parse_lb_dst("10.0.0.5:80").unwrap(), (0x0a000005, Some(80)));
        assert_eq!(parse_lb_dst("10.0.0.5").unwrap(), (0x0a000005, None));
        assert_eq!(
            parse_lb_dst("[fd00::2]:8080").unwrap(),
            (0xfd00_u128 << 112 | 2, Some(8080))
        );
        assert_eq!(parse_lb_dst("fd00::2").unwrap().1, None);
        assert!(parse_lb_dst("10.0.0.5:http")
            .unwrap_err()
            .contains("IP:PORT"));
    }
}
