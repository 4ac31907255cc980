//! The traffic `ironflow-bench system` measures with, pod to pod: a
//! time-bounded 64-byte UDP blast (sendmmsg on AF_PACKET) counted at the
//! receiving pod's interface and by a UDP sink (recvmmsg), a UDP ping-pong for latency, iperf3 for TCP, and the CPU
//! time of a datapath process from /proc.
//!
//! Generator, sink and echo run on threads of this process that entered
//! the pods' namespaces, so nothing is left behind to stop but the iperf3
//! server, which is stopped by the PID this process started.

use anyhow::{anyhow, bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
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

/// Set by SIGINT or SIGTERM: traffic stops early and the run unwinds, so
/// the labs' namespaces and daemons are taken down rather than left behind.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Routes SIGINT and SIGTERM to [`INTERRUPTED`].
pub fn catch_interrupts() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

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
    /// Delivered to the destination pod's interface.
    pub received: u64,
    /// Read by the UDP socket in the destination pod.
    pub sink_received: u64,
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

/// One UDP flow between two pods, with what a raw generator needs to
/// write its frames.
#[derive(Debug, Clone)]
pub struct Flow {
    pub src_ns: String,
    pub dst_ns: String,
    pub src_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    /// The destination's address if on the source's subnet, else the
    /// source's gateway: whose MAC the frames carry.
    pub next_hop: Ipv4Addr,
}

/// The MAC `ns` has learnt for `ip` (its neighbour table).
pub fn neighbour_mac(ns: &str, ip: Ipv4Addr) -> Result<[u8; 6]> {
    let out = Command::new("ip")
        .args(["-n", ns, "neigh", "show", &ip.to_string()])
        .output()
        .context("cannot run ip neigh")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .ok_or_else(|| anyhow!("{ns} has no neighbour entry for {ip}: {text}"))?;
    ironflow_testbeds::netns::parse_mac(mac)
}

/// Packets an interface in `ns` has received (its kernel counter).
pub fn rx_packets(ns: &str, ifname: &str) -> Result<u64> {
    let out = Command::new("ip")
        .args(["-n", ns, "-s", "-j", "link", "show", "dev", ifname])
        .output()
        .context("cannot run ip -s link")?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("ip -j printed no JSON")?;
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .ok_or_else(|| anyhow!("no rx counter for {ifname} in {ns}"))
}

/// A 64-byte (60 without FCS) Ethernet/IPv4/UDP frame; UDP checksum 0,
/// as IPv4 allows.
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + PAYLOAD_64) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&BLAST_PORT.to_be_bytes());
    f.extend_from_slice(&((8 + PAYLOAD_64) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[0x5a; PAYLOAD_64]);
    f
}

/// Sends 64-byte frames into the source pod's eth0 on an AF_PACKET socket
/// (past the qdisc) as fast as one thread can for `seconds`, and counts
/// what reaches the destination pod: its eth0's receive counter (what the
/// datapath delivered) and a UDP sink in it (what the pod's stack got).
pub fn udp_blast(flow: &Flow, seconds: f64) -> Result<Blast> {
    let dst_mac = neighbour_mac(&flow.src_ns, flow.next_hop)?;
    let frame = udp_frame(flow.src_mac, dst_mac, flow.src_ip, flow.dst_ip);
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let flag = stop.clone();
    let sink = in_ns(&flow.dst_ns, move || {
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
        .map_err(|_| anyhow!("the UDP sink in {} did not start", flow.dst_ns))?;
    let rx0 = rx_packets(&flow.dst_ns, "eth0")?;
    let gen = in_ns(&flow.src_ns, move || raw_generator(&frame, seconds))?;
    let gen = join(gen);
    // What is still in flight lands within a moment.
    std::thread::sleep(Duration::from_millis(300));
    let rx1 = rx_packets(&flow.dst_ns, "eth0");
    stop.store(true, Ordering::Relaxed);
    let sink_received = join(sink)?;
    let (sent, seconds) = gen?;
    Ok(Blast {
        sent,
        received: rx1?.saturating_sub(rx0),
        sink_received,
        seconds,
    })
}

/// The generator's loop, on a thread in the source pod: returns frames
/// sent and seconds taken.
fn raw_generator(frame: &[u8], seconds: f64) -> Result<(u64, f64)> {
    // Protocol 0: the socket only sends, it never gets a copy of traffic.
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new("eth0")?;
    // SAFETY: if_nametoindex on a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no eth0 in the source pod");
    }
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a c_int value on our socket. Bypassing the
    // qdisc is what pktgen-like generators do; failure only slows us.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    let mut iov: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        })
        .collect();
    // SAFETY: zeroed mmsghdr is valid; name and iov set below.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
        .map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() })
        .collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_name = &mut addr as *mut libc::sockaddr_ll as *mut libc::c_void;
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while start.elapsed() < limit && !interrupted() {
        // SAFETY: msgs point at the address and iovecs over the live frame.
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
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // A full queue on the way out drops the frame here:
                // offered all the same, and lost.
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => sent += 1,
                _ => return Err(e).context("sendmmsg on AF_PACKET"),
            }
        }
    }
    Ok((sent, start.elapsed().as_secs_f64()))
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
        while rtts.len() < count + warm && start.elapsed() < deadline && !interrupted() {
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
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            return Ok(bps / 1e9);
        }
        last = v["error"].as_str().map_or(text, String::from);
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
            sink_received: 800,
            seconds: 2.0,
        };
        assert!((b.loss() - 0.1).abs() < 1e-9);
        assert!((b.pps() - 450.0).abs() < 1e-9);
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[test]
    fn the_frame_is_64_bytes_on_the_wire_with_a_valid_ip_checksum() {
        let f = udp_frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(192, 168, 3, 3),
            Ipv4Addr::new(192, 168, 2, 5),
        );
        assert_eq!(f.len() + 4, 64);
        let mut sum: u32 = f[14..34]
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }
}
