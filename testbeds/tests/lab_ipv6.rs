//! IPv6 controller actions answering a real client, the pod's own kernel,
//! in network namespaces: the lab's dual-stack topology on one `ironflow
//! run` node, pods a1 and b1 with IPv6 on. a1's neighbour discovery for
//! its router gets the router's advertisement (`nd_na_router`) and its
//! pings reach the router's addresses on both switches; its router
//! solicitation gets a router advertisement (`put_nd_ra_opts`, slaac) and
//! the kernel configures an address from the prefix; b1 pings a1 across
//! the router; and c1, an address the NB does not know, is solicited by
//! the router (`nd_ns`) and learned from its kernel's answer (`put_nd`);
//! ISC dhclient gets a1's address by DHCPv6 (`put_dhcpv6_opts`).
//!
//! Needs root; skips with a message otherwise.

use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::lab;
use ironflow_testbeds::netns::{unique_prefix, Netns};
use ironflow_testbeds::node::IronflowNode;
use ironflow_testbeds::topologies::ALL;
use std::process::Command;
use std::time::{Duration, Instant};

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
            "{cmd:?} in {}: {text}\n{}\n{}",
            ns.name(),
            node.log(),
            node.ironflow(&["stats"]).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_pods_kernel_does_neighbour_discovery_and_slaac_through_ironflow() {
    if let Some(why) = lab::unavailable() {
        eprintln!("skipping the IPv6 lab: {why}");
        return;
    }
    let central = OvnCentral::start().expect("central");
    ALL.iter()
        .find(|t| t.name == "dual-stack")
        .unwrap()
        .build(&central)
        .expect("dual-stack topology");
    // c1: on switch b with a MAC but no address in the NB, so the router
    // must ask for it (nd_ns) and learn the answer (put_nd).
    central.nbctl(&["lsp-add", "b", "c1"]).unwrap();
    central
        .nbctl(&["lsp-set-addresses", "c1", "0a:00:00:06:02:0c"])
        .unwrap();
    central.sync().unwrap();

    let p = unique_prefix("v6");
    let node_ns = Netns::new(&format!("ifl-{p}-node")).unwrap();
    node_ns
        .ip(&["addr", "add", "172.31.2.1/32", "dev", "lo"])
        .unwrap();
    let mut pods = Vec::new();
    for (lsp, mac, v4, v6, gw4, gw6) in [
        (
            "a1",
            "0a:00:00:06:01:0a",
            "10.6.1.10/24",
            "fd00:6:1::a/64",
            "10.6.1.1",
            "fd00:6:1::1",
        ),
        (
            "b1",
            "0a:00:00:06:02:0a",
            "10.6.2.10/24",
            "fd00:6:2::a/64",
            "10.6.2.1",
            "fd00:6:2::1",
        ),
        (
            "c1",
            "0a:00:00:06:02:0c",
            "10.6.2.12/24",
            "fd00:6:2::c/64",
            "10.6.2.1",
            "fd00:6:2::1",
        ),
    ] {
        let pod = Netns::new(&format!("ifl-{p}-{lsp}")).unwrap();
        node_ns
            .ip(&[
                "link",
                "add",
                lsp,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                pod.name(),
            ])
            .unwrap();
        node_ns.ip(&["link", "set", lsp, "up"]).unwrap();
        pod.ip(&["link", "set", "eth0", "address", mac]).unwrap();
        pod.ip(&["addr", "add", v4, "dev", "eth0"]).unwrap();
        // No duplicate address detection to wait out.
        pod.sysctl("net.ipv6.conf.eth0.accept_dad", "0").unwrap();
        pod.ip(&["-6", "addr", "add", v6, "dev", "eth0", "nodad"])
            .unwrap();
        pods.push((pod, gw4, gw6));
    }
    let node = IronflowNode::start(
        &node_ns,
        &[
            "--ovn-remote",
            &central.sb_remote(),
            "--system-id",
            "ch6",
            "--encap-ip",
            "172.31.2.1",
            "--port",
            "a1=a1",
            "--port",
            "b1=b1",
            "--port",
            "c1=c1",
        ],
    )
    .expect("ironflow run");
    // Up only now: the kernel's router solicitations at link-up must find
    // the node running.
    for (pod, gw4, gw6) in &pods {
        pod.ip(&["link", "set", "eth0", "up"]).unwrap();
        pod.ip(&["route", "add", "default", "via", gw4]).unwrap();
        // `replace`: the router's advertisement may have put a default
        // route (via its link-local address) in place already.
        pod.ip(&["-6", "route", "replace", "default", "via", gw6])
            .unwrap();
    }
    let (a1, b1) = (&pods[0].0, &pods[1].0);

    // Neighbour discovery for the router, then echo to its addresses.
    for dst in ["fd00:6:1::1", "fd00:6:2::1"] {
        until(
            a1,
            &[
                "ping",
                "-6",
                "-n",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                "fd00:6:1::a",
                dst,
            ],
            |o| o.contains(" 0% packet loss"),
            &node,
        );
    }
    let neigh = until(
        a1,
        &["ip", "-6", "neigh", "show", "fd00:6:1::1"],
        |o| o.contains("lladdr"),
        &node,
    );
    assert!(
        neigh.contains("00:00:00:06:00:01") && neigh.contains("router"),
        "{neigh}"
    );

    // SLAAC from the router advertisement.
    let addrs = until(
        a1,
        &["ip", "-6", "addr", "show", "dev", "eth0"],
        |o| o.contains("fd00:6:1:0:800:ff:fe06:10a"),
        &node,
    );
    assert!(addrs.contains("dynamic"), "{addrs}");

    // b1 reaches a1 across the router (ICMPv6 from pg_b is allowed back).
    let out = until(
        b1,
        &["ping", "-6", "-n", "-c", "1", "-W", "1", "fd00:6:1::a"],
        |o| o.contains(" 0% packet loss"),
        &node,
    );
    // c1, whose address the NB does not know: the router solicits it,
    // c1's kernel answers, and the binding is learned into the SB.
    // From the address port security allows (the kernel would pick the
    // one SLAAC just made, which a1's port does not allow).
    until(
        a1,
        &[
            "ping",
            "-6",
            "-n",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            "fd00:6:1::a",
            "fd00:6:2::c",
        ],
        |o| o.contains(" 0% packet loss"),
        &node,
    );
    let learned = central
        .sbctl(&[
            "--bare",
            "--columns=mac",
            "find",
            "MAC_Binding",
            "ip=\"fd00:6:2::c\"",
        ])
        .unwrap();
    assert_eq!(
        learned.trim(),
        "0a:00:00:06:02:0c",
        "put_nd into MAC_Binding"
    );

    // Hop limit 1 through the router: its ICMPv6 time exceeded.
    let te = until(
        a1,
        &[
            "ping",
            "-6",
            "-n",
            "-c",
            "1",
            "-W",
            "1",
            "-t",
            "1",
            "-I",
            "fd00:6:1::a",
            "fd00:6:2::a",
        ],
        |o| o.contains("Time exceeded"),
        &node,
    );
    assert!(te.contains("From fd00:6:1::1"), "{te}");

    // DHCPv6 with ISC dhclient (if installed): a1's port's address is
    // offered and acknowledged (put_dhcpv6_opts).
    if lab_has("dhclient") {
        let dir = tempfile::tempdir().unwrap();
        let (lease, pid) = (dir.path().join("lease6"), dir.path().join("pid6"));
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                a1.name(),
                "dhclient",
                "-6",
                "-1",
                "-sf",
                "/bin/true",
            ])
            .arg("-lf")
            .arg(&lease)
            .arg("-pf")
            .arg(&pid)
            .arg("eth0")
            .output()
            .unwrap();
        // It stays as a daemon once bound: stop it by its pidfile.
        if let Ok(p) = std::fs::read_to_string(&pid) {
            if let Ok(p) = p.trim().parse::<i32>() {
                // SAFETY: signals the dhclient this test started.
                unsafe { libc::kill(p, libc::SIGTERM) };
            }
        }
        let leases = std::fs::read_to_string(&lease).unwrap_or_default();
        assert!(
            out.status.success() && leases.contains("iaaddr fd00:6:1::a"),
            "dhclient -6: {}{}\nleases: {leases}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // a1's kernel took the advertisement's hop limit (255, as OVN
    // advertises it) for its own packets: the reply arrives with 254.
    assert!(out.contains("ttl=254"), "{out}");
}

/// Whether `tool` is on the PATH.
fn lab_has(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
