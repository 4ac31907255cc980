//! The controller side of two ironflow daemons against a real central
//! with the seed: a packet whose TTL runs out comes back as ICMP time
//! exceeded from the router; a packet to an address nobody has announced
//! makes the router ask for it with a broadcast ARP on the far node; the
//! answer is learned into the SB's MAC_Binding table (as ovn-controller
//! writes it) and the next packet goes to the MAC it learned; a pod's
//! DHCPDISCOVER gets an OFFER with the NB's DHCP_Options.

use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::inproc::{ipv4_checksum, mem_node, mgmt_socket, until, Running};
use ironflow_testbeds::seed::build_seed;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const WEB1_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 2];
const NODE2_ROUTER_MAC: [u8; 6] = [0, 0, 0, 0xd3, 0x4b, 0xaa];
const NODE1_ROUTER_MAC: [u8; 6] = [0, 0, 0, 0xc0, 0x2e, 0xc7];
const HOST99_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x99];

/// A UDP datagram from web-1 to `dst`:53 with `ttl`, to web-1's router port.
fn udp_from_web1(dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 18];
    f[0..6].copy_from_slice(&NODE2_ROUTER_MAC);
    f[6..12].copy_from_slice(&WEB1_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut ip = [
        0x45, 0, 0, 46, 0, 1, 0x40, 0, ttl, 17, 0, 0, 192, 168, 3, 3, 0, 0, 0, 0,
    ];
    ip[16..20].copy_from_slice(&dst);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f[14..34].copy_from_slice(&ip);
    f[34..36].copy_from_slice(&33000u16.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

/// host-99's ARP reply to the router's request.
fn arp_reply_from_host99() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&NODE1_ROUTER_MAC);
    f[6..12].copy_from_slice(&HOST99_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    f[22..28].copy_from_slice(&HOST99_MAC);
    f[28..32].copy_from_slice(&[192, 168, 2, 99]);
    f[32..38].copy_from_slice(&NODE1_ROUTER_MAC);
    f[38..42].copy_from_slice(&[192, 168, 2, 1]);
    f
}

const DHCP1_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x42];
const XID: u32 = 0x1234_5678;

/// dhcp-1's DHCPDISCOVER, broadcast.
fn discover() -> Vec<u8> {
    let mut dhcp = vec![0u8; 236];
    dhcp[0] = 1;
    dhcp[1] = 1;
    dhcp[2] = 6;
    dhcp[4..8].copy_from_slice(&XID.to_be_bytes());
    dhcp[28..34].copy_from_slice(&DHCP1_MAC);
    dhcp.extend_from_slice(&[99, 130, 83, 99, 53, 1, 1, 255]);
    let udp_len = 8 + dhcp.len();
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&DHCP1_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
    ];
    ip[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&68u16.to_be_bytes());
    f.extend_from_slice(&67u16.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&dhcp);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_answers_asks_and_learns() {
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("seed");
    // A host on kube-node1's switch that no address announces.
    central
        .nbctl(&["lsp-add", "kube-node1", "host-99"])
        .unwrap();
    central
        .nbctl(&["lsp-set-addresses", "host-99", "unknown"])
        .unwrap();
    // A pod that gets its address by DHCP.
    central.nbctl(&["lsp-add", "kube-node1", "dhcp-1"]).unwrap();
    central
        .nbctl(&[
            "lsp-set-addresses",
            "dhcp-1",
            "0a:00:00:00:00:42 192.168.2.42",
        ])
        .unwrap();
    let options = central
        .nbctl(&["dhcp-options-create", "192.168.2.0/24"])
        .unwrap();
    let options = if options.trim().is_empty() {
        central
            .nbctl(&[
                "--bare",
                "--columns=_uuid",
                "find",
                "DHCP_Options",
                "cidr=\"192.168.2.0/24\"",
            ])
            .unwrap()
    } else {
        options
    };
    let options = options.trim().to_string();
    central
        .nbctl(&[
            "dhcp-options-set-options",
            &options,
            "lease_time=3600",
            "router=192.168.2.1",
            "server_id=192.168.2.1",
            "server_mac=00:00:00:c0:2e:c7",
            "netmask=255.255.255.0",
            "dns_server={8.8.8.8,8.8.4.4}",
        ])
        .unwrap();
    central
        .nbctl(&["lsp-set-dhcpv4-options", "dhcp-1", &options])
        .unwrap();
    central.sync().unwrap();
    let node2_ip = Ipv4Addr::new(127, 0, 0, 6);
    let (mut cfg1, peers1) = mem_node(
        &central,
        "kube-node1",
        Ipv4Addr::new(127, 0, 0, 5),
        &["sshd-2", "host-99", "dhcp-1"],
    );
    // Two workers: packets between the underlay and the pods cross from
    // one worker to the other.
    cfg1.workers = 2;
    let (cfg2, peers2) = mem_node(&central, "kube-node2", node2_ip, &["web-1"]);
    let (host99, web) = (&peers1[1], &peers2[0]);
    let (d1, d2) = (Running::spawn(cfg1), Running::spawn(cfg2));

    // TTL 1 through the router: time exceeded, from the router's port.
    let reply = until(
        web,
        &udp_from_web1([192, 168, 2, 3], 1),
        web,
        "time exceeded",
        |f| f.len() > 34 && f[23] == 1 && f[34] == 11,
    )
    .await;
    assert_eq!(&reply[0..6], &WEB1_MAC);
    assert_eq!(&reply[6..12], &NODE2_ROUTER_MAC);
    assert_eq!(&reply[26..30], &[192, 168, 3, 1], "from the router port");
    assert_eq!(&reply[30..34], &[192, 168, 3, 3]);
    assert_eq!(ipv4_checksum(&reply[14..34]), 0);
    // It quotes the datagram that died.
    assert_eq!(&reply[42 + 12..42 + 20], &[192, 168, 3, 3, 192, 168, 2, 3]);

    // To an address nobody announced: the router asks on kube-node1.
    let to_99 = udp_from_web1([192, 168, 2, 99], 64);
    let request = until(web, &to_99, host99, "ARP request", |f| {
        f.len() >= 42 && f[12..14] == [0x08, 0x06]
    })
    .await;
    assert_eq!(&request[0..6], &[0xff; 6], "broadcast");
    assert_eq!(&request[6..12], &NODE1_ROUTER_MAC);
    assert_eq!(&request[20..22], &[0, 1], "a request");
    assert_eq!(&request[28..32], &[192, 168, 2, 1], "from the router's IP");
    assert_eq!(&request[38..42], &[192, 168, 2, 99], "for .99");

    // The answer is learned into the SB as ovn-controller writes it.
    assert!(host99.inject(&arp_reply_from_host99()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = central
            .sbctl(&["--columns=logical_port,ip,mac", "list", "MAC_Binding"])
            .unwrap();
        if rows.contains("192.168.2.99") {
            assert!(rows.contains("rtos-kube-node1"), "{rows}");
            assert!(rows.contains("0a:00:00:00:00:99"), "{rows}");
            break;
        }
        assert!(Instant::now() < deadline, "no MAC_Binding: {rows}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // And the datagram now goes to the MAC learned.
    let got = until(web, &to_99, host99, "datagram to .99", |f| {
        f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == 17
    })
    .await;
    assert_eq!(&got[0..6], &HOST99_MAC);
    assert_eq!(got[22], 63);

    // DHCP: the DISCOVER gets an OFFER of the port's address.
    let dhcp1 = &peers1[2];
    let offer = until(dhcp1, &discover(), dhcp1, "DHCP offer", |f| {
        f.len() > 42 && f[23] == 17 && f[34..36] == [0, 67]
    })
    .await;
    assert_eq!(&offer[0..6], &DHCP1_MAC, "to the client");
    assert_eq!(&offer[6..12], &NODE1_ROUTER_MAC, "from server_mac");
    assert_eq!(&offer[26..30], &[192, 168, 2, 1], "from server_id");
    assert_eq!(&offer[36..38], &[0, 68]);
    let dhcp = &offer[42..];
    assert_eq!(dhcp[0], 2, "BOOTREPLY");
    assert_eq!(&dhcp[4..8], &XID.to_be_bytes());
    assert_eq!(&dhcp[16..20], &[192, 168, 2, 42], "yiaddr");
    let opts = &dhcp[240..];
    assert_eq!(&opts[0..3], &[53, 1, 2], "an OFFER");
    assert_eq!(&opts[3..9], &[54, 4, 192, 168, 2, 1], "server id first");
    assert!(
        opts.windows(10)
            .any(|w| w == [6, 8, 8, 8, 8, 8, 8, 8, 4, 4]),
        "dns servers: {opts:?}"
    );

    let stats = ironflow_control::mgmt::request(&mgmt_socket("kube-node2", node2_ip), "stats")
        .await
        .unwrap();
    assert!(
        stats["controller"]["sent"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    d1.stop().await;
    d2.stop().await;
}

const A1_MAC: [u8; 6] = [0x0a, 0, 0, 0x06, 0x01, 0x0a];
const R6A_MAC: [u8; 6] = [0, 0, 0, 0x06, 0, 0x01];

fn v6(text: &str) -> [u8; 16] {
    text.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// An IPv6 frame from a1 (its global address) carrying `next`.
fn from_a1(eth_dst: [u8; 6], dst: &str, hop_limit: u8, next: u8, payload: &[u8]) -> Vec<u8> {
    from_a1_at("fd00:6:1::a", eth_dst, dst, hop_limit, next, payload)
}

/// An IPv6 frame from a1's address `src` carrying `next` (the ICMPv6 or
/// UDP checksum filled in).
fn from_a1_at(
    src: &str,
    eth_dst: [u8; 6],
    dst: &str,
    hop_limit: u8,
    next: u8,
    payload: &[u8],
) -> Vec<u8> {
    let src = v6(src);
    let dst = v6(dst);
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&A1_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, hop_limit]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let start = f.len();
    f.extend_from_slice(payload);
    let csum_at = match next {
        58 => 2,
        17 => 6,
        _ => usize::MAX,
    };
    if csum_at != usize::MAX {
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for c in bytes.chunks(2) {
                sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
        };
        add(&src);
        add(&dst);
        add(&(payload.len() as u32).to_be_bytes());
        add(&[0, 0, 0, next]);
        add(payload);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[start + csum_at..start + csum_at + 2].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_speaks_neighbor_discovery_and_icmp6() {
    let central = OvnCentral::start().expect("start OVN central");
    ironflow_testbeds::topologies::ALL
        .iter()
        .find(|t| t.name == "dual-stack")
        .unwrap()
        .build(&central)
        .expect("dual-stack");
    central.sync().unwrap();
    let (cfg, peers) = mem_node(&central, "ch6", Ipv4Addr::new(127, 0, 0, 9), &["a1", "b1"]);
    let (a1, b1) = (&peers[0], &peers[1]);
    let daemon = Running::spawn(cfg);

    // a1 asks for its router: nd_na_router answers, from the router port.
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&v6("fd00:6:1::1"));
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&A1_MAC);
    let solicit = from_a1([0x33, 0x33, 0xff, 0, 0, 1], "ff02::1:ff00:1", 255, 58, &ns);
    let na = until(a1, &solicit, a1, "neighbor advertisement", |f| {
        f.len() >= 78 && f[12..14] == [0x86, 0xdd] && f[54] == 136
    })
    .await;
    assert_eq!(&na[0..6], &A1_MAC, "back to a1");
    assert_eq!(&na[6..12], &R6A_MAC);
    assert_eq!(&na[22..38], &v6("fd00:6:1::1"));
    assert_eq!(&na[38..54], &v6("fd00:6:1::a"));
    assert_eq!(na[21], 255, "hop limit");
    assert_eq!(na[58] & 0xe0, 0xe0, "router, solicited, override");
    assert_eq!(&na[62..78], &v6("fd00:6:1::1"), "target");
    assert_eq!(&na[78..86], &[2, 1, 0, 0, 0, 6, 0, 1], "its MAC");

    // To an address nobody announced on b: the router solicits it there.
    let udp = [0x80, 0x00, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4];
    let to_99 = from_a1(R6A_MAC, "fd00:6:2::99", 64, 17, &udp);
    let sol = until(a1, &to_99, b1, "neighbor solicitation on b", |f| {
        f.len() >= 78 && f[12..14] == [0x86, 0xdd] && f[54] == 135
    })
    .await;
    assert_eq!(
        &sol[0..6],
        &[0x33, 0x33, 0xff, 0, 0, 0x99],
        "solicited-node MAC"
    );
    assert_eq!(&sol[38..54], &v6("ff02::1:ff00:99"));
    assert_eq!(&sol[62..78], &v6("fd00:6:2::99"), "target");

    // Hop limit 1 through the router: time exceeded.
    let dying = from_a1(R6A_MAC, "fd00:6:2::a", 1, 17, &udp);
    let te = until(a1, &dying, a1, "time exceeded", |f| {
        f.len() > 62 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 3
    })
    .await;
    assert_eq!(&te[22..38], &v6("fd00:6:1::1"), "from the router port");
    assert_eq!(&te[62..62 + 40], &dying[14..54], "quotes the packet");

    // A router solicitation gets the advertisement put_nd_ra_opts built.
    let a1_ll = "fe80::800:ff:fe06:10a";
    let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend_from_slice(&A1_MAC);
    let solicit = from_a1_at(a1_ll, [0x33, 0x33, 0, 0, 0, 2], "ff02::2", 255, 58, &rs);
    let ra = until(a1, &solicit, a1, "router advertisement", |f| {
        f.len() > 70 && f[12..14] == [0x86, 0xdd] && f[54] == 134
    })
    .await;
    assert_eq!(&ra[0..6], &A1_MAC);
    assert_eq!(
        &ra[22..38],
        &v6("fe80::200:ff:fe06:1"),
        "from the router's link-local"
    );
    assert_eq!(&ra[38..54], &v6(a1_ll));
    assert_eq!(ra[59] & 0xc0, 0, "slaac: neither managed nor other");
    let opts = &ra[70..];
    let prefix = opts
        .windows(4)
        .position(|w| w[0] == 3 && w[1] == 4 && w[2] == 64)
        .expect("a prefix information option");
    assert_eq!(opts[prefix + 3] & 0xc0, 0xc0, "on-link, autonomous");
    assert_eq!(&opts[prefix + 16..prefix + 32], &v6("fd00:6:1::"));

    // DHCPv6: a SOLICIT gets an ADVERTISE with the port's address.
    let mut sol6 = vec![0x02, 0x22, 0x02, 0x23, 0, 0, 0, 0];
    let mut dhcp = vec![1, 0x12, 0x34, 0x56];
    dhcp.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1]);
    dhcp.extend_from_slice(&A1_MAC);
    dhcp.extend_from_slice(&[0, 3, 0, 12, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0]);
    sol6[4..6].copy_from_slice(&((8 + dhcp.len()) as u16).to_be_bytes());
    sol6.extend_from_slice(&dhcp);
    let request = from_a1_at(a1_ll, [0x33, 0x33, 0, 1, 0, 2], "ff02::1:2", 1, 17, &sol6);
    let adv = until(a1, &request, a1, "DHCPv6 advertise", |f| {
        f.len() > 66 && f[12..14] == [0x86, 0xdd] && f[20] == 17 && f[54..56] == [0x02, 0x23]
    })
    .await;
    let msg = &adv[62..];
    assert_eq!(msg[0], 2, "ADVERTISE");
    assert_eq!(&msg[1..4], &[0x12, 0x34, 0x56]);
    let addr = v6("fd00:6:1::a");
    assert!(
        msg.windows(16).any(|w| w == addr),
        "the port's address is offered: {msg:?}"
    );

    // DNS: a1's query for a name of switch a's DNS records is answered.
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.extend_from_slice(b"\x02a1\x03ovn\x03org\x00\x00\x01\x00\x01");
    let mut udp = vec![0xc3, 0x50, 0, 53, 0, 0, 0, 0];
    udp[4..6].copy_from_slice(&((8 + query.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&query);
    let mut f = Vec::new();
    f.extend_from_slice(&R6A_MAC);
    f.extend_from_slice(&A1_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 6, 1, 10, 10, 6, 1, 1,
    ];
    ip[2..4].copy_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&udp);
    let answer = until(a1, &f, a1, "DNS answer", |f| {
        f.len() > 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[34..36] == [0, 53]
    })
    .await;
    assert_eq!(&answer[26..30], &[10, 6, 1, 1], "from the address asked");
    let dns = &answer[42..];
    assert_eq!(&dns[0..2], &[0x12, 0x34]);
    assert_eq!(&dns[6..8], &[0, 1], "one answer");
    assert_eq!(
        &dns[dns.len() - 4..],
        &[10, 6, 1, 10],
        "a1.ovn.org's address"
    );

    daemon.stop().await;
}
