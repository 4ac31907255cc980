//! Typed views of the Southbound tables ironflow follows.
//!
//! Each SB table has a row type that decodes from a replica row. Where the
//! logical network model has a matching type it is reused as is; rows that
//! refer to other rows keep those references as UUIDs beside it, to be
//! resolved when a [`LogicalNetwork`](ironflow_pipeline::LogicalNetwork) is
//! built. Only rows that changed are decoded again after an update.

use super::decode::{RowError, RowReader};
use crate::ovsdb::replica::ApplyReport;
use crate::ovsdb::Replica;
use ironflow_pipeline::network::*;
use ironflow_pipeline::Uuid;
use std::collections::HashMap;
use std::sync::Arc;

/// A row type of one SB table.
pub trait SbRow: Sized + Clone {
    const TABLE: &'static str;
    /// The columns ironflow reads; the monitor asks for those the server has.
    const COLUMNS: &'static [&'static str];
    fn decode(r: &RowReader) -> Result<Self, RowError>;
}

/// The decoded rows of one table.
#[derive(Debug, Clone)]
pub struct Table<T> {
    pub rows: HashMap<Uuid, T>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: HashMap::new(),
        }
    }
}

impl<T: SbRow> Table<T> {
    /// Re-decodes the rows an update touched. A row that does not decode is
    /// reported and left out, as though the server did not have it.
    fn sync(&mut self, replica: &Replica, report: &ApplyReport, errors: &mut Vec<RowError>) {
        let Some(changed) = report.changed.get(T::TABLE) else {
            return;
        };
        for uuid in changed {
            match replica.row(T::TABLE, uuid) {
                None => {
                    self.rows.remove(uuid);
                }
                Some(row) => match T::decode(&RowReader::new(T::TABLE, *uuid, row)) {
                    Ok(value) => {
                        self.rows.insert(*uuid, value);
                    }
                    Err(e) => {
                        self.rows.remove(uuid);
                        errors.push(e);
                    }
                },
            }
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.rows.values()
    }

    pub fn get(&self, uuid: &Uuid) -> Option<&T> {
        self.rows.get(uuid)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl SbRow for SbGlobal {
    const TABLE: &'static str = "SB_Global";
    const COLUMNS: &'static [&'static str] = &["nb_cfg", "options", "external_ids", "ipsec"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(SbGlobal {
            nb_cfg: r.integer("nb_cfg")?,
            options: r.string_map("options")?,
            external_ids: r.string_map("external_ids")?,
            ipsec: r.boolean("ipsec")?,
        })
    }
}

/// A Chassis row; `chassis.encaps` is filled in from `encaps` when the
/// network is built.
#[derive(Debug, Clone)]
pub struct ChassisRow {
    pub chassis: Chassis,
    pub encaps: Vec<Uuid>,
}

impl SbRow for ChassisRow {
    const TABLE: &'static str = "Chassis";
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "hostname",
        "encaps",
        "nb_cfg",
        "other_config",
        "external_ids",
        "transport_zones",
        "vtep_logical_switches",
    ];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(ChassisRow {
            chassis: Chassis {
                uuid: r.uuid,
                name: r.string("name")?,
                hostname: r.string("hostname")?,
                encaps: Vec::new(),
                nb_cfg: r.integer("nb_cfg")?,
                other_config: r.string_map("other_config")?,
                external_ids: r.string_map("external_ids")?,
                transport_zones: r.strings("transport_zones")?,
                vtep_logical_switches: r.strings("vtep_logical_switches")?,
            },
            encaps: r.uuids("encaps")?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ChassisPrivateRow {
    pub private: ChassisPrivate,
    pub chassis: Option<Uuid>,
}

impl SbRow for ChassisPrivateRow {
    const TABLE: &'static str = "Chassis_Private";
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "chassis",
        "nb_cfg",
        "nb_cfg_timestamp",
        "external_ids",
    ];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(ChassisPrivateRow {
            private: ChassisPrivate {
                uuid: r.uuid,
                name: r.string("name")?,
                chassis: None,
                nb_cfg: r.integer("nb_cfg")?,
                nb_cfg_timestamp: r.integer("nb_cfg_timestamp")?,
                external_ids: r.string_map("external_ids")?,
            },
            chassis: r.opt_uuid("chassis")?,
        })
    }
}

impl SbRow for Encap {
    const TABLE: &'static str = "Encap";
    const COLUMNS: &'static [&'static str] = &["type", "ip", "options", "chassis_name"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(Encap {
            uuid: r.uuid,
            encap_type: r.string("type")?,
            ip: r.string("ip")?,
            options: r.string_map("options")?,
            chassis_name: r.string("chassis_name")?,
        })
    }
}

impl SbRow for Datapath {
    const TABLE: &'static str = "Datapath_Binding";
    const COLUMNS: &'static [&'static str] = &["tunnel_key", "load_balancers", "external_ids"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        let external_ids = r.string_map("external_ids")?;
        // northd names the NB row a datapath implements by its kind.
        let kind = if external_ids.contains_key("logical-switch") {
            DatapathKind::Switch
        } else if external_ids.contains_key("logical-router") {
            DatapathKind::Router
        } else {
            DatapathKind::Unknown
        };
        let name = external_ids
            .get("name")
            .cloned()
            .unwrap_or_else(|| r.uuid.to_string());
        Ok(Datapath {
            uuid: r.uuid,
            name,
            tunnel_key: r.integer_as("tunnel_key")?,
            kind,
            load_balancers: r.uuids("load_balancers")?,
            external_ids,
        })
    }
}

/// A Port_Binding row; chassis references become names when the network
/// is built.
#[derive(Debug, Clone)]
pub struct PortBindingRow {
    pub port: LogicalPort,
    pub chassis: Option<Uuid>,
    pub additional_chassis: Vec<Uuid>,
    pub requested_chassis: Option<Uuid>,
    pub ha_chassis_group: Option<Uuid>,
}

impl SbRow for PortBindingRow {
    const TABLE: &'static str = "Port_Binding";
    const COLUMNS: &'static [&'static str] = &[
        "logical_port",
        "type",
        "options",
        "datapath",
        "tunnel_key",
        "parent_port",
        "tag",
        "virtual_parent",
        "chassis",
        "additional_chassis",
        "requested_chassis",
        "mac",
        "port_security",
        "nat_addresses",
        "up",
        "external_ids",
        "ha_chassis_group",
    ];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(PortBindingRow {
            port: LogicalPort {
                uuid: r.uuid,
                name: r.string("logical_port")?,
                datapath: r.uuid("datapath")?,
                tunnel_key: r.integer_as("tunnel_key")?,
                port_type: PortType::from_sb(&r.string("type")?),
                options: r.string_map("options")?,
                mac: r.strings("mac")?,
                port_security: r.strings("port_security")?,
                nat_addresses: r.strings("nat_addresses")?,
                parent_port: r.opt_string("parent_port")?,
                tag: r.opt_integer_as("tag")?,
                virtual_parent: r.opt_string("virtual_parent")?,
                chassis: None,
                additional_chassis: Vec::new(),
                requested_chassis: None,
                up: r.opt_bool("up")?,
                external_ids: r.string_map("external_ids")?,
                ha_chassis: Vec::new(),
            },
            chassis: r.opt_uuid("chassis")?,
            additional_chassis: r.uuids("additional_chassis")?,
            requested_chassis: r.opt_uuid("requested_chassis")?,
            ha_chassis_group: r.opt_uuid("ha_chassis_group")?,
        })
    }
}

/// Shared: the logical network built from the tables holds the same rows
/// (a 100k-flow SB would otherwise be held twice).
impl SbRow for Arc<LogicalFlow> {
    const TABLE: &'static str = "Logical_Flow";
    const COLUMNS: &'static [&'static str] = &[
        "logical_datapath",
        "logical_dp_group",
        "pipeline",
        "table_id",
        "priority",
        "match",
        "actions",
        "tags",
        "controller_meter",
        "external_ids",
    ];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        let scope = match (
            r.opt_uuid("logical_datapath")?,
            r.opt_uuid("logical_dp_group")?,
        ) {
            (Some(dp), _) => FlowScope::Datapath(dp),
            (None, Some(group)) => FlowScope::Group(group),
            (None, None) => FlowScope::Nowhere,
        };
        let pipeline = match r.string("pipeline")?.as_str() {
            "ingress" => Pipeline::Ingress,
            "egress" => Pipeline::Egress,
            other => {
                return Err(RowError {
                    table: Self::TABLE,
                    row: r.uuid,
                    column: "pipeline",
                    problem: format!("{other:?} is neither ingress nor egress"),
                })
            }
        };
        let external_ids = r.shared_string_pairs("external_ids")?;
        let id = |key: &str| {
            external_ids
                .iter()
                .rev()
                .find(|(k, _)| **k == *key)
                .map(|(_, v)| v.clone())
        };
        Ok(Arc::new(LogicalFlow {
            uuid: r.uuid,
            scope,
            pipeline,
            table_id: r.integer_as("table_id")?,
            priority: r.integer_as("priority")?,
            match_: r.shared_string("match")?,
            actions: r.shared_string("actions")?,
            stage_name: id("stage-name"),
            stage_hint: id("stage-hint"),
            source: id("source"),
            controller_meter: r.opt_string("controller_meter")?,
            tags: r.string_map("tags")?,
        }))
    }
}

/// Logical_DP_Group: the datapaths it groups.
#[derive(Debug, Clone)]
pub struct DatapathGroupRow(pub Vec<Uuid>);

impl SbRow for DatapathGroupRow {
    const TABLE: &'static str = "Logical_DP_Group";
    const COLUMNS: &'static [&'static str] = &["datapaths"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(DatapathGroupRow(r.uuids("datapaths")?))
    }
}

#[derive(Debug, Clone)]
pub struct MulticastGroupRow {
    pub group: MulticastGroup,
    pub ports: Vec<Uuid>,
}

impl SbRow for MulticastGroupRow {
    const TABLE: &'static str = "Multicast_Group";
    const COLUMNS: &'static [&'static str] = &["datapath", "name", "tunnel_key", "ports"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(MulticastGroupRow {
            group: MulticastGroup {
                uuid: r.uuid,
                datapath: r.uuid("datapath")?,
                name: r.string("name")?,
                tunnel_key: r.integer_as("tunnel_key")?,
                ports: Vec::new(),
            },
            ports: r.uuids("ports")?,
        })
    }
}

impl SbRow for MacBinding {
    const TABLE: &'static str = "MAC_Binding";
    const COLUMNS: &'static [&'static str] =
        &["logical_port", "ip", "mac", "timestamp", "datapath"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(MacBinding {
            uuid: r.uuid,
            logical_port: r.string("logical_port")?,
            ip: r.string("ip")?,
            mac: r.string("mac")?,
            datapath: r.uuid("datapath")?,
            timestamp: r.integer("timestamp")?,
        })
    }
}

impl SbRow for StaticMacBinding {
    const TABLE: &'static str = "Static_MAC_Binding";
    const COLUMNS: &'static [&'static str] = &[
        "logical_port",
        "ip",
        "mac",
        "override_dynamic_mac",
        "datapath",
    ];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(StaticMacBinding {
            uuid: r.uuid,
            logical_port: r.string("logical_port")?,
            ip: r.string("ip")?,
            mac: r.string("mac")?,
            datapath: r.uuid("datapath")?,
            override_dynamic_mac: r.boolean("override_dynamic_mac")?,
        })
    }
}

/// A named set of strings: Address_Set (addresses) or Port_Group (ports).
#[derive(Debug, Clone)]
pub struct NamedSet {
    pub name: String,
    pub members: Vec<String>,
}

/// Address_Set rows.
#[derive(Debug, Clone)]
pub struct AddressSetRow(pub NamedSet);

impl SbRow for AddressSetRow {
    const TABLE: &'static str = "Address_Set";
    const COLUMNS: &'static [&'static str] = &["name", "addresses"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(AddressSetRow(NamedSet {
            name: r.string("name")?,
            members: r.strings("addresses")?,
        }))
    }
}

/// Port_Group rows.
#[derive(Debug, Clone)]
pub struct PortGroupRow(pub NamedSet);

impl SbRow for PortGroupRow {
    const TABLE: &'static str = "Port_Group";
    const COLUMNS: &'static [&'static str] = &["name", "ports"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(PortGroupRow(NamedSet {
            name: r.string("name")?,
            members: r.strings("ports")?,
        }))
    }
}

#[derive(Debug, Clone)]
pub struct LoadBalancerRow {
    pub lb: LoadBalancer,
    pub datapath_group: Option<Uuid>,
}

impl SbRow for LoadBalancerRow {
    const TABLE: &'static str = "Load_Balancer";
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "vips",
        "protocol",
        "datapaths",
        "datapath_group",
        "options",
        "external_ids",
    ];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(LoadBalancerRow {
            lb: LoadBalancer {
                uuid: r.uuid,
                name: r.string("name")?,
                vips: r.string_map("vips")?,
                protocol: r.opt_string("protocol")?,
                datapaths: r.uuids("datapaths")?,
                options: r.string_map("options")?,
                external_ids: r.string_map("external_ids")?,
            },
            datapath_group: r.opt_uuid("datapath_group")?,
        })
    }
}

/// An HA_Chassis_Group row: the gateway chassis of a distributed
/// gateway port.
#[derive(Debug, Clone)]
pub struct HaChassisGroupRow {
    pub name: String,
    pub ha_chassis: Vec<Uuid>,
}

impl SbRow for HaChassisGroupRow {
    const TABLE: &'static str = "HA_Chassis_Group";
    const COLUMNS: &'static [&'static str] = &["name", "ha_chassis"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(HaChassisGroupRow {
            name: r.string("name")?,
            ha_chassis: r.uuids("ha_chassis")?,
        })
    }
}

/// An HA_Chassis row: a chassis (by reference once it is registered, and
/// by name in `external_ids:chassis-name` before) and its priority.
#[derive(Debug, Clone)]
pub struct HaChassisRow {
    pub chassis: Option<Uuid>,
    pub chassis_name: Option<String>,
    pub priority: i64,
}

impl SbRow for HaChassisRow {
    const TABLE: &'static str = "HA_Chassis";
    const COLUMNS: &'static [&'static str] = &["chassis", "priority", "external_ids"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        Ok(HaChassisRow {
            chassis: r.opt_uuid("chassis")?,
            chassis_name: r.string_map("external_ids")?.get("chassis-name").cloned(),
            priority: r.integer("priority")?,
        })
    }
}

impl SbRow for DnsRecords {
    const TABLE: &'static str = "DNS";
    const COLUMNS: &'static [&'static str] = &["records", "datapaths"];
    fn decode(r: &RowReader) -> Result<Self, RowError> {
        let mut datapaths = r.uuids("datapaths")?;
        datapaths.sort();
        Ok(DnsRecords {
            datapaths,
            records: r.string_map("records")?,
        })
    }
}

/// Every SB table ironflow follows, decoded.
#[derive(Debug, Clone, Default)]
pub struct SbTables {
    pub sb_global: Table<SbGlobal>,
    pub chassis: Table<ChassisRow>,
    pub chassis_private: Table<ChassisPrivateRow>,
    pub encaps: Table<Encap>,
    pub datapaths: Table<Datapath>,
    pub port_bindings: Table<PortBindingRow>,
    pub logical_flows: Table<Arc<LogicalFlow>>,
    pub datapath_groups: Table<DatapathGroupRow>,
    pub multicast_groups: Table<MulticastGroupRow>,
    pub mac_bindings: Table<MacBinding>,
    pub static_mac_bindings: Table<StaticMacBinding>,
    pub address_sets: Table<AddressSetRow>,
    pub port_groups: Table<PortGroupRow>,
    pub load_balancers: Table<LoadBalancerRow>,
    pub ha_chassis_groups: Table<HaChassisGroupRow>,
    pub ha_chassis: Table<HaChassisRow>,
    pub dns: Table<DnsRecords>,
}

/// (table, columns) for every table in [`SbTables`], in one place so the
/// monitor request and the decoder cannot drift apart.
pub const MONITORED: &[(&str, &[&str])] = &[
    (SbGlobal::TABLE, SbGlobal::COLUMNS),
    (ChassisRow::TABLE, ChassisRow::COLUMNS),
    (ChassisPrivateRow::TABLE, ChassisPrivateRow::COLUMNS),
    (Encap::TABLE, Encap::COLUMNS),
    (Datapath::TABLE, Datapath::COLUMNS),
    (PortBindingRow::TABLE, PortBindingRow::COLUMNS),
    (<Arc<LogicalFlow>>::TABLE, <Arc<LogicalFlow>>::COLUMNS),
    (DatapathGroupRow::TABLE, DatapathGroupRow::COLUMNS),
    (MulticastGroupRow::TABLE, MulticastGroupRow::COLUMNS),
    (MacBinding::TABLE, MacBinding::COLUMNS),
    (StaticMacBinding::TABLE, StaticMacBinding::COLUMNS),
    (AddressSetRow::TABLE, AddressSetRow::COLUMNS),
    (PortGroupRow::TABLE, PortGroupRow::COLUMNS),
    (LoadBalancerRow::TABLE, LoadBalancerRow::COLUMNS),
    (HaChassisGroupRow::TABLE, HaChassisGroupRow::COLUMNS),
    (HaChassisRow::TABLE, HaChassisRow::COLUMNS),
    (DnsRecords::TABLE, DnsRecords::COLUMNS),
];

impl SbTables {
    /// Brings the typed tables up to date with what an update changed in
    /// the replica; returns the rows that did not decode.
    pub fn sync(&mut self, replica: &Replica, report: &ApplyReport) -> Vec<RowError> {
        let mut errors = Vec::new();
        let e = &mut errors;
        self.sb_global.sync(replica, report, e);
        self.chassis.sync(replica, report, e);
        self.chassis_private.sync(replica, report, e);
        self.encaps.sync(replica, report, e);
        self.datapaths.sync(replica, report, e);
        self.port_bindings.sync(replica, report, e);
        self.logical_flows.sync(replica, report, e);
        self.datapath_groups.sync(replica, report, e);
        self.multicast_groups.sync(replica, report, e);
        self.mac_bindings.sync(replica, report, e);
        self.static_mac_bindings.sync(replica, report, e);
        self.address_sets.sync(replica, report, e);
        self.port_groups.sync(replica, report, e);
        self.load_balancers.sync(replica, report, e);
        self.ha_chassis_groups.sync(replica, report, e);
        self.ha_chassis.sync(replica, report, e);
        self.dns.sync(replica, report, e);
        errors
    }
}
