//! The logical network as OVN's Southbound database describes it.
//!
//! A [`LogicalNetwork`] is an immutable, self-contained value: references
//! between SB rows (port → chassis, multicast group → ports, flow → datapath
//! group) are resolved to names or kept as UUIDs that point inside the same
//! value. The control plane rebuilds it from its SB replica; tests and
//! `--snapshot` read it from a file. Field names follow the SB schema
//! (`man ovn-sb`) so an OVN user recognises them.

use crate::Uuid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// String-to-string columns such as `options` and `external_ids`.
pub type StringMap = BTreeMap<String, String>;

/// Everything ironflow knows of the logical network at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogicalNetwork {
    pub sb_global: SbGlobal,
    /// Chassis by name.
    pub chassis: BTreeMap<String, Chassis>,
    /// Chassis_Private by name (what each chassis reports of itself).
    pub chassis_private: BTreeMap<String, ChassisPrivate>,
    pub datapaths: BTreeMap<Uuid, Datapath>,
    /// Port bindings by logical port name (unique in the SB).
    pub ports: BTreeMap<String, LogicalPort>,
    /// Shared with whoever built the network (the SB follower keeps the
    /// same rows), so that neither a rebuild nor a clone copies them.
    pub logical_flows: BTreeMap<Uuid, Arc<LogicalFlow>>,
    /// Logical_DP_Group: the datapaths a shared logical flow applies to.
    pub datapath_groups: BTreeMap<Uuid, Vec<Uuid>>,
    pub multicast_groups: BTreeMap<Uuid, MulticastGroup>,
    /// Sorted by (logical port, IP).
    pub mac_bindings: Vec<MacBinding>,
    /// Sorted by (logical port, IP).
    pub static_mac_bindings: Vec<StaticMacBinding>,
    /// Address_Set name → addresses.
    pub address_sets: BTreeMap<String, Vec<String>>,
    /// Port_Group name → logical port names.
    pub port_groups: BTreeMap<String, Vec<String>>,
    pub load_balancers: BTreeMap<Uuid, LoadBalancer>,
    /// DNS rows: what `dns_lookup` answers on their datapaths.
    pub dns: Vec<DnsRecords>,
}

/// A DNS row: host names (lower case) and their addresses, for the
/// switches it is on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsRecords {
    pub datapaths: Vec<Uuid>,
    /// Name → space-separated IPv4/IPv6 addresses, as northd writes them.
    pub records: StringMap,
}

impl LogicalNetwork {
    /// The addresses `name` has in the DNS records of `datapath`.
    pub fn dns_lookup(&self, datapath: Uuid, name: &str) -> Option<Vec<std::net::IpAddr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.dns
            .iter()
            .filter(|d| d.datapaths.contains(&datapath))
            .find_map(|d| d.records.get(&name))
            .map(|ips| {
                ips.split_whitespace()
                    .filter_map(|ip| ip.parse().ok())
                    .collect()
            })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SbGlobal {
    pub nb_cfg: i64,
    pub options: StringMap,
    pub external_ids: StringMap,
    pub ipsec: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Chassis {
    pub uuid: Uuid,
    pub name: String,
    pub hostname: String,
    pub encaps: Vec<Encap>,
    pub nb_cfg: i64,
    pub other_config: StringMap,
    pub external_ids: StringMap,
    pub transport_zones: Vec<String>,
    pub vtep_logical_switches: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Encap {
    pub uuid: Uuid,
    /// `geneve`, `vxlan` or `stt`.
    #[serde(rename = "type")]
    pub encap_type: String,
    pub ip: String,
    pub options: StringMap,
    pub chassis_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChassisPrivate {
    pub uuid: Uuid,
    pub name: String,
    /// Name of the Chassis row it belongs to, when that row exists.
    pub chassis: Option<String>,
    pub nb_cfg: i64,
    pub nb_cfg_timestamp: i64,
    pub external_ids: StringMap,
}

/// Whether a datapath implements a logical switch or a logical router.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DatapathKind {
    Switch,
    Router,
    /// Neither `logical-switch` nor `logical-router` in external_ids (for
    /// example a row written by something other than ovn-northd).
    #[default]
    Unknown,
}

impl fmt::Display for DatapathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatapathKind::Switch => "switch",
            DatapathKind::Router => "router",
            DatapathKind::Unknown => "unknown",
        })
    }
}

/// A Datapath_Binding: one logical switch or router.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Datapath {
    pub uuid: Uuid,
    /// `external_ids:name` as northd writes it (the NB name), else the UUID.
    pub name: String,
    /// The datapath's key on the wire (Geneve VNI) and in `metadata`.
    pub tunnel_key: u32,
    pub kind: DatapathKind,
    pub external_ids: StringMap,
    pub load_balancers: Vec<Uuid>,
}

/// The `type` column of Port_Binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortType {
    /// The empty type: a VIF (a pod or VM interface on some chassis).
    #[default]
    Vif,
    Patch,
    L3Gateway,
    Localnet,
    Localport,
    L2Gateway,
    Vtep,
    ChassisRedirect,
    Virtual,
    External,
    Remote,
    /// A type this version of ironflow does not know; kept verbatim.
    Other(String),
}

impl PortType {
    const NAMED: [(PortType, &'static str); 11] = [
        (PortType::Vif, ""),
        (PortType::Patch, "patch"),
        (PortType::L3Gateway, "l3gateway"),
        (PortType::Localnet, "localnet"),
        (PortType::Localport, "localport"),
        (PortType::L2Gateway, "l2gateway"),
        (PortType::Vtep, "vtep"),
        (PortType::ChassisRedirect, "chassisredirect"),
        (PortType::Virtual, "virtual"),
        (PortType::External, "external"),
        (PortType::Remote, "remote"),
    ];

    /// The SB spelling (`""` for a VIF).
    pub fn as_str(&self) -> &str {
        match self {
            PortType::Other(s) => s,
            known => Self::NAMED
                .iter()
                .find(|(t, _)| t == known)
                .map(|(_, s)| *s)
                .unwrap_or_default(),
        }
    }

    pub fn from_sb(s: &str) -> PortType {
        Self::NAMED
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| PortType::Other(s.to_string()))
    }
}

impl Serialize for PortType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PortType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(PortType::from_sb(&s))
    }
}

/// A gateway chassis of a chassisredirect port, with its priority.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HaChassis {
    pub chassis: String,
    pub priority: i64,
}

/// A Port_Binding: one logical port of one datapath.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogicalPort {
    pub uuid: Uuid,
    pub name: String,
    pub datapath: Uuid,
    /// The port's key within its datapath (`inport`/`outport` on the wire).
    pub tunnel_key: u32,
    #[serde(rename = "type")]
    pub port_type: PortType,
    pub options: StringMap,
    /// The `mac` column: "MAC [IP...]" strings, `unknown`, `router`, ….
    pub mac: Vec<String>,
    pub port_security: Vec<String>,
    pub nat_addresses: Vec<String>,
    pub parent_port: Option<String>,
    pub tag: Option<u16>,
    pub virtual_parent: Option<String>,
    /// Name of the chassis the port is bound to.
    pub chassis: Option<String>,
    pub additional_chassis: Vec<String>,
    pub requested_chassis: Option<String>,
    pub up: Option<bool>,
    pub external_ids: StringMap,
    /// A chassisredirect port's gateway chassis (its HA_Chassis_Group),
    /// highest priority first.
    pub ha_chassis: Vec<HaChassis>,
}

impl LogicalPort {
    /// The peer port of a patch / l3gateway port (`options:peer`).
    pub fn peer(&self) -> Option<&str> {
        self.options.get("peer").map(String::as_str)
    }
}

/// Which half of a datapath's pipeline a logical flow belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pipeline {
    Ingress,
    Egress,
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pipeline::Ingress => "ingress",
            Pipeline::Egress => "egress",
        })
    }
}

/// The datapaths a logical flow applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowScope {
    /// `logical_datapath`: a single datapath.
    Datapath(Uuid),
    /// `logical_dp_group`: every datapath in a Logical_DP_Group.
    Group(Uuid),
    /// Neither column set; ovn-controller installs such a flow nowhere.
    Nowhere,
}

/// A Logical_Flow row. Match and actions stay text here; the logical-flow
/// language turns them into something executable. The texts are shared
/// (`Arc<str>`): with the SB replica they were read from, and with the
/// compiled program, which shows them in traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogicalFlow {
    pub uuid: Uuid,
    pub scope: FlowScope,
    pub pipeline: Pipeline,
    pub table_id: u8,
    pub priority: u16,
    #[serde(rename = "match")]
    pub match_: Arc<str>,
    pub actions: Arc<str>,
    /// `external_ids:stage-name` (e.g. `ls_in_acl`), as northd writes it.
    #[serde(default)]
    pub stage_name: Option<Arc<str>>,
    /// `external_ids:stage-hint`: the NB row the flow came from.
    #[serde(default)]
    pub stage_hint: Option<Arc<str>>,
    /// `external_ids:source`: northd's source file and line.
    #[serde(default)]
    pub source: Option<Arc<str>>,
    #[serde(default)]
    pub controller_meter: Option<String>,
    #[serde(default)]
    pub tags: StringMap,
}

/// A Multicast_Group: a named set of ports of one datapath (`_MC_flood`, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MulticastGroup {
    pub uuid: Uuid,
    pub datapath: Uuid,
    pub name: String,
    pub tunnel_key: u32,
    /// Logical port names, sorted.
    pub ports: Vec<String>,
}

/// A MAC_Binding learned by some chassis (`put_arp`/`put_nd`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MacBinding {
    pub uuid: Uuid,
    pub logical_port: String,
    pub ip: String,
    pub mac: String,
    pub datapath: Uuid,
    pub timestamp: i64,
}

/// A Static_MAC_Binding configured in the NB.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StaticMacBinding {
    pub uuid: Uuid,
    pub logical_port: String,
    pub ip: String,
    pub mac: String,
    pub datapath: Uuid,
    pub override_dynamic_mac: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadBalancer {
    pub uuid: Uuid,
    pub name: String,
    /// VIP (`IP[:PORT]`) → comma-separated backends.
    pub vips: StringMap,
    pub protocol: Option<String>,
    /// The `datapaths` column and the members of `datapath_group`, merged.
    pub datapaths: Vec<Uuid>,
    pub options: StringMap,
    pub external_ids: StringMap,
}

impl LogicalNetwork {
    /// Looks a datapath up the way `ovn-trace` does: by name, else by UUID
    /// (full or an unambiguous prefix).
    pub fn find_datapath(&self, name_or_uuid: &str) -> Option<&Datapath> {
        if let Some(dp) = self.datapaths.values().find(|dp| dp.name == name_or_uuid) {
            return Some(dp);
        }
        let needle = name_or_uuid.to_ascii_lowercase();
        let mut hits = self
            .datapaths
            .values()
            .filter(|dp| !needle.is_empty() && dp.uuid.to_string().starts_with(&needle));
        match (hits.next(), hits.next()) {
            (Some(dp), None) => Some(dp),
            _ => None,
        }
    }

    /// The datapaths a flow applies to.
    pub fn flow_datapaths<'a>(&'a self, flow: &'a LogicalFlow) -> &'a [Uuid] {
        match &flow.scope {
            FlowScope::Datapath(dp) => std::slice::from_ref(dp),
            FlowScope::Group(group) => self
                .datapath_groups
                .get(group)
                .map(Vec::as_slice)
                .unwrap_or_default(),
            FlowScope::Nowhere => &[],
        }
    }

    /// Logical flows that apply to `datapath`, directly or through a group.
    pub fn flows_of(&self, datapath: Uuid) -> impl Iterator<Item = &LogicalFlow> {
        self.logical_flows
            .values()
            .map(|flow| &**flow)
            .filter(move |flow| self.flow_datapaths(flow).contains(&datapath))
    }

    /// The logical port or multicast group with tunnel key `key` on
    /// `datapath` (a scan: for printing, not for the packet path).
    pub fn port_name(&self, datapath: Uuid, key: u32) -> Option<&str> {
        let port = self
            .ports
            .values()
            .find(|p| p.datapath == datapath && p.tunnel_key == key);
        port.map(|p| p.name.as_str()).or_else(|| {
            self.multicast_groups
                .values()
                .find(|g| g.datapath == datapath && g.tunnel_key == key)
                .map(|g| g.name.as_str())
        })
    }

    /// Ports of `datapath`, ordered by tunnel key.
    pub fn ports_of(&self, datapath: Uuid) -> Vec<&LogicalPort> {
        let mut ports: Vec<_> = self
            .ports
            .values()
            .filter(|p| p.datapath == datapath)
            .collect();
        ports.sort_by_key(|p| (p.tunnel_key, p.name.clone()));
        ports
    }

    /// Datapaths ordered by tunnel key, the order OVN users read them in.
    pub fn datapaths_by_key(&self) -> Vec<&Datapath> {
        let mut dps: Vec<_> = self.datapaths.values().collect();
        dps.sort_by_key(|dp| (dp.tunnel_key, dp.uuid));
        dps
    }

    /// Number of logical flows per (pipeline, table) for one datapath.
    pub fn flow_counts(&self, datapath: Uuid) -> BTreeMap<(Pipeline, u8), FlowCount> {
        let mut counts: BTreeMap<(Pipeline, u8), FlowCount> = BTreeMap::new();
        for flow in self.flows_of(datapath) {
            let entry = counts.entry((flow.pipeline, flow.table_id)).or_default();
            entry.flows += 1;
            if entry.stage_name.is_none() {
                entry.stage_name = flow.stage_name.as_deref().map(String::from);
            }
        }
        counts
    }
}

/// How many flows one table of one datapath has, and the stage's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowCount {
    pub flows: usize,
    pub stage_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(n: u8) -> Uuid {
        Uuid([n; 16])
    }

    fn flow(n: u8, scope: FlowScope, table_id: u8) -> LogicalFlow {
        LogicalFlow {
            uuid: uuid(n),
            scope,
            pipeline: Pipeline::Ingress,
            table_id,
            priority: 0,
            match_: "1".into(),
            actions: "next;".into(),
            stage_name: Some(format!("ls_in_{table_id}").into()),
            stage_hint: None,
            source: None,
            controller_meter: None,
            tags: StringMap::new(),
        }
    }

    fn two_switches() -> LogicalNetwork {
        let mut net = LogicalNetwork::default();
        for (n, name) in [(1, "sw-a"), (2, "sw-b")] {
            net.datapaths.insert(
                uuid(n),
                Datapath {
                    uuid: uuid(n),
                    name: name.into(),
                    tunnel_key: n.into(),
                    kind: DatapathKind::Switch,
                    ..Default::default()
                },
            );
        }
        net.datapath_groups.insert(uuid(9), vec![uuid(1), uuid(2)]);
        for f in [
            flow(10, FlowScope::Datapath(uuid(1)), 0),
            flow(11, FlowScope::Group(uuid(9)), 0),
            flow(12, FlowScope::Group(uuid(9)), 3),
            flow(13, FlowScope::Nowhere, 3),
        ] {
            net.logical_flows.insert(f.uuid, Arc::new(f));
        }
        net
    }

    #[test]
    fn flows_through_groups_count_for_every_member() {
        let net = two_switches();
        assert_eq!(net.flows_of(uuid(1)).count(), 3);
        assert_eq!(net.flows_of(uuid(2)).count(), 2);
        let counts = net.flow_counts(uuid(1));
        assert_eq!(counts[&(Pipeline::Ingress, 0)].flows, 2);
        assert_eq!(counts[&(Pipeline::Ingress, 3)].flows, 1);
        assert_eq!(
            counts[&(Pipeline::Ingress, 3)].stage_name.as_deref(),
            Some("ls_in_3")
        );
    }

    #[test]
    fn finds_datapaths_by_name_or_uuid_prefix() {
        let net = two_switches();
        assert_eq!(net.find_datapath("sw-b").unwrap().tunnel_key, 2);
        assert_eq!(net.find_datapath("01010101").unwrap().name, "sw-a");
        assert!(net.find_datapath("").is_none());
        assert!(net.find_datapath("nope").is_none());
    }

    #[test]
    fn port_types_keep_unknown_spellings() {
        assert_eq!(PortType::from_sb(""), PortType::Vif);
        assert_eq!(PortType::from_sb("l3gateway").as_str(), "l3gateway");
        let odd = PortType::from_sb("future-type");
        assert_eq!(odd, PortType::Other("future-type".into()));
        assert_eq!(odd.as_str(), "future-type");
    }
}
