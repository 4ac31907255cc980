//! `ironflow run --detach --pidfile FILE`: the daemon goes to the
//! background the way OVS daemons do — the command returns only once the
//! daemon is up (chassis registered, ports claimed, management socket
//! served), with status 0, or with the daemon's start-up error and a
//! non-zero status, so a service manager or a script knows which.
//!
//! The parent forks before any thread exists (before the runtime starts);
//! the child starts a new session, writes the pidfile, and reports back
//! through a pipe.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The write end of the pipe the parent waits on; taken by the first
/// report.
static READY: Mutex<Option<File>> = Mutex::new(None);

/// The pidfile to remove when the daemon exits.
static PIDFILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Says the daemon is up: the waiting parent exits with status 0.
pub fn notify_ready() {
    if let Some(mut f) = READY.lock().ok().and_then(|mut r| r.take()) {
        let _ = f.write_all(b"ok\n");
    }
}

/// Hands a start-up error to the waiting parent, which prints it.
pub fn notify_failed(message: &str) {
    if let Some(mut f) = READY.lock().ok().and_then(|mut r| r.take()) {
        let _ = f.write_all(message.as_bytes());
    }
}

/// Removes the pidfile this process wrote, if any.
pub fn remove_pidfile() {
    if let Some(p) = PIDFILE.lock().ok().and_then(|mut p| p.take()) {
        let _ = std::fs::remove_file(p);
    }
}

/// Refuses a pidfile whose process still runs.
fn check_pidfile(path: &Path) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    if let Ok(pid) = text.trim().parse::<libc::pid_t>() {
        // SAFETY: signal 0 only checks that the process exists.
        if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && !zombie(pid) {
            bail!(
                "ironflow already runs as pid {pid} (pidfile {}): stop it first",
                path.display()
            );
        }
    }
    Ok(())
}

/// A killed process nobody reaped yet (in a container whose first
/// process does not reap, that lasts) is not running.
fn zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn write_pidfile(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write the pidfile {}", path.display()))?;
    if let Ok(mut p) = PIDFILE.lock() {
        *p = Some(path.to_path_buf());
    }
    Ok(())
}

/// Writes the pidfile of a daemon that stays in the foreground.
pub fn foreground_pidfile(pidfile: &Path) -> Result<()> {
    check_pidfile(pidfile)?;
    write_pidfile(pidfile)
}

/// Forks. The parent waits for the child's report and exits: it never
/// returns. The child returns, detached from the terminal, its stderr
/// (the log) going to `log_file` or nowhere.
pub fn detach(pidfile: Option<&Path>, log_file: Option<&Path>) -> Result<()> {
    if let Some(p) = pidfile {
        check_pidfile(p)?;
    }
    let log = match log_file {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open the log file {}", path.display()))?,
            )
        }
        None => None,
    };
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot create a pipe");
    }
    // SAFETY: both were just created and are owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (the runtime starts after this),
    // so the child's copy of the process is consistent.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("cannot fork"),
        0 => {
            drop(read);
            // SAFETY: plain system call.
            unsafe { libc::setsid() };
            if let Ok(mut r) = READY.lock() {
                *r = Some(File::from(write));
            }
            redirect_stdio(log.as_ref())?;
            if let Some(p) = pidfile {
                write_pidfile(p)?;
            }
            Ok(())
        }
        child => {
            drop(write);
            let mut answer = String::new();
            let _ = File::from(read).read_to_string(&mut answer);
            if answer.starts_with("ok") {
                std::process::exit(0);
            }
            if answer.is_empty() {
                answer = format!(
                    "the daemon (pid {child}) exited while starting; see its log{}",
                    log_file
                        .map(|p| format!(" ({})", p.display()))
                        .unwrap_or_else(|| " (add --log-file FILE)".into())
                );
            }
            eprintln!("ironflow: {}", answer.trim_end());
            std::process::exit(1);
        }
    }
}

fn redirect_stdio(log: Option<&File>) -> Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    let err = log.map_or(null.as_raw_fd(), |f| f.as_raw_fd());
    for (from, to) in [(null.as_raw_fd(), 0), (null.as_raw_fd(), 1), (err, 2)] {
        // SAFETY: both descriptors are open; dup2 replaces `to`.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot redirect stdio");
        }
    }
    Ok(())
}
