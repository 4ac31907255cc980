//! `ironflow-bench control` run small (20 switches of 5 ports, one round)
//! against a real OVN central, stock ovn-controller and ovs-vswitchd, and
//! `ironflow run`: both peers install flows for every datapath of the SB
//! (one VIF on ls0 makes them all local through the router) and report
//! time and memory. Needs root and the OVS/OVN packages; skips with a
//! message otherwise.

use serde_json::Value;
use std::process::Command;

#[test]
fn control_plane_benchmark_runs_small() {
    if let Some(why) =
        ironflow_testbeds::lab::unavailable().or_else(ironflow_testbeds::stock::unavailable)
    {
        eprintln!("skipping the control-plane benchmark: {why}");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ironflow-bench"))
        .args([
            "control",
            "--switches",
            "20",
            "--ports",
            "5",
            "--rounds",
            "1",
            "--json",
        ])
        .output()
        .expect("run ironflow-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ironflow-bench control failed:\n{stderr}"
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (stock, ours) = (&lines[0], &lines[1]);
    assert_eq!(stock["peer"], "ovn-controller");
    assert_eq!(ours["peer"], "ironflow");
    let lflows = stock["logical_flows"].as_u64().unwrap();
    assert!(lflows > 1000, "{stock}");
    assert_eq!(ours["logical_flows"], lflows);
    for l in &lines {
        // 20 switches and the router: all local to a chassis with one VIF.
        assert_eq!(l["datapaths"], 21, "{l}\n{stderr}");
        assert!(l["installed_flows"].as_u64().unwrap() > 1000, "{l}");
        let s = l["seconds"].as_f64().unwrap();
        assert!(s > 0.0 && s < 60.0, "{l}");
        assert!(l["rss_mib"].as_f64().unwrap() > 1.0, "{l}");
        assert!(l["peak_rss_mib"].as_f64() >= l["rss_mib"].as_f64(), "{l}");
    }
    assert!(
        stock["controller_rss_mib"].as_f64().unwrap() > 1.0,
        "{stock}"
    );
    assert!(ours["compiles"].as_f64().unwrap() >= 1.0, "{ours}");
    assert!(stock["stock_over_ironflow"]["seconds"].as_f64().unwrap() > 0.0);
}
