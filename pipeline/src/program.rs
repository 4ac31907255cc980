//! The compiled form of a logical network: for every datapath, its ingress
//! and egress pipelines as tables of classifiers over flow keys.
//!
//! Compiling parses each logical flow's actions once, and normalises its
//! match once per datapath it applies to (port names differ between
//! datapaths). A flow that fails is recorded with the reason and left out;
//! the rest compile. The program is immutable: a new SB view compiles into
//! a new program, published whole.

use crate::classifier::Classifier;
use crate::lflow::action_check::check_actions;
use crate::lflow::actions::{parse_actions, Actions};
use crate::lflow::expr::{parse_match, MatchExpr, Value};
use crate::lflow::names::DatapathNames;
use crate::lflow::normalize::{normalize, Normalized};
use crate::network::{FlowScope, LogicalFlow, LogicalNetwork, Pipeline};
use crate::Uuid;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

/// One logical flow as the tables hold it.
#[derive(Debug)]
pub struct CompiledFlow {
    pub uuid: Uuid,
    pub priority: u16,
    pub match_text: String,
    pub actions: Actions,
    /// Where in northd the flow comes from (`northd.c:5809`), if known.
    pub source: Option<String>,
}

#[derive(Default)]
pub struct Table {
    pub stage_name: Option<String>,
    pub classifier: Classifier<Arc<CompiledFlow>>,
}

#[derive(Default)]
pub struct DatapathProgram {
    pub uuid: Uuid,
    pub name: String,
    pub tunnel_key: u32,
    /// A logical router (its conntrack uses the DNAT/SNAT zones).
    pub is_router: bool,
    pub ingress: Vec<Table>,
    pub egress: Vec<Table>,
    /// Datapath groups whose shared tables also apply here.
    pub groups: Vec<Uuid>,
}

impl DatapathProgram {
    pub fn tables(&self, pipeline: Pipeline) -> &[Table] {
        match pipeline {
            Pipeline::Ingress => &self.ingress,
            Pipeline::Egress => &self.egress,
        }
    }

    fn tables_mut(&mut self, pipeline: Pipeline) -> &mut Vec<Table> {
        match pipeline {
            Pipeline::Ingress => &mut self.ingress,
            Pipeline::Egress => &mut self.egress,
        }
    }
}

/// Conntrack zones, allocated as ovn-controller allocates them: one per
/// logical port, and a DNAT and an SNAT zone per logical router, numbered
/// from 1 in name order (ovn-controller's names: the port name,
/// `UUID_dnat`, `UUID_snat`). Zones are local to a chassis; only their
/// separation matters, not their numbers.
#[derive(Debug, Default)]
pub struct Zones {
    /// (datapath, port tunnel key) → zone.
    pub ports: HashMap<(Uuid, u32), u16>,
    pub dnat: HashMap<Uuid, u16>,
    pub snat: HashMap<Uuid, u16>,
}

impl Zones {
    fn allocate(net: &LogicalNetwork) -> Zones {
        enum Owner {
            Port(Uuid, u32),
            Dnat(Uuid),
            Snat(Uuid),
        }
        let mut owners: Vec<(String, Owner)> = net
            .ports
            .values()
            .map(|p| (p.name.clone(), Owner::Port(p.datapath, p.tunnel_key)))
            .collect();
        for dp in net
            .datapaths
            .values()
            .filter(|d| d.kind == crate::network::DatapathKind::Router)
        {
            owners.push((format!("{}_dnat", dp.uuid), Owner::Dnat(dp.uuid)));
            owners.push((format!("{}_snat", dp.uuid), Owner::Snat(dp.uuid)));
        }
        owners.sort_by(|a, b| a.0.cmp(&b.0));
        let mut zones = Zones::default();
        // Zone 0 is "no zone"; past 65535 owners there are no zones left.
        for ((_, owner), zone) in owners.into_iter().zip(1..=u16::MAX) {
            match owner {
                Owner::Port(dp, key) => zones.ports.insert((dp, key), zone),
                Owner::Dnat(dp) => zones.dnat.insert(dp, zone),
                Owner::Snat(dp) => zones.snat.insert(dp, zone),
            };
        }
        zones
    }
}

/// A logical flow that did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub uuid: Uuid,
    pub datapath: String,
    pub pipeline: Pipeline,
    pub table: u8,
    pub priority: u16,
    /// `match` or `actions`.
    pub column: &'static str,
    pub text: String,
    pub error: String,
}

#[derive(Default)]
pub struct Program {
    pub datapaths: HashMap<Uuid, DatapathProgram>,
    /// (datapath, tunnel key) → logical port name, for `output`.
    pub ports: HashMap<(Uuid, u32), String>,
    /// (datapath, tunnel key) → member port keys of a multicast group.
    pub groups: HashMap<(Uuid, u32), Vec<u32>>,
    pub zones: Zones,
    /// Tables of flows shared by a datapath group (Logical_DP_Group): a
    /// flow that names no port is installed once for the group rather
    /// than once per member, as OVN shares it in the SB.
    pub dp_groups: HashMap<Uuid, DatapathProgram>,
    pub failures: Vec<Failure>,
    /// Logical flows compiled (failed ones included).
    pub flows: usize,
    /// Flows whose match holds on none of their datapaths.
    pub never_match: usize,
    /// Classifier rules: each flow's conjunctions on each of its datapaths.
    pub rules: usize,
}

/// Compiles every logical flow of `net`.
pub fn compile(net: &LogicalNetwork) -> Program {
    let mut program = Program {
        datapaths: net
            .datapaths
            .values()
            .map(|dp| {
                let p = DatapathProgram {
                    uuid: dp.uuid,
                    name: dp.name.clone(),
                    tunnel_key: dp.tunnel_key,
                    is_router: dp.kind == crate::network::DatapathKind::Router,
                    ..Default::default()
                };
                (dp.uuid, p)
            })
            .collect(),
        ..Default::default()
    };
    program.zones = Zones::allocate(net);
    program.ports = net
        .ports
        .values()
        .map(|p| ((p.datapath, p.tunnel_key), p.name.clone()))
        .collect();
    program.groups = net
        .multicast_groups
        .values()
        .map(|g| {
            let mut members: Vec<u32> = g
                .ports
                .iter()
                .filter_map(|name| net.ports.get(name))
                .filter(|p| p.datapath == g.datapath)
                .map(|p| p.tunnel_key)
                .collect();
            members.sort_unstable();
            ((g.datapath, g.tunnel_key), members)
        })
        .collect();
    let names = DatapathNames::for_all(net);
    for flow in net.logical_flows.values() {
        program.flows += 1;
        if let Err(failure) = compile_flow(net, flow, &names, &mut program) {
            program.failures.push(*failure);
        }
    }
    program.failures.sort_by_key(|f| {
        (
            f.datapath.clone(),
            f.pipeline,
            f.table,
            std::cmp::Reverse(f.priority),
        )
    });
    program
}

/// Whether a match names logical ports (directly or by port group), which
/// resolve differently on each datapath.
fn names_ports(e: &MatchExpr) -> bool {
    match e {
        MatchExpr::Cmp { values, .. } => values
            .iter()
            .any(|v| matches!(v, Value::Str(_) | Value::PortGroup(_))),
        MatchExpr::Not(inner) => names_ports(inner),
        MatchExpr::And(terms) | MatchExpr::Or(terms) => terms.iter().any(names_ports),
        MatchExpr::Bool(_) | MatchExpr::Field(_) => false,
    }
}

fn compile_flow(
    net: &LogicalNetwork,
    flow: &LogicalFlow,
    names: &HashMap<Uuid, DatapathNames>,
    program: &mut Program,
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
    // Normalise on every datapath before installing anywhere, so a flow
    // that fails on one datapath is left out of all of them. A match that
    // names no port means the same on every datapath of a group: once is
    // enough (northd shares most flows among hundreds of switches).
    let shared = !names_ports(&expr);
    let mut per_dp: Vec<(Uuid, Rc<Normalized>)> = Vec::with_capacity(datapaths.len());
    for uuid in datapaths {
        let (Some(dp), Some(resolver)) = (net.datapaths.get(uuid), names.get(uuid)) else {
            continue;
        };
        let normal = match per_dp.first() {
            Some((_, first)) if shared => first.clone(),
            _ => Rc::new(
                normalize(&expr, resolver)
                    .map_err(|e| failure(&dp.name, "match", &flow.match_, e.to_string()))?,
            ),
        };
        per_dp.push((*uuid, normal));
    }
    if per_dp.iter().all(|(_, n)| n.never_matches()) {
        program.never_match += 1;
    }
    let compiled = Arc::new(CompiledFlow {
        uuid: flow.uuid,
        priority: flow.priority,
        match_text: flow.match_.clone(),
        actions,
        source: flow.source.clone(),
    });
    let install = |dp: &mut DatapathProgram, normal: &Normalized| -> usize {
        let tables = dp.tables_mut(flow.pipeline);
        let table_id = usize::from(flow.table_id);
        if tables.len() <= table_id {
            tables.resize_with(table_id + 1, Table::default);
        }
        let table = &mut tables[table_id];
        if table.stage_name.is_none() {
            table.stage_name = flow.stage_name.clone();
        }
        for conj in &normal.0 {
            table
                .classifier
                .insert(conj, flow.priority, compiled.clone());
        }
        normal.0.len()
    };
    match (flow.scope, per_dp.first()) {
        (FlowScope::Group(group), Some((_, normal))) if shared => {
            let group_program = match program.dp_groups.entry(group) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    for (uuid, _) in &per_dp {
                        if let Some(dp) = program.datapaths.get_mut(uuid) {
                            dp.groups.push(group);
                        }
                    }
                    e.insert(DatapathProgram {
                        uuid: group,
                        name: format!("group {}", group.short()),
                        ..Default::default()
                    })
                }
            };
            program.rules += install(group_program, normal);
        }
        _ => {
            for (uuid, normal) in per_dp {
                if let Some(dp) = program.datapaths.get_mut(&uuid) {
                    program.rules += install(dp, &normal);
                }
            }
        }
    }
    Ok(())
}
