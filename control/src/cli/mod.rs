//! The `ironflow` command line.
//!
//! Each subcommand maps user input to the library and turns failures into
//! one line that says what to fix; nothing here is needed by the library.

pub mod detach;
pub mod node;
pub mod run;
pub mod settings;
pub mod show;
pub mod trace;

use crate::ovsdb::parse_remotes;
use crate::sb::{read_once, FollowOptions};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ironflow_pipeline::lflow::check::check_network;
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::LogicalNetwork;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ironflow",
    version,
    about = "Node dataplane for OVN: follows the Southbound database and forwards in userspace"
)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read the OVN Southbound database.
    #[command(subcommand)]
    Sb(SbCommand),
    /// Work with logical flows.
    #[command(subcommand)]
    Lflows(LflowsCommand),
    /// Trace a packet through the logical pipelines, as ovn-trace does.
    Trace(TraceArgs),
    /// Run this node: register the chassis, follow the SB, forward the
    /// attached ports' traffic (in the foreground, until SIGINT/SIGTERM).
    Run(run::RunArgs),
    /// What a running node is: chassis, tunnels, ports, bindings (the role
    /// of `ovs-vsctl show`).
    Show(MgmtArgs),
    /// A running node's counters: packets, drops by reason, cache hits,
    /// conntrack.
    Stats(MgmtArgs),
    /// A running node's megaflows, as `ovs-appctl dpctl/dump-flows`.
    Flows(FlowsArgs),
    /// Attach, detach and list a running node's ports (the role of
    /// `ovs-vsctl add-port … -- set Interface … external_ids:iface-id=…`).
    #[command(subcommand)]
    Port(PortCommand),
}

#[derive(Subcommand, Debug)]
pub enum PortCommand {
    /// Attach interface IFNAME as logical port LSP; it is claimed at once
    /// and kept across restarts of the daemon (its --state file).
    Add {
        ifname: String,
        /// The logical switch port it is (`iface-id`).
        #[arg(long, value_name = "LSP")]
        iface_id: String,
        /// auto (the best that works), afpacket, afxdp, or tap (creates
        /// IFNAME as an internal port when it does not exist).
        #[arg(long, default_value = "auto")]
        backend: String,
        #[command(flatten)]
        mgmt: MgmtArgs,
    },
    /// Detach interface IFNAME and release its logical port.
    Del {
        ifname: String,
        #[command(flatten)]
        mgmt: MgmtArgs,
    },
    /// The attached ports with their backends and counters.
    List(MgmtArgs),
}

#[derive(Args, Debug)]
pub struct FlowsArgs {
    #[command(flatten)]
    pub mgmt: MgmtArgs,
    /// The compiled tables instead of the megaflows: one line per logical
    /// flow installed in a table (the role of `ovs-ofctl dump-flows`).
    #[arg(long)]
    pub compiled: bool,
    /// With --compiled: only this datapath (name or UUID).
    #[arg(long, value_name = "NAME", requires = "compiled")]
    pub datapath: Option<String>,
}

#[derive(Args, Debug)]
pub struct MgmtArgs {
    /// The running node's management socket.
    #[arg(long, value_name = "PATH", default_value = run::DEFAULT_MGMT_SOCKET)]
    pub mgmt_socket: PathBuf,
    /// Print the JSON answer as it is.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(flatten)]
    pub source: TraceSource,
    /// With --live: the running node's management socket.
    #[arg(long, value_name = "PATH", default_value = run::DEFAULT_MGMT_SOCKET)]
    pub mgmt_socket: PathBuf,
    /// Connection-tracking state for each recirculation in turn, e.g.
    /// `--ct new` (flags new, est, rel, rpl, inv, trk, snat, dnat joined by |).
    #[arg(long = "ct", value_name = "FLAGS")]
    pub ct: Vec<String>,
    /// The backend a load balancer picks: IP, IP:PORT or [IPv6]:PORT.
    #[arg(long, value_name = "IP[:PORT]")]
    pub lb_dst: Option<String>,
    /// Trace as this chassis sees it: ports bound to other chassis are
    /// reached through tunnels. Without it every port is local, as in
    /// ovn-trace.
    #[arg(long, value_name = "NAME")]
    pub chassis: Option<String>,
    /// Every table visited with its flow (the default).
    #[arg(long, group = "detail")]
    pub detailed: bool,
    /// One line per table visited.
    #[arg(long, group = "detail")]
    pub summary: bool,
    /// Only the changes to the packet and where it goes.
    #[arg(long, group = "detail")]
    pub minimal: bool,
    /// `text` (default) or `json`.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: String,
    /// Logical switch or router, by name or UUID.
    pub datapath: String,
    /// The packet, as an OVN match of equalities, e.g.
    /// 'inport == "web-1" && eth.src == 0a:00:00:00:00:02 && ip4.dst == 192.168.2.3 && ip.ttl == 64'.
    pub microflow: String,
}

#[derive(Subcommand, Debug)]
pub enum LflowsCommand {
    /// Parse and normalise every logical flow; print one line per failure
    /// and a summary. Exit status 0 only when none failed.
    Check(Source),
}

#[derive(Subcommand, Debug)]
pub enum SbCommand {
    /// Print datapaths, ports (tunnel keys, type, chassis) and logical-flow
    /// counts per pipeline and table.
    Show(Source),
    /// Write the logical network as a snapshot file (JSON) to stdout or FILE.
    Dump {
        /// OVSDB remote of the SB: unix:PATH or tcp:IP:PORT (comma-separated for a cluster).
        #[arg(long)]
        db: String,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// Where to read the logical network from.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// OVSDB remote of the SB: unix:PATH or tcp:IP:PORT (comma-separated for a cluster).
    #[arg(long)]
    pub db: Option<String>,
    /// A file written by `ironflow sb dump`.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
}

/// Where `ironflow trace` gets its network: the SB, a snapshot, or a
/// running node (`--live`).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct TraceSource {
    /// OVSDB remote of the SB: unix:PATH or tcp:IP:PORT (comma-separated for a cluster).
    #[arg(long)]
    pub db: Option<String>,
    /// A file written by `ironflow sb dump`.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Trace on the program a running node forwards with, as its chassis
    /// (ports on other chassis are reached through tunnels); see
    /// --mgmt-socket.
    #[arg(long)]
    pub live: bool,
}

impl TraceSource {
    async fn load(&self) -> Result<Loaded> {
        Source {
            db: self.db.clone(),
            snapshot: self.snapshot.clone(),
        }
        .load()
        .await
    }
}

/// A logical network and where it came from.
pub struct Loaded {
    pub network: LogicalNetwork,
    pub source: String,
    pub schema_version: Option<String>,
}

impl Source {
    pub async fn load(&self) -> Result<Loaded> {
        match (&self.db, &self.snapshot) {
            (Some(db), _) => load_db(db).await,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read snapshot {}", path.display()))?;
                let snap =
                    Snapshot::from_json(&text).with_context(|| format!("{}", path.display()))?;
                Ok(Loaded {
                    network: snap.network,
                    source: path.display().to_string(),
                    schema_version: snap.sb_schema_version,
                })
            }
            (None, None) => bail!("give --db REMOTE or --snapshot FILE"),
        }
    }
}

async fn load_db(db: &str) -> Result<Loaded> {
    let remotes = parse_remotes(db)?;
    let opts = FollowOptions::default();
    let (network, schema_version, source) = read_once(&remotes, &opts)
        .await
        .context("cannot read the Southbound database (is ovsdb-server running there?)")?;
    Ok(Loaded {
        network,
        source,
        schema_version: Some(schema_version),
    })
}

/// Runs a command; `Ok(false)` is a command that ran but found problems
/// (the process then exits with status 1).
pub async fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Sb(SbCommand::Show(source)) => {
            let loaded = source.load().await?;
            let origin = show::Origin {
                source: &loaded.source,
                schema_version: loaded.schema_version.as_deref(),
            };
            print!("{}", show::render(&loaded.network, &origin));
        }
        Command::Run(args) => {
            run::run_node(args).await?;
        }
        Command::Show(a) => print_mgmt(&a, "show").await?,
        Command::Port(cmd) => port(cmd).await?,
        Command::Stats(a) => print_mgmt(&a, "stats").await?,
        Command::Flows(a) => {
            let (request, list) = if a.compiled {
                (
                    serde_json::json!({"command": "tables", "datapath": a.datapath}),
                    "lines",
                )
            } else {
                (serde_json::json!({"command": "flows"}), "flows")
            };
            let reply = crate::mgmt::request_json(&a.mgmt.mgmt_socket, request).await?;
            if a.mgmt.json {
                println!("{reply}");
            } else {
                for f in reply[list].as_array().into_iter().flatten() {
                    println!("{}", f.as_str().unwrap_or_default());
                }
                if a.compiled {
                    println!(
                        "{} datapaths shown; {} logical flows compiled into {} rules, {} failed",
                        reply["datapaths"], reply["flows"], reply["rules"], reply["failures"]
                    );
                }
            }
        }
        Command::Trace(args) => {
            let detail = if args.minimal {
                trace::Detail::Minimal
            } else if args.summary {
                trace::Detail::Summary
            } else {
                trace::Detail::Detailed
            };
            let opts = trace::TraceOptions {
                datapath: args.datapath,
                microflow: args.microflow,
                ct: args.ct,
                lb_dst: args.lb_dst,
                chassis: args.chassis,
                detail,
                format: args.format,
            };
            if args.source.live {
                if opts.chassis.is_some() {
                    bail!("--live traces as the running node's chassis: leave out --chassis");
                }
                let reply = crate::mgmt::request_json(&args.mgmt_socket, opts.to_request()).await?;
                print!("{}", reply["output"].as_str().unwrap_or_default());
            } else {
                let loaded = args.source.load().await?;
                let program = ironflow_pipeline::program::compile_for(
                    &loaded.network,
                    opts.chassis.as_deref(),
                );
                let out =
                    trace::render(&loaded.network, &program, &opts).map_err(anyhow::Error::msg)?;
                print!("{out}");
            }
        }
        Command::Lflows(LflowsCommand::Check(source)) => {
            let loaded = source.load().await?;
            let report = check_network(&loaded.network);
            for f in &report.failures {
                println!(
                    "{} {} table={} priority={} {} {:?}: {} (lflow {})",
                    f.datapath, f.pipeline, f.table, f.priority, f.column, f.text, f.error, f.uuid
                );
            }
            println!(
                "{} flows, {} ok, {} failed",
                report.flows,
                report.ok,
                report.failed()
            );
            return Ok(report.failed() == 0);
        }
        Command::Sb(SbCommand::Dump { db, output }) => {
            let loaded = load_db(&db).await?;
            let mut snap = Snapshot::new(loaded.network);
            snap.sb_schema_version = loaded.schema_version;
            snap.source = Some(loaded.source);
            let text = snap.to_json();
            match output {
                Some(path) => std::fs::write(&path, text + "\n")
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => println!("{text}"),
            }
        }
    }
    Ok(true)
}

/// `ironflow port add|del|list`.
async fn port(cmd: PortCommand) -> Result<()> {
    use crate::mgmt::request_json;
    use serde_json::json;
    match cmd {
        PortCommand::Add {
            ifname,
            iface_id,
            backend,
            mgmt,
        } => {
            backend.parse::<crate::attach::Backend>()?;
            let r = request_json(
                &mgmt.mgmt_socket,
                json!({"command": "port-add", "ifname": ifname, "iface_id": iface_id, "backend": backend}),
            )
            .await?;
            if mgmt.json {
                println!("{r}");
            } else {
                println!(
                    "{} attached as {} (port {}, {})",
                    ifname,
                    iface_id,
                    r["port"],
                    r["backend"].as_str().unwrap_or("?")
                );
            }
        }
        PortCommand::Del { ifname, mgmt } => {
            let r = request_json(
                &mgmt.mgmt_socket,
                json!({"command": "port-del", "ifname": ifname}),
            )
            .await?;
            if mgmt.json {
                println!("{r}");
            } else {
                println!(
                    "{} detached ({} released)",
                    ifname,
                    r["iface_id"].as_str().unwrap_or("?")
                );
            }
        }
        PortCommand::List(mgmt) => {
            let r = request_json(&mgmt.mgmt_socket, json!({"command": "port-list"})).await?;
            if mgmt.json {
                println!("{r}");
                return Ok(());
            }
            println!(
                "{:<16} {:<24} {:<9} {:>12} {:>12} {:>8}",
                "IFNAME", "IFACE-ID", "BACKEND", "RX", "TX", "ERRORS"
            );
            for p in r["ports"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<24} {:<9} {:>12} {:>12} {:>8}{}",
                    p["ifname"].as_str().unwrap_or("?"),
                    p["iface_id"].as_str().unwrap_or("?"),
                    p["backend"].as_str().unwrap_or("?"),
                    p["rx_packets"].as_u64().unwrap_or(0),
                    p["tx_packets"].as_u64().unwrap_or(0),
                    p["errors"].as_u64().unwrap_or(0),
                    p["last_error"]
                        .as_str()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default()
                );
            }
            for p in r["missing"].as_array().into_iter().flatten() {
                println!(
                    "{:<16} {:<24} {:<9} not attached: {}",
                    p["ifname"].as_str().unwrap_or("?"),
                    p["iface_id"].as_str().unwrap_or("?"),
                    p["backend"].as_str().unwrap_or("?"),
                    p["error"].as_str().unwrap_or("?")
                );
            }
        }
    }
    Ok(())
}

/// Asks a running node and prints the answer as text, or as JSON.
async fn print_mgmt(a: &MgmtArgs, command: &str) -> Result<()> {
    let reply = crate::mgmt::request(&a.mgmt_socket, command).await?;
    if a.json {
        println!("{reply}");
    } else if command == "show" {
        print!("{}", node::show(&reply));
    } else {
        print!("{}", node::stats(&reply));
    }
    Ok(())
}
