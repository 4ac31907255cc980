//! Parses and normalises every logical flow of a network, collecting what
//! fails: the engine of `ironflow lflows check`.

use super::action_check::check_actions;
use super::actions::parse_actions;
use super::expr::parse_match;
use super::names::DatapathNames;
use super::normalize::normalize;
use crate::network::{LogicalFlow, LogicalNetwork};
use crate::Uuid;

/// One flow that did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub uuid: Uuid,
    pub datapath: String,
    pub pipeline: crate::network::Pipeline,
    pub table: u8,
    pub priority: u16,
    /// `match` or `actions`.
    pub column: &'static str,
    pub text: String,
    pub error: String,
}

/// Totals over a network, plus every failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub flows: usize,
    pub ok: usize,
    pub failures: Vec<Failure>,
    /// Flows whose match can never hold on any of their datapaths (for
    /// example `ip4 && ip6`); they compile, to nothing.
    pub never_match: usize,
    /// Conjunctions over all flows and datapaths: the classifier entries
    /// the matches expand to.
    pub conjunctions: usize,
}

impl CheckReport {
    pub fn failed(&self) -> usize {
        self.flows - self.ok
    }
}

/// Checks every logical flow, on every datapath it applies to.
pub fn check_network(net: &LogicalNetwork) -> CheckReport {
    let mut report = CheckReport::default();
    // Name tables are per datapath; build each once.
    let names: std::collections::HashMap<Uuid, DatapathNames> = net
        .datapaths
        .values()
        .map(|dp| (dp.uuid, DatapathNames::new(net, dp)))
        .collect();
    for flow in net.logical_flows.values() {
        report.flows += 1;
        match check_flow(net, flow, &names, &mut report) {
            Ok(()) => report.ok += 1,
            Err(failure) => report.failures.push(*failure),
        }
    }
    report.failures.sort_by_key(|f| {
        (
            f.datapath.clone(),
            f.pipeline,
            f.table,
            std::cmp::Reverse(f.priority),
        )
    });
    report
}

fn check_flow(
    net: &LogicalNetwork,
    flow: &LogicalFlow,
    names: &std::collections::HashMap<Uuid, DatapathNames>,
    report: &mut CheckReport,
) -> Result<(), Box<Failure>> {
    let datapaths = net.flow_datapaths(flow);
    let first_dp = datapaths
        .first()
        .and_then(|u| net.datapaths.get(u))
        .map_or("-", |d| d.name.as_str());
    let failure = |dp: &str, column: &'static str, text: &str, error: String| {
        Box::new(Failure {
            uuid: flow.uuid,
            datapath: dp.to_string(),
            pipeline: flow.pipeline,
            table: flow.table_id,
            priority: flow.priority,
            column,
            text: text.to_string(),
            error,
        })
    };
    let actions = parse_actions(&flow.actions)
        .map_err(|e| failure(first_dp, "actions", &flow.actions, e.to_string()))?;
    check_actions(&actions, flow.pipeline)
        .map_err(|e| failure(first_dp, "actions", &flow.actions, e))?;
    let expr = parse_match(&flow.match_)
        .map_err(|e| failure(first_dp, "match", &flow.match_, e.to_string()))?;
    let mut matches_somewhere = false;
    for uuid in datapaths {
        let (Some(dp), Some(resolver)) = (net.datapaths.get(uuid), names.get(uuid)) else {
            continue;
        };
        let normal = normalize(&expr, resolver)
            .map_err(|e| failure(&dp.name, "match", &flow.match_, e.to_string()))?;
        matches_somewhere |= !normal.never_matches();
        report.conjunctions += normal.0.len();
    }
    if !matches_somewhere {
        report.never_match += 1;
    }
    Ok(())
}
