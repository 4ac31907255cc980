//! `ironflow-lab`: starts and stops the labs by hand (the seed central for now).

use anyhow::Result;
use clap::{Parser, Subcommand};
use ironflow_testbeds::central::{stop_in, OvnCentral};
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
