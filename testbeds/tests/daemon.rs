//! Two ironflow nodes as daemons against a real OVN central with the seed
//! topology: each registers its chassis, claims its pod's port (the NB
//! says it is up), follows the SB, and a packet from web-1 on one node
//! reaches sshd-2 on the other in Geneve over kernel UDP sockets
//! (loopback addresses). On shutdown the chassis are gone from the SB.

use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::inproc::{mem_node, mgmt_socket, Running};
use ironflow_testbeds::seed::build_seed;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A TCP SYN from web-1 to sshd-2:22, addressed to web-1's router port.
fn syn() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&[0, 0, 0, 0xd3, 0x4b, 0xaa]);
    f[6..12].copy_from_slice(&[0x0a, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = [
        0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 6, 0, 0, 192, 168, 3, 3, 192, 168, 2, 3,
    ];
    f[14..34].copy_from_slice(&ip);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|p| u32::from(u16::from_be_bytes([p[0], p[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&22u16.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = 0x02;
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_carry_the_seed_cross_node_packet() {
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("seed");
    let node2_ip = Ipv4Addr::new(127, 0, 0, 2);
    let (mut cfg1, peers1) = mem_node(
        &central,
        "kube-node1",
        Ipv4Addr::new(127, 0, 0, 1),
        &["sshd-2"],
    );
    // kube-node1 spreads its ports over two workers: packets between the
    // underlay and its pods cross from one worker to the other.
    cfg1.workers = 2;
    let (cfg2, peers2) = mem_node(&central, "kube-node2", node2_ip, &["web-1"]);
    let (sshd, web) = (&peers1[0], &peers2[0]);
    let (d1, d2) = (Running::spawn(cfg1), Running::spawn(cfg2));

    // Both registered and both pods claimed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let show = central.sbctl(&["show"]).unwrap();
        let up = |p: &str| central.nbctl(&["lsp-get-up", p]).unwrap().trim() == "up";
        if show.contains("Chassis kube-node1")
            && show.contains("Chassis kube-node2")
            && up("sshd-2")
            && up("web-1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "not registered: {show}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The SYN crosses: routed on kube-node2, tunnelled, delivered on
    // kube-node1. Each node's view of the other's claim arrives on its
    // own time, so send until it gets through.
    let mut got = None;
    while got.is_none() {
        assert!(Instant::now() < deadline, "the SYN never reached sshd-2");
        assert!(web.inject(&syn()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        got = sshd.receive();
    }
    let frame = got.unwrap();
    assert_eq!(&frame[0..6], &[0x0a, 0, 0, 0, 0, 1], "to sshd-2's MAC");
    assert_eq!(
        &frame[6..12],
        &[0, 0, 0, 0xc0, 0x2e, 0xc7],
        "from the router"
    );
    assert_eq!(frame[22], 63, "TTL decremented once");

    // The management socket answers, owner-only.
    let sock = mgmt_socket("kube-node2", node2_ip);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let show = ironflow_control::mgmt::request(&sock, "show")
        .await
        .unwrap();
    assert_eq!(show["chassis"], "kube-node2");
    assert_eq!(show["tunnels"][0]["chassis"], "kube-node1");
    let stats = ironflow_control::mgmt::request(&sock, "stats")
        .await
        .unwrap();
    assert!(
        stats["worker"]["tunnelled"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let flows = ironflow_control::mgmt::request(&sock, "flows")
        .await
        .unwrap();
    let flows: Vec<&str> = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(flows.iter().any(|f| f.contains("tnl_push")), "{flows:?}");
    // The compiled tables, one line per installed flow.
    let tables = ironflow_control::mgmt::request_json(
        &sock,
        serde_json::json!({"command": "tables", "datapath": "kube-node2"}),
    )
    .await
    .unwrap();
    let lines: Vec<&str> = tables["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("datapath=kube-node2")
            && l.contains("ingress table=6 (ls_in_pre_stateful)")
            && l.contains("actions=(ct_lb_mark;)")),
        "{lines:?}"
    );
    assert_eq!(tables["datapaths"], 1);
    let nowhere = ironflow_control::mgmt::request_json(
        &sock,
        serde_json::json!({"command": "tables", "datapath": "nowhere"}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(nowhere.contains("no datapath \"nowhere\""), "{nowhere}");
    assert!(ironflow_control::mgmt::request(&sock, "nonsense")
        .await
        .is_err());

    d1.stop().await;
    d2.stop().await;
    let show = central.sbctl(&["show"]).unwrap();
    assert!(!show.contains("Chassis"), "{show}");
    central.sync().unwrap();
    assert_eq!(
        central.nbctl(&["lsp-get-up", "web-1"]).unwrap().trim(),
        "down"
    );
}

/// Bad input at a running node: garbage and runt frames from a pod, and
/// Geneve from an address that is no chassis, are counted (malformed,
/// drops by reason) and the node keeps forwarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_and_survived() {
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("seed");
    let node1_ip = Ipv4Addr::new(127, 0, 0, 3);
    let (cfg1, peers1) = mem_node(&central, "kube-node1", node1_ip, &["sshd-2"]);
    let (cfg2, peers2) = mem_node(
        &central,
        "kube-node2",
        Ipv4Addr::new(127, 0, 0, 4),
        &["web-1"],
    );
    let (sshd, web) = (&peers1[0], &peers2[0]);
    let (d1, d2) = (Running::spawn(cfg1), Running::spawn(cfg2));
    let deliver = || async {
        ironflow_testbeds::inproc::until(web, &syn(), sshd, "the SYN", |f| f.len() >= 54).await
    };
    deliver().await;

    // Garbage, runts, a truncated IPv4 header, from the pod.
    for f in [
        &[0xffu8; 7][..],
        &[0u8; 14][..],
        &[
            0, 0, 0, 0xd3, 0x4b, 0xaa, 0x0a, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0,
        ][..],
        &[0xa5u8; 1500][..],
    ] {
        assert!(web.inject(f));
    }
    // Geneve to kube-node1 from an address that is no chassis's.
    let stranger = std::net::UdpSocket::bind("127.0.0.9:0").unwrap();
    // Version 0 with 8 bytes of options, Ethernet, VNI 1; OVN's option
    // (class 0x0102, type 0x80, 4 bytes) with port keys 1 → 1.
    let mut geneve = vec![0x02, 0, 0x65, 0x58, 0, 0, 1, 0];
    geneve.extend_from_slice(&[0x01, 0x02, 0x80, 0x01, 0, 1, 0, 1]);
    geneve.extend_from_slice(&syn());
    stranger.send_to(&geneve, (node1_ip, 6081)).unwrap();

    // Still forwarding, and it says what it saw.
    deliver().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s2 = ironflow_control::mgmt::request(
            &mgmt_socket("kube-node2", Ipv4Addr::new(127, 0, 0, 4)),
            "stats",
        )
        .await
        .unwrap();
        let s1 = ironflow_control::mgmt::request(&mgmt_socket("kube-node1", node1_ip), "stats")
            .await
            .unwrap();
        let malformed = s2["worker"]["malformed"].as_u64().unwrap_or(0);
        let stranger_drops = s1["worker"]["drops"]
            ["Geneve from an address that is no chassis's encap IP"]
            .as_u64()
            .unwrap_or(0);
        if malformed >= 3 && stranger_drops >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not counted: {} / {}",
            s2["worker"],
            s1["worker"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An operator deletes kube-node2's chassis: it registers again and
    // claims web-1 again, and traffic flows again.
    central.sbctl(&["chassis-del", "kube-node2"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let show = central.sbctl(&["show"]).unwrap();
        if show.contains("Chassis kube-node2") && show.contains("Port_Binding web-1") {
            break;
        }
        assert!(Instant::now() < deadline, "not registered again: {show}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    deliver().await;
    d1.stop().await;
    d2.stop().await;
}
