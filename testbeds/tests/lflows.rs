//! Every logical flow northd writes for each lab topology parses and
//! normalises: what `ironflow lflows check` promises, against real
//! ovn-northd output.

use ironflow_control::ovsdb::parse_remotes;
use ironflow_control::sb::{read_once, FollowOptions};
use ironflow_pipeline::lflow::check::check_network;
use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::topologies::ALL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topology_checks_clean() {
    let mut summary = Vec::new();
    for topology in &ALL {
        let central = OvnCentral::start().expect("start OVN central");
        topology
            .build(&central)
            .unwrap_or_else(|e| panic!("build {}: {e:#}", topology.name));
        let remotes = parse_remotes(&central.sb_remote()).unwrap();
        let (net, _, _) = read_once(&remotes, &FollowOptions::default())
            .await
            .expect("read SB");
        let report = check_network(&net);
        let failures: Vec<String> = report
            .failures
            .iter()
            .map(|f| {
                format!(
                    "{} {} table={} {} {:?}: {}",
                    f.datapath, f.pipeline, f.table, f.column, f.text, f.error
                )
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{}: {} failed:\n{}",
            topology.name,
            failures.len(),
            failures.join("\n")
        );
        assert!(
            report.flows > 150,
            "{}: only {} flows",
            topology.name,
            report.flows
        );
        summary.push(format!(
            "{}: {} flows, {} conjunctions",
            topology.name, report.flows, report.conjunctions
        ));
    }
    eprintln!("{}", summary.join("\n"));
}
