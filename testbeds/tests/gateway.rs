//! A gateway router on an ironflow chassis, as ovn-kubernetes builds one
//! per node: `GR_kube-node2` bound to kube-node2 (`options:chassis`),
//! joined to the cluster router, with an external switch whose localnet
//! port reaches the physical network through `ovn-bridge-mappings`, SNAT
//! of the pod subnet and a floating IP (dnat_and_snat) for web-1.
//!
//! Against a real central: the daemon claims the gateway's ports; web-1's
//! ping to an external host makes the router ask for that host by ARP out
//! the localnet port, learns the answer, and leaves from the floating IP;
//! the external host's reply and its own ping to the floating IP reach
//! web-1.
//!
//! And a distributed gateway port on the cluster router whose gateway
//! chassis (HA_Chassis_Group) is kube-node2: the daemon claims its
//! chassisredirect port, and web-1's traffic leaves through it, NATed.

use ironflow_control::daemon::LocalnetSpec;
use ironflow_datapath::port::{MemPeer, MemPort};
use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::inproc::{ipv4_checksum, mem_node, until, Running};
use ironflow_testbeds::seed::build_seed;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const WEB1_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];
const NODE2_ROUTER_MAC: [u8; 6] = [0, 0, 0, 0xd3, 0x4b, 0xaa];
const GR_EXT_MAC: [u8; 6] = [0, 0, 0, 0x0e, 0, 2];
const HOST_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0xee];
const HOST_IP: [u8; 4] = [172, 16, 0, 1];
const FLOATING_IP: [u8; 4] = [172, 16, 0, 100];

/// The gateway's part of an ovn-kubernetes node, on top of the seed.
fn gateway_commands() -> Vec<Vec<String>> {
    let cmds: &[&[&str]] = &[
        &["lr-add", "GR_kube-node2"],
        &[
            "set",
            "Logical_Router",
            "GR_kube-node2",
            "options:chassis=kube-node2",
        ],
        &[
            "lrp-add",
            "GR_kube-node2",
            "rtoj-GR_kube-node2",
            "00:00:00:0a:00:02",
            "100.64.1.2/24",
        ],
        &["lsp-add", "join", "jtor-GR_kube-node2"],
        &["lsp-set-type", "jtor-GR_kube-node2", "router"],
        &["lsp-set-addresses", "jtor-GR_kube-node2", "router"],
        &[
            "lsp-set-options",
            "jtor-GR_kube-node2",
            "router-port=rtoj-GR_kube-node2",
        ],
        &["ls-add", "ext_kube-node2"],
        &["lsp-add", "ext_kube-node2", "lnet-kube-node2"],
        &["lsp-set-type", "lnet-kube-node2", "localnet"],
        &["lsp-set-addresses", "lnet-kube-node2", "unknown"],
        &[
            "lsp-set-options",
            "lnet-kube-node2",
            "network_name=physnet1",
        ],
        &[
            "lrp-add",
            "GR_kube-node2",
            "rtoe-GR_kube-node2",
            "00:00:00:0e:00:02",
            "172.16.0.2/24",
        ],
        &["lsp-add", "ext_kube-node2", "etor-GR_kube-node2"],
        &["lsp-set-type", "etor-GR_kube-node2", "router"],
        &["lsp-set-addresses", "etor-GR_kube-node2", "router"],
        &[
            "lsp-set-options",
            "etor-GR_kube-node2",
            "router-port=rtoe-GR_kube-node2",
        ],
        &["lr-route-add", "GR_kube-node2", "0.0.0.0/0", "172.16.0.1"],
        &[
            "lr-route-add",
            "GR_kube-node2",
            "192.168.0.0/16",
            "100.64.1.1",
        ],
        &["lr-route-add", "kube-master", "172.16.0.0/24", "100.64.1.2"],
        &[
            "lr-nat-add",
            "GR_kube-node2",
            "dnat_and_snat",
            "172.16.0.100",
            "192.168.3.3",
        ],
        &[
            "lr-nat-add",
            "GR_kube-node2",
            "snat",
            "172.16.0.2",
            "192.168.0.0/16",
        ],
    ];
    cmds.iter()
        .map(|c| c.iter().map(|w| w.to_string()).collect())
        .collect()
}

/// An ICMP echo request (id 7, `seq`) between the given addresses.
fn ping(eth_dst: [u8; 6], eth_src: [u8; 6], src: [u8; 4], dst: [u8; 4], seq: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(98);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [
        0x45, 0, 0, 84, 0, 1, 0x40, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut icmp = vec![8, 0, 0, 0, 0, 7];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(&[0x5a; 56]);
    let sum = ipv4_checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

/// The external host's answer to an ARP request for its address.
fn arp_reply(request: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&request[6..12]);
    f[6..12].copy_from_slice(&HOST_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    f[22..28].copy_from_slice(&HOST_MAC);
    f[28..32].copy_from_slice(&HOST_IP);
    f[32..38].copy_from_slice(&request[22..28]);
    f[38..42].copy_from_slice(&request[28..32]);
    f
}

/// Turns an echo request around (addresses swapped, type 0).
fn echo_reply(request: &[u8], eth_src: [u8; 6]) -> Vec<u8> {
    let mut f = request.to_vec();
    f[0..6].copy_from_slice(&request[6..12]);
    f[6..12].copy_from_slice(&eth_src);
    f[26..30].copy_from_slice(&request[30..34]);
    f[30..34].copy_from_slice(&request[26..30]);
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f[34] = 0;
    f[36..38].copy_from_slice(&[0, 0]);
    let sum = ipv4_checksum(&f[34..]);
    f[36..38].copy_from_slice(&sum.to_be_bytes());
    f
}

fn is_echo(f: &[u8], kind: u8) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 1 && f[34] == kind
}

/// kube-node2 as an ironflow daemon: web-1 on an in-memory port, and
/// physnet1 mapped to another (the external host's side).
fn node(central: &OvnCentral, ip: Ipv4Addr) -> (MemPeer, MemPeer, Running) {
    let (mut cfg, mut peers) = mem_node(central, "kube-node2", ip, &["web-1"]);
    let (ext_port, ext) = MemPort::pair("ext", 256);
    cfg.chassis.bridge_mappings = "physnet1:ext".into();
    cfg.localnet = vec![LocalnetSpec {
        physnet: "physnet1".into(),
        ifname: "ext".into(),
        port: Box::new(ext_port),
        backend: "memory".into(),
    }];
    (peers.remove(0), ext, Running::spawn(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_router_on_an_ironflow_node_reaches_the_physical_network() {
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("seed");
    central.nbctl_batch(&gateway_commands()).expect("gateway");
    central.sync().unwrap();

    let (web, ext, daemon) = node(&central, Ipv4Addr::new(127, 0, 0, 7));

    // The gateway router's ports are claimed for this chassis.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bound = central
            .sbctl(&[
                "--bare",
                "--columns=chassis",
                "find",
                "Port_Binding",
                "logical_port=rtoe-GR_kube-node2",
            ])
            .unwrap();
        if !bound.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway port was never claimed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // web-1 pings the external host: the gateway asks for it on the
    // physical network first.
    let out = ping(NODE2_ROUTER_MAC, WEB1_MAC, [192, 168, 3, 3], HOST_IP, 1);
    let request = until(
        &web,
        &out,
        &ext,
        "ARP request on the physical network",
        |f| f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1],
    )
    .await;
    assert_eq!(&request[0..6], &[0xff; 6]);
    assert_eq!(
        &request[6..12],
        &GR_EXT_MAC,
        "from the gateway's external port"
    );
    assert_eq!(&request[38..42], &HOST_IP);
    assert!(ext.inject(&arp_reply(&request)));

    // Learned, the ping leaves from the floating IP.
    let echo = until(&web, &out, &ext, "the echo request outside", |f| {
        is_echo(f, 8)
    })
    .await;
    assert_eq!(&echo[0..6], &HOST_MAC);
    assert_eq!(&echo[6..12], &GR_EXT_MAC);
    assert_eq!(
        &echo[26..30],
        &FLOATING_IP,
        "web-1 leaves as its floating IP"
    );
    assert_eq!(&echo[30..34], &HOST_IP);
    assert_eq!(ipv4_checksum(&echo[14..34]), 0);

    // The reply comes back to web-1, un-NATed.
    let back = until(
        &ext,
        &echo_reply(&echo, HOST_MAC),
        &web,
        "the echo reply inside",
        |f| is_echo(f, 0),
    )
    .await;
    assert_eq!(&back[0..6], &WEB1_MAC);
    assert_eq!(&back[26..30], &HOST_IP);
    assert_eq!(&back[30..34], &[192, 168, 3, 3]);

    // The external host reaches web-1 at the floating IP.
    let inbound = ping(GR_EXT_MAC, HOST_MAC, HOST_IP, FLOATING_IP, 9);
    let got = until(&ext, &inbound, &web, "the floating IP's ping", |f| {
        is_echo(f, 8)
    })
    .await;
    assert_eq!(&got[0..6], &WEB1_MAC);
    assert_eq!(&got[30..34], &[192, 168, 3, 3], "DNAT to web-1");

    daemon.stop().await;
}

/// A distributed gateway port on the cluster router, gateway chassis
/// kube-node2, with a floating IP for web-1.
fn dgp_commands() -> Vec<Vec<String>> {
    let cmds: &[&[&str]] = &[
        &["ls-add", "ext2"],
        &["lsp-add", "ext2", "lnet-ext2"],
        &["lsp-set-type", "lnet-ext2", "localnet"],
        &["lsp-set-addresses", "lnet-ext2", "unknown"],
        &["lsp-set-options", "lnet-ext2", "network_name=physnet1"],
        &[
            "lrp-add",
            "kube-master",
            "rtoe-dgp",
            "00:00:00:0e:00:09",
            "172.18.0.2/24",
        ],
        &["lsp-add", "ext2", "etor-dgp"],
        &["lsp-set-type", "etor-dgp", "router"],
        &["lsp-set-addresses", "etor-dgp", "router"],
        &["lsp-set-options", "etor-dgp", "router-port=rtoe-dgp"],
        &["lrp-set-gateway-chassis", "rtoe-dgp", "kube-node2", "20"],
        &[
            "lr-nat-add",
            "kube-master",
            "dnat_and_snat",
            "172.18.0.100",
            "192.168.3.3",
        ],
    ];
    cmds.iter()
        .map(|c| c.iter().map(|w| w.to_string()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_gateway_port_on_an_ironflow_gateway_chassis() {
    const DGP_MAC: [u8; 6] = [0, 0, 0, 0x0e, 0, 9];
    const HOST: [u8; 4] = [172, 18, 0, 1];
    const FIP: [u8; 4] = [172, 18, 0, 100];
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("seed");
    central
        .nbctl_batch(&dgp_commands())
        .expect("distributed gateway");
    central.sync().unwrap();
    let (web, ext, daemon) = node(&central, Ipv4Addr::new(127, 0, 0, 8));

    // The chassisredirect port is claimed by its gateway chassis.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let bound = central
            .sbctl(&[
                "--bare",
                "--columns=chassis",
                "find",
                "Port_Binding",
                "logical_port=cr-rtoe-dgp",
            ])
            .unwrap();
        if !bound.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "cr-rtoe-dgp was never claimed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let out = ping(NODE2_ROUTER_MAC, WEB1_MAC, [192, 168, 3, 3], HOST, 1);
    let request = until(&web, &out, &ext, "ARP request from the gateway port", |f| {
        f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1]
    })
    .await;
    assert_eq!(&request[6..12], &DGP_MAC);
    assert_eq!(&request[38..42], &HOST);
    let mut reply = arp_reply(&request);
    reply[28..32].copy_from_slice(&HOST);
    assert!(ext.inject(&reply));
    let echo = until(&web, &out, &ext, "the echo request outside", |f| {
        is_echo(f, 8)
    })
    .await;
    assert_eq!(&echo[0..6], &HOST_MAC);
    assert_eq!(&echo[26..30], &FIP, "web-1 leaves as its floating IP");
    let back = until(
        &ext,
        &echo_reply(&echo, HOST_MAC),
        &web,
        "the echo reply inside",
        |f| is_echo(f, 0),
    )
    .await;
    assert_eq!(&back[26..30], &HOST);
    assert_eq!(&back[30..34], &[192, 168, 3, 3]);

    daemon.stop().await;
}
