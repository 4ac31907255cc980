//! The lab's OVN central checked with OVN's own tools only: the seed reaches
//! the SB whole, the SB server comes back from a restart unchanged, and the
//! daemons go away with the value that started them.

use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::seed::{build_seed, ROUTER, SWITCHES, VIFS};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `ovn-sbctl list TABLE` (all columns when `columns` is empty) as sorted
/// CSV lines: row order is the server's hash order, which a restart may
/// change.
fn csv(central: &OvnCentral, table: &str, columns: &str) -> Vec<String> {
    let columns = format!("--columns={columns}");
    let mut args = vec!["--format=csv", "--data=bare", "--no-headings"];
    if !columns.ends_with('=') {
        args.push(&columns);
    }
    args.extend(["list", table]);
    let out = central
        .sbctl(&args)
        .unwrap_or_else(|e| panic!("list {table}: {e:#}"));
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Every table northd writes for the seed, whole.
fn sb_contents(central: &OvnCentral) -> Vec<String> {
    [
        "Datapath_Binding",
        "Port_Binding",
        "Logical_Flow",
        "Logical_DP_Group",
        "Multicast_Group",
        "Port_Group",
        "Address_Set",
        "Load_Balancer",
    ]
    .iter()
    .flat_map(|table| csv(central, table, ""))
    .collect()
}

fn pids(dir: &Path) -> Vec<u32> {
    ["nb", "sb", "northd"]
        .iter()
        .map(|d| {
            std::fs::read_to_string(dir.join(format!("{d}.pid")))
                .unwrap_or_else(|e| panic!("{d}.pid: {e}"))
                .trim()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Running and not a zombie: detached daemons are reparented to a PID 1
/// that may never reap them.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim()
            .starts_with('Z')
    })
}

#[test]
fn seed_reaches_the_sb_and_survives_an_sb_restart() {
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("build seed");

    let datapaths: BTreeSet<(String, bool)> = csv(&central, "Datapath_Binding", "external_ids")
        .iter()
        .map(|ids| {
            let name = ids
                .split(' ')
                .find_map(|kv| kv.strip_prefix("name="))
                .unwrap_or_else(|| panic!("datapath without a name: {ids}"));
            (name.to_owned(), ids.contains("logical-router="))
        })
        .collect();
    let want: BTreeSet<(String, bool)> = std::iter::once((ROUTER.to_owned(), true))
        .chain(SWITCHES.iter().map(|s| (s.name.to_owned(), false)))
        .collect();
    assert_eq!(datapaths, want);
    assert_eq!(datapaths.len(), 5);

    // Both ends of each router link are patch ports; VIFs have no type.
    let ports: BTreeSet<String> = csv(&central, "Port_Binding", "logical_port,type")
        .into_iter()
        .collect();
    let want: BTreeSet<String> = SWITCHES
        .iter()
        .flat_map(|s| [s.switch_port, s.router_port])
        .map(|p| format!("{p},patch"))
        .chain(VIFS.iter().map(|v| format!("{},", v.name)))
        .collect();
    assert_eq!(ports, want);

    let pg = csv(&central, "Port_Group", "name,ports");
    assert!(
        pg.iter().any(|row| row.ends_with("_pg_sshd,sshd-2")),
        "port group for sshd-2 missing: {pg:?}"
    );
    let lb = csv(&central, "Load_Balancer", "name,vips");
    assert_eq!(lb, ["lb-sshd,172.30.0.10:22=192.168.2.3:22"]);

    let before = sb_contents(&central);
    assert!(before.len() > 300, "only {} SB rows", before.len());
    central.stop_sb().expect("stop SB");
    let err = central
        .sbctl(&["--timeout=5", "show"])
        .expect_err("SB still answers after stop_sb");
    let err = format!("{err:#}");
    assert!(err.contains("ovn-sbctl --timeout=5 show"), "{err}");
    assert!(err.contains("database connection failed"), "{err}");

    central.start_sb().expect("start SB");
    // northd must have found the SB again before its contents count.
    central.sync().expect("sync after SB restart");
    assert_eq!(sb_contents(&central), before);

    let out = Command::new("ovn-sbctl")
        .arg(format!("--db={}", central.sb_tcp_remote()))
        .args([
            "--timeout=10",
            "--bare",
            "--columns=name",
            "list",
            "Port_Group",
        ])
        .output()
        .expect("run ovn-sbctl");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("_pg_sshd"));

    // A change made after the restart still flows NB → northd → SB.
    central
        .nbctl(&["lsp-add", "kube-node1", "late-pod"])
        .expect("add port");
    central.sync().expect("sync");
    assert!(csv(&central, "Port_Binding", "logical_port").contains(&"late-pod".to_owned()));
}

#[test]
fn drop_stops_the_daemons_and_removes_the_directory() {
    let central = OvnCentral::start().expect("start OVN central");
    let dir = central.dir().to_owned();
    let started = pids(&dir);
    assert!(started.iter().all(|&p| running(p)), "{started:?}");
    drop(central);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(started.iter().all(|&p| !running(p)), "{started:?}");
}

#[test]
fn start_in_replaces_a_kept_central() {
    let tmp = tempfile::Builder::new()
        .prefix("ironflow-keep-")
        .tempdir_in("/tmp")
        .unwrap();
    let kept = OvnCentral::start_in(tmp.path(), true).expect("start kept central");
    kept.nbctl(&["ls-add", "old"]).unwrap();
    let old = pids(tmp.path());
    drop(kept);
    assert!(
        old.iter().all(|&p| running(p)),
        "kept central stopped on drop"
    );

    let fresh = OvnCentral::start_in(tmp.path(), false).expect("start over it");
    assert!(old.iter().all(|&p| !running(p)), "old daemons still run");
    assert_eq!(
        fresh.nbctl(&["ls-list"]).unwrap(),
        "",
        "old NB contents kept"
    );
    let new = pids(tmp.path());
    drop(fresh);
    assert!(new.iter().all(|&p| !running(p)));
}
