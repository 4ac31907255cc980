//! One `ironflow run` daemon in a network namespace, started detached (the
//! binary returns once the node is up) and stopped with SIGTERM when the
//! value goes: for tests that build their own namespaces rather than the
//! seed lab.

use crate::lab::ironflow_bin;
use crate::netns::Netns;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct IronflowNode {
    pid: i32,
    bin: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl IronflowNode {
    /// `ironflow run ARGS` in `ns`, with its socket, pidfile and log in a
    /// fresh directory.
    pub fn start(ns: &Netns, args: &[&str]) -> Result<IronflowNode> {
        let bin = ironflow_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("ironflow-node-")
            .tempdir_in("/tmp")
            .context("cannot create a directory under /tmp")?;
        let (socket, pidfile, log) = (
            dir.path().join("node.sock"),
            dir.path().join("node.pid"),
            dir.path().join("node.log"),
        );
        let out = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(&bin)
            .arg("run")
            .args(args)
            .arg("--mgmt-socket")
            .arg(&socket)
            .arg("--pidfile")
            .arg(&pidfile)
            .arg("--log-file")
            .arg(&log)
            .arg("--detach")
            .output()
            .context("cannot run ironflow")?;
        if !out.status.success() {
            bail!(
                "ironflow run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let pid = std::fs::read_to_string(&pidfile)
            .context("no pidfile")?
            .trim()
            .parse()
            .context("a bad pidfile")?;
        Ok(IronflowNode {
            pid,
            bin,
            socket,
            log,
            _dir: dir,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ironflow ARGS --mgmt-socket SOCKET`; stdout, or stderr as the error.
    pub fn ironflow(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--mgmt-socket")
            .arg(&self.socket)
            .output()?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for IronflowNode {
    fn drop(&mut self) {
        // SAFETY: signals the daemon this value started.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        for _ in 0..50 {
            // SAFETY: as above; signal 0 only asks whether it still runs.
            if unsafe { libc::kill(self.pid, 0) } != 0 || zombie(self.pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Whether `pid` has exited but not been reaped.
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
