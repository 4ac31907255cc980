//! The `ironflow` binary: parses the command line and reports errors in one line.

use clap::Parser;
use ironflow_control::cli::{detach, run, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Run(args) = &cli.command {
        let forked = run::precheck(args).and_then(|()| {
            if args.detach {
                detach::detach(args.pidfile.as_deref(), args.log_file.as_deref())
            } else {
                Ok(())
            }
        });
        if let Err(e) = forked {
            eprintln!("ironflow: {e:#}");
            detach::notify_failed(&format!("{e:#}"));
            return std::process::ExitCode::FAILURE;
        }
    }
    // The daemon says what it does (chassis registered, ports attached
    // and with which backend), as ovn-controller logs at INFO; the
    // one-shot commands only warn.
    let daemon = matches!(cli.command, Command::Run(_));
    let level = match cli.verbose {
        0 if daemon => "info",
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ironflow: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            // The whole chain on one line: "what failed: why".
            eprintln!("ironflow: {e:#}");
            detach::notify_failed(&format!("{e:#}"));
            detach::remove_pidfile();
            std::process::ExitCode::FAILURE
        }
    }
}
