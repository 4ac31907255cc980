//! The traffic `ironflow-bench system` measures with, pod to pod: a
//! time-bounded 64-byte UDP blast (sendmmsg) against a counting sink
//! (recvmmsg), a UDP ping-pong for latency, iperf3 for TCP, and the CPU
//! time of a datapath process from /proc.
//!
//! Generator, sink and echo run on threads of this process that entered
//! the pods' namespaces, so nothing is left behind to stop but the iperf3
//! server, which is stopped by the PID this process started.

use anyhow::{anyhow, bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// UDP payload that makes a 64-byte Ethernet frame with its FCS
/// (14 + 20 + 8 + 18 + 4).
pub const PAYLOAD_64: usize = 18;

const BLAST_PORT: u16 = 9000;
const ECHO_PORT: u16 = 9001;
const IPERF_PORT: u16 = 5201;

/// Messages per sendmmsg/recvmmsg call.
const BATCH: usize = 64;

/// Runs `f` on a thread inside namespace `ns` (by its /run/netns name);
/// sockets opened there keep that namespace for life.
pub fn in_ns<T, F>(ns: &str, f: F) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
    Ok(std::thread::spawn(move || {
        // SAFETY: setns on an open namespace file changes only this
        // thread's network namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        f()
    }))
}

fn join<T>(h: JoinHandle<Result<T>>) -> Result<T> {
    h.join().map_err(|_| anyhow!("a traffic thread panicked"))?
}

/// What a UDP blast did.
#[derive(Debug, Clone, Copy)]
pub struct Blast {
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
}

impl Blast {
    pub fn pps(&self) -> f64 {
        self.received as f64 / self.seconds
    }

    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - (self.received.min(self.sent) as f64 / self.sent as f64)
    }
}

/// Big socket buffers, past rmem_max/wmem_max (we are root): the sink
/// must not be what drops.
fn force_buffers(sock: &UdpSocket) {
    let size: libc::c_int = 16 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt with a c_int option value on our socket.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Sends 64-byte frames from `src_ns` to `dst` as fast as one thread can
/// for `seconds`, and counts them at a sink in `dst_ns`.
pub fn udp_blast(src_ns: &str, dst_ns: &str, dst: Ipv4Addr, seconds: f64) -> Result<Blast> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let flag = stop.clone();
    let sink = in_ns(dst_ns, move || {
        let sock = UdpSocket::bind(("0.0.0.0", BLAST_PORT)).context("sink bind")?;
        force_buffers(&sock);
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let _ = ready_tx.send(());
        let mut bufs = vec![[0u8; 64]; BATCH];
        let mut received = 0u64;
        while !flag.load(Ordering::Relaxed) {
            let mut iov: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: zeroed mmsghdr is valid (null name, no control).
            let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
                .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
                .collect();
            for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: msgs point at iovecs over live buffers.
            let n = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if n > 0 {
                received += n as u64;
            }
        }
        Ok(received)
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| anyhow!("the UDP sink in {dst_ns} did not start"))?;
    let gen = in_ns(src_ns, move || {
        let sock = UdpSocket::bind(("0.0.0.0", 0)).context("generator bind")?;
        force_buffers(&sock);
        sock.connect(SocketAddrV4::new(dst, BLAST_PORT))?;
        let payload = [0x5au8; PAYLOAD_64];
        let mut iov: Vec<libc::iovec> = (0..BATCH)
            .map(|_| libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            })
            .collect();
        // SAFETY: zeroed mmsghdr is valid (no address: the socket is connected).
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
            .collect();
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let start = Instant::now();
        let limit = Duration::from_secs_f64(seconds);
        let mut sent = 0u64;
        while start.elapsed() < limit {
            // SAFETY: msgs point at iovecs over the live payload.
            let n = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                sent += n as u64;
            } else {
                // A full queue on the way out drops the packet here:
                // offered all the same, and lost.
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) => sent += 1,
                    // The datapath's ICMP errors can land on a connected socket.
                    Some(libc::ECONNREFUSED) | Some(libc::EHOSTUNREACH) => {}
                    _ => return Err(e).context("sendmmsg"),
                }
            }
        }
        Ok((sent, start.elapsed().as_secs_f64()))
    })?;
    let gen = join(gen);
    // What is still in flight lands within a moment.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let received = join(sink)?;
    let (sent, seconds) = gen?;
    Ok(Blast {
        sent,
        received,
        seconds,
    })
}

/// A UDP echo in `ns` until the returned flag is set.
fn echo(ns: &str) -> Result<(Arc<AtomicBool>, JoinHandle<Result<()>>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let h = in_ns(ns, move || {
        let sock = UdpSocket::bind(("0.0.0.0", ECHO_PORT)).context("echo bind")?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let _ = ready_tx.send(());
        let mut buf = [0u8; 64];
        while !flag.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
        Ok(())
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| anyhow!("the UDP echo in {ns} did not start"))?;
    Ok((stop, h))
}

/// Round-trip times of sequential UDP pings from `src_ns` to `dst`, in
/// microseconds; `warm` pings first are not counted. With `until_first`,
/// returns after the first reply (a reachability check).
fn ping_pong(
    src_ns: &str,
    dst: Ipv4Addr,
    count: usize,
    warm: usize,
    deadline: Duration,
    until_first: bool,
) -> Result<Vec<f64>> {
    join(in_ns(src_ns, move || {
        let sock = UdpSocket::bind(("0.0.0.0", 0))?;
        sock.connect(SocketAddrV4::new(dst, ECHO_PORT))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let start = Instant::now();
        let mut rtts = Vec::with_capacity(count);
        let mut buf = [0u8; 64];
        let mut seq = 0u64;
        while rtts.len() < count + warm && start.elapsed() < deadline {
            seq += 1;
            let t = Instant::now();
            if sock.send(&seq.to_be_bytes()).is_err() {
                // An ICMP error from an earlier ping: try again.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            // Replies to pings that timed out are skipped by their number.
            loop {
                match sock.recv(&mut buf) {
                    Ok(8) if buf[..8] == seq.to_be_bytes() => {
                        rtts.push(t.elapsed().as_secs_f64() * 1e6);
                        break;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            if until_first && !rtts.is_empty() {
                break;
            }
        }
        Ok(rtts.split_off(warm.min(rtts.len())))
    })?)
}

/// Waits until `dst` answers UDP pings from `src_ns` (the first packets
/// of a flow may wait for the datapath to learn the way).
pub fn wait_reachable(src_ns: &str, dst_ns: &str, dst: Ipv4Addr, timeout: Duration) -> Result<()> {
    let (stop, h) = echo(dst_ns)?;
    let got = ping_pong(src_ns, dst, 1, 0, timeout, true);
    stop.store(true, Ordering::Relaxed);
    join(h)?;
    if got?.is_empty() {
        bail!("{dst} does not answer UDP from {src_ns} within {timeout:?}");
    }
    Ok(())
}

/// p50 and p99 of UDP round trips from `src_ns` to `dst` in `dst_ns`, in
/// microseconds: up to `count` pings, for at most `deadline`.
pub fn latency(
    src_ns: &str,
    dst_ns: &str,
    dst: Ipv4Addr,
    count: usize,
    deadline: Duration,
) -> Result<(f64, f64)> {
    let (stop, h) = echo(dst_ns)?;
    let got = ping_pong(src_ns, dst, count, 20, deadline, false);
    stop.store(true, Ordering::Relaxed);
    join(h)?;
    let mut rtts = got?;
    if rtts.is_empty() {
        bail!("no UDP ping from {src_ns} to {dst} came back");
    }
    rtts.sort_by(f64::total_cmp);
    Ok((
        super::stats::percentile(&rtts, 50.0),
        super::stats::percentile(&rtts, 99.0),
    ))
}

/// An iperf3 server (one test, then it exits) this process started.
struct Iperf3Server(Child);

impl Drop for Iperf3Server {
    fn drop(&mut self) {
        // Ours by construction: the child this process spawned.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TCP throughput from `src_ns` to `dst` in `dst_ns` with iperf3, in
/// Gbit/s as the receiver counted it.
pub fn tcp_gbps(src_ns: &str, dst_ns: &str, dst: Ipv4Addr, seconds: f64) -> Result<f64> {
    let port = IPERF_PORT.to_string();
    let _server = Iperf3Server(
        Command::new("ip")
            .args(["netns", "exec", dst_ns, "iperf3", "-s", "-1", "-p", &port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start iperf3 (scripts/setup.sh installs it)")?,
    );
    let secs = format!("{}", seconds.ceil().max(1.0) as u64);
    let dst = dst.to_string();
    let mut last = String::new();
    // The server needs a moment to listen.
    for _ in 0..50 {
        let out = Command::new("ip")
            .args(["netns", "exec", src_ns, "iperf3", "-c", &dst, "-p", &port])
            .args(["-t", &secs, "-J"])
            .output()
            .context("cannot run iperf3")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            let v: serde_json::Value =
                serde_json::from_str(&text).context("iperf3 -J printed no JSON")?;
            return v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .map(|b| b / 1e9)
                .ok_or_else(|| anyhow!("no end.sum_received in iperf3's JSON"));
        }
        last = text;
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("iperf3 from {src_ns} to {dst} failed: {last}")
}

/// User plus system CPU seconds a process has used, all its threads.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    parse_stat_ticks(&stat).map(|t| t as f64 / hz)
}

/// utime + stime (fields 14 and 15) of a /proc/PID/stat line; the command
/// name in parentheses may hold spaces, so fields count from its `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_skip_the_command_name() {
        let line =
            "4242 (iron flow) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1234 0 0";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn loss_is_what_did_not_arrive() {
        let b = Blast {
            sent: 1000,
            received: 900,
            seconds: 2.0,
        };
        assert!((b.loss() - 0.1).abs() < 1e-9);
        assert!((b.pps() - 450.0).abs() < 1e-9);
    }
}
