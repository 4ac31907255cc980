//! What a stock OVN chassis puts on the wire, byte for byte against
//! ironflow's Geneve: web-1 on a real ovn-controller + OVS (userspace
//! datapath) sends TCP SYNs, UDP datagrams and pings to sshd-2, bound to a
//! chassis that exists only
//! in the SB and whose encap IP is an interface this test captures on;
//! every captured frame must equal what `ironflow_tunnel::write_headers`
//! (and a `HeaderTemplate`) build for the same inner frame and metadata,
//! the UDP source port included (OVS's 5-tuple hash). SYNs to the seed's
//! load balancer VIP show the hash is of the tuple before the DNAT.
//!
//! Skips (passes with a message) only without root or without the OVS/OVN
//! packages; CI runs it as root after scripts/setup.sh.

use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::seed::build_seed;
use ironflow_testbeds::stock::{self, Netns, PacketSocket, PodSpec, StockChassis, StockConfig};
use ironflow_tunnel::geneve::{self, source_port, EncapParams, OvnMetadata, ENCAP_LEN};
use ironflow_tunnel::ovs_hash::{five_tuple, flow_hash_5tuple, FiveTuple, FlowAddrs};
use ironflow_tunnel::{decap, write_headers, HeaderTemplate};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const STOCK_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const FAKE_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const WEB_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x02];
const SSHD_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 0x01];
/// rtos-kube-node1: the router's MAC on sshd-2's switch.
const RTOS_NODE1_MAC: [u8; 6] = [0, 0, 0, 0xc0, 0x2e, 0xc7];
/// Frames to compare: TCP (two SYNs, each from its own source port, so
/// the hash is checked anew), UDP and ICMP (whose "ports" in OVS's hash
/// are the type and code).
const WANT: [(u8, usize); 3] = [(6, 2), (17, 1), (1, 1)];
/// The seed's load balancer for sshd-2.
const VIP: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 10);

fn tunnel_key(central: &OvnCentral, table: &str, cond: &str) -> u32 {
    let out = central
        .sbctl(&["--bare", "--columns=tunnel_key", "find", table, cond])
        .unwrap_or_else(|e| panic!("{table} {cond}: {e:#}"));
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{table} {cond}: tunnel_key {out:?}: {e}"))
}

/// Where two frames first differ, named by header field.
fn field_at(at: usize) -> &'static str {
    match at {
        0..=5 => "outer Ethernet destination",
        6..=11 => "outer Ethernet source",
        12..=13 => "outer EtherType",
        14 => "IPv4 version/IHL",
        15 => "IPv4 TOS",
        16..=17 => "IPv4 total length",
        18..=19 => "IPv4 identification",
        20..=21 => "IPv4 flags/fragment offset",
        22 => "IPv4 TTL",
        23 => "IPv4 protocol",
        24..=25 => "IPv4 header checksum",
        26..=29 => "IPv4 source",
        30..=33 => "IPv4 destination",
        34..=35 => "UDP source port",
        36..=37 => "UDP destination port",
        38..=39 => "UDP length",
        40..=41 => "UDP checksum",
        42..=49 => "Geneve header (version, option length, flags, protocol, VNI)",
        50..=57 => "OVN option",
        _ => "inner frame",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One ICMP echo request to `to` from a raw socket in the calling
/// thread's namespace.
fn ping(to: Ipv4Addr, seq: u16) -> std::io::Result<()> {
    let mut msg = [8u8, 0, 0, 0, 0x1f, 0x1f, 0, 0, b'i', b'r', b'o', b'n'];
    msg[6..8].copy_from_slice(&seq.to_be_bytes());
    let sum = !geneve::fold(geneve::sum_words(&msg, 0));
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    // SAFETY: a fresh socket, closed below; msg and addr outlive sendto.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as u16;
        addr.sin_addr.s_addr = u32::from_ne_bytes(to.octets());
        let rc = libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Until `stop`, rounds of: a UDP datagram, a ping, a SYN to sshd-2:22 —
/// or, with `vip`, only SYNs to the seed's load balancer 172.30.0.10:22
/// (backend sshd-2:22). The first packets may be lost while OVS resolves
/// the tunnel's neighbour, hence the rounds.
fn send_traffic(
    pod: &Netns,
    stop: Arc<AtomicBool>,
    vip: bool,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    pod.spawn(move || {
        let sshd = Ipv4Addr::new(192, 168, 2, 3);
        let to = SocketAddr::from((if vip { VIP } else { sshd }, 22));
        let udp = UdpSocket::bind("0.0.0.0:0")?;
        let mut seq = 0u16;
        while !stop.load(Ordering::Relaxed) {
            if !vip {
                udp.send_to(b"ironflow", to)?;
                ping(sshd, seq)?;
                seq = seq.wrapping_add(1);
            }
            // Nothing answers (sshd-2's chassis is not real): each attempt
            // times out, and the next SYN comes from a new source port.
            let _ = TcpStream::connect_timeout(&to, Duration::from_millis(250));
        }
        Ok(())
    })
    .expect("thread in the pod namespace")
}

/// Geneve frames (IPv4, UDP to 6081, carrying IPv4) received on `sock`
/// until `want` (protocol, count) is met or `timeout` passes.
fn capture(sock: &PacketSocket, want: &[(u8, usize)], timeout: Duration) -> Vec<Vec<u8>> {
    let count = |frames: &[Vec<u8>], proto: u8| {
        frames
            .iter()
            .filter(|f| f.get(ENCAP_LEN + 14 + 9) == Some(&proto))
            .count()
    };
    let enough = |frames: &[Vec<u8>]| want.iter().all(|&(p, n)| count(frames, p) >= n);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + timeout;
    while !enough(&frames) && Instant::now() < deadline {
        let Some(f) = sock.recv_incoming(Duration::from_millis(500)).unwrap() else {
            continue;
        };
        let geneve = f.len() > ENCAP_LEN + 34
            && f[12..14] == [8, 0]
            && f[23] == 17
            && f[36..38] == [0x17, 0xc1]
            && f[ENCAP_LEN + 12..ENCAP_LEN + 14] == [8, 0];
        if geneve {
            let proto = f[ENCAP_LEN + 14 + 9];
            if let Some(&(_, n)) = want.iter().find(|(p, _)| *p == proto) {
                if count(&frames, proto) < n {
                    frames.push(f);
                }
            }
        }
    }
    frames
}

#[test]
fn stock_chassis_geneve_matches_ironflow_byte_for_byte() {
    if let Some(why) = stock::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let started = Instant::now();
    let central = OvnCentral::start().expect("central");
    build_seed(&central).expect("seed");
    // sshd-2's chassis: only in the SB, its encap IP on the capture side.
    central
        .sbctl(&["chassis-add", "kube-node1", "geneve", &FAKE_IP.to_string()])
        .expect("chassis-add");
    central
        .sbctl(&["lsp-bind", "sshd-2", "kube-node1"])
        .expect("lsp-bind");

    let prefix = stock::unique_prefix("sg");
    let cap = Netns::new(&format!("ifl-{prefix}-cap")).expect("capture namespace");
    let chassis = StockChassis::start(StockConfig {
        prefix,
        system_id: "kube-node2".into(),
        sb_remote: central.sb_remote(),
        encap_ip: STOCK_IP,
        encap_prefix_len: 24,
        underlay_ns: cap.name().into(),
        pods: vec![PodSpec {
            lsp: "web-1".into(),
            mac: "0a:00:00:00:00:02".into(),
            cidr: "192.168.3.3/24".into(),
            gateway: Ipv4Addr::new(192, 168, 3, 1),
            gateway_mac: "00:00:00:d3:4b:aa".into(),
        }],
    })
    .expect("stock chassis");
    // The capture end answers ARP for the fake chassis's encap IP.
    let cap_if = chassis.underlay_peer();
    cap.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        .expect("no IPv6 on the capture side");
    cap.ip(&["addr", "add", &format!("{FAKE_IP}/24"), "dev", &cap_if])
        .expect("capture address");
    cap.ip(&["link", "set", &cap_if, "up"]).expect("capture up");
    let sock = cap.packet_socket(&cap_if).expect("AF_PACKET socket");
    let v6_off = chassis
        .pod(0)
        .unwrap()
        .exec(&["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"]);
    assert_eq!(
        v6_off.map(|v| v.trim().to_owned()).ok(),
        Some("1".into()),
        "pod sysctl"
    );

    chassis
        .wait_installed(0, Duration::from_secs(20))
        .expect("web-1 installed");
    let tunnel = chassis
        .wait_tunnel(FAKE_IP, Duration::from_secs(20))
        .expect("tunnel to kube-node1");
    let claimed = central
        .sbctl(&[
            "--bare",
            "--columns=chassis",
            "find",
            "Port_Binding",
            "logical_port=web-1",
        ])
        .unwrap();
    assert!(!claimed.trim().is_empty(), "web-1 not claimed in the SB");
    eprintln!(
        "stock chassis up in {:?} (tunnel port {tunnel})",
        started.elapsed()
    );

    // The metadata from the SB, not from the capture.
    let meta = OvnMetadata {
        vni: tunnel_key(&central, "Datapath_Binding", "external_ids:name=kube-node1"),
        inport_key: tunnel_key(&central, "Port_Binding", "logical_port=stor-kube-node1"),
        outport_key: tunnel_key(&central, "Port_Binding", "logical_port=sshd-2"),
    };
    let stock_mac = chassis.encap_mac().expect("br-phy MAC");
    let cap_mac = cap.mac(&cap_if).expect("capture MAC");

    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_traffic(chassis.pod(0).unwrap(), stop.clone(), false);
    let frames = capture(&sock, &WANT, Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap().unwrap();
    assert!(
        WANT.iter()
            .all(|&(p, n)| frames.iter().filter(|f| f[ENCAP_LEN + 14 + 9] == p).count() >= n),
        "captured {} Geneve frames in 20 s, wanted {WANT:?} (protocol, count); see {}",
        frames.len(),
        chassis.dir().display()
    );
    // Then SYNs to the load balancer: OVS hashes the packet as the pod
    // sent it, before the DNAT, and keeps that hash through ct(nat).
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_traffic(chassis.pod(0).unwrap(), stop.clone(), true);
    let lb_frames = capture(&sock, &[(6, 2)], Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap().unwrap();
    assert_eq!(lb_frames.len(), 2, "SYNs to the VIP in Geneve");

    let template = HeaderTemplate::new(&EncapParams {
        src_mac: stock_mac,
        dst_mac: cap_mac,
        src_ip: STOCK_IP,
        dst_ip: FAKE_IP,
        ttl: 64,
        src_port: 0,
        meta,
    });
    let all = frames
        .iter()
        .map(|f| (f, false))
        .chain(lb_frames.iter().map(|f| (f, true)));
    for (n, (stock, via_vip)) in all.enumerate() {
        eprintln!("stock frame {n}: {}", hex(stock));
        let d = decap(stock).unwrap_or_else(|e| panic!("ironflow refuses the stock frame: {e}"));
        assert_eq!(d.meta, meta, "metadata");
        assert_eq!(d.inner_offset, ENCAP_LEN, "one option, no others");
        let inner = &stock[ENCAP_LEN..];

        // The inner frame is the routed SYN: router MAC, TTL 63.
        assert_eq!(inner[0..6], SSHD_MAC, "inner destination MAC");
        assert_eq!(inner[6..12], RTOS_NODE1_MAC, "inner source MAC");
        assert_ne!(inner[6..12], WEB_MAC);
        assert_eq!(inner[14 + 8], 63, "inner TTL decremented by the router");
        let t: FiveTuple = five_tuple(inner);
        match t.proto {
            6 => {
                assert_eq!(t.tp_dst, 22, "{t:?}");
                assert_eq!(inner[14 + 20 + 13] & 0x12, 0x02, "a SYN");
            }
            17 => assert_eq!(t.tp_dst, 22, "{t:?}"),
            1 => assert_eq!((t.tp_src, t.tp_dst), (8, 0), "echo request: {t:?}"),
            p => panic!("unexpected protocol {p}"),
        }
        assert_eq!(
            geneve::fold(geneve::sum_words(&inner[14..34], 0)),
            0xffff,
            "inner IPv4 checksum after routing"
        );

        // What stock OVS puts in the outer headers, field by field (the
        // byte comparison below covers them again; these say what they are).
        assert_eq!(stock[14..16], [0x45, 0x00], "IPv4, no options, TOS 0");
        assert_eq!(
            usize::from(u16::from_be_bytes([stock[16], stock[17]])),
            stock.len() - 14,
            "IPv4 total length"
        );
        assert_eq!(stock[18..20], [0, 0], "IPv4 identification 0");
        assert_eq!(stock[20..22], [0x40, 0], "DF, not fragmented");
        assert_eq!(stock[22], 64, "outer TTL");
        assert_eq!(geneve::fold(geneve::sum_words(&stock[14..34], 0)), 0xffff);
        let sport = u16::from_be_bytes([stock[34], stock[35]]);
        assert!((32768..61000).contains(&sport), "source port {sport}");
        assert_eq!(
            usize::from(u16::from_be_bytes([stock[38], stock[39]])),
            stock.len() - 34,
            "UDP length"
        );
        assert_ne!(
            stock[40..42],
            [0, 0],
            "UDP checksum present (OVN sets csum=true)"
        );
        assert_eq!(
            stock[42..46],
            [0x02, 0x40, 0x65, 0x58],
            "Geneve: version 0, 2 option words, O clear, C set, Ethernet"
        );
        assert_eq!(stock[49], 0, "VNI's reserved byte");
        assert_eq!(stock[50..54], [0x01, 0x02, 0x80, 0x01], "OVN option header");
        assert_eq!(stock[54] & 0x80, 0, "option's reserved bit");

        // ironflow's frame for the same inner frame and metadata; the
        // hash is of the flow as it entered the datapath.
        let hashed = if via_vip {
            let FlowAddrs::V4(src, dst) = t.addrs else {
                panic!("{t:?}")
            };
            assert_eq!(dst, [192, 168, 2, 3], "DNAT to the backend");
            FiveTuple {
                addrs: FlowAddrs::V4(src, VIP.octets()),
                ..t
            }
        } else {
            t
        };
        let hash = flow_hash_5tuple(&hashed, 0);
        let params = EncapParams {
            src_mac: stock_mac,
            dst_mac: cap_mac,
            src_ip: STOCK_IP,
            dst_ip: FAKE_IP,
            ttl: 64,
            src_port: source_port(hash),
            meta,
        };
        let mut ours = vec![0u8; ENCAP_LEN];
        assert!(write_headers(&mut ours, inner, &params));
        ours.extend_from_slice(inner);
        let mut templated = vec![0u8; ENCAP_LEN];
        assert!(template.write(&mut templated, inner, params.src_port));
        templated.extend_from_slice(inner);

        let stock_port = u16::from_be_bytes([stock[34], stock[35]]);
        eprintln!(
            "frame {n}: hashed {hashed:?}, OVS 5-tuple hash {hash:#010x} -> port {}, stock port {stock_port}{}",
            params.src_port,
            if via_vip {
                format!(
                    " (the DNATed tuple would give {})",
                    source_port(flow_hash_5tuple(&t, 0))
                )
            } else {
                String::new()
            }
        );
        if let Some(at) = (0..stock.len().max(ours.len())).find(|&i| stock.get(i) != ours.get(i)) {
            panic!(
                "frame {n} differs first at byte {at} ({}): stock {:02x?} ironflow {:02x?}\nstock   {}\nironflow {}",
                field_at(at),
                stock.get(at),
                ours.get(at),
                hex(&stock[..ENCAP_LEN.min(stock.len())]),
                hex(&ours[..ENCAP_LEN]),
            );
        }
        assert_eq!(templated, ours, "HeaderTemplate::write agrees");
    }
    drop(chassis);
    drop(cap);
    drop(central);
    eprintln!("done in {:?}", started.elapsed());
}
