//! `ironflow-lab`: starts and stops the labs by hand (the seed central for now).

use anyhow::Result;
use clap::{Parser, Subcommand};
use ironflow_testbeds::central::{stop_in, OvnCentral};
use ironflow_testbeds::seed::build_seed;
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
            println!(
                "OVN central with the seed topology is running in {}",
                central.dir().display()
            );
            println!("  NB: {}", central.nb_remote());
            println!(
                "  SB: {}  (also {})",
                central.sb_remote(),
                central.sb_tcp_remote()
            );
        }
        Command::Stop { dir } => {
            stop_in(&dir)?;
            println!("stopped the central in {}", dir.display());
        }
    }
    Ok(())
}
