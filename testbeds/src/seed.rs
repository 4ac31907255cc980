//! The seed topology (`../shared/seed/`): ovn-kubernetes on a master and two
//! nodes, each node's switch behind the cluster router `kube-master`, plus a
//! join switch, a port group with ACLs, an address set and a load balancer.

use crate::central::OvnCentral;
use anyhow::Result;

/// Name of the cluster router.
pub const ROUTER: &str = "kube-master";

/// A switch: its name, its patch port to the router, the router port facing
/// it, that port's MAC and network.
pub struct NodeSwitch {
    pub name: &'static str,
    pub switch_port: &'static str,
    pub router_port: &'static str,
    pub router_mac: &'static str,
    pub router_net: &'static str,
}

pub const SWITCHES: [NodeSwitch; 4] = [
    NodeSwitch {
        name: "kube-master",
        switch_port: "stor-kube-master",
        router_port: "rtos-kube-master",
        router_mac: "00:00:00:B5:F1:57",
        router_net: "192.168.1.1/24",
    },
    NodeSwitch {
        name: "kube-node1",
        switch_port: "stor-kube-node1",
        router_port: "rtos-kube-node1",
        router_mac: "00:00:00:C0:2E:C7",
        router_net: "192.168.2.1/24",
    },
    NodeSwitch {
        name: "kube-node2",
        switch_port: "stor-kube-node2",
        router_port: "rtos-kube-node2",
        router_mac: "00:00:00:D3:4B:AA",
        router_net: "192.168.3.1/24",
    },
    NodeSwitch {
        name: "join",
        switch_port: "jtor-kube-master",
        router_port: "rtoj-kube-master",
        router_mac: "00:00:00:1A:E4:98",
        router_net: "100.64.1.1/24",
    },
];

/// A VIF: logical port, switch, MAC, IPv4.
pub struct Vif {
    pub name: &'static str,
    pub switch: &'static str,
    pub mac: &'static str,
    pub ip: &'static str,
}

/// Management ports (`k8s-<node>`) and the seed's pods.
pub const VIFS: [Vif; 5] = [
    Vif {
        name: "k8s-kube-master",
        switch: "kube-master",
        mac: "ae:31:fa:c7:81:fc",
        ip: "192.168.1.2",
    },
    Vif {
        name: "k8s-kube-node1",
        switch: "kube-node1",
        mac: "ba:2c:06:32:14:78",
        ip: "192.168.2.2",
    },
    Vif {
        name: "k8s-kube-node2",
        switch: "kube-node2",
        mac: "82:ff:e7:83:99:a9",
        ip: "192.168.3.2",
    },
    Vif {
        name: "sshd-2",
        switch: "kube-node1",
        mac: "0a:00:00:00:00:01",
        ip: "192.168.2.3",
    },
    Vif {
        name: "web-1",
        switch: "kube-node2",
        mac: "0a:00:00:00:00:02",
        ip: "192.168.3.3",
    },
];

/// The `ovn-nbctl` commands that build the seed, each a word list.
pub fn commands() -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let mut add = |words: &[&str]| cmds.push(words.iter().map(|w| w.to_string()).collect());
    add(&["lr-add", ROUTER]);
    for sw in &SWITCHES {
        let patch = sw.switch_port;
        let router_port_opt = format!("router-port={}", sw.router_port);
        add(&["ls-add", sw.name]);
        add(&[
            "lrp-add",
            ROUTER,
            sw.router_port,
            sw.router_mac,
            sw.router_net,
        ]);
        add(&["lsp-add", sw.name, patch]);
        add(&["lsp-set-type", patch, "router"]);
        add(&["lsp-set-addresses", patch, "router"]);
        add(&["lsp-set-options", patch, &router_port_opt]);
    }
    for vif in &VIFS {
        let addresses = format!("{} {}", vif.mac, vif.ip);
        add(&["lsp-add", vif.switch, vif.name]);
        add(&["lsp-set-addresses", vif.name, &addresses]);
        add(&["lsp-set-port-security", vif.name, &addresses]);
    }
    // sshd-2 takes ssh from web clients only, and pings from anyone.
    add(&["pg-add", "pg_sshd", "sshd-2"]);
    add(&[
        "create",
        "Address_Set",
        "name=web_clients",
        "addresses=\"192.168.3.3\",\"192.168.3.2\"",
    ]);
    add(&[
        "acl-add",
        "pg_sshd",
        "to-lport",
        "1001",
        "outport == @pg_sshd && ip4.src == $web_clients && tcp.dst == 22",
        "allow-related",
    ]);
    // Ping reaches it too, as in the seed write-up (ttl=63 replies).
    add(&[
        "acl-add",
        "pg_sshd",
        "to-lport",
        "1001",
        "outport == @pg_sshd && icmp4",
        "allow-related",
    ]);
    add(&[
        "acl-add",
        "pg_sshd",
        "to-lport",
        "1000",
        "outport == @pg_sshd && ip4",
        "drop",
    ]);
    // A cluster service for sshd-2.
    add(&[
        "lb-add",
        "lb-sshd",
        "172.30.0.10:22",
        "192.168.2.3:22",
        "tcp",
    ]);
    for sw in ["kube-master", "kube-node1", "kube-node2"] {
        add(&["ls-lb-add", sw, "lb-sshd"]);
    }
    add(&["lr-lb-add", ROUTER, "lb-sshd"]);
    cmds
}

/// Builds the seed on `central` in one `ovn-nbctl` transaction and waits
/// until northd has written it to the SB.
pub fn build_seed(central: &OvnCentral) -> Result<()> {
    central.nbctl_batch(&commands())
}
