//! A synthetic Southbound as big as asked for, built by real ovn-northd
//! from an NB that `ovn-nbctl` fills: many switches of many ports, each
//! switch's ports in a port group with ACLs (as ovn-kubernetes writes
//! network policies), every switch on one router. The compile and control
//! plane benchmarks read it as a snapshot.

use crate::central::OvnCentral;
use anyhow::{Context, Result};
use ironflow_control::ovsdb::parse_remotes;
use ironflow_control::sb::{read_once, FollowOptions};
use ironflow_pipeline::snapshot::Snapshot;

/// How big to make it. 850 switches of 20 ports give about 100k logical
/// flows with OVN 23.03.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub switches: usize,
    pub ports: usize,
}

/// Commands per `ovn-nbctl` call: one process per few hundred commands
/// keeps the build to a minute or two.
const BATCH: usize = 400;

/// Builds the topology in `central`'s NB and waits for northd.
pub fn build(central: &OvnCentral, size: Size) -> Result<()> {
    let s = |x: &str| x.to_string();
    let mut commands: Vec<Vec<String>> = vec![vec![s("lr-add"), s("synth-r")]];
    for sw in 0..size.switches {
        // 10.(sw / 250).(sw % 250).0/24 and a router port on .1.
        let (hi, lo) = (sw / 250, sw % 250);
        let ls = format!("ls{sw}");
        let rp = format!("r-ls{sw}");
        let sp = format!("ls{sw}-r");
        commands.push(vec![s("ls-add"), ls.clone()]);
        commands.push(vec![
            s("lrp-add"),
            s("synth-r"),
            rp.clone(),
            format!("02:01:{:02x}:{:02x}:00:01", hi, lo),
            format!("10.{hi}.{lo}.1/24"),
        ]);
        commands.push(vec![s("lsp-add"), ls.clone(), sp.clone()]);
        commands.push(vec![s("lsp-set-type"), sp.clone(), s("router")]);
        commands.push(vec![s("lsp-set-addresses"), sp.clone(), s("router")]);
        commands.push(vec![s("lsp-set-options"), sp, format!("router-port={rp}")]);
        let mut members = Vec::new();
        for p in 0..size.ports {
            let name = format!("ls{sw}-p{p}");
            let mac = format!(
                "0a:01:{:02x}:{:02x}:{:02x}:{:02x}",
                hi,
                lo,
                p / 256,
                p % 256
            );
            let ip = format!("10.{hi}.{lo}.{}", p + 10);
            commands.push(vec![s("lsp-add"), ls.clone(), name.clone()]);
            commands.push(vec![
                s("lsp-set-addresses"),
                name.clone(),
                format!("{mac} {ip}"),
            ]);
            commands.push(vec![
                s("lsp-set-port-security"),
                name.clone(),
                format!("{mac} {ip}"),
            ]);
            members.push(name);
        }
        let pg = format!("pg_ls{sw}");
        let mut pg_add = vec![s("pg-add"), pg.clone()];
        pg_add.extend(members);
        commands.push(pg_add);
        for (prio, direction, matching, verdict) in [
            (
                "1001",
                "to-lport",
                format!("outport == @{pg} && ip4 && tcp.dst == 80"),
                "allow-related",
            ),
            (
                "1001",
                "to-lport",
                format!("outport == @{pg} && ip4.src == 10.{hi}.{lo}.0/24"),
                "allow-related",
            ),
            (
                "1000",
                "to-lport",
                format!("outport == @{pg} && ip4"),
                "drop",
            ),
        ] {
            commands.push(vec![
                s("acl-add"),
                pg.clone(),
                s(direction),
                s(prio),
                matching,
                s(verdict),
            ]);
        }
    }
    // One transaction per chunk, and one wait for northd at the end: a
    // wait per chunk would have northd recompute a growing NB each time.
    for chunk in commands.chunks(BATCH) {
        let mut args: Vec<&str> = Vec::new();
        for (i, cmd) in chunk.iter().enumerate() {
            if i > 0 {
                args.push("--");
            }
            args.extend(cmd.iter().map(String::as_str));
        }
        central.nbctl(&args)?;
    }
    central
        .nbctl(&["--timeout=600", "--wait=sb", "sync"])
        .map(drop)
}

/// Reads the central's SB into a snapshot file.
pub fn dump(central: &OvnCentral, path: &std::path::Path) -> Result<usize> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime to read the Southbound database")?;
    let remotes = parse_remotes(&central.sb_remote())?;
    let (net, schema, source) = rt
        .block_on(read_once(&remotes, &FollowOptions::default()))
        .context("cannot read the Southbound database")?;
    let flows = net.logical_flows.len();
    let mut snap = Snapshot::new(net);
    snap.sb_schema_version = Some(schema);
    snap.source = Some(source);
    std::fs::write(path, snap.to_json() + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(flows)
}
