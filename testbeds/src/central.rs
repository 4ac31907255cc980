//! A real OVN central (NB and SB `ovsdb-server`s and `ovn-northd`) run from
//! the Debian packages, with all its state in one directory.
//!
//! Daemons are started with `--detach` so each call returns once the daemon
//! is ready, and stopped by the PID in their own pidfile — never by name,
//! since other OVN processes may run on the same machine.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The central's daemons, in start order.
const DAEMONS: [&str; 3] = ["nb", "sb", "northd"];

pub struct OvnCentral {
    dir: PathBuf,
    sb_tcp_port: u16,
    /// Stop the daemons on drop; false for a lab that outlives the process.
    stop_on_drop: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl OvnCentral {
    /// A central in a fresh temporary directory, stopped and removed on drop.
    pub fn start() -> Result<Self> {
        // Under /tmp: unix socket paths must stay short (~107 bytes).
        let tmp = tempfile::Builder::new()
            .prefix("ironflow-central-")
            .tempdir_in("/tmp")
            .context("cannot create a temporary directory under /tmp")?;
        let mut central = Self::start_in(tmp.path(), false)?;
        central._tmp = Some(tmp);
        Ok(central)
    }

    /// A central in `dir`, replacing whatever central ran there. With
    /// `keep`, it goes on running after this value is dropped.
    pub fn start_in(dir: &Path, keep: bool) -> Result<Self> {
        for tool in [
            "ovsdb-tool",
            "ovsdb-server",
            "ovn-northd",
            "ovn-nbctl",
            "ovn-sbctl",
        ] {
            if which(tool).is_none() {
                bail!("{tool} not found: run scripts/setup.sh to install OVN");
            }
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let sock_len = dir.join("northd.ctl").as_os_str().len();
        if sock_len > 100 {
            bail!(
                "{} is too long a path for unix sockets ({sock_len} bytes); use a shorter --dir",
                dir.display()
            );
        }
        let central = OvnCentral {
            dir,
            sb_tcp_port: free_tcp_port()?,
            stop_on_drop: !keep,
            _tmp: None,
        };
        central.stop()?;
        for db in ["nb", "sb"] {
            let file = central.path(&format!("{db}.db"));
            let _ = std::fs::remove_file(&file);
            let schema = format!("/usr/share/ovn/ovn-{db}.ovsschema");
            run(Command::new("ovsdb-tool")
                .arg("create")
                .arg(&file)
                .arg(schema))?;
        }
        std::fs::write(central.path("sb.tcp-port"), central.sb_tcp_port.to_string())?;
        central.start_db("nb")?;
        central.start_db("sb")?;
        central.start_northd()?;
        Ok(central)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn daemon_args(&self, name: &str) -> Vec<String> {
        let p = |suffix: &str| self.path(&format!("{name}.{suffix}")).display().to_string();
        vec![
            "--detach".into(),
            "--no-chdir".into(),
            format!("--pidfile={}", p("pid")),
            format!("--log-file={}", p("log")),
            format!("--unixctl={}", p("ctl")),
            // The log file has it all; keep test output readable.
            "-vconsole:off".into(),
        ]
    }

    fn start_db(&self, db: &str) -> Result<()> {
        let mut cmd = Command::new("ovsdb-server");
        cmd.args(self.daemon_args(db)).arg(format!(
            "--remote=punix:{}",
            self.path(&format!("{db}.sock")).display()
        ));
        if db == "sb" {
            cmd.arg(format!("--remote=ptcp:{}:127.0.0.1", self.sb_tcp_port));
        }
        run(cmd.arg(self.path(&format!("{db}.db"))))
    }

    fn start_northd(&self) -> Result<()> {
        run(Command::new("ovn-northd")
            .args(self.daemon_args("northd"))
            .arg(format!("--ovnnb-db={}", self.nb_remote()))
            .arg(format!("--ovnsb-db={}", self.sb_remote())))
    }

    pub fn nb_remote(&self) -> String {
        format!("unix:{}", self.path("nb.sock").display())
    }

    pub fn sb_remote(&self) -> String {
        format!("unix:{}", self.path("sb.sock").display())
    }

    pub fn sb_tcp_remote(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.sb_tcp_port)
    }

    /// Runs `ovn-nbctl` on this central's NB; returns its stdout.
    pub fn nbctl(&self, args: &[&str]) -> Result<String> {
        ctl("ovn-nbctl", &self.nb_remote(), args)
    }

    /// Runs `ovn-sbctl` on this central's SB; returns its stdout.
    pub fn sbctl(&self, args: &[&str]) -> Result<String> {
        ctl("ovn-sbctl", &self.sb_remote(), args)
    }

    /// Runs `ovn-nbctl` commands (each a word list) as one transaction, then
    /// waits for northd to write the result to the SB.
    pub fn nbctl_batch(&self, commands: &[Vec<String>]) -> Result<()> {
        let mut args: Vec<&str> = Vec::new();
        for (i, cmd) in commands.iter().enumerate() {
            if i > 0 {
                args.push("--");
            }
            args.extend(cmd.iter().map(String::as_str));
        }
        self.nbctl(&args)?;
        self.sync()
    }

    /// Waits until northd has written everything in the NB to the SB.
    pub fn sync(&self) -> Result<()> {
        self.nbctl(&["--timeout=30", "--wait=sb", "sync"]).map(drop)
    }

    /// Stops the SB server (the database file stays).
    pub fn stop_sb(&self) -> Result<()> {
        stop_by_pidfile(&self.path("sb.pid"))
    }

    /// Starts the SB server again on the same file, socket and port.
    pub fn start_sb(&self) -> Result<()> {
        self.start_db("sb")
    }

    /// Stops every daemon of this central that is running.
    pub fn stop(&self) -> Result<()> {
        for name in DAEMONS.iter().rev() {
            stop_by_pidfile(&self.path(&format!("{name}.pid")))?;
        }
        Ok(())
    }
}

impl Drop for OvnCentral {
    fn drop(&mut self) {
        if self.stop_on_drop {
            if let Err(e) = self.stop() {
                eprintln!("stopping OVN central in {}: {e:#}", self.dir.display());
            }
        }
    }
}

/// Stops the central whose state is in `dir` (for `ironflow-lab stop`).
pub fn stop_in(dir: &Path) -> Result<()> {
    // Daemons were started with absolute pidfile paths; match them.
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no lab in {}", dir.display()))?;
    for name in DAEMONS.iter().rev() {
        stop_by_pidfile(&dir.join(format!("{name}.pid")))?;
    }
    Ok(())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn free_tcp_port() -> Result<u16> {
    // The port is free now; the short window before ovsdb-server binds it
    // is the usual price of not parsing the server's log.
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free TCP port")?;
    Ok(listener.local_addr()?.port())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn ctl(tool: &str, db: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(tool)
        .arg(format!("--db={db}"))
        .args(args)
        // A user's daemon-mode setting would send our commands elsewhere.
        .env_remove("OVN_NB_DAEMON")
        .env_remove("OVN_SB_DAEMON")
        .output()
        .with_context(|| format!("cannot run {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sends SIGTERM to the PID in `pidfile` and waits for it to exit (SIGKILL
/// after 5 s). A missing pidfile or a process already gone is fine.
fn stop_by_pidfile(pidfile: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        bail!("{} does not hold a PID", pidfile.display());
    };
    // A stale pidfile's PID may now belong to someone else: only a process
    // started with this very pidfile is ours to stop.
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| {
            let needle = format!("--pidfile={}", pidfile.display());
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == needle.as_bytes())
        })
        .unwrap_or(false);
    let alive = || Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    if !ours || !alive() {
        let _ = std::fs::remove_file(pidfile);
        return Ok(());
    }
    let signal = |sig: &str| Command::new("kill").arg(sig).arg(pid.to_string()).output();
    signal("-TERM").context("cannot run kill")?;
    let start = Instant::now();
    while alive() {
        if start.elapsed() > Duration::from_secs(5) {
            signal("-KILL").context("cannot run kill")?;
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("process {pid} from {} does not exit", pidfile.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(pidfile);
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
