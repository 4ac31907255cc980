//! `ironflow sb show`: the logical network as text, in the spirit of
//! `ovn-sbctl show` but organised by datapath, with flow counts per stage.

use ironflow_pipeline::network::{LogicalNetwork, LogicalPort, PortType};
use std::fmt::Write;

/// Where the network came from, for the heading.
pub struct Origin<'a> {
    pub source: &'a str,
    pub schema_version: Option<&'a str>,
}

pub fn render(net: &LogicalNetwork, origin: &Origin) -> String {
    let mut out = String::new();
    let schema = origin
        .schema_version
        .map(|v| format!(" (SB schema {v})"))
        .unwrap_or_default();
    let _ = writeln!(out, "Southbound at {}{schema}", origin.source);

    for chassis in net.chassis.values() {
        let _ = writeln!(out, "Chassis {:?}", chassis.name);
        if !chassis.hostname.is_empty() {
            let _ = writeln!(out, "    hostname: {:?}", chassis.hostname);
        }
        for encap in &chassis.encaps {
            let _ = writeln!(out, "    Encap {} ip: {:?}", encap.encap_type, encap.ip);
            if !encap.options.is_empty() {
                let _ = writeln!(out, "        options: {:?}", encap.options);
            }
        }
        let mut bound: Vec<&str> = net
            .ports
            .values()
            .filter(|p| p.chassis.as_deref() == Some(chassis.name.as_str()))
            .map(|p| p.name.as_str())
            .collect();
        bound.sort();
        for port in bound {
            let _ = writeln!(out, "    Port_Binding {port:?}");
        }
    }

    for dp in net.datapaths_by_key() {
        let _ = writeln!(
            out,
            "Datapath {:?} ({}, tunnel_key {}, {})",
            dp.name, dp.kind, dp.tunnel_key, dp.uuid
        );
        for port in net.ports_of(dp.uuid) {
            let _ = writeln!(out, "    {}", describe_port(port));
        }
        let mut groups: Vec<_> = net
            .multicast_groups
            .values()
            .filter(|g| g.datapath == dp.uuid)
            .collect();
        groups.sort_by_key(|g| g.tunnel_key);
        for group in groups {
            let _ = writeln!(
                out,
                "    multicast {} tunnel_key {} ({} ports)",
                group.name,
                group.tunnel_key,
                group.ports.len()
            );
        }
        let counts = net.flow_counts(dp.uuid);
        let total: usize = counts.values().map(|c| c.flows).sum();
        let _ = writeln!(out, "    logical flows: {total}");
        for ((pipeline, table), count) in &counts {
            let stage = count.stage_name.as_deref().unwrap_or("-");
            let _ = writeln!(
                out,
                "        {pipeline:<7} {table:>2} {stage:<28} {:>5}",
                count.flows
            );
        }
    }

    let _ = writeln!(
        out,
        "Total: {} datapaths, {} ports, {} logical flows ({} datapath groups), {} multicast groups, \
         {} MAC bindings, {} address sets, {} port groups, {} load balancers, {} chassis",
        net.datapaths.len(),
        net.ports.len(),
        net.logical_flows.len(),
        net.datapath_groups.len(),
        net.multicast_groups.len(),
        net.mac_bindings.len() + net.static_mac_bindings.len(),
        net.address_sets.len(),
        net.port_groups.len(),
        net.load_balancers.len(),
        net.chassis.len(),
    );
    out
}

fn describe_port(port: &LogicalPort) -> String {
    let mut line = format!("port {:?} tunnel_key {}", port.name, port.tunnel_key);
    if port.port_type != PortType::Vif {
        let _ = write!(line, " type {}", port.port_type.as_str());
    }
    if let Some(peer) = port.peer() {
        let _ = write!(line, " peer {peer:?}");
    }
    match &port.chassis {
        Some(chassis) => {
            let _ = write!(line, " chassis {chassis:?}");
        }
        None if port.port_type == PortType::Vif => line.push_str(" unbound"),
        None => {}
    }
    if !port.mac.is_empty() {
        let _ = write!(line, " mac {:?}", port.mac);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironflow_pipeline::network::*;
    use ironflow_pipeline::Uuid;

    #[test]
    fn shows_datapaths_ports_and_flow_counts() {
        let mut net = LogicalNetwork::default();
        let dp = Uuid([4; 16]);
        net.datapaths.insert(
            dp,
            Datapath {
                uuid: dp,
                name: "kube-node1".into(),
                tunnel_key: 4,
                kind: DatapathKind::Switch,
                ..Default::default()
            },
        );
        net.ports.insert(
            "stor-kube-node1".into(),
            LogicalPort {
                name: "stor-kube-node1".into(),
                datapath: dp,
                tunnel_key: 1,
                port_type: PortType::Patch,
                options: [("peer".to_string(), "rtos-kube-node1".to_string())].into(),
                ..Default::default()
            },
        );
        net.ports.insert(
            "sshd-2".into(),
            LogicalPort {
                name: "sshd-2".into(),
                datapath: dp,
                tunnel_key: 3,
                chassis: Some("ch1".into()),
                ..Default::default()
            },
        );
        net.chassis.insert(
            "ch1".into(),
            Chassis {
                name: "ch1".into(),
                ..Default::default()
            },
        );
        let flow = LogicalFlow {
            uuid: Uuid([1; 16]),
            scope: FlowScope::Datapath(dp),
            pipeline: Pipeline::Ingress,
            table_id: 0,
            priority: 100,
            match_: "1".into(),
            actions: "next;".into(),
            stage_name: Some("ls_in_check_port_sec".into()),
            stage_hint: None,
            source: None,
            controller_meter: None,
            tags: Default::default(),
        };
        net.logical_flows.insert(flow.uuid, flow.into());
        let text = render(
            &net,
            &Origin {
                source: "unix:/sb.sock",
                schema_version: Some("20.27.0"),
            },
        );
        assert!(
            text.contains("Datapath \"kube-node1\" (switch, tunnel_key 4,"),
            "{text}"
        );
        assert!(
            text.contains(
                "port \"stor-kube-node1\" tunnel_key 1 type patch peer \"rtos-kube-node1\""
            ),
            "{text}"
        );
        assert!(
            text.contains("port \"sshd-2\" tunnel_key 3 chassis \"ch1\""),
            "{text}"
        );
        assert!(text.contains("    Port_Binding \"sshd-2\""), "{text}");
        assert!(text.contains("ingress  0 ls_in_check_port_sec"), "{text}");
        assert!(
            text.contains("Total: 1 datapaths, 2 ports, 1 logical flows"),
            "{text}"
        );
    }
}
