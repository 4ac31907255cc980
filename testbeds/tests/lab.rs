//! The seed cluster in network namespaces with a real `ironflow run` per
//! node: pods (kernel TCP/IP stacks, default offloads on) ping and move
//! data through ironflow on one switch, across the router on one node, and
//! across nodes over Geneve; the seed's ACL and load balancer hold; ports
//! come and go, and a killed daemon comes back with its ports.
//!
//! Needs root; skips with a message otherwise. One lab per test function,
//! each checking several things, to keep the namespaces and daemons few.
//! The daemons are the `ironflow` binary next to this test's executable
//! (or `IRONFLOW_BIN`): `cargo test --workspace` builds it, `cargo test -p
//! ironflow-testbeds` alone does not rebuild it.

use ironflow_testbeds::lab::{self, LabConfig, PodSpec, SeedLab, TcpSink};
use ironflow_testbeds::netns::unique_prefix;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Bytes per TCP transfer: enough for many full-sized segments and TSO
/// super-frames, little enough to keep the test short on a debug build.
const TRANSFER: u64 = 8 << 20;

const WEB1: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 3);
const SSHD2: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 3);
const VIP: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 10);

fn skip() -> bool {
    if let Some(why) = lab::unavailable() {
        eprintln!("skipping the namespace lab: {why}");
        return true;
    }
    false
}

/// web-2: a second pod on kube-node2's switch and node.
fn web2() -> PodSpec {
    PodSpec::extra(
        "web-2",
        "kube-node2",
        "0a:00:00:00:00:03",
        Ipv4Addr::new(192, 168, 3, 4),
        "kube-node2",
    )
}

/// db-1: on kube-node1's switch but bound on kube-node2, so web-1 reaches
/// it through the router without leaving the node.
fn db1() -> PodSpec {
    PodSpec::extra(
        "db-1",
        "kube-node1",
        "0a:00:00:00:00:05",
        Ipv4Addr::new(192, 168, 2, 5),
        "kube-node2",
    )
}

/// Pings until one reply (the first packets may wait for a binding to
/// reach the other node), then `count` in a row; returns the TTL seen.
fn ping_ok(lab: &SeedLab, from: &str, dst: Ipv4Addr) -> u8 {
    let pod = lab.pod(from).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (ok, out) = pod.ping(dst, 3).unwrap();
        if ok && out.contains(" 0% packet loss") {
            let ttl = out
                .split("ttl=")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no ttl in {out}"));
            return ttl;
        }
        assert!(
            Instant::now() < deadline,
            "{from} cannot ping {dst}:\n{out}\n{}",
            report(lab)
        );
    }
}

/// The daemons' counters and logs, for a failure message.
fn report(lab: &SeedLab) -> String {
    let mut s = String::new();
    for node in lab.nodes() {
        s.push_str(&format!(
            "--- {}: {}\n{}\n",
            node.name,
            lab.ironflow(&node.name, &["stats"])
                .unwrap_or_else(|e| format!("{e:#}")),
            node.log_tail(10)
        ));
    }
    s
}

/// A transfer of [`TRANSFER`] bytes from pod `from` to `dst`; returns the
/// rate for the log.
fn transfer(lab: &SeedLab, from: &str, dst: SocketAddrV4) -> f64 {
    let pod = lab.pod(from).unwrap();
    match lab::tcp_send(pod.ns(), dst, TRANSFER, Duration::from_secs(5)) {
        Ok(t) => {
            eprintln!("{from} -> {dst}: {:.0} Mbit/s", t.mbit_per_s());
            t.mbit_per_s()
        }
        Err(e) => panic!("{from} -> {dst}: {e:#}\n{}", report(lab)),
    }
}

fn drops(lab: &SeedLab, node: &str) -> u64 {
    let stats = lab.ironflow_json(node, &["stats"]).unwrap();
    stats["worker"]["drops"]
        .as_object()
        .map(|d| d.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

#[test]
fn pods_talk_through_ironflow_nodes() {
    if skip() {
        return;
    }
    let mut cfg = LabConfig::new(&unique_prefix("lb"));
    cfg.pods.extend([web2(), db1()]);
    let lab = SeedLab::start(cfg).expect("start the lab");

    // The pods keep veth's default offloads: partial checksums and TSO
    // super-frames reach ironflow.
    let (_, features) = lab
        .pod("web-1")
        .unwrap()
        .sh(&["ethtool", "-k", "eth0"])
        .unwrap();
    for on in ["tx-checksumming: on", "tcp-segmentation-offload: on"] {
        assert!(features.contains(on), "{on} in web-1:\n{features}");
    }

    // `--backend auto` picks AF_PACKET for a veth.
    let ports = lab.ironflow_json("kube-node2", &["port", "list"]).unwrap();
    let backends: Vec<(&str, &str)> = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["iface_id"].as_str().unwrap(),
                p["backend"].as_str().unwrap(),
            )
        })
        .collect();
    for pod in ["web-1", "web-2", "db-1"] {
        assert!(backends.contains(&(pod, "afpacket")), "{backends:?}");
    }

    // Same switch, same node: switched, TTL untouched.
    assert_eq!(ping_ok(&lab, "web-1", Ipv4Addr::new(192, 168, 3, 4)), 64);
    let sink_web2 = TcpSink::start(lab.pod("web-2").unwrap().ns(), 5001).unwrap();
    transfer(
        &lab,
        "web-1",
        SocketAddrV4::new([192, 168, 3, 4].into(), 5001),
    );
    drop(sink_web2);

    // Across the router on one node.
    assert_eq!(ping_ok(&lab, "web-1", Ipv4Addr::new(192, 168, 2, 5)), 63);
    let sink_db1 = TcpSink::start(lab.pod("db-1").unwrap().ns(), 5432).unwrap();
    transfer(
        &lab,
        "web-1",
        SocketAddrV4::new([192, 168, 2, 5].into(), 5432),
    );
    drop(sink_db1);

    // Across nodes over Geneve, as in the seed write-up (ttl=63), both
    // ways: ssh from a web client is what sshd-2's ACL lets in.
    assert_eq!(ping_ok(&lab, "web-1", SSHD2), 63);
    assert_eq!(ping_ok(&lab, "sshd-2", WEB1), 63);
    let sshd = lab.pod("sshd-2").unwrap();
    let sink22 = TcpSink::start(sshd.ns(), 22).unwrap();
    let sink23 = TcpSink::start(sshd.ns(), 23).unwrap();
    transfer(&lab, "web-1", SocketAddrV4::new(SSHD2, 22));
    let sink_web1 = TcpSink::start(lab.pod("web-1").unwrap().ns(), 8080).unwrap();
    transfer(&lab, "sshd-2", SocketAddrV4::new(WEB1, 8080));
    drop(sink_web1);

    // tcp/23 is dropped by the ACL on kube-node1 (where sshd-2's switch
    // runs its egress pipeline) though something listens there.
    let before = drops(&lab, "kube-node1");
    let refused = lab::tcp_send(
        lab.pod("web-1").unwrap().ns(),
        SocketAddrV4::new(SSHD2, 23),
        1,
        Duration::from_secs(2),
    );
    // Dropped, not refused: no RST comes back, the connect times out.
    let err = refused.expect_err("tcp/23 reached sshd-2");
    let timed_out = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
    });
    assert!(timed_out, "tcp/23: {err:#}");
    assert!(
        drops(&lab, "kube-node1") > before,
        "kube-node1 counted no drop for tcp/23:\n{}",
        report(&lab)
    );

    // The node itself through its management port (TAP, offloads on):
    // 192.168.3.2 is one of sshd-2's $web_clients.
    let node2 = lab.node("kube-node2").unwrap();
    assert_eq!(
        node2.mgmt_port().map(|m| m.ip),
        Some(Ipv4Addr::new(192, 168, 3, 2))
    );
    let (ok, out) = node2
        .ns()
        .exec(&[
            "ping",
            "-n",
            "-c",
            "2",
            "-i",
            "0.2",
            "-w",
            "6",
            "192.168.2.3",
        ])
        .map(|o| (true, o))
        .unwrap_or_else(|e| (false, format!("{e:#}")));
    assert!(ok && out.contains("ttl=63"), "kube-node2 -> sshd-2:\n{out}");
    match lab::tcp_send(
        node2.ns(),
        SocketAddrV4::new(SSHD2, 22),
        TRANSFER,
        Duration::from_secs(5),
    ) {
        Ok(t) => eprintln!(
            "kube-node2 (k8s-kube-node2, tap) -> sshd-2:22: {:.0} Mbit/s",
            t.mbit_per_s()
        ),
        Err(e) => panic!("kube-node2 -> sshd-2:22: {e:#}\n{}", report(&lab)),
    }

    // The load balancer's VIP reaches sshd-2:22 (DNAT on kube-node2,
    // un-DNAT of the replies there too).
    transfer(&lab, "web-1", SocketAddrV4::new(VIP, 22));
    drop((sink22, sink23));
}

#[test]
fn ports_come_and_daemons_come_back() {
    if skip() {
        return;
    }
    let mut lab = SeedLab::start(LabConfig::new(&unique_prefix("lr"))).expect("start the lab");
    assert_eq!(ping_ok(&lab, "web-1", SSHD2), 63);

    // A pod added on kube-node2 while web-1 (on kube-node2 too) sends to
    // sshd-2: the transfer goes on, and the new pod is reachable.
    let sink = TcpSink::start(lab.pod("sshd-2").unwrap().ns(), 22).unwrap();
    let web1 = lab.pod("web-1").unwrap().ns().name().to_owned();
    let running = std::thread::spawn(move || {
        // The lab owns the namespace; this handle must not delete it.
        let mut ns = ironflow_testbeds::netns::Netns::adopt(&web1);
        ns.keep();
        lab::tcp_send(
            &ns,
            SocketAddrV4::new(SSHD2, 22),
            4 * TRANSFER,
            Duration::from_secs(5),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let web3 = PodSpec::extra(
        "web-3",
        "kube-node2",
        "0a:00:00:00:00:04",
        Ipv4Addr::new(192, 168, 3, 5),
        "kube-node2",
    );
    lab.add_pod(web3).expect("add web-3");
    assert_eq!(ping_ok(&lab, "web-1", Ipv4Addr::new(192, 168, 3, 5)), 64);
    assert_eq!(ping_ok(&lab, "sshd-2", Ipv4Addr::new(192, 168, 3, 5)), 63);
    let t = running.join().unwrap().unwrap_or_else(|e| {
        panic!(
            "the transfer running while web-3 was added: {e:#}\n{}",
            report(&lab)
        )
    });
    eprintln!("transfer across the port add: {:.0} Mbit/s", t.mbit_per_s());

    // kube-node2's daemon killed outright, then started again: its pods
    // (web-3 added at runtime among them) work again.
    lab.kill_daemon("kube-node2").unwrap();
    let (ok, out) = lab
        .pod("web-1")
        .unwrap()
        .sh(&["ping", "-n", "-c", "1", "-W", "1", "192.168.2.3"])
        .unwrap();
    assert!(!ok, "no daemon, no ping: {out}");
    lab.restart_daemon("kube-node2")
        .expect("restart kube-node2");
    // Its internal (TAP) management port outlived the kill, address and
    // all, as an OVS internal port outlives ovs-vswitchd.
    let addr = lab
        .node("kube-node2")
        .unwrap()
        .ns()
        .ip(&["-br", "addr", "show", "k8s-kube-node2"])
        .unwrap();
    assert!(addr.contains("192.168.3.2"), "{addr}");
    assert_eq!(ping_ok(&lab, "web-1", SSHD2), 63);
    assert_eq!(ping_ok(&lab, "sshd-2", Ipv4Addr::new(192, 168, 3, 5)), 63);
    transfer(&lab, "web-1", SocketAddrV4::new(SSHD2, 22));
    drop(sink);

    // A port on an interface that does not exist: one line, a failure.
    let e = lab
        .ironflow(
            "kube-node2",
            &["port", "add", "nothere0", "--iface-id", "web-9"],
        )
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("no network interface named \"nothere0\""),
        "{e:#}"
    );

    // web-3's veth deleted under the daemon: the port is detached and
    // listed as missing, the daemon stays up and the others still talk.
    let veth = lab.pod("web-3").unwrap().ifname.clone();
    lab.node("kube-node2")
        .unwrap()
        .ns()
        .ip(&["link", "del", &veth])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = lab.ironflow_json("kube-node2", &["port", "list"]).unwrap();
        let vanished = list["missing"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["ifname"] == veth.as_str() && m["error"] == "the interface vanished");
        if vanished {
            break;
        }
        assert!(Instant::now() < deadline, "web-3 not detached: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        lab.node("kube-node2").unwrap().pid().is_some(),
        "the daemon stays up"
    );
    assert_eq!(ping_ok(&lab, "web-1", SSHD2), 63);
}
