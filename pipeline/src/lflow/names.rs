//! Names a logical flow may use, answered from a [`LogicalNetwork`] for one
//! datapath: its ports and multicast groups, address sets, and port groups
//! (northd writes them per datapath as `<tunnel key>_<name>`).

use super::normalize::Resolver;
use crate::keyhash::BuildKeyHasher;
use crate::network::{Datapath, LogicalNetwork};
use crate::Uuid;
use std::collections::HashMap;

pub struct DatapathNames<'a> {
    net: &'a LogicalNetwork,
    tunnel_key: u32,
    /// Logical ports and multicast groups of the datapath → tunnel key.
    ports: HashMap<&'a str, u32, BuildKeyHasher>,
    /// The chassis `is_chassis_resident` asks about; none: every port is
    /// resident (ovn-trace's answer).
    pub chassis: Option<&'a str>,
}

impl<'a> DatapathNames<'a> {
    pub fn new(net: &'a LogicalNetwork, dp: &Datapath) -> Self {
        let ports = net
            .ports
            .values()
            .filter(|p| p.datapath == dp.uuid)
            .map(|p| (p.name.as_str(), p.tunnel_key))
            .chain(
                net.multicast_groups
                    .values()
                    .filter(|g| g.datapath == dp.uuid)
                    .map(|g| (g.name.as_str(), g.tunnel_key)),
            )
            .collect();
        DatapathNames {
            net,
            tunnel_key: dp.tunnel_key,
            ports,
            chassis: None,
        }
    }

    /// Names for every datapath, in one pass over the ports (building each
    /// on its own would scan all ports once per datapath).
    pub fn for_all(net: &'a LogicalNetwork) -> HashMap<Uuid, DatapathNames<'a>, BuildKeyHasher> {
        let mut all: HashMap<Uuid, DatapathNames<'a>, BuildKeyHasher> = net
            .datapaths
            .values()
            .map(|dp| {
                let names = DatapathNames {
                    net,
                    tunnel_key: dp.tunnel_key,
                    ports: HashMap::default(),
                    chassis: None,
                };
                (dp.uuid, names)
            })
            .collect();
        let ports = net
            .ports
            .values()
            .map(|p| (p.datapath, p.name.as_str(), p.tunnel_key));
        let groups = net
            .multicast_groups
            .values()
            .map(|g| (g.datapath, g.name.as_str(), g.tunnel_key));
        for (dp, name, key) in ports.chain(groups) {
            if let Some(names) = all.get_mut(&dp) {
                names.ports.insert(name, key);
            }
        }
        all
    }
}

impl Resolver for DatapathNames<'_> {
    fn port_key(&self, name: &str) -> Option<u32> {
        // "none" is OVN's reserved name for no port: key 0, which is what
        // `outport = get_fdb(…)` leaves when it finds nothing.
        if name == "none" {
            return Some(0);
        }
        self.ports.get(name).copied()
    }

    fn is_chassis_resident(&self, port: &str) -> bool {
        match self.chassis {
            None => true,
            Some(me) => self
                .net
                .ports
                .get(port)
                .is_some_and(|p| p.chassis.as_deref() == Some(me)),
        }
    }

    fn address_set(&self, name: &str) -> Option<Vec<String>> {
        self.net.address_sets.get(name).cloned()
    }

    fn port_group(&self, name: &str) -> Option<Vec<String>> {
        // A port group that spans no port of this datapath has no
        // per-datapath row: it is empty here, not unknown.
        let per_dp = format!("{}_{name}", self.tunnel_key);
        self.net
            .port_groups
            .get(&per_dp)
            .or_else(|| self.net.port_groups.get(name))
            .cloned()
            .or_else(|| {
                self.net
                    .port_groups
                    .keys()
                    .any(|k| k.split_once('_').is_some_and(|(_, n)| n == name))
                    .then(Vec::new)
            })
    }
}
