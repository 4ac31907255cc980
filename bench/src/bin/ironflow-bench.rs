//! `ironflow-bench`: whole-engine measurements that criterion's repeated
//! samples do not suit (one big compile, peak memory). Micro-benchmarks are
//! the criterion benches under `benches/`.

use ironflow_pipeline::program::compile;
use ironflow_pipeline::snapshot::Snapshot;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str =
    "usage: ironflow-bench compile --snapshot FILE   (make FILE with `ironflow sb dump`)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match args.as_slice() {
        [cmd, flag, path] if cmd == "compile" && flag == "--snapshot" => path,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match compile_snapshot(path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironflow-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn compile_snapshot(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let start = Instant::now();
    let net = Snapshot::from_json(&text)
        .map_err(|e| format!("{path}: {e}"))?
        .network;
    drop(text);
    let load = start.elapsed();
    let rss_loaded = peak_rss_mib().unwrap_or(0.0);
    let start = Instant::now();
    let program = compile(&net);
    let compile_time = start.elapsed();
    let rss = peak_rss_mib().unwrap_or(0.0);
    let out = serde_json::json!({
        "flows": program.flows,
        "failed": program.failures.len(),
        "rules": program.rules,
        "datapaths": program.datapaths.len(),
        "load_s": load.as_secs_f64(),
        "compile_s": compile_time.as_secs_f64(),
        "peak_rss_after_load_mib": rss_loaded,
        "peak_rss_mib": rss,
    });
    println!("{out}");
    Ok(())
}
