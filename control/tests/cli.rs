//! The `ironflow` binary end to end on snapshot files: output, and the
//! one-line errors a user gets for their mistakes.

use ironflow_pipeline::network::*;
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::Uuid;
use std::process::{Command, Output};

fn ironflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironflow"))
        .args(args)
        .output()
        .expect("run ironflow")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn one_switch() -> LogicalNetwork {
    let mut net = LogicalNetwork::default();
    let dp = Uuid([5; 16]);
    net.datapaths.insert(
        dp,
        Datapath {
            uuid: dp,
            name: "kube-node2".into(),
            tunnel_key: 5,
            kind: DatapathKind::Switch,
            ..Default::default()
        },
    );
    net.ports.insert(
        "web-1".into(),
        LogicalPort {
            name: "web-1".into(),
            datapath: dp,
            tunnel_key: 2,
            ..Default::default()
        },
    );
    net
}

#[test]
fn shows_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.json");
    std::fs::write(&path, Snapshot::new(one_switch()).to_json()).unwrap();
    let out = ironflow(&["sb", "show", "--snapshot", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("Datapath \"kube-node2\" (switch, tunnel_key 5,"),
        "{stdout}"
    );
    assert!(
        stdout.contains("port \"web-1\" tunnel_key 2 unbound"),
        "{stdout}"
    );
}

#[test]
fn user_mistakes_get_one_line_that_says_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let not_snapshot = dir.path().join("other.json");
    std::fs::write(&not_snapshot, "{\"format\": \"something-else\"}").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["sb", "show", "--db", "/run/ovn/ovnsb_db.sock"],
            "write unix:PATH or tcp:IP:PORT",
        ),
        (
            &["sb", "show", "--db", "unix:/nonexistent/sb.sock"],
            "cannot connect to unix:/nonexistent/sb.sock",
        ),
        (
            &["sb", "show", "--snapshot", not_snapshot.to_str().unwrap()],
            "ironflow sb dump",
        ),
        (
            &["sb", "show", "--snapshot", "/nonexistent.json"],
            "cannot read snapshot",
        ),
    ];
    for (args, hint) in cases {
        let out = ironflow(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("ironflow: ") && stderr.contains(hint),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn lflows_check_reports_each_failure_and_fails() {
    let mut net = one_switch();
    let dp = *net.datapaths.keys().next().unwrap();
    for (n, m, a) in [
        (1u8, "inport == \"web-1\" && ip4", "next;"),
        (2, "ip4 && tcp.dst == 70000", "next;"),
        (3, "ip4", "frobnicate;"),
    ] {
        let flow = LogicalFlow {
            uuid: Uuid([n; 16]),
            scope: FlowScope::Datapath(dp),
            pipeline: Pipeline::Ingress,
            table_id: 8,
            priority: 100 + u16::from(n),
            match_: m.into(),
            actions: a.into(),
            stage_name: None,
            stage_hint: None,
            source: None,
            controller_meter: None,
            tags: Default::default(),
        };
        net.logical_flows.insert(flow.uuid, flow.into());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap.json");
    std::fs::write(&path, Snapshot::new(net).to_json()).unwrap();
    let out = ironflow(&["lflows", "check", "--snapshot", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0]
            .contains("table=8 priority=103 actions \"frobnicate;\": at offset 0: unknown action"),
        "{stdout}"
    );
    assert!(
        lines[0].contains("03030303-0303-0303-0303-030303030303"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("priority=102 match")
            && lines[1].contains("does not fit 16-bit field tcp.dst"),
        "{stdout}"
    );
    assert_eq!(lines[2], "3 flows, 1 ok, 2 failed");
}

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/seed-snapshot.json"
);
const ROUTED: &str = "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
                      && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 64 && tcp.dst == 22";

#[test]
fn trace_prints_like_ovn_trace() {
    let out = ironflow(&["trace", "--snapshot", SEED, "kube-node2", ROUTED]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let detailed = text(&out.stdout);
    for expected in [
        "ingress(dp=\"kube-node2\", inport=\"web-1\")",
        "egress(dp=\"kube-node1\", inport=\"stor-kube-node1\", outport=\"sshd-2\")",
        " 0. ls_in_check_port_sec (northd.c:",
        "    ip.ttl--;",
        "    eth.src = 00:00:00:c0:2e:c7;",
        "output(\"sshd-2\"); /* on kube-node1 */",
    ] {
        assert!(
            detailed.contains(expected),
            "missing {expected:?} in:\n{detailed}"
        );
    }
    let out = ironflow(&[
        "trace",
        "--snapshot",
        SEED,
        "--minimal",
        "kube-node2",
        ROUTED,
    ]);
    assert_eq!(
        text(&out.stdout),
        "    eth.src = 00:00:00:c0:2e:c7;\n    eth.dst = 0a:00:00:00:00:01;\n    ip.ttl = 63;\n    output(\"sshd-2\"); /* on kube-node1 */\n"
    );
}

#[test]
fn trace_json_has_the_documented_keys() {
    let out = ironflow(&[
        "trace",
        "--snapshot",
        SEED,
        "--format",
        "json",
        "--ct",
        "new",
        "kube-node2",
        ROUTED,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let o = &v["outputs"][0];
    assert_eq!(
        (o["port"].as_str(), o["datapath"].as_str()),
        (Some("sshd-2"), Some("kube-node1"))
    );
    assert!(o["generated_by"].is_null() && o["tunnel"].is_null());
    assert_eq!(o["fields"]["eth.dst"], "0a:00:00:00:00:01");
    assert_eq!(o["fields"]["ip.ttl"], 63);
    assert_eq!(o["fields"]["tcp.dst"], 22);
    assert!(v["drops"].as_array().unwrap().is_empty());
    assert!(v["steps"].as_array().unwrap().len() > 50);
    assert_eq!(v["conntrack"][0]["ct_state"], "new|trk");

    let out = ironflow(&[
        "trace",
        "--snapshot",
        SEED,
        "--ct",
        "bogus",
        "kube-node2",
        ROUTED,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown ct flag"),
        "{}",
        text(&out.stderr)
    );
}

/// `ironflow run` with `extra` flags after a valid-looking base; returns
/// the exit status and stderr.
fn run_node(extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("mgmt.sock");
    let mut args = vec![
        "run",
        "--system-id",
        "cli-test",
        "--mgmt-socket",
        sock.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = ironflow(&args);
    (out.status.success(), text(&out.stderr))
}

/// The last line of stderr: the error (logs may come before it).
fn error_line(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or_default()
}

#[test]
fn run_mistakes_are_one_line_and_fail() {
    // An encap IP that is no address of this machine (TEST-NET-3), found
    // before the SB is touched.
    let (ok, err) = run_node(&[
        "--ovn-remote",
        "unix:/nonexistent/sb.sock",
        "--encap-ip",
        "203.0.113.7",
    ]);
    assert!(!ok);
    assert_eq!(
        error_line(&err),
        "ironflow: encap IP 203.0.113.7 is not an address of this node: give --encap-ip (ovn-encap-ip) an address of one of its interfaces"
    );

    // A remote nobody serves.
    let (ok, err) = run_node(&[
        "--ovn-remote",
        "unix:/nonexistent/sb.sock",
        "--encap-ip",
        "127.0.0.1",
    ]);
    assert!(!ok);
    let line = error_line(&err);
    assert!(
        line.starts_with("ironflow: cannot connect to the Southbound database at unix:/nonexistent/sb.sock (check --ovn-remote)"),
        "{err}"
    );

    // A port on an interface that does not exist.
    let (ok, err) = run_node(&[
        "--ovn-remote",
        "unix:/nonexistent/sb.sock",
        "--encap-ip",
        "127.0.0.1",
        "--port",
        "ifl-none0=web-1",
    ]);
    assert!(!ok);
    assert!(
        error_line(&err).starts_with(
            "ironflow: --port ifl-none0=web-1: no network interface named \"ifl-none0\""
        ),
        "{err}"
    );

    // A backend that does not exist, and --log-file without --detach.
    let (ok, err) = run_node(&["--ovn-remote", "unix:/x", "--backend", "xdp"]);
    assert!(!ok);
    assert_eq!(
        error_line(&err),
        "ironflow: unknown backend \"xdp\": use auto, afpacket, afxdp or tap"
    );
    let (ok, err) = run_node(&["--ovn-remote", "unix:/x", "--log-file", "/tmp/x.log"]);
    assert!(!ok);
    assert!(
        error_line(&err).contains("--log-file goes with --detach"),
        "{err}"
    );
}

#[test]
fn detach_reports_a_start_failure_and_leaves_no_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("ironflow.pid");
    let (ok, err) = run_node(&[
        "--ovn-remote",
        "unix:/nonexistent/sb.sock",
        "--encap-ip",
        "127.0.0.1",
        "--detach",
        "--pidfile",
        pidfile.to_str().unwrap(),
    ]);
    assert!(
        !ok,
        "the parent waits for the daemon's start and fails with it"
    );
    assert!(
        error_line(&err).starts_with("ironflow: cannot connect to the Southbound database"),
        "{err}"
    );
    assert!(
        !pidfile.exists(),
        "a daemon that failed removes its pidfile"
    );
}

#[test]
fn management_commands_say_when_no_node_runs() {
    let out = ironflow(&[
        "port",
        "list",
        "--mgmt-socket",
        "/nonexistent/ironflow.sock",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ironflow: cannot reach ironflow at /nonexistent/ironflow.sock"),
        "{err}"
    );
}
