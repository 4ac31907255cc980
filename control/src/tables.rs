//! The compiled tables of a running node, listed as `ovs-ofctl
//! dump-flows` lists OpenFlow tables: one line per logical flow installed
//! in a table, with its priority, match, actions, how many classifier
//! rules it became and the Logical_Flow it came from.

use ironflow_pipeline::network::Pipeline;
use ironflow_pipeline::program::{DatapathProgram, Program};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One line per installed flow of `dp` (every datapath when none), the
/// tables of datapath groups under the group; and a summary.
pub fn list(program: &Program, datapath: Option<&str>) -> Result<Value, String> {
    let mut lines = Vec::new();
    let mut shown = 0;
    let mut dps: Vec<&DatapathProgram> = program
        .datapaths
        .values()
        .filter(|d| datapath.is_none_or(|n| d.name == n || d.uuid.to_string() == n))
        .collect();
    if let Some(name) = datapath {
        if dps.is_empty() {
            return Err(format!(
                "no datapath {name:?} in the running program (`ironflow show` lists the bindings)"
            ));
        }
    }
    dps.sort_by(|a, b| (&a.name, a.tunnel_key).cmp(&(&b.name, b.tunnel_key)));
    for dp in dps {
        shown += 1;
        let label = format!("datapath={} (key {})", dp.name, dp.tunnel_key);
        describe(dp, &label, &mut lines);
        for group in &dp.groups {
            if let Some(g) = program.dp_groups.get(group) {
                let label = format!("datapath={} group={}", dp.name, short(&group.to_string()));
                describe(g, &label, &mut lines);
            }
        }
    }
    Ok(json!({
        "datapaths": shown,
        "flows": program.flows,
        "rules": program.rules,
        "failures": program.failures.len(),
        "lines": lines,
    }))
}

fn short(uuid: &str) -> &str {
    &uuid[..uuid.len().min(8)]
}

/// The flows of `dp`'s own tables.
fn describe(dp: &DatapathProgram, label: &str, lines: &mut Vec<String>) {
    for pipeline in [Pipeline::Ingress, Pipeline::Egress] {
        for (table, t) in dp.tables(pipeline).iter().enumerate() {
            // A flow becomes one rule per conjunction: list it once, with
            // its rule count, highest priority first as OVS lists them.
            let mut flows: BTreeMap<(std::cmp::Reverse<u16>, String), (usize, String)> =
                BTreeMap::new();
            for r in t.classifier.rules() {
                let f = r.value;
                let e = flows
                    .entry((std::cmp::Reverse(f.priority), f.uuid.to_string()))
                    .or_insert_with(|| {
                        (
                            0,
                            format!("match=({}) actions=({})", f.match_text, f.actions),
                        )
                    });
                e.0 += 1;
            }
            let stage = t.stage_name.as_deref().unwrap_or("-");
            for ((priority, uuid), (rules, text)) in flows {
                lines.push(format!(
                    "{label} {pipeline} table={table} ({stage}) priority={} rules={rules} {text} lflow={}",
                    priority.0,
                    short(&uuid)
                ));
            }
        }
    }
}
