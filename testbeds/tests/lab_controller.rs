//! The controller side (pinctrl) of `ironflow run` daemons answering real
//! clients in the namespace seed lab: `ping -t 1` and `traceroute` get
//! the router's time-exceeded errors, a TCP connection to a port a
//! `reject` ACL covers is refused at once (a TCP reset made on the far
//! node and tunnelled back), busybox `udhcpc` gets its address from
//! the NB's DHCP_Options, and glibc's resolver gets a DNS record's
//! address.
//!
//! Needs root and the clients (scripts/setup.sh installs them); skips
//! with a message otherwise.

use ironflow_testbeds::lab::{self, LabConfig, PodSpec, SeedLab};
use ironflow_testbeds::netns::unique_prefix;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn skip() -> bool {
    if let Some(why) = lab::unavailable() {
        eprintln!("skipping the controller lab: {why}");
        return true;
    }
    for tool in ["udhcpc", "traceroute", "python3"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("skipping the controller lab: no {tool} (scripts/setup.sh installs it)");
            return true;
        }
    }
    false
}

/// Runs `cmd` in `pod` until its output satisfies `ok` (the first packets
/// of a flow may meet a node that has not seen the other's claim yet).
fn until(lab: &SeedLab, pod: &str, cmd: &[&str], ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out) = lab.pod(pod).unwrap().sh(cmd).unwrap();
        if ok(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd:?} in {pod}: {out}\n{}",
            lab.describe()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `/etc/netns/NS/resolv.conf`, which `ip netns exec NS` puts in place
/// of the host's; removed when the value goes, even if the test fails.
struct ResolvConf(std::path::PathBuf);

impl ResolvConf {
    fn new(ns: &str, text: &str) -> ResolvConf {
        let dir = std::path::Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), text).unwrap();
        ResolvConf(dir)
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn real_clients_get_answers_from_the_controller() {
    if skip() {
        return;
    }
    let mut cfg = LabConfig::new(&unique_prefix("pc"));
    cfg.mgmt_ports = false;
    // A pod that will take its address by DHCP (it starts with the one
    // the lab gives; the test removes it).
    cfg.pods.push(PodSpec::extra(
        "dhcp-1",
        "kube-node1",
        "0a:00:00:00:00:42",
        Ipv4Addr::new(192, 168, 2, 42),
        "kube-node1",
    ));
    let lab = SeedLab::start(cfg).expect("seed lab");
    let central = lab.central();
    central
        .nbctl(&[
            "acl-add",
            "pg_sshd",
            "to-lport",
            "1002",
            "outport == @pg_sshd && tcp.dst == 24",
            "reject",
        ])
        .unwrap();
    central
        .nbctl(&["dhcp-options-create", "192.168.2.0/24"])
        .unwrap();
    let options = central
        .nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "DHCP_Options",
            "cidr=\"192.168.2.0/24\"",
        ])
        .unwrap();
    let options = options.trim();
    central
        .nbctl(&[
            "dhcp-options-set-options",
            options,
            "lease_time=3600",
            "router=192.168.2.1",
            "server_id=192.168.2.1",
            "server_mac=00:00:00:c0:2e:c7",
            "netmask=255.255.255.0",
        ])
        .unwrap();
    central
        .nbctl(&["lsp-set-dhcpv4-options", "dhcp-1", options])
        .unwrap();
    central.sync().unwrap();

    // TTL 1 through the router: the router answers, as ping reports it.
    let out = until(
        &lab,
        "web-1",
        &["ping", "-n", "-c", "1", "-W", "2", "-t", "1", "192.168.2.3"],
        |o| o.contains("Time to live exceeded"),
    );
    assert!(out.contains("From 192.168.3.1"), "{out}");

    // traceroute (ICMP): the router, then sshd-2 on the other node.
    let out = until(
        &lab,
        "web-1",
        &[
            "traceroute",
            "-I",
            "-n",
            "-q",
            "1",
            "-w",
            "2",
            "-m",
            "3",
            "192.168.2.3",
        ],
        |o| o.contains(" 2  192.168.2.3"),
    );
    assert!(out.contains(" 1  192.168.3.1"), "{out}");

    // tcp/24 is rejected: refused at once rather than timed out.
    let connect = "import socket,sys\ns=socket.socket()\ns.settimeout(3)\ntry:\n  s.connect(('192.168.2.3',24))\n  print('connected')\nexcept ConnectionRefusedError:\n  print('refused')\nexcept OSError as e:\n  print('error', e)";
    let out = until(&lab, "web-1", &["python3", "-c", connect], |o| {
        o.contains("refused")
    });
    assert!(!out.contains("connected"), "{out}");

    // udhcpc on a pod without an address gets the port's.
    let pod = lab.pod("dhcp-1").unwrap();
    pod.sh(&["ip", "addr", "flush", "dev", "eth0"]).unwrap();
    let out = until(
        &lab,
        "dhcp-1",
        &[
            "udhcpc",
            "-i",
            "eth0",
            "-n",
            "-q",
            "-f",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ],
        |o| o.contains("obtained"),
    );
    assert!(out.contains("lease of 192.168.2.42 obtained"), "{out}");

    // DNS: kube-node2's switch has a record; web-1's resolver (glibc,
    // through `getent`, pointed at the router by the namespace's own
    // resolv.conf) gets the answer from ironflow.
    let dns = central
        .nbctl(&[
            "--",
            "--id=@dns",
            "create",
            "DNS",
            "records={\"sshd.cluster.local\"=\"192.168.2.3\"}",
            "--",
            "add",
            "Logical_Switch",
            "kube-node2",
            "dns_records",
            "@dns",
        ])
        .unwrap();
    assert!(!dns.trim().is_empty());
    central.sync().unwrap();
    let web1_ns = lab.pod("web-1").unwrap().ns().name().to_owned();
    let conf = ResolvConf::new(
        &web1_ns,
        "nameserver 192.168.3.1\noptions timeout:1 attempts:1\n",
    );
    let out = until(
        &lab,
        "web-1",
        &["getent", "hosts", "sshd.cluster.local"],
        |o| o.contains("192.168.2.3"),
    );
    drop(conf);
    assert!(out.contains("sshd.cluster.local"), "{out}");

    let stats = lab.ironflow_json("kube-node1", &["stats"]).unwrap();
    assert!(
        stats["controller"]["sent"].as_u64().unwrap_or(0) >= 2,
        "the reset and the DHCP offer: {stats}"
    );
}
