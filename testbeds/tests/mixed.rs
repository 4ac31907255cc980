//! A mixed cluster: kube-node2 is a stock OVN chassis (ovn-controller and
//! OVS's userspace datapath) with web-1 and stock-1, kube-node1 is an
//! `ironflow run` node with sshd-2 and web-9, one central with the seed
//! topology, Geneve between them over a veth. Ping and TCP go both ways
//! across the router and on one logical switch across the chassis; the
//! ACL (tcp/23 dropped) and the load balancer (172.30.0.10:22) hold
//! whichever side the client is on; and a capture at both ends of the
//! underlay shows the two chassis's Geneve frames laid out alike, field
//! by field.
//!
//! Needs root and the OVS/OVN packages; skips with a message otherwise.

use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::lab;
use ironflow_testbeds::node::IronflowNode;
use ironflow_testbeds::seed::build_seed;
use ironflow_testbeds::stock::{self, Netns, PodSpec, StockChassis, StockConfig};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

const STOCK_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 2);
const IRONFLOW_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);

/// Runs `cmd` in `ns` until its output satisfies `ok`.
fn until(ns: &Netns, cmd: &[&str], ok: impl Fn(&str) -> bool, node: &IronflowNode) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .args(cmd)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if ok(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd:?} in {}: {text}\nironflow's log:\n{}\n{}",
            ns.name(),
            node.log(),
            node.ironflow(&["stats"]).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A pod on the ironflow node: namespace `pod` with `eth0` (MAC, address,
/// default route), its peer `ifname` in `node`.
fn plumb(node: &Netns, pod: &Netns, ifname: &str, mac: &str, cidr: &str, gateway: &str) {
    node.ip(&[
        "link",
        "add",
        ifname,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name(),
    ])
    .unwrap();
    node.ip(&["link", "set", ifname, "up"]).unwrap();
    pod.ip(&["link", "set", "eth0", "address", mac]).unwrap();
    pod.ip(&["addr", "add", cidr, "dev", "eth0"]).unwrap();
    pod.ip(&["link", "set", "eth0", "up"]).unwrap();
    pod.sysctl("net.ipv6.conf.all.disable_ipv6", "1").unwrap();
    pod.ip(&["route", "add", "default", "via", gateway])
        .unwrap();
}

/// A TCP connect to `dst` from inside a namespace: "connected",
/// "refused" or "timeout".
fn connect(dst: &str, port: u16) -> String {
    format!(
        "import socket\ns=socket.socket()\ns.settimeout(2)\ntry:\n  s.connect(('{dst}',{port}))\n  print('connected')\nexcept ConnectionRefusedError:\n  print('refused')\nexcept OSError:\n  print('timeout')"
    )
}

/// The layout of an outer Geneve frame, by field, leaving out what must
/// differ between senders (addresses, lengths, checksums' values, the
/// source port's value, and the port keys of the option). The IPv4
/// identification is in: both send 0 with DF set.
fn layout(f: &[u8]) -> BTreeMap<&'static str, u64> {
    let ip = &f[14..34];
    let udp = &f[34..42];
    let g = &f[42..];
    let mut m = BTreeMap::new();
    m.insert("ethertype", u64::from(u16::from_be_bytes([f[12], f[13]])));
    m.insert("ip version/ihl", u64::from(ip[0]));
    m.insert("ip tos", u64::from(ip[1]));
    m.insert(
        "ip identification",
        u64::from(u16::from_be_bytes([ip[4], ip[5]])),
    );
    m.insert("ip flags (DF)", u64::from(ip[6] & 0xe0));
    m.insert("ip ttl", u64::from(ip[8]));
    m.insert("ip protocol", u64::from(ip[9]));
    m.insert(
        "udp dst port",
        u64::from(u16::from_be_bytes([udp[2], udp[3]])),
    );
    m.insert("udp checksum present", u64::from(udp[6..8] != [0, 0]));
    let src_port = u16::from_be_bytes([udp[0], udp[1]]);
    m.insert(
        "udp src port in 32768..61000",
        u64::from((32768..61000).contains(&src_port)),
    );
    m.insert("geneve version/options length", u64::from(g[0]));
    m.insert("geneve flags", u64::from(g[1]));
    m.insert(
        "geneve protocol",
        u64::from(u16::from_be_bytes([g[2], g[3]])),
    );
    m.insert("geneve reserved", u64::from(g[7]));
    m.insert("option class", u64::from(u16::from_be_bytes([g[8], g[9]])));
    m.insert("option type", u64::from(g[10]));
    m.insert("option length", u64::from(g[11] & 0x1f));
    m
}

#[test]
fn a_stock_chassis_and_an_ironflow_node_form_one_cluster() {
    if let Some(why) = lab::unavailable().or_else(stock::unavailable) {
        eprintln!("skipping the mixed cluster: {why}");
        return;
    }
    let central = OvnCentral::start().expect("central");
    build_seed(&central).expect("seed");
    // stock-1: on kube-node1's switch with sshd-2, but on the stock
    // chassis; web-9: on kube-node2's switch with web-1, but on the
    // ironflow node, and a web client like web-1 (the ACL lets web
    // clients reach sshd-2's tcp/22).
    for (lsp, switch, addrs) in [
        ("stock-1", "kube-node1", "0a:00:00:00:00:19 192.168.2.9"),
        ("web-9", "kube-node2", "0a:00:00:00:00:09 192.168.3.9"),
    ] {
        central.nbctl(&["lsp-add", switch, lsp]).unwrap();
        central.nbctl(&["lsp-set-addresses", lsp, addrs]).unwrap();
        central
            .nbctl(&["lsp-set-port-security", lsp, addrs])
            .unwrap();
    }
    central
        .nbctl(&[
            "add",
            "Address_Set",
            "web_clients",
            "addresses",
            "\"192.168.3.9\"",
        ])
        .unwrap();
    central.sync().unwrap();
    let prefix = stock::unique_prefix("mx");
    // kube-node1 (ironflow) lives in the namespace the stock chassis's
    // underlay veth comes out in.
    let node_ns = Netns::new(&format!("ifl-{prefix}-n1")).unwrap();
    let sshd = Netns::new(&format!("ifl-{prefix}-sshd")).unwrap();
    let chassis = StockChassis::start(StockConfig {
        prefix: prefix.clone(),
        system_id: "kube-node2".into(),
        sb_remote: central.sb_remote(),
        encap_ip: STOCK_IP,
        encap_prefix_len: 24,
        underlay_ns: node_ns.name().into(),
        pods: vec![
            PodSpec {
                lsp: "web-1".into(),
                mac: "0a:00:00:00:00:02".into(),
                cidr: "192.168.3.3/24".into(),
                gateway: Ipv4Addr::new(192, 168, 3, 1),
                gateway_mac: "00:00:00:d3:4b:aa".into(),
            },
            PodSpec {
                lsp: "stock-1".into(),
                mac: "0a:00:00:00:00:19".into(),
                cidr: "192.168.2.9/24".into(),
                gateway: Ipv4Addr::new(192, 168, 2, 1),
                gateway_mac: "00:00:00:c0:2e:c7".into(),
            },
        ],
    })
    .expect("stock chassis");
    let underlay = chassis.underlay_peer();
    node_ns
        .sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        .unwrap();
    node_ns
        .ip(&[
            "addr",
            "add",
            &format!("{IRONFLOW_IP}/24"),
            "dev",
            &underlay,
        ])
        .unwrap();
    node_ns.ip(&["link", "set", &underlay, "up"]).unwrap();
    // sshd-2 and web-9 on the ironflow node.
    let web9 = Netns::new(&format!("ifl-{prefix}-web9")).unwrap();
    plumb(
        &node_ns,
        &sshd,
        "sshd-2",
        "0a:00:00:00:00:01",
        "192.168.2.3/24",
        "192.168.2.1",
    );
    plumb(
        &node_ns,
        &web9,
        "web-9",
        "0a:00:00:00:00:09",
        "192.168.3.9/24",
        "192.168.3.1",
    );

    let node = IronflowNode::start(
        &node_ns,
        &[
            "--ovn-remote",
            &central.sb_remote(),
            "--system-id",
            "kube-node1",
            "--encap-ip",
            &IRONFLOW_IP.to_string(),
            "--port",
            "sshd-2=sshd-2",
            "--port",
            "web-9=web-9",
        ],
    )
    .expect("ironflow run");
    for i in 0..2 {
        chassis
            .wait_installed(i, Duration::from_secs(30))
            .expect("the stock chassis's pods installed");
    }
    chassis
        .wait_tunnel(IRONFLOW_IP, Duration::from_secs(30))
        .expect("the stock chassis's tunnel to the ironflow node");
    let web = chassis.pod(0).unwrap();
    if let Ok(secs) = std::env::var("MIXED_HOLD").map(|s| s.parse::<u64>().unwrap_or(60)) {
        eprintln!("holding for {secs}s: stock dir {}", chassis.dir().display());
        std::thread::sleep(Duration::from_secs(secs));
    }

    // Capture the underlay at both ends: what arrives on the ironflow
    // node's side comes from the stock chassis, and the other way round.
    let from_stock_sock = node_ns.packet_socket(&underlay).expect("capture");
    let from_ironflow_sock = chassis
        .namespace()
        .packet_socket(&format!("{prefix}u0"))
        .expect("capture");

    // Ping both ways across the router (ICMP to sshd-2 is allowed).
    let out = until(
        web,
        &["ping", "-n", "-c", "1", "-W", "1", "192.168.2.3"],
        |o| o.contains(" 0% packet loss"),
        &node,
    );
    assert!(out.contains("ttl=63"), "{out}");
    let out = until(
        &sshd,
        &["ping", "-n", "-c", "1", "-W", "1", "192.168.3.3"],
        |o| o.contains(" 0% packet loss"),
        &node,
    );
    assert!(out.contains("ttl=63"), "{out}");

    // TCP both ways: to sshd-2:22 (allowed from web clients) from the
    // stock side, to web-1 from the ironflow side.
    let server = |ns: &Netns, port: u16| {
        Command::new("ip")
            .args(["netns", "exec", ns.name(), "python3", "-c"])
            .arg(format!("import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\ns.listen(8)\nwhile True:\n  c,a=s.accept()\n  n=0\n  while True:\n    d=c.recv(65536)\n    if not d: break\n    n+=len(d)\n  c.sendall(str(n).encode())\n  c.close()"))
            .spawn()
            .unwrap()
    };
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _s22 = Kill(server(&sshd, 22));
    let _s23 = Kill(server(&sshd, 23));
    let _s80 = Kill(server(web, 8080));
    let send = |dst: &str, port: u16| {
        format!("import socket\ns=socket.create_connection(('{dst}',{port}),timeout=5)\ns.sendall(b'x'*4000000)\ns.shutdown(socket.SHUT_WR)\nprint('echoed', s.recv(100).decode())")
    };
    let out = until(
        web,
        &["python3", "-c", &send("192.168.2.3", 22)],
        |o| o.contains("echoed 4000000"),
        &node,
    );
    assert!(out.contains("echoed 4000000"));
    let out = until(
        &sshd,
        &["python3", "-c", &send("192.168.3.3", 8080)],
        |o| o.contains("echoed 4000000"),
        &node,
    );
    assert!(out.contains("echoed 4000000"));

    // The ACL holds for a client on the stock chassis: tcp/23 to sshd-2
    // never connects (dropped on the ironflow node), tcp/22 does.
    let (_, out) = stock_exec(web, &["python3", "-c", &connect("192.168.2.3", 23)]);
    assert!(out.contains("timeout"), "tcp/23 from the stock side: {out}");
    // The load balancer: the stock chassis DNATs, ironflow delivers.
    let out = until(
        web,
        &["python3", "-c", &connect("172.30.0.10", 22)],
        |o| o.contains("connected"),
        &node,
    );
    assert!(out.contains("connected"));

    // The same from a client on the ironflow node: tcp/23 never
    // connects, the VIP does.
    let (_, out) = stock_exec(&web9, &["python3", "-c", &connect("192.168.2.3", 23)]);
    assert!(
        out.contains("timeout"),
        "tcp/23 from the ironflow side: {out}"
    );
    let out = until(
        &web9,
        &["python3", "-c", &connect("172.30.0.10", 22)],
        |o| o.contains("connected"),
        &node,
    );
    assert!(out.contains("connected"));

    // On one logical switch across the two chassis: stock-1 and sshd-2
    // (no router: the TTL stays 64), and web-9 and web-1.
    let stock1 = chassis.pod(1).unwrap();
    for (from, to) in [
        (stock1, "192.168.2.3"),
        (&sshd, "192.168.2.9"),
        (&web9, "192.168.3.3"),
        (web, "192.168.3.9"),
    ] {
        let out = until(
            from,
            &["ping", "-n", "-c", "1", "-W", "1", to],
            |o| o.contains(" 0% packet loss"),
            &node,
        );
        assert!(out.contains("ttl=64"), "same switch, no router: {out}");
    }
    let out = until(
        &web9,
        &["python3", "-c", &send("192.168.3.3", 8080)],
        |o| o.contains("echoed 4000000"),
        &node,
    );
    assert!(out.contains("echoed 4000000"));

    // The underlay capture: frames each way, laid out alike.
    let mut from_ironflow = None;
    let mut from_stock = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while from_ironflow.is_none() || from_stock.is_none() {
        assert!(
            Instant::now() < deadline,
            "no Geneve frames both ways on the underlay"
        );
        let _ = stock_exec(web, &["ping", "-n", "-c", "1", "-W", "1", "192.168.2.3"]);
        for (sock, src, slot) in [
            (&from_ironflow_sock, IRONFLOW_IP, &mut from_ironflow),
            (&from_stock_sock, STOCK_IP, &mut from_stock),
        ] {
            while let Ok(Some(f)) = sock.recv_incoming(Duration::from_millis(200)) {
                let geneve = f.len() >= 62
                    && f[12..14] == [0x08, 0x00]
                    && f[23] == 17
                    && f[36..38] == [0x17, 0xc1]
                    && f[26..30] == src.octets();
                if geneve && slot.is_none() {
                    *slot = Some(f);
                }
            }
        }
    }
    let (a, b) = (from_ironflow.unwrap(), from_stock.unwrap());
    assert_eq!(
        layout(&a),
        layout(&b),
        "ironflow's Geneve frame and the stock chassis's differ"
    );
    assert_eq!(layout(&a)["ip ttl"], 64);
    assert_eq!(layout(&a)["option class"], 0x0102);
    assert_eq!(layout(&a)["option type"], 0x80);
    drop(node);
}

/// Runs `cmd` in `ns` once: (success, stdout and stderr).
fn stock_exec(ns: &Netns, cmd: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(cmd)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
