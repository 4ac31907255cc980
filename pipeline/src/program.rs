//! The compiled form of a logical network: for every datapath, its ingress
//! and egress pipelines as tables of classifiers over flow keys.
//!
//! Compiling parses each logical flow's actions once, and normalises its
//! match once per datapath it applies to (port names differ between
//! datapaths). A flow that fails is recorded with the reason and left out;
//! the rest compile. The program is immutable: a new SB view compiles into
//! a new program, published whole.

use crate::classifier::Classifier;
use crate::keyhash::BuildKeyHasher;
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

/// One logical flow as the tables hold it. Its texts are the logical
/// flow's own, shared, not copies.
#[derive(Debug)]
pub struct CompiledFlow {
    pub uuid: Uuid,
    pub priority: u16,
    pub match_text: Arc<str>,
    /// Shared by every flow with the same action text.
    pub actions: Arc<Actions>,
    /// Where in northd the flow comes from (`northd.c:5809`), if known.
    pub source: Option<Arc<str>>,
}

#[derive(Default)]
pub struct Table {
    pub stage_name: Option<Arc<str>>,
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

/// Compiles every logical flow of `net`, on as many threads as the
/// machine has cores (at most 8): each compiles the flows of its share of
/// the datapaths (and of the datapath groups), so nothing is shared while
/// compiling and the parts are simply put together after.
pub fn compile(net: &LogicalNetwork) -> Program {
    compile_for(net, None)
}

/// [`compile`] as chassis `chassis` runs it: `is_chassis_resident(p)`
/// holds where `p` is bound to that chassis (as ovn-controller evaluates
/// it). Without a chassis it always holds, as in ovn-trace.
pub fn compile_for(net: &LogicalNetwork, chassis: Option<&str>) -> Program {
    let parts = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    compile_parts(net, parts, chassis)
}

/// [`compile`] split `parts` ways (1: on the calling thread).
pub fn compile_in(net: &LogicalNetwork, parts: usize) -> Program {
    compile_parts(net, parts, None)
}

fn compile_parts(net: &LogicalNetwork, parts: usize, chassis: Option<&str>) -> Program {
    let parts = parts.max(1);
    let mut names = DatapathNames::for_all(net);
    if chassis.is_some() {
        for n in names.values_mut() {
            n.chassis = chassis;
        }
    }
    let compiled: Vec<Part> = if parts == 1 {
        vec![compile_part(net, &names, 0, 1)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..parts)
                .map(|i| {
                    let names = &names;
                    s.spawn(move || compile_part(net, names, i, parts))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    let mut program = Program {
        flows: net.logical_flows.len(),
        ..Default::default()
    };
    for part in compiled {
        program.datapaths.extend(part.datapaths);
        program.dp_groups.extend(part.dp_groups);
        program.failures.extend(part.failures);
        program.never_match += part.never_match;
        program.rules += part.rules;
    }
    // Which group tables each datapath consults.
    let mut groups: Vec<&Uuid> = program.dp_groups.keys().collect();
    groups.sort();
    for group in groups {
        for member in net
            .datapath_groups
            .get(group)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(dp) = program.datapaths.get_mut(member) {
                dp.groups.push(*group);
            }
        }
    }
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

/// Which part owns a datapath or a datapath group.
fn part_of(uuid: &Uuid, parts: usize) -> usize {
    let mut h = crate::keyhash::KeyHasher::default();
    std::hash::Hash::hash(uuid, &mut h);
    (std::hash::Hasher::finish(&h) % parts as u64) as usize
}

/// Names of every datapath, by datapath.
type Names<'n> = HashMap<Uuid, DatapathNames<'n>, BuildKeyHasher>;

/// What one part compiled. Its maps are looked up once per rule and keyed
/// by the Southbound's own UUIDs: a cheap hash serves.
#[derive(Default)]
struct Part {
    datapaths: HashMap<Uuid, DatapathProgram, BuildKeyHasher>,
    dp_groups: HashMap<Uuid, DatapathProgram, BuildKeyHasher>,
    failures: Vec<Failure>,
    never_match: usize,
    rules: usize,
}

/// Compiles, of every flow, what goes to part `part`'s datapaths and
/// groups. A flow's failures and its never-matching are reported by the
/// part owning its first datapath, so each is reported once.
fn compile_part(net: &LogicalNetwork, names: &Names, part: usize, parts: usize) -> Part {
    let mut out = Part {
        datapaths: net
            .datapaths
            .values()
            .filter(|dp| part_of(&dp.uuid, parts) == part)
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
    // Sized for this part's share of the flows: growing it re-hashes every
    // action text so far, several times over.
    let mut cache = TextCache {
        actions: HashMap::with_capacity_and_hasher(
            net.logical_flows.len() / parts + 16,
            BuildKeyHasher::default(),
        ),
    };
    for flow in net.logical_flows.values() {
        let all = net.flow_datapaths(flow);
        let owns_group = matches!(flow.scope, FlowScope::Group(g) if part_of(&g, parts) == part);
        if !owns_group && !all.iter().any(|d| part_of(d, parts) == part) {
            continue;
        }
        let reports = all.first().is_some_and(|d| part_of(d, parts) == part);
        let ctx = PartCtx {
            part,
            parts,
            owns_group,
            reports,
        };
        if let Err(failure) = compile_flow(net, flow, names, &mut cache, &ctx, &mut out) {
            if reports {
                out.failures.push(*failure);
            }
        }
    }
    out
}

/// Where a part stands with one flow.
struct PartCtx {
    part: usize,
    parts: usize,
    /// The flow's group table is this part's to fill.
    owns_group: bool,
    /// This part reports the flow's failures.
    reports: bool,
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
        MatchExpr::Bool(_) | MatchExpr::Field(_) | MatchExpr::Resident(_) => false,
    }
}

/// Parsed actions, kept for the next flow with the same text: northd
/// repeats action texts (`next;`, `drop;`, …) far more than match texts,
/// which mostly name a port (a 100k-flow SB: 58k distinct action texts,
/// 101k distinct matches).
#[derive(Default)]
struct TextCache<'n> {
    actions: HashMap<(&'n str, Pipeline), Result<Arc<Actions>, String>, BuildKeyHasher>,
}

fn compile_flow<'n>(
    net: &'n LogicalNetwork,
    flow: &'n LogicalFlow,
    names: &Names,
    cache: &mut TextCache<'n>,
    ctx: &PartCtx,
    program: &mut Part,
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
    let actions = cache
        .actions
        .entry((&*flow.actions, flow.pipeline))
        .or_insert_with(|| {
            let a = parse_actions(&flow.actions).map_err(|e| e.to_string())?;
            check_actions(&a, flow.pipeline)?;
            Ok(Arc::new(a))
        })
        .clone()
        .map_err(|e| failure(first_dp, "actions", &flow.actions, e))?;
    let expr = parse_match(&flow.match_)
        .map_err(|e| failure(first_dp, "match", &flow.match_, e.to_string()))?;
    // The actions' prerequisites join the match, as ovn-controller adds
    // them (see `lflow::prereqs`).
    let expr = crate::lflow::prereqs::and_match(expr, &crate::lflow::prereqs::of(&actions));
    // Normalise on every datapath before installing anywhere, so a flow
    // that fails on one datapath is left out of all of them. A match that
    // names no port means the same on every datapath of a group: once is
    // enough (northd shares most flows among hundreds of switches).
    let shared = !names_ports(&expr);
    let mut per_dp: Vec<(Uuid, Rc<Normalized>)> = Vec::with_capacity(datapaths.len());
    // The group's owner needs one normalisation even when none of the
    // members is its own; the others only their own datapaths'.
    let mine = |uuid: &Uuid| part_of(uuid, ctx.parts) == ctx.part;
    let group_only = ctx.owns_group && !datapaths.iter().any(mine);
    for uuid in datapaths {
        let take = mine(uuid) || (group_only && per_dp.is_empty());
        if !take {
            continue;
        }
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
    if ctx.reports && per_dp.iter().all(|(_, n)| n.never_matches()) {
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
            if ctx.owns_group {
                let group_program =
                    program
                        .dp_groups
                        .entry(group)
                        .or_insert_with(|| DatapathProgram {
                            uuid: group,
                            name: format!("group {}", group.short()),
                            ..Default::default()
                        });
                program.rules += install(group_program, normal);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;

    /// A datapath's name, rules per ingress and egress table, and groups.
    type Shape = (String, Vec<usize>, Vec<usize>, Vec<Uuid>);

    /// Tables and rule counts, datapath by datapath.
    fn shape(p: &Program) -> Vec<Shape> {
        let mut out: Vec<_> = p
            .datapaths
            .values()
            .chain(p.dp_groups.values())
            .map(|d| {
                let lens = |t: &[Table]| t.iter().map(|t| t.classifier.len()).collect();
                let mut groups = d.groups.clone();
                groups.sort();
                (
                    d.uuid.to_string(),
                    lens(&d.ingress),
                    lens(&d.egress),
                    groups,
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn parts_compile_the_same_program() {
        for text in [
            include_str!("../../testdata/seed-snapshot.json"),
            include_str!("../../testdata/acls-snapshot.json"),
        ] {
            let net = Snapshot::from_json(text).unwrap().network;
            let one = compile_in(&net, 1);
            for parts in [2, 3, 5] {
                let many = compile_in(&net, parts);
                assert_eq!(shape(&one), shape(&many), "{parts} parts");
                assert_eq!(
                    (one.rules, one.never_match, one.failures.len(), one.flows),
                    (
                        many.rules,
                        many.never_match,
                        many.failures.len(),
                        many.flows
                    )
                );
            }
        }
    }
}
