//! Turns the typed SB tables into a self-contained [`LogicalNetwork`].
//!
//! References are resolved here: chassis UUIDs become chassis names,
//! multicast group members become port names, a load balancer's datapath
//! group becomes its datapaths. A reference to a row that is not (yet)
//! there — weak references dangle briefly while a transaction lands — is
//! left out rather than invented.

use super::tables::SbTables;
use ironflow_pipeline::network::*;
use ironflow_pipeline::Uuid;
use std::collections::BTreeMap;

pub fn build_network(t: &SbTables) -> LogicalNetwork {
    let chassis_name = |uuid: &Uuid| t.chassis.get(uuid).map(|c| c.chassis.name.clone());

    let chassis = t
        .chassis
        .values()
        .map(|row| {
            let mut chassis = row.chassis.clone();
            chassis.encaps = row
                .encaps
                .iter()
                .filter_map(|e| t.encaps.get(e).cloned())
                .collect();
            chassis
                .encaps
                .sort_by(|a, b| (&a.encap_type, &a.ip).cmp(&(&b.encap_type, &b.ip)));
            (chassis.name.clone(), chassis)
        })
        .collect();

    let chassis_private = t
        .chassis_private
        .values()
        .map(|row| {
            let mut private = row.private.clone();
            private.chassis = row.chassis.as_ref().and_then(chassis_name);
            (private.name.clone(), private)
        })
        .collect();

    let datapaths = t
        .datapaths
        .rows
        .iter()
        .map(|(u, dp)| (*u, dp.clone()))
        .collect();

    let ports = t
        .port_bindings
        .values()
        .map(|row| {
            let mut port = row.port.clone();
            port.chassis = row.chassis.as_ref().and_then(chassis_name);
            port.additional_chassis = row
                .additional_chassis
                .iter()
                .filter_map(chassis_name)
                .collect();
            port.requested_chassis = row.requested_chassis.as_ref().and_then(chassis_name);
            port.ha_chassis = row
                .ha_chassis_group
                .as_ref()
                .and_then(|g| t.ha_chassis_groups.get(g))
                .map(|g| {
                    let mut members: Vec<HaChassis> = g
                        .ha_chassis
                        .iter()
                        .filter_map(|h| t.ha_chassis.get(h))
                        .filter_map(|h| {
                            let chassis = h
                                .chassis
                                .as_ref()
                                .and_then(chassis_name)
                                .or_else(|| h.chassis_name.clone())?;
                            Some(HaChassis {
                                chassis,
                                priority: h.priority,
                            })
                        })
                        .collect();
                    members.sort_by(|a, b| {
                        b.priority.cmp(&a.priority).then(a.chassis.cmp(&b.chassis))
                    });
                    members
                })
                .unwrap_or_default();
            (port.name.clone(), port)
        })
        .collect();

    let datapath_groups: BTreeMap<Uuid, Vec<Uuid>> = t
        .datapath_groups
        .rows
        .iter()
        .map(|(u, g)| {
            let mut members = g.0.clone();
            members.sort();
            (*u, members)
        })
        .collect();

    let port_name = |uuid: &Uuid| t.port_bindings.get(uuid).map(|p| p.port.name.clone());
    let multicast_groups = t
        .multicast_groups
        .rows
        .iter()
        .map(|(u, row)| {
            let mut group = row.group.clone();
            group.ports = row.ports.iter().filter_map(port_name).collect();
            group.ports.sort();
            (*u, group)
        })
        .collect();

    let mut mac_bindings: Vec<MacBinding> = t.mac_bindings.values().cloned().collect();
    mac_bindings.sort_by(|a, b| (&a.logical_port, &a.ip).cmp(&(&b.logical_port, &b.ip)));
    let mut static_mac_bindings: Vec<StaticMacBinding> =
        t.static_mac_bindings.values().cloned().collect();
    static_mac_bindings.sort_by(|a, b| (&a.logical_port, &a.ip).cmp(&(&b.logical_port, &b.ip)));

    let named_sets = |sets: Vec<&super::tables::NamedSet>| -> BTreeMap<String, Vec<String>> {
        sets.into_iter()
            .map(|s| {
                let mut members = s.members.clone();
                members.sort();
                (s.name.clone(), members)
            })
            .collect()
    };

    let load_balancers = t
        .load_balancers
        .rows
        .iter()
        .map(|(u, row)| {
            let mut lb = row.lb.clone();
            if let Some(members) = row
                .datapath_group
                .as_ref()
                .and_then(|g| datapath_groups.get(g))
            {
                lb.datapaths.extend(members);
            }
            lb.datapaths.sort();
            lb.datapaths.dedup();
            (*u, lb)
        })
        .collect();

    LogicalNetwork {
        sb_global: t.sb_global.values().next().cloned().unwrap_or_default(),
        chassis,
        chassis_private,
        datapaths,
        ports,
        logical_flows: t
            .logical_flows
            .rows
            .iter()
            .map(|(u, f)| (*u, f.clone()))
            .collect(),
        multicast_groups,
        mac_bindings,
        static_mac_bindings,
        address_sets: named_sets(t.address_sets.values().map(|r| &r.0).collect()),
        port_groups: named_sets(t.port_groups.values().map(|r| &r.0).collect()),
        load_balancers,
        datapath_groups,
        dns: {
            let mut dns: Vec<DnsRecords> = t.dns.values().cloned().collect();
            dns.sort_by(|a, b| (&a.datapaths, &a.records).cmp(&(&b.datapaths, &b.records)));
            dns
        },
    }
}
