//! `ironflow-lab`: starts and stops the labs by hand: the seed central
//! alone, or the whole seed cluster in network namespaces with an
//! `ironflow run` per node (`up`, `down`, `demo`).

use anyhow::Result;
use clap::{Parser, Subcommand};
use ironflow_testbeds::central::{stop_in, OvnCentral};
use ironflow_testbeds::lab::{self, LabConfig, SeedLab};
use ironflow_testbeds::seed::build_seed;
use ironflow_testbeds::{synthetic, topologies};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "ironflow-lab", about = "Start and stop ironflow's labs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a real OVN central (NB, SB, northd) with the seed topology; it
    /// keeps running until `ironflow-lab stop`.
    Seed {
        /// Directory for the databases, sockets, logs and pidfiles.
        #[arg(long, default_value = "lab/seed")]
        dir: PathBuf,
    },
    /// Start a central with one of the lab topologies (`--list` shows them).
    Start {
        #[arg(long, default_value = "seed")]
        topology: String,
        #[arg(long, default_value = "lab/seed")]
        dir: PathBuf,
        /// List the topologies and exit.
        #[arg(long)]
        list: bool,
    },
    /// Build a synthetic SB (SWITCHES switches of PORTS ports, each with a
    /// port group and ACLs, on one router) on a throwaway central and write
    /// it as a snapshot: what `ironflow-bench compile` reads.
    Synth {
        #[arg(long, default_value_t = 850)]
        switches: usize,
        #[arg(long, default_value_t = 20)]
        ports: usize,
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Stop the central started in DIR.
    Stop {
        #[arg(long, default_value = "lab/seed")]
        dir: PathBuf,
    },
    /// Start the seed cluster: a central, three nodes (kube-master,
    /// kube-node1, kube-node2) each running `ironflow run` in its own
    /// network namespace, pods web-1 (kube-node2) and sshd-2 (kube-node1)
    /// in theirs; it keeps running until `ironflow-lab down`.
    Up {
        /// Directory for the central, the daemons' logs and sockets.
        #[arg(long, default_value = "lab/cluster")]
        dir: PathBuf,
        /// `ironflow port add --backend`.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Run stock OVN (ovn-controller and OVS's userspace datapath) on
        /// this node instead of ironflow: a mixed cluster. Repeatable.
        #[arg(long, value_name = "NODE")]
        stock: Vec<String>,
    },
    /// Take apart the cluster `up` started in DIR.
    Down {
        #[arg(long, default_value = "lab/cluster")]
        dir: PathBuf,
    },
    /// Start the seed cluster, ping sshd-2 from web-1 across nodes, trace
    /// that packet, show kube-node2's counters, and take it all down.
    Demo {
        /// `ironflow port add --backend`.
        #[arg(long, default_value = "auto")]
        backend: String,
    },
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironflow-lab: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Seed { dir } => {
            let central = OvnCentral::start_in(&dir, true)?;
            build_seed(&central)?;
            announce(&central, "the seed topology");
        }
        Command::Start { list: true, .. } => {
            for t in &topologies::ALL {
                println!("{:<12} {}", t.name, t.about);
            }
        }
        Command::Start { topology, dir, .. } => {
            let Some(t) = topologies::ALL.iter().find(|t| t.name == topology) else {
                let names: Vec<_> = topologies::ALL.iter().map(|t| t.name).collect();
                anyhow::bail!(
                    "no topology {topology:?}; choose one of {}",
                    names.join(", ")
                );
            };
            let central = OvnCentral::start_in(&dir, true)?;
            t.build(&central)?;
            announce(&central, &format!("topology {}", t.name));
        }
        Command::Synth {
            switches,
            ports,
            out,
        } => {
            let central = OvnCentral::start()?;
            let start = std::time::Instant::now();
            synthetic::build(&central, synthetic::Size { switches, ports })?;
            let flows = synthetic::dump(&central, &out)?;
            println!(
                "{} logical flows ({switches} switches × {ports} ports) in {} ({:.0} s)",
                flows,
                out.display(),
                start.elapsed().as_secs_f64()
            );
        }
        Command::Stop { dir } => {
            stop_in(&dir)?;
            println!("stopped the central in {}", dir.display());
        }
        Command::Up {
            dir,
            backend,
            stock,
        } => {
            if dir.exists() {
                lab::down(&dir)?;
            }
            let lab = SeedLab::start(LabConfig {
                dir: Some(dir.clone()),
                keep: true,
                backend,
                stock,
                ..LabConfig::new("lab")
            })
            .inspect_err(|_| {
                // The central was started to outlive this process.
                let _ = lab::down(&dir);
            })?;
            print!("{}", lab.describe());
            println!("  down: ironflow-lab down --dir {}", dir.display());
        }
        Command::Down { dir } => {
            lab::down(&dir)?;
            println!("took down the lab in {}", dir.display());
        }
        Command::Demo { backend } => demo(&backend)?,
    }
    Ok(())
}

fn announce(central: &OvnCentral, what: &str) {
    println!(
        "OVN central with {what} is running in {}",
        central.dir().display()
    );
    println!("  NB: {}", central.nb_remote());
    println!(
        "  SB: {}  (also {})",
        central.sb_remote(),
        central.sb_tcp_remote()
    );
    println!(
        "  stop: ironflow-lab stop --dir {}",
        central.dir().display()
    );
}

/// The README's main command: the seed write-up's ping, through ironflow.
fn demo(backend: &str) -> Result<()> {
    let start = std::time::Instant::now();
    println!("== starting the seed cluster: OVN central, 3 ironflow nodes, pods web-1 and sshd-2");
    let lab = SeedLab::start(LabConfig {
        backend: backend.into(),
        ..LabConfig::new(&ironflow_testbeds::netns::unique_prefix("dm"))
    })?;
    for node in lab.nodes() {
        println!(
            "   {:<12} ironflow run in netns {}, underlay {}",
            node.name,
            node.ns().name(),
            node.encap_ip
        );
    }
    println!("   ready in {:.1} s", start.elapsed().as_secs_f64());
    let web = lab.pod("web-1")?;
    let sshd = lab.pod("sshd-2")?;
    println!(
        "\n== web-1 ({}, on kube-node2) pings sshd-2 ({}, on kube-node1): routed by kube-master, Geneve between the nodes",
        web.spec.ip, sshd.spec.ip
    );
    println!(
        "$ ip netns exec {} ping -c 3 {}",
        web.ns().name(),
        sshd.spec.ip
    );
    let (ok, out) = web.ping(sshd.spec.ip, 3)?;
    print!("{out}");
    if !ok {
        anyhow::bail!(
            "ping failed; kube-node2's log:\n{}",
            lab.node("kube-node2")?.log_tail(20)
        );
    }
    let microflow = format!(
        "inport == \"web-1\" && eth.src == {} && eth.dst == 00:00:00:d3:4b:aa && ip4.src == {} && ip4.dst == {} && ip.ttl == 64 && icmp4.type == 8",
        web.spec.mac, web.spec.ip, sshd.spec.ip
    );
    let node2 = lab.node("kube-node2")?;
    let sock = node2.mgmt_socket().display().to_string();
    println!("\n== that echo request through the program kube-node2 forwards with");
    println!(
        "$ ironflow trace --live --mgmt-socket {sock} --ct new --summary kube-node2 '{microflow}'"
    );
    print!(
        "{}",
        lab.ironflow_raw(&[
            "trace",
            "--live",
            "--mgmt-socket",
            &sock,
            "--ct",
            "new",
            "--summary",
            "kube-node2",
            &microflow,
        ])?
    );
    println!("\n== kube-node2's counters");
    println!(
        "$ ironflow stats --mgmt-socket {}",
        node2.mgmt_socket().display()
    );
    print!("{}", lab.ironflow("kube-node2", &["stats"])?);
    println!("\n== taking the cluster down");
    drop(lab);
    println!("done in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
