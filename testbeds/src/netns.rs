//! Network namespaces for the labs: create and delete them, run `ip` and
//! commands inside them, set their sysctls, open sockets in them, and the
//! small process helpers (tools on PATH, pidfiles) the labs share.
//!
//! Everything here acts only on names the caller made (namespaces from
//! [`unique_prefix`], PIDs from the caller's own pidfiles), since other
//! labs and other OVN/OVS processes may share the machine.

use anyhow::{anyhow, bail, Context, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A short prefix no other lab of this process or of another one shares:
/// interface names must fit in 15 bytes, so keep `tag` to two or three
/// characters.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{tag}{:04x}{n:x}", std::process::id() & 0xffff)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    name: String,
    keep: bool,
}

impl Netns {
    /// Creates namespace `name` with its loopback up; a stale one of the
    /// same name (from a killed run) is replaced.
    pub fn new(name: &str) -> Result<Netns> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.into(),
            keep: false,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A namespace made earlier (by a lab that outlived its process), to
    /// be deleted on drop.
    pub fn adopt(name: &str) -> Netns {
        Netns {
            name: name.into(),
            keep: false,
        }
    }

    /// Leaves the namespace in place when this value goes.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `cmd` inside the namespace (`ip netns exec`); returns stdout.
    pub fn exec(&self, cmd: &[&str]) -> Result<String> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(cmd);
        output(&mut c)
    }

    /// Sets a `net.*` sysctl in this namespace (`/proc/sys/net` shows the
    /// reader's namespace), e.g. `net.ipv6.conf.all.disable_ipv6`. A key
    /// the kernel does not have (IPv6 compiled out) is not an error.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        self.run(move || match std::fs::write(&path, value) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.with_context(|| format!("cannot write {path}")),
        })
    }

    /// The MAC address of `ifname` in this namespace.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        let out = self.ip(&["-o", "link", "show", "dev", ifname])?;
        let text = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .ok_or_else(|| anyhow!("{ifname} in {} has no MAC: {out}", self.name))?;
        parse_mac(text)
    }

    /// Runs `f` on a thread that has entered this namespace, so sockets
    /// it opens live there (a socket keeps its namespace for life, so it
    /// may be returned and used from any thread).
    pub fn spawn<T, F>(&self, f: F) -> Result<std::thread::JoinHandle<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
        Ok(std::thread::spawn(move || {
            // SAFETY: setns on an open namespace file; it changes only this
            // thread's network namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            f()
        }))
    }

    /// Runs `f` in this namespace and waits for it.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        self.spawn(f)?
            .join()
            .map_err(|_| anyhow!("thread in {} panicked", self.name))?
    }

    /// An AF_PACKET socket on `ifname` in this namespace that sees every
    /// frame in both directions.
    pub fn packet_socket(&self, ifname: &str) -> Result<PacketSocket> {
        let ifname = ifname.to_owned();
        self.run(move || PacketSocket::open(&ifname))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("deleting namespace {}: {e:#}", self.name);
        }
    }
}

/// A raw AF_PACKET socket bound to one interface: what the lab uses to see
/// frames exactly as they are on the wire.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket in the calling thread's namespace.
    pub fn open(ifname: &str) -> Result<PacketSocket> {
        let cname = std::ffi::CString::new(ifname)?;
        // SAFETY: plain libc calls on a valid C string and a fresh fd.
        unsafe {
            let index = libc::if_nametoindex(cname.as_ptr());
            if index == 0 {
                bail!("no interface {ifname}: {}", std::io::Error::last_os_error());
            }
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto));
            if fd < 0 {
                bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if rc != 0 {
                bail!("bind to {ifname}: {}", std::io::Error::last_os_error());
            }
            Ok(PacketSocket { fd })
        }
    }

    /// The next frame received (not sent) on the interface, or None after
    /// `timeout`.
    pub fn recv_incoming(&self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 60_000) as i32;
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                bail!("poll: {e}");
            }
            if n == 0 {
                continue;
            }
            // SAFETY: zeroed sockaddr_ll is valid; buf and sll outlive the call.
            let (len, sll) = unsafe {
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                let mut sll_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                let len = libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut sll_len,
                );
                (len, sll)
            };
            if len < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    continue;
                }
                bail!("recvfrom: {e}");
            }
            if sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(buf[..len as usize].to_vec()));
        }
    }
}

/// `tool`'s path if it is on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// `0a:00:00:00:00:02` as bytes.
pub fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("{text} is not a MAC address");
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("{text} is not a MAC address"))?;
    }
    Ok(mac)
}

/// `ip ARGS`; returns stdout, or an error with stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    output(Command::new("ip").args(args))
}

/// Runs `cmd`; returns stdout, or an error with the command and stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
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
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// SIGTERM to the PID in `pidfile` if that process was started with this
/// very pidfile (a stale PID may belong to someone else now), SIGKILL
/// after 5 s; a missing pidfile or a process already gone is fine.
pub fn stop_pidfile(pidfile: &Path) -> Result<()> {
    let needle = format!("--pidfile={}", pidfile.display());
    stop_pid_in(pidfile, &needle)
}

/// Like [`stop_pidfile`] for a process that writes no pidfile of its own:
/// the PID in `pidfile` is stopped only if one of its arguments is exactly
/// `arg` (an argument naming something of the caller's, such as a socket
/// path in the caller's state directory). The pidfile is removed.
pub fn stop_pid_in(pidfile: &Path, arg: &str) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        bail!("{} does not hold a PID", pidfile.display());
    };
    if has_arg(pid, arg) {
        stop_pid(pid)?;
    }
    let _ = std::fs::remove_file(pidfile);
    Ok(())
}

/// Whether process `pid` runs with `arg` as one of its arguments.
pub fn has_arg(pid: i32, arg: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        .unwrap_or(false)
}

/// Running and not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// SIGTERM to `pid`, SIGKILL after 5 s, until it is gone; the caller has
/// made sure the process is its own.
pub fn stop_pid(pid: i32) -> Result<()> {
    if !alive(pid) {
        return Ok(());
    }
    // SAFETY: kill on a PID the caller checked is its own process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    let mut killed = false;
    while alive(pid) {
        if !killed && start.elapsed() > Duration::from_secs(5) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!("process {pid} does not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_short() {
        let a = unique_prefix("sg");
        let b = unique_prefix("sg");
        assert_ne!(a, b);
        // The longest name made from it: "<prefix>u1".
        assert!(a.len() + 2 <= 15, "{a}");
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("0a:00:00:00:00:02").unwrap(), [10, 0, 0, 0, 0, 2]);
        assert!(parse_mac("0a:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:02").is_err());
    }
}
