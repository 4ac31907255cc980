//! The AF_PACKET and TAP ports on real kernel interfaces: veth pairs and
//! taps in network namespaces the tests make (and delete, also when they
//! fail), with python3 in the namespaces playing the pod: raw frames both
//! ways, UDP and TCP from a stack with checksum offload and TSO on, and a
//! TCP transfer bridged between two ports.
//!
//! Needs root (namespaces, veth, tap): as another user every test that
//! needs it says why it is skipped and passes. CI runs as root, so they
//! run there. `-- --ignored --nocapture throughput` measures packets/s on
//! one veth pair.

use ironflow_datapath::afpacket::{AfPacketOptions, AfPacketPort};
use ironflow_datapath::checksum::{checksum, fold64, pseudo_header_v4, sum_bytes};
use ironflow_datapath::packet::{Packet, PacketBatch, PacketPool, BATCH_SIZE};
use ironflow_datapath::port::Port;
use ironflow_datapath::tap::{TapOptions, TapPort};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The experimental ethertype the test frames carry, and their marker.
const ETHERTYPE: u16 = 0x88b5;
const MARKER: &[u8] = b"IFPKT";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A short id unique to this process and test.
fn uid() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace; dropping it deletes it (and what is in it).
struct Netns(String);

impl Netns {
    fn new(name: String) -> Result<Netns, String> {
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns(name);
        // No IPv6: the kernel sends nothing of its own (router
        // solicitations, DAD) into the tests' captures.
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
        Ok(ns)
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["ip", "netns", "exec", self.0.as_str()];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Starts a python3 script in the namespace, stdout piped.
    fn python(&self, script: &str, args: &[&str]) -> Proc {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.0, "python3", "-c", script])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 in the namespace");
        Proc::new(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

/// A veth pair: `host` in this namespace, `peer` in `ns`, both up.
/// Dropping it deletes the pair, then the namespace.
struct Veth {
    host: String,
    peer: String,
    ns: Netns,
}

impl Veth {
    fn new() -> Result<Veth, String> {
        let id = uid();
        let ns = Netns::new(format!("ifk-ns{id}"))?;
        let v = Veth {
            host: format!("ifkh{id}"),
            peer: format!("ifkp{id}"),
            ns,
        };
        sh(&[
            "ip", "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer,
        ])?;
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.host),
            "1",
        );
        sh(&["ip", "link", "set", &v.peer, "netns", &v.ns.0])?;
        v.ns.run(&["ip", "link", "set", &v.peer, "up"])?;
        sh(&["ip", "link", "set", &v.host, "up"])?;
        Ok(v)
    }

    fn peer_mac(&self) -> [u8; 6] {
        mac_in(&self.ns, &self.peer)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.host]);
    }
}

fn mac_in(ns: &Netns, ifname: &str) -> [u8; 6] {
    let s = ns
        .run(&["cat", &format!("/sys/class/net/{ifname}/address")])
        .expect("read a MAC in the namespace");
    let mut mac = [0u8; 6];
    for (m, h) in mac.iter_mut().zip(s.trim().split(':')) {
        *m = u8::from_str_radix(h, 16).expect("hex MAC");
    }
    mac
}

/// A process the test started; killed by its PID if still running.
struct Proc {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Proc {
    fn new(mut child: Child) -> Proc {
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        Proc { child, out }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.out.read_line(&mut l).expect("read from python3");
        l.trim().to_string()
    }

    /// Waits for "ready" (the script's socket is open).
    fn ready(&mut self) {
        assert_eq!(self.line(), "ready", "the helper script did not start");
    }

    fn rest(mut self) -> String {
        let mut s = String::new();
        let _ = self.out.read_to_string(&mut s);
        let _ = self.child.wait();
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the test body only as root, else says why it is skipped.
fn need_root() -> bool {
    if !is_root() {
        eprintln!("skipped: kernel port tests need root (netns, veth, tap)");
        return false;
    }
    true
}

fn test_frame(dst: &[u8; 6], src: &[u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(dst);
    f.extend_from_slice(src);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(MARKER);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(len.max(f.len()), 0xa5);
    f
}

fn seq_of(frame: &[u8]) -> Option<u32> {
    if frame.get(12..14)? != ETHERTYPE.to_be_bytes() || frame.get(14..19)? != MARKER {
        return None;
    }
    Some(u32::from_be_bytes(frame.get(19..23)?.try_into().ok()?))
}

/// Sends `n` marked frames (of 60 to 1514 bytes, to a MAC no interface
/// has) on an interface; with a VLAN id, tagged.
const PY_SEND: &str = r#"
import socket, sys
ifn, n, vid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifn, 0))
dst, src = bytes.fromhex("02c0ffee0001"), bytes.fromhex("02aabbccddee")
tag = (b"\x81\x00" + vid.to_bytes(2, "big")) if vid else b""
for i in range(n):
    ln = 60 + (i * 97) % 1455
    f = dst + src + tag + b"\x88\xb5" + b"IFPKT" + i.to_bytes(4, "big")
    s.send(f + bytes(max(0, ln - len(f))))
"#;

/// Receives marked frames on an interface until `n` or `t` seconds;
/// prints "seq:len" of each.
const PY_RECV: &str = r#"
import socket, sys, select, time
ifn, n, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)  # SO_RCVBUFFORCE: python is slow
s.bind((ifn, 0))
print("ready", flush=True)
seen, end = [], time.time() + t
while len(seen) < n and time.time() < end:
    r, _, _ = select.select([s], [], [], 0.05)
    while r:
        try:
            d, a = s.recvfrom(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if a[2] != socket.PACKET_OUTGOING and d[14:19] == b"IFPKT":
            seen.append((int.from_bytes(d[19:23], "big"), len(d)))
print(" ".join("%d:%d" % x for x in seen), flush=True)
"#;

/// Sends a UDP datagram and opens a TCP connection (a SYN) to `dst`, from
/// the namespace's stack.
const PY_UDP_TCP: &str = r#"
import socket, sys
dst = sys.argv[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(bytes(range(256)) + b"checksum me", (dst, 9999))
t = socket.socket()
t.setblocking(False)
try:
    t.connect((dst, 8080))
except BlockingIOError:
    pass
import time; time.sleep(0.3)
"#;

/// Waits for one UDP datagram on addr:port, prints it as hex.
const PY_UDP_SERVER: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((sys.argv[1], int(sys.argv[2])))
u.settimeout(5)
print("ready", flush=True)
try:
    d, a = u.recvfrom(4096)
    print(d.hex(), a[0], flush=True)
except socket.timeout:
    print("timeout", flush=True)
"#;

const PY_TCP_SERVER: &str = r#"
import socket, sys, hashlib
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001))
s.listen(1)
s.settimeout(30)
print("ready", flush=True)
c, _ = s.accept()
c.settimeout(30)
h, n = hashlib.sha256(), 0
while True:
    d = c.recv(1 << 20)
    if not d:
        break
    h.update(d)
    n += len(d)
c.close()
print(n, h.hexdigest(), flush=True)
"#;

const PY_TCP_CLIENT: &str = r#"
import socket, sys, hashlib, time
dst, total = sys.argv[1], int(sys.argv[2])
chunk = bytes((i * 7 + 1) % 251 for i in range(1 << 20))
c = socket.create_connection((dst, 5001), timeout=30)
h, sent, t = hashlib.sha256(), 0, time.time()
while sent < total:
    c.sendall(chunk)
    h.update(chunk)
    sent += len(chunk)
c.shutdown(socket.SHUT_WR)
c.recv(1)
print(sent, h.hexdigest(), "%.3f" % (time.time() - t), flush=True)
"#;

/// Receives on `port` for up to `t`, keeping frames `keep` accepts, until
/// `want` of them.
fn collect(
    port: &mut dyn Port,
    want: usize,
    t: Duration,
    keep: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut pool = PacketPool::new(256);
    let mut batch = PacketBatch::new();
    let mut got = Vec::new();
    let end = Instant::now() + t;
    while got.len() < want && Instant::now() < end {
        if port.recv(&mut pool, &mut batch).expect("recv") == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for p in batch.drain() {
            if keep(p.data()) {
                got.push(p.data().to_vec());
            }
            pool.free(p);
        }
    }
    got
}

fn send_frames(port: &mut dyn Port, frames: &[Vec<u8>]) -> usize {
    let mut pool = PacketPool::new(256);
    let mut batch = PacketBatch::new();
    let mut sent = 0;
    for chunk in frames.chunks(BATCH_SIZE) {
        for f in chunk {
            batch.push(Packet::from_slice(f).unwrap()).unwrap();
        }
        sent += port.send(&mut pool, &mut batch).expect("send");
    }
    sent
}

/// Checks the IPv4 header checksum and the TCP/UDP checksum of an
/// untagged IPv4 frame from scratch.
fn ipv4_l4_checksums_ok(f: &[u8]) -> bool {
    let ihl = usize::from(f[14] & 0xf) * 4;
    if checksum(&f[14..14 + ihl]) != 0 {
        return false;
    }
    let tot = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let l4 = &f[14 + ihl..14 + tot];
    let a = |i: usize| u32::from_be_bytes(f[i..i + 4].try_into().unwrap());
    let pseudo = pseudo_header_v4(a(26), a(30), f[23], l4.len() as u16);
    fold64(sum_bytes(l4, pseudo)) == 0xffff
}

fn is_ipv4_proto(f: &[u8], proto: u8, dport: u16) -> bool {
    f.len() > 38
        && f[12..14] == [0x08, 0x00]
        && f[23] == proto
        && u16::from_be_bytes([f[36], f[37]]) == dport
}

fn seqs(out: &str) -> Vec<(u32, usize)> {
    out.split_whitespace()
        .filter_map(|w| {
            let (s, l) = w.split_once(':')?;
            Some((s.parse().ok()?, l.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_missing_interface_is_named() {
    let e = AfPacketPort::open("ifk-nosuch0")
        .err()
        .expect("no such interface");
    assert!(e.to_string().contains("\"ifk-nosuch0\""), "{e}");
    assert_eq!(e.to_string().lines().count(), 1);
    for bad in ["", "a/b", "sixteen-bytes-xx"] {
        let e = AfPacketPort::open(bad).err().expect("bad name");
        assert!(e.to_string().contains("not an interface name"), "{e}");
        let e = TapPort::open(bad).err().expect("bad name");
        assert!(e.to_string().contains("not an interface name"), "{e}");
    }
}

#[test]
fn afpacket_receives_frames_from_the_namespace() {
    if !need_root() {
        return;
    }
    let veth = Veth::new().expect("veth pair");
    let mut port = AfPacketPort::open(&veth.host).expect("open");
    assert_eq!(port.name(), format!("afpacket:{}", veth.host));
    let n = 300;
    veth.ns
        .run(&["python3", "-c", PY_SEND, &veth.peer, &n.to_string(), "0"])
        .expect("send from the namespace");
    let got = collect(&mut port, n, Duration::from_secs(3), |f| {
        seq_of(f).is_some()
    });
    let seen: Vec<u32> = got.iter().filter_map(|f| seq_of(f)).collect();
    assert_eq!(
        seen,
        (0..n as u32).collect::<Vec<_>>(),
        "all frames, in order"
    );
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f.len(), 60 + (i * 97) % 1455, "frame {i} whole");
        assert_eq!(&f[..6], &[0x02, 0xc0, 0xff, 0xee, 0, 1], "foreign MAC kept");
    }
    let s = port.stats();
    assert!(s.rx_packets >= n as u64, "{s:?}");
}

#[test]
fn afpacket_sends_frames_into_the_namespace_and_not_to_itself() {
    if !need_root() {
        return;
    }
    let veth = Veth::new().expect("veth pair");
    let mut port = AfPacketPort::open(&veth.host).expect("open");
    let n = 200usize;
    let mut rx = veth.ns.python(PY_RECV, &[&veth.peer, &n.to_string(), "5"]);
    rx.ready();
    let dst = veth.peer_mac();
    let src = [0x02, 0, 0, 0, 0, 0x99];
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| test_frame(&dst, &src, i as u32, 60 + i * 7))
        .collect();
    assert_eq!(send_frames(&mut port, &frames), n);
    let seen = seqs(&rx.rest());
    let want: Vec<(u32, usize)> = (0..n).map(|i| (i as u32, 60 + i * 7)).collect();
    assert_eq!(seen, want);
    let s = port.stats();
    assert_eq!((s.tx_packets, s.tx_dropped), (n as u64, 0));
    // PACKET_IGNORE_OUTGOING: none of them came back.
    let echoed = collect(&mut port, 1, Duration::from_millis(200), |f| {
        seq_of(f).is_some()
    });
    assert!(echoed.is_empty(), "the port saw its own frames");
    // A frame longer than the MTU is dropped and counted, not an error.
    let big = vec![test_frame(&dst, &src, 0, 1800)];
    assert_eq!(send_frames(&mut port, &big), 0);
    assert_eq!(port.stats().tx_dropped, 1);
}

#[test]
fn afpacket_puts_vlan_tags_back() {
    if !need_root() {
        return;
    }
    let veth = Veth::new().expect("veth pair");
    let mut port = AfPacketPort::open(&veth.host).expect("open");
    veth.ns
        .run(&["python3", "-c", PY_SEND, &veth.peer, "20", "100"])
        .expect("send tagged frames");
    let got = collect(&mut port, 20, Duration::from_secs(3), |f| {
        f.len() > 23 && f[16..18] == ETHERTYPE.to_be_bytes()
    });
    assert_eq!(got.len(), 20);
    for f in &got {
        assert_eq!(&f[12..16], &[0x81, 0x00, 0x00, 100], "802.1Q tag, VID 100");
        assert_eq!(&f[18..23], MARKER);
    }
    assert_eq!(port.offload_stats().vlan_restored, 20);
}

/// Sets an address and a static neighbour on `ifname` in `ns`, with TX
/// checksum offload and TSO on (their defaults on veth, said explicitly).
fn ip_setup(ns: &Netns, ifname: &str, addr: &str, neigh: Option<(&str, &str)>, offload: bool) {
    ns.run(&["ip", "addr", "add", addr, "dev", ifname])
        .expect("address");
    if let Some((ip, mac)) = neigh {
        ns.run(&[
            "ip",
            "neigh",
            "replace",
            ip,
            "lladdr",
            mac,
            "dev",
            ifname,
            "nud",
            "permanent",
        ])
        .expect("neighbour");
    }
    if offload {
        ns.run(&[
            "ethtool", "-K", ifname, "tx", "on", "tso", "on", "gso", "on",
        ])
        .expect("ethtool");
        let k = ns.run(&["ethtool", "-k", ifname]).expect("ethtool -k");
        assert!(
            k.contains("tx-checksumming: on") && k.contains("tcp-segmentation-offload: on"),
            "offloads on {ifname}: {k}"
        );
    }
}

#[test]
fn afpacket_completes_partial_checksums() {
    if !need_root() {
        return;
    }
    let veth = Veth::new().expect("veth pair");
    ip_setup(
        &veth.ns,
        &veth.peer,
        "10.77.0.1/24",
        Some(("10.77.0.2", "02:00:00:00:77:02")),
        true,
    );
    let mut port = AfPacketPort::open(&veth.host).expect("open");
    veth.ns
        .run(&["python3", "-c", PY_UDP_TCP, "10.77.0.2"])
        .expect("UDP and TCP from the namespace");
    let got = collect(&mut port, 2, Duration::from_secs(3), |f| {
        is_ipv4_proto(f, 17, 9999) || is_ipv4_proto(f, 6, 8080)
    });
    assert!(
        got.iter().any(|f| f[23] == 17) && got.iter().any(|f| f[23] == 6),
        "a UDP datagram and a TCP SYN"
    );
    for f in &got {
        assert!(ipv4_l4_checksums_ok(f), "checksums of {:02x?}", &f[..40]);
    }
    let o = port.offload_stats();
    assert!(o.csum_completed >= 2, "the kernel sent them partial: {o:?}");
}

/// Forwards every frame between two ports until stopped, then hands them
/// back: the smallest datapath there is.
fn bridge<A: Port + 'static, B: Port + 'static>(
    mut a: A,
    mut b: B,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(A, B)> {
    std::thread::spawn(move || {
        let mut pool = PacketPool::new(1024);
        let mut batch = PacketBatch::new();
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            if a.recv(&mut pool, &mut batch).expect("recv a") > 0 {
                idle = false;
                b.send(&mut pool, &mut batch).expect("send b");
            }
            if b.recv(&mut pool, &mut batch).expect("recv b") > 0 {
                idle = false;
                a.send(&mut pool, &mut batch).expect("send a");
            }
            if idle {
                std::thread::yield_now();
            }
        }
        (a, b)
    })
}

/// A TCP transfer of `bytes` from `client` (at `client_ip`) to `server`
/// (at `server_ip`), both stacks with offloads on, their frames carried
/// by `bridge`. Returns the seconds it took.
fn tcp_transfer(client: &Netns, server: &Netns, server_ip: &str, bytes: usize) -> f64 {
    let mut srv = server.python(PY_TCP_SERVER, &[server_ip]);
    srv.ready();
    let cli = client.python(PY_TCP_CLIENT, &[server_ip, &bytes.to_string()]);
    let c = cli.rest();
    let s = srv.rest();
    let c: Vec<&str> = c.split_whitespace().collect();
    let s: Vec<&str> = s.split_whitespace().collect();
    assert!(c.len() == 3 && s.len() == 2, "client {c:?}, server {s:?}");
    assert_eq!(c[..2], s[..2], "the server got every byte, in order");
    c[2].parse().expect("seconds")
}

/// Bytes of the TCP tests' transfers: 16 MiB, or `IFK_TCP_MIB` MiB (for
/// a measurement long enough to mean something).
fn transfer_bytes() -> usize {
    let mib = std::env::var("IFK_TCP_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16usize);
    mib << 20
}

#[test]
fn afpacket_carries_tcp_from_pods_with_offloads_on() {
    if !need_root() {
        return;
    }
    let a = Veth::new().expect("veth pair a");
    let b = Veth::new().expect("veth pair b");
    let (mac_a, mac_b) = (a.peer_mac(), b.peer_mac());
    let hex = |m: [u8; 6]| {
        m.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    ip_setup(
        &a.ns,
        &a.peer,
        "10.78.0.1/24",
        Some(("10.78.0.2", &hex(mac_b))),
        true,
    );
    ip_setup(
        &b.ns,
        &b.peer,
        "10.78.0.2/24",
        Some(("10.78.0.1", &hex(mac_a))),
        true,
    );
    let pa = AfPacketPort::open(&a.host).expect("open a");
    let pb = AfPacketPort::open(&b.host).expect("open b");
    let stop = Arc::new(AtomicBool::new(false));
    let fwd = bridge(pa, pb, stop.clone());
    let bytes = transfer_bytes();
    let secs = tcp_transfer(&a.ns, &b.ns, "10.78.0.2", bytes);
    stop.store(true, Ordering::Relaxed);
    let (pa, pb) = fwd.join().expect("bridge thread");
    let (oa, ob) = (pa.offload_stats(), pb.offload_stats());
    eprintln!(
        "TCP through two AF_PACKET ports: {:.0} Mbit/s ({} MiB in {secs:.2} s; this build's \
         optimisation level); a: {oa:?}; b: {ob:?}",
        bytes as f64 * 8.0 / secs / 1e6,
        bytes >> 20
    );
    assert!(
        oa.gso_frames > 0,
        "the sender's TSO made super-frames: {oa:?}"
    );
    assert!(oa.gso_segments > oa.gso_frames);
    assert_eq!((oa.rx_malformed, oa.rx_oversize), (0, 0));
}

/// A tap made by a port, moved into a namespace of its own.
struct TapNs {
    ns: Netns,
    ifname: String,
}

fn tap_in_ns(opts: &TapOptions) -> (TapPort, TapNs) {
    let id = uid();
    let ns = Netns::new(format!("ifk-tap{id}")).expect("namespace");
    let ifname = format!("ifkt{id}");
    let port = TapPort::open_with(&ifname, opts).expect("open tap");
    assert_eq!(port.name(), format!("tap:{ifname}"));
    sh(&["ip", "link", "set", &ifname, "netns", &ns.0]).expect("move the tap");
    ns.run(&["ip", "link", "set", &ifname, "up"]).expect("up");
    (port, TapNs { ns, ifname })
}

#[test]
fn tap_frames_go_both_ways() {
    if !need_root() {
        return;
    }
    let (mut port, t) = tap_in_ns(&TapOptions::default());
    // Kernel → port.
    let n = 100usize;
    t.ns.run(&["python3", "-c", PY_SEND, &t.ifname, &n.to_string(), "0"])
        .expect("send into the tap");
    let got = collect(&mut port, n, Duration::from_secs(3), |f| {
        seq_of(f).is_some()
    });
    let seen: Vec<u32> = got.iter().filter_map(|f| seq_of(f)).collect();
    assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
    // Port → kernel.
    let mut rx = t.ns.python(PY_RECV, &[&t.ifname, &n.to_string(), "5"]);
    rx.ready();
    let dst = mac_in(&t.ns, &t.ifname);
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| test_frame(&dst, &[2, 0, 0, 0, 0, 7], i as u32, 60 + i * 13))
        .collect();
    assert_eq!(send_frames(&mut port, &frames), n);
    let want: Vec<(u32, usize)> = (0..n).map(|i| (i as u32, 60 + i * 13)).collect();
    assert_eq!(seqs(&rx.rest()), want);
}

/// An IPv4/UDP frame from 10.79.0.2:4242 to `dst_ip`:7777.
fn udp_frame(dst_mac: &[u8; 6], src_mac: &[u8; 6], dst_ip: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = (28 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 79, 0, 2];
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip.extend_from_slice(&dst_ip);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let l4_len = (8 + payload.len()) as u16;
    let mut udp = vec![0x10, 0x92, 0x1e, 0x61];
    udp.extend_from_slice(&l4_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let src = u32::from_be_bytes([10, 79, 0, 2]);
    let pseudo = pseudo_header_v4(src, u32::from_be_bytes(dst_ip), 17, l4_len);
    let c = !fold64(sum_bytes(&udp, pseudo));
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

#[test]
fn tap_talks_udp_with_the_kernel_stack() {
    if !need_root() {
        return;
    }
    for offload in [true, false] {
        let (mut port, t) = tap_in_ns(&TapOptions {
            offload,
            ..TapOptions::default()
        });
        ip_setup(
            &t.ns,
            &t.ifname,
            "10.79.0.1/24",
            Some(("10.79.0.2", "02:00:00:00:79:02")),
            false,
        );
        // Stack → port: complete checksums either way.
        t.ns.run(&["python3", "-c", PY_UDP_TCP, "10.79.0.2"])
            .expect("UDP and TCP into the tap");
        let got = collect(&mut port, 2, Duration::from_secs(3), |f| {
            is_ipv4_proto(f, 17, 9999) || is_ipv4_proto(f, 6, 8080)
        });
        assert_eq!(got.len(), 2, "offload {offload}: a datagram and a SYN");
        for f in &got {
            assert!(ipv4_l4_checksums_ok(f), "offload {offload}");
        }
        let o = port.offload_stats();
        assert_eq!(o.csum_completed >= 2, offload, "{o:?}");
        // Port → stack: the kernel accepts (checks) what the port writes.
        let mut srv = t.ns.python(PY_UDP_SERVER, &["10.79.0.1", "7777"]);
        srv.ready();
        let mac = mac_in(&t.ns, &t.ifname);
        let f = udp_frame(&mac, &[2, 0, 0, 0, 0x79, 2], [10, 79, 0, 1], b"hello tap");
        assert_eq!(send_frames(&mut port, &[f]), 1);
        assert_eq!(srv.line(), format!("{} 10.79.0.2", hex_of(b"hello tap")));
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn tap_carries_tcp_super_frames_to_an_afpacket_port() {
    if !need_root() {
        return;
    }
    let (tap, t) = tap_in_ns(&TapOptions::default());
    let v = Veth::new().expect("veth pair");
    let tap_mac = mac_in(&t.ns, &t.ifname);
    let hex = |m: [u8; 6]| {
        m.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    ip_setup(
        &t.ns,
        &t.ifname,
        "10.80.0.1/24",
        Some(("10.80.0.2", &hex(v.peer_mac()))),
        false,
    );
    ip_setup(
        &v.ns,
        &v.peer,
        "10.80.0.2/24",
        Some(("10.80.0.1", &hex(tap_mac))),
        true,
    );
    let pv = AfPacketPort::open(&v.host).expect("open veth port");
    let stop = Arc::new(AtomicBool::new(false));
    let fwd = bridge(tap, pv, stop.clone());
    let bytes = transfer_bytes();
    let secs = tcp_transfer(&t.ns, &v.ns, "10.80.0.2", bytes);
    stop.store(true, Ordering::Relaxed);
    let (tap, _pv) = fwd.join().expect("bridge thread");
    let o = tap.offload_stats();
    eprintln!(
        "TCP tap → AF_PACKET: {:.0} Mbit/s ({} MiB in {secs:.2} s); tap: {o:?}",
        bytes as f64 * 8.0 / secs / 1e6,
        bytes >> 20
    );
    assert!(o.gso_frames > 0, "the stack wrote super-frames: {o:?}");
    assert_eq!((o.rx_malformed, o.rx_oversize), (0, 0));
}

/// Packets/s one AF_PACKET port sends into a veth and another receives
/// from its peer, both in this namespace; `--ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    if !need_root() {
        return;
    }
    let id = uid();
    let (x, y) = (format!("ifkx{id}"), format!("ifky{id}"));
    sh(&["ip", "link", "add", &x, "type", "veth", "peer", "name", &y]).expect("veth");
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = sh(&["ip", "link", "del", &self.0]);
        }
    }
    let _del = Del(x.clone());
    for i in [&x, &y] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
        sh(&["ip", "link", "set", i, "up"]).expect("up");
    }
    for (label, opts) in [
        ("default", AfPacketOptions::default()),
        (
            "qdisc bypass",
            AfPacketOptions {
                qdisc_bypass: true,
                ..AfPacketOptions::default()
            },
        ),
    ] {
        let mut tx = AfPacketPort::open_with(&x, &opts).expect("open x");
        let mut rx = AfPacketPort::open_with(&y, &opts).expect("open y");
        let frame = test_frame(&[2, 0, 0, 0, 0, 1], &[2, 0, 0, 0, 0, 2], 0, 64);
        let mut pool = PacketPool::new(1024);
        let mut batch = PacketBatch::new();
        let (mut sent, mut got) = (0u64, 0u64);
        let (mut in_send, mut in_recv) = (Duration::ZERO, Duration::ZERO);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            for _ in 0..BATCH_SIZE {
                let mut p = pool.alloc();
                p.set_data(&frame);
                batch.push(p).unwrap();
            }
            let t = Instant::now();
            sent += tx.send(&mut pool, &mut batch).unwrap() as u64;
            in_send += t.elapsed();
            let t = Instant::now();
            loop {
                let n = rx.recv(&mut pool, &mut batch).unwrap();
                got += n as u64;
                pool.free_batch(&mut batch);
                if n < BATCH_SIZE {
                    break;
                }
            }
            in_recv += t.elapsed();
        }
        let s = start.elapsed().as_secs_f64();
        // The send side's time includes the veth's delivery to the peer
        // (the kernel runs it in the sender's system call).
        eprintln!(
            "{label}: {:.2} Mpps through (64-byte frames, one thread sending and receiving); \
             sendmmsg side {:.0} ns/packet, recvmmsg side {:.0} ns/packet",
            got as f64 / s / 1e6,
            in_send.as_nanos() as f64 / sent.max(1) as f64,
            in_recv.as_nanos() as f64 / got.max(1) as f64,
        );
    }
}
