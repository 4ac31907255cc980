//! A gateway router on an `ironflow run` node in network namespaces, with
//! a real external host beyond the localnet port: the lab's "gateway"
//! topology (router `gw` bound to chassis gw-chassis, an inside switch
//! with pod in1, an outside switch whose localnet port reaches physnet,
//! SNAT of the inside subnet and a floating IP for in1), the node's
//! `--bridge-mappings physnet:ext0` pointing at a veth into the external
//! host's namespace.
//!
//! The pod pings the external host, whose UDP echo service sees the
//! floating IP as the source; the external host pings the floating IP.
//! Needs root; skips with a message otherwise.

use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::lab;
use ironflow_testbeds::netns::{unique_prefix, Netns};
use ironflow_testbeds::node::IronflowNode;
use ironflow_testbeds::topologies::ALL;
use std::process::Command;
use std::time::{Duration, Instant};

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
        assert!(Instant::now() < deadline, "{cmd:?}: {text}\n{}", node.log());
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Answers each UDP datagram on port 7 with the sender's address.
const ECHO_SOURCE: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',7))\nwhile True:\n  d,a=s.recvfrom(100)\n  s.sendto(a[0].encode(),a)\n";

/// Sends one datagram to 203.0.113.1:7 and prints the answer.
const ASK_SOURCE: &str = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\ns.sendto(b'x',('203.0.113.1',7))\ntry:\n  print('seen as', s.recvfrom(100)[0].decode())\nexcept OSError as e:\n  print('no answer', e)\n";

#[test]
fn a_pod_and_an_external_host_meet_through_the_gateway() {
    if let Some(why) = lab::unavailable() {
        eprintln!("skipping the gateway lab: {why}");
        return;
    }
    let central = OvnCentral::start().expect("central");
    ALL.iter()
        .find(|t| t.name == "gateway")
        .unwrap()
        .build(&central)
        .expect("gateway topology");
    central.sync().unwrap();

    let p = unique_prefix("gw");
    let node = Netns::new(&format!("ifl-{p}-node")).unwrap();
    let pod = Netns::new(&format!("ifl-{p}-in1")).unwrap();
    let ext = Netns::new(&format!("ifl-{p}-ext")).unwrap();
    // The node's underlay address, on its loopback: nobody to tunnel to,
    // but the daemon binds its Geneve socket there.
    node.ip(&["addr", "add", "172.31.0.1/32", "dev", "lo"])
        .unwrap();
    for (ns, there, here, mac, addr, gw) in [
        (
            &pod,
            "in1",
            "eth0",
            "0a:00:00:0c:00:0a",
            "10.30.0.10/24",
            "10.30.0.1",
        ),
        (
            &ext,
            "ext0",
            "eth0",
            "0a:00:00:ee:00:01",
            "203.0.113.1/24",
            "",
        ),
    ] {
        node.ip(&[
            "link",
            "add",
            there,
            "type",
            "veth",
            "peer",
            "name",
            here,
            "netns",
            ns.name(),
        ])
        .unwrap();
        node.ip(&["link", "set", there, "up"]).unwrap();
        ns.ip(&["link", "set", here, "address", mac]).unwrap();
        ns.ip(&["addr", "add", addr, "dev", here]).unwrap();
        ns.ip(&["link", "set", here, "up"]).unwrap();
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1").unwrap();
        if !gw.is_empty() {
            ns.ip(&["route", "add", "default", "via", gw]).unwrap();
        }
    }

    let node = IronflowNode::start(
        &node,
        &[
            "--ovn-remote",
            &central.sb_remote(),
            "--system-id",
            "gw-chassis",
            "--encap-ip",
            "172.31.0.1",
            "--bridge-mappings",
            "physnet:ext0",
            "--port",
            "in1=in1",
        ],
    )
    .expect("ironflow run");

    let echo = Command::new("ip")
        .args(["netns", "exec", ext.name(), "python3", "-c", ECHO_SOURCE])
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _echo = Kill(echo);

    // The pod reaches the external host, which sees the floating IP.
    until(
        &pod,
        &["ping", "-n", "-c", "1", "-W", "1", "203.0.113.1"],
        |o| o.contains(" 0% packet loss"),
        &node,
    );
    let seen = until(
        &pod,
        &["python3", "-c", ASK_SOURCE],
        |o| o.contains("seen as"),
        &node,
    );
    assert!(seen.contains("seen as 203.0.113.10"), "{seen}");

    // The external host reaches the pod at the floating IP.
    until(
        &ext,
        &["ping", "-n", "-c", "1", "-W", "1", "203.0.113.10"],
        |o| o.contains(" 0% packet loss"),
        &node,
    );

    // The gateway's port is claimed for the node's chassis.
    let bound = central
        .sbctl(&[
            "--bare",
            "--columns=chassis",
            "find",
            "Port_Binding",
            "logical_port=gw-outside",
        ])
        .unwrap();
    assert!(!bound.trim().is_empty(), "gw-outside not claimed");
}
