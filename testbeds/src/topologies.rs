//! Topologies beyond the seed, each exercising a family of northd features,
//! built with `ovn-nbctl` the way an operator would.

use crate::central::OvnCentral;
use anyhow::Result;

/// A named topology: the `ovn-nbctl` commands that build it.
pub struct Topology {
    pub name: &'static str,
    pub about: &'static str,
    pub commands: fn() -> Vec<Vec<String>>,
}

impl Topology {
    pub fn build(&self, central: &OvnCentral) -> Result<()> {
        central.nbctl_batch(&(self.commands)())
    }
}

pub const ALL: [Topology; 6] = [
    Topology {
        name: "seed",
        about: "the seed: ovn-kubernetes, three node switches and join behind one router",
        commands: crate::seed::commands,
    },
    Topology {
        name: "two-routers",
        about: "two routers joined by a transit switch, static routes and a default route",
        commands: two_routers,
    },
    Topology {
        name: "acls",
        about: "port groups, address sets, allow-related / allow / drop / reject ACLs both ways",
        commands: acls,
    },
    Topology {
        name: "dual-stack",
        about: "IPv4 and IPv6 on every port and router port, IPv6 ACL and load balancer, DHCPv4/v6, DNS",
        commands: dual_stack,
    },
    Topology {
        name: "gateway",
        about: "gateway router bound to a chassis, SNAT, floating IP, localnet port",
        commands: gateway,
    },
    Topology {
        name: "features",
        about: "gateway plus NAT port range, ECMP, gateway MTU, ACL log with meter, virtual and localport, tagged child, multicast snooping, LB affinity",
        commands: features,
    },
];

/// Splits each line into words; a quoted part stays one word (quotes kept
/// off), so commands read as they would at a shell.
fn cmds(lines: &[&str]) -> Vec<Vec<String>> {
    lines
        .iter()
        .map(|line| {
            let mut words = Vec::new();
            let mut word = String::new();
            let mut quoted = false;
            for ch in line.chars() {
                match ch {
                    '\'' => quoted = !quoted,
                    ' ' if !quoted => {
                        if !word.is_empty() {
                            words.push(std::mem::take(&mut word));
                        }
                    }
                    c => word.push(c),
                }
            }
            if !word.is_empty() {
                words.push(word);
            }
            words
        })
        .collect()
}

/// A switch with `ports` VIFs (name, MAC, IPs) and a router port on it.
fn switch_on_router(
    router: &str,
    sw: &str,
    mac: &str,
    nets: &str,
    vifs: &[(&str, &str)],
) -> Vec<Vec<String>> {
    let rp = format!("{router}-{sw}");
    let sp = format!("{sw}-{router}");
    let mut lines = vec![
        format!("ls-add {sw}"),
        format!("lrp-add {router} {rp} {mac} {nets}"),
        format!("lsp-add {sw} {sp}"),
        format!("lsp-set-type {sp} router"),
        format!("lsp-set-addresses {sp} router"),
        format!("lsp-set-options {sp} router-port={rp}"),
    ];
    for (name, addrs) in vifs {
        lines.push(format!("lsp-add {sw} {name}"));
        lines.push(format!("lsp-set-addresses {name} '{addrs}'"));
        lines.push(format!("lsp-set-port-security {name} '{addrs}'"));
    }
    cmds(&lines.iter().map(String::as_str).collect::<Vec<_>>())
}

fn two_routers() -> Vec<Vec<String>> {
    let mut c = cmds(&["lr-add r1", "lr-add r2"]);
    c.extend(switch_on_router(
        "r1",
        "left",
        "00:00:01:00:00:01",
        "10.1.0.1/24",
        &[("l1", "0a:00:01:00:00:0a 10.1.0.10")],
    ));
    c.extend(switch_on_router(
        "r2",
        "right",
        "00:00:02:00:00:01",
        "10.2.0.1/24",
        &[("r1p", "0a:00:02:00:00:0a 10.2.0.10")],
    ));
    c.extend(switch_on_router(
        "r1",
        "transit",
        "00:00:01:00:00:fe",
        "172.16.0.1/30",
        &[],
    ));
    c.extend(cmds(&[
        "lrp-add r2 r2-transit 00:00:02:00:00:fe 172.16.0.2/30",
        "lsp-add transit transit-r2",
        "lsp-set-type transit-r2 router",
        "lsp-set-addresses transit-r2 router",
        "lsp-set-options transit-r2 router-port=r2-transit",
        "lr-route-add r1 10.2.0.0/24 172.16.0.2",
        "lr-route-add r2 10.1.0.0/24 172.16.0.1",
        "lr-route-add r2 0.0.0.0/0 172.16.0.1",
        "lr-route-add r1 192.0.2.0/24 172.16.0.2 r1-transit",
    ]));
    c
}

fn acls() -> Vec<Vec<String>> {
    let mut c = cmds(&["lr-add r0"]);
    c.extend(switch_on_router(
        "r0",
        "web",
        "00:00:00:0a:00:01",
        "10.10.0.1/24",
        &[
            ("web1", "0a:00:00:0a:00:0a 10.10.0.10"),
            ("web2", "0a:00:00:0a:00:0b 10.10.0.11"),
        ],
    ));
    c.extend(switch_on_router(
        "r0",
        "db",
        "00:00:00:0b:00:01",
        "10.20.0.1/24",
        &[("db1", "0a:00:00:0b:00:0a 10.20.0.10")],
    ));
    c.extend(cmds(&[
        "pg-add pg_web web1 web2",
        "pg-add pg_db db1",
        "create Address_Set name=admins 'addresses=\"192.0.2.10\",\"192.0.2.0/28\"'",
        "acl-add pg_web to-lport 1002 'outport == @pg_web && ip4 && tcp.dst == {80, 443}' allow-related",
        "acl-add pg_web to-lport 1001 'outport == @pg_web && ip4.src == $admins && tcp.dst == 22' allow",
        "acl-add pg_web to-lport 1000 'outport == @pg_web && ip4' drop",
        "acl-add pg_db to-lport 1002 'outport == @pg_db && ip4.src == $pg_web_ip4 && tcp.dst == 5432' allow-related",
        "acl-add pg_db to-lport 1001 'outport == @pg_db && udp' reject",
        "acl-add pg_db to-lport 1000 'outport == @pg_db && ip' drop",
        "acl-add pg_db from-lport 1000 'inport == @pg_db && ip4.dst != 10.20.0.0/16 && tcp' reject",
        "acl-add web from-lport 900 'inport == \"web2\" && (udp.dst == 53 || 1024 <= tcp.src <= 65535)' allow",
    ]));
    c
}

fn dual_stack() -> Vec<Vec<String>> {
    let mut c = cmds(&["lr-add r6"]);
    c.extend(switch_on_router(
        "r6",
        "a",
        "00:00:00:06:00:01",
        "10.6.1.1/24 fd00:6:1::1/64",
        &[("a1", "0a:00:00:06:01:0a 10.6.1.10 fd00:6:1::a")],
    ));
    c.extend(switch_on_router(
        "r6",
        "b",
        "00:00:00:06:00:02",
        "10.6.2.1/24 fd00:6:2::1/64",
        &[("b1", "0a:00:00:06:02:0a 10.6.2.10 fd00:6:2::a")],
    ));
    c.extend(cmds(&[
        "pg-add pg_b b1",
        "acl-add pg_b to-lport 1001 'outport == @pg_b && ip6.src == $pg_b_ip6 && icmp6' allow-related",
        "acl-add pg_b to-lport 1000 'outport == @pg_b && ip6' drop",
        "lb-add lb6 [fd00:6:99::1]:80 [fd00:6:2::a]:8080 tcp",
        "ls-lb-add a lb6",
        "lr-lb-add r6 lb6",
        "set Logical_Router_Port r6-a ipv6_ra_configs:address_mode=slaac",
        "--id=@d4 create DHCP_Options cidr=10.6.1.0/24 'options={\"server_id\"=\"10.6.1.1\", \"server_mac\"=\"00:00:00:06:00:01\", \"lease_time\"=\"3600\", \"router\"=\"10.6.1.1\", \"dns_server\"=\"{8.8.8.8,7.7.7.7}\"}'",
        "set Logical_Switch_Port a1 dhcpv4_options=@d4",
        "--id=@d6 create DHCP_Options 'cidr=\"fd00:6:1::/64\"' 'options={\"server_id\"=\"00:00:00:06:00:01\"}'",
        "set Logical_Switch_Port a1 dhcpv6_options=@d6",
        "--id=@dns create DNS 'records={\"a1.ovn.org\"=\"10.6.1.10\"}'",
        "add Logical_Switch a dns_records @dns",
    ]));
    c
}

/// The gateway lab plus what operators turn on one by one.
fn features() -> Vec<Vec<String>> {
    let mut c = gateway();
    c.extend(cmds(&[
        "--id=@nat create NAT type=snat external_ip=203.0.113.3 logical_ip=10.31.0.0/24 external_port_range=1000-2000",
        "add Logical_Router gw nat @nat",
        "lr-route-add gw 198.51.100.0/24 203.0.113.5",
        "--ecmp lr-route-add gw 198.51.100.0/24 203.0.113.6",
        "set Logical_Router_Port gw-outside options:gateway_mtu=1400",
        "meter-add acl-meter drop 10 pktps",
        "--log --name=web --severity=info --meter=acl-meter acl-add inside to-lport 1000 'outport == \"in1\" && tcp.dst == 8080' allow-related",
        "lsp-add inside vip1",
        "lsp-set-type vip1 virtual",
        "lsp-set-options vip1 virtual-ip=10.30.0.100 virtual-parents=in1",
        "set Logical_Switch inside other_config:mcast_snoop=true",
        "lsp-add inside lp1",
        "lsp-set-type lp1 localport",
        "lsp-set-addresses lp1 '0a:00:00:0c:00:99 10.30.0.99'",
        "lsp-add inside child1 in1 7",
        "lsp-set-addresses child1 '0a:00:00:0c:00:77 10.30.0.77'",
        "lb-add lb-aff 10.30.0.200:80 10.30.0.10:80 tcp",
        "ls-lb-add inside lb-aff",
        "set Load_Balancer lb-aff options:affinity_timeout=60",
    ]));
    c
}

fn gateway() -> Vec<Vec<String>> {
    let mut c = cmds(&[
        "lr-add gw",
        "set Logical_Router gw options:chassis=gw-chassis",
    ]);
    c.extend(switch_on_router(
        "gw",
        "inside",
        "00:00:00:0c:00:01",
        "10.30.0.1/24",
        &[("in1", "0a:00:00:0c:00:0a 10.30.0.10")],
    ));
    c.extend(cmds(&[
        "ls-add outside",
        "lsp-add outside ln-outside",
        "lsp-set-type ln-outside localnet",
        "lsp-set-addresses ln-outside unknown",
        "lsp-set-options ln-outside network_name=physnet",
        "lrp-add gw gw-outside 00:00:00:0c:ff:01 203.0.113.2/24",
        "lsp-add outside outside-gw",
        "lsp-set-type outside-gw router",
        "lsp-set-addresses outside-gw router",
        "lsp-set-options outside-gw router-port=gw-outside",
        "lr-route-add gw 0.0.0.0/0 203.0.113.1",
        "lr-nat-add gw snat 203.0.113.2 10.30.0.0/24",
        "lr-nat-add gw dnat_and_snat 203.0.113.10 10.30.0.10",
        "lb-add lb-gw 203.0.113.20:80 10.30.0.10:80 tcp",
        "lr-lb-add gw lb-gw",
    ]));
    c
}
