//! Where the control plane's memory goes, stage by stage: following a
//! Southbound (the replica and its typed tables), the logical network
//! built from them, the compiled program. Live heap bytes come from a
//! counting allocator, so they do not depend on how glibc keeps what is
//! freed; the process's VmRSS/VmHWM are shown beside them.
//!
//! ```sh
//! # a synthetic SB in a central that stays up (as root, real ovn-northd)
//! sbmem build /tmp/sbmem 200 20
//! sbmem measure unix:/tmp/sbmem/sb.sock
//! ironflow-lab stop --dir /tmp/sbmem
//! ```

use anyhow::{bail, Context, Result};
use ironflow_control::ovsdb::parse_remotes;
use ironflow_control::sb::{FollowOptions, Session};
use ironflow_pipeline::program::compile_for;
use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::synthetic::{self, Size};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The system allocator, counting the bytes live now and at their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only
// the counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn status(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// One line: the stage, live heap now and its peak since the last line,
/// and the process's RSS now and at its peak.
fn report(stage: &str, since: Instant) {
    println!(
        "{stage:<34} live {:7.1} MiB  peak {:7.1} MiB  rss {:7.1} MiB  hwm {:7.1} MiB  {:5.2} s",
        mib(LIVE.load(Ordering::Relaxed)),
        mib(PEAK.swap(LIVE.load(Ordering::Relaxed), Ordering::Relaxed)),
        status("VmRSS:"),
        status("VmHWM:"),
        since.elapsed().as_secs_f64()
    );
}

fn trim() {
    // SAFETY: malloc_trim only returns the allocator's free pages.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["build", dir, switches, ports] => {
            let central = OvnCentral::start_in(Path::new(dir), true)?;
            let size = Size {
                switches: switches.parse().context("switches")?,
                ports: ports.parse().context("ports")?,
            };
            synthetic::build(&central, size)?;
            println!("SB at {}", central.sb_remote());
            Ok(())
        }
        ["measure", remote] => measure(remote),
        _ => bail!("usage: sbmem build DIR SWITCHES PORTS | sbmem measure REMOTE"),
    }
}

fn measure(remote: &str) -> Result<()> {
    let remotes = parse_remotes(remote).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let start = Instant::now();
    report("start", start);
    let session = rt.block_on(Session::open(&remotes[0], &FollowOptions::default()))?;
    report("SB read (replica, typed tables)", start);
    let net = session.network();
    report("logical network built", start);
    let program = compile_for(&net, Some("sbmem"));
    report(
        &format!(
            "compiled ({} flows, {} rules)",
            program.flows, program.rules
        ),
        start,
    );
    trim();
    report("after malloc_trim", start);
    let again = compile_for(&net, Some("sbmem"));
    report("a second program beside it", start);
    drop(again);
    drop(program);
    report("programs dropped", start);
    drop(net);
    report("network dropped", start);
    drop(session);
    report("session dropped", start);
    trim();
    report("after malloc_trim", start);
    Ok(())
}
