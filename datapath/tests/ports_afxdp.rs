//! The AF_XDP port on a real veth pair: one end in a network namespace the
//! test makes, the port on the other; frames go both ways and are checked
//! with raw AF_PACKET sockets (python3) in the namespace.
//!
//! Needs root (namespaces, XDP): as another user every test says why it is
//! skipped and passes. CI runs as root, so they run there. The `afxdp`
//! feature is on by default: `cargo test -p ironflow-datapath --test
//! ports_afxdp`; `-- --ignored --nocapture throughput` measures packets/s
//! on one veth.
#![cfg(feature = "afxdp")]

use ironflow_datapath::afxdp::{AfXdpOptions, AfXdpPort, Error, XdpMode};
use ironflow_datapath::packet::{Packet, PacketBatch, PacketPool, BATCH_SIZE};
use ironflow_datapath::port::Port;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The experimental ethertype the test frames carry, and their marker.
const ETHERTYPE: u16 = 0x88b5;
const MARKER: &[u8] = b"IFXDP";

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

/// A veth pair: `host` in this namespace, `peer` in namespace `ns` (or in
/// this one too when `ns` is None). Dropping it deletes both; processes a
/// test starts in the namespace are its own to stop.
struct Veth {
    ns: Option<String>,
    host: String,
    peer: String,
}

impl Veth {
    /// None (and a message) when this machine cannot run the test.
    fn new(with_ns: bool) -> Option<Veth> {
        if !is_root() {
            eprintln!("skipped: AF_XDP tests need root (netns, veth, XDP)");
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let v = Veth {
            ns: with_ns.then(|| format!("ifx-ns{id}")),
            host: format!("ifxh{id}"),
            peer: format!("ifxp{id}"),
        };
        if let Err(e) = v.setup() {
            eprintln!("skipped: cannot make a veth pair here: {e}");
            return None;
        }
        Some(v)
    }

    fn setup(&self) -> Result<(), String> {
        sh(&[
            "ip", "link", "add", &self.host, "type", "veth", "peer", "name", &self.peer,
        ])?;
        // No IPv6 on either end: the kernel sends nothing of its own.
        for ifn in [&self.host, &self.peer] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{ifn}/disable_ipv6"), "1");
        }
        if let Some(ns) = &self.ns {
            sh(&["ip", "netns", "add", ns])?;
            sh(&["ip", "link", "set", &self.peer, "netns", ns])?;
            self.in_ns(&["ip", "link", "set", &self.peer, "up"])?;
        } else {
            sh(&["ip", "link", "set", &self.peer, "up"])?;
        }
        sh(&["ip", "link", "set", &self.host, "up"])?;
        Ok(())
    }

    fn in_ns(&self, args: &[&str]) -> Result<String, String> {
        match &self.ns {
            Some(ns) => {
                let mut all = vec!["ip", "netns", "exec", ns.as_str()];
                all.extend_from_slice(args);
                sh(&all)
            }
            None => sh(args),
        }
    }

    fn spawn_in_ns(&self, args: &[&str]) -> Child {
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(args);
                c
            }
            None => {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            }
        };
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3 in the namespace")
    }

    fn host_mac(&self) -> String {
        std::fs::read_to_string(format!("/sys/class/net/{}/address", self.host))
            .expect("host end's MAC")
            .trim()
            .replace(':', "")
    }

    fn xdp_attached(&self) -> bool {
        // `xdp`, `xdpgeneric`, `xdpdrv` after the MTU, `prog/xdp` below.
        sh(&["ip", "link", "show", "dev", &self.host])
            .map(|s| {
                s.split_whitespace()
                    .any(|w| w.starts_with("xdp") || w.starts_with("prog/xdp"))
            })
            .unwrap_or(false)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", &self.host]);
        if let Some(ns) = &self.ns {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

/// A process the test started; killed by its PID if still running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Opens the port, or None (and a message) where AF_XDP is unavailable.
fn open(ifname: &str, opts: &AfXdpOptions) -> Option<AfXdpPort> {
    match AfXdpPort::open_with(ifname, 0, opts) {
        Ok(p) => {
            eprintln!("opened {}", p.name());
            Some(p)
        }
        Err(e @ Error::XdpRefused { .. }) => {
            eprintln!("skipped: AF_XDP unavailable: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
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

const PY_SEND: &str = r#"
import socket, sys
ifn, dst, n = sys.argv[1], bytes.fromhex(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifn, 0))
src = bytes.fromhex("02aabbccddee")
for i in range(n):
    s.send(dst + src + b"\x88\xb5" + b"IFXDP" + i.to_bytes(4, "big") + bytes(41))
"#;

const PY_RECV: &str = r#"
import socket, sys, select, time
ifn, n, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
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
        if a[2] != socket.PACKET_OUTGOING and d[14:19] == b"IFXDP":
            seen.append((int.from_bytes(d[19:23], "big"), len(d)))
print(" ".join("%d:%d" % x for x in seen), flush=True)
"#;

/// Frames sent from the namespace arrive through `recv`.
fn namespace_to_port(mode: Option<XdpMode>) {
    let Some(veth) = Veth::new(true) else { return };
    let opts = AfXdpOptions {
        mode,
        ..AfXdpOptions::default()
    };
    let Some(mut port) = open(&veth.host, &opts) else {
        return;
    };
    if let Some(m) = mode {
        assert_eq!(port.mode(), m);
    }
    assert!(port.name().contains(&veth.host) && port.name().contains(&port.mode().to_string()));
    assert!(veth.xdp_attached(), "an XDP program on {}", veth.host);

    let n = 200u32;
    veth.in_ns(&[
        "python3",
        "-c",
        PY_SEND,
        &veth.peer,
        &veth.host_mac(),
        &n.to_string(),
    ])
    .expect("send from the namespace");

    let mut pool = PacketPool::new(256);
    let mut batch = PacketBatch::new();
    let mut seqs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while seqs.len() < n as usize && Instant::now() < deadline {
        let got = port.recv(&mut pool, &mut batch).expect("recv");
        for p in batch.drain() {
            if let Some(s) = seq_of(p.data()) {
                assert_eq!(p.len(), 64, "frame length kept");
                seqs.push(s);
            }
            pool.free(p);
        }
        if got == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "every frame, in order");
    let s = port.stats();
    assert!(s.rx_packets >= u64::from(n) && s.rx_bytes >= 64 * u64::from(n));
    drop(port);
    assert!(
        !veth.xdp_attached(),
        "XDP program detached with the last socket"
    );
}

/// Frames sent through `send` arrive in the namespace.
fn port_to_namespace(mode: Option<XdpMode>) {
    let Some(veth) = Veth::new(true) else { return };
    let opts = AfXdpOptions {
        mode,
        ..AfXdpOptions::default()
    };
    let Some(mut port) = open(&veth.host, &opts) else {
        return;
    };
    let n = 300u32;
    let mut rx =
        Proc(veth.spawn_in_ns(&["python3", "-c", PY_RECV, &veth.peer, &n.to_string(), "5"]));
    let mut out = BufReader::new(rx.0.stdout.take().expect("receiver's stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("receiver ready");
    assert_eq!(line.trim(), "ready");

    let mut pool = PacketPool::new(256);
    let mut batch = PacketBatch::new();
    let dst = [0x02, 0, 0, 0, 0, 1];
    let src = [0x02, 0, 0, 0, 0, 2];
    let mut sent = 0;
    for seq in 0..n {
        // Lengths from the minimum to a full 1500-byte MTU frame.
        let len = 60 + (seq as usize * 37) % (1514 - 60 + 1);
        let mut p = pool.alloc();
        assert!(p.set_data(&test_frame(&dst, &src, seq, len)));
        batch.push(p).ok();
        if batch.is_full() || seq + 1 == n {
            sent += port.send(&mut pool, &mut batch).expect("send");
            assert!(batch.is_empty());
            // Python is slow to read: give it time rather than overflow
            // its socket buffer.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert_eq!(sent, n as usize);
    line.clear();
    out.read_line(&mut line).expect("receiver's report");
    let got: Vec<(u32, usize)> = line
        .split_whitespace()
        .filter_map(|w| {
            let (s, l) = w.split_once(':')?;
            Some((s.parse().ok()?, l.parse().ok()?))
        })
        .collect();
    let want: Vec<(u32, usize)> = (0..n)
        .map(|s| (s, 60 + (s as usize * 37) % (1514 - 60 + 1)))
        .collect();
    assert_eq!(got, want, "every frame, in order, at its length");
    let s = port.stats();
    assert_eq!((s.tx_packets, s.tx_dropped), (u64::from(n), 0));
}

#[test]
fn frames_from_the_namespace_arrive_through_recv() {
    namespace_to_port(None);
}

#[test]
fn frames_sent_arrive_in_the_namespace() {
    port_to_namespace(None);
}

#[test]
fn generic_mode_works_both_ways() {
    namespace_to_port(Some(XdpMode::GenericCopy));
    port_to_namespace(Some(XdpMode::GenericCopy));
}

#[test]
fn veth_refuses_zero_copy_so_open_falls_back_to_copy() {
    let Some(veth) = Veth::new(true) else { return };
    let only_zc = AfXdpOptions {
        mode: Some(XdpMode::NativeZeroCopy),
        ..AfXdpOptions::default()
    };
    match AfXdpPort::open_with(&veth.host, 0, &only_zc) {
        Err(e @ Error::XdpRefused { .. }) => {
            let msg = e.to_string();
            eprintln!("{msg}");
            assert!(
                msg.contains(&veth.host) && msg.contains("zero-copy"),
                "{msg}"
            );
            assert!(!msg.contains('\n'));
        }
        Err(e) => panic!("{e}"),
        Ok(p) => panic!("veth took zero-copy: {}", p.name()),
    }
    assert!(!veth.xdp_attached(), "a refused attempt leaves no program");
    let Some(port) = open(&veth.host, &AfXdpOptions::default()) else {
        return;
    };
    assert!(port.mode().is_copy());
}

#[test]
fn second_socket_on_the_same_queue_is_busy() {
    let Some(veth) = Veth::new(true) else { return };
    let Some(_first) = open(&veth.host, &AfXdpOptions::default()) else {
        return;
    };
    let e = AfXdpPort::open(&veth.host, 0)
        .err()
        .expect("a second socket on queue 0 is refused");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(matches!(e, Error::Busy { .. }), "{msg}");
    assert!(msg.contains(&veth.host) && !msg.contains('\n'), "{msg}");
}

#[test]
fn sockets_on_two_queues_share_one_program() {
    let Some(veth) = Veth::new(true) else { return };
    // A second pair with two queues a side, in the same namespace.
    let host = format!("{}q", veth.host);
    let peer = format!("{}q", veth.peer);
    let two = ["numrxqueues", "2", "numtxqueues", "2"];
    let mut add = vec!["ip", "link", "add", host.as_str()];
    add.extend_from_slice(&two);
    add.extend_from_slice(&["type", "veth", "peer", "name", peer.as_str()]);
    add.extend_from_slice(&two);
    sh(&add).expect("two-queue veth");
    let mq = Veth {
        ns: None,
        host,
        peer,
    };
    for ifn in [&mq.host, &mq.peer] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{ifn}/disable_ipv6"), "1");
    }
    sh(&["ip", "link", "set", &mq.peer, "up"]).expect("peer up");
    sh(&["ip", "link", "set", &mq.host, "up"]).expect("host up");
    let Some(q0) = open(&mq.host, &AfXdpOptions::default()) else {
        return;
    };
    let q1 = AfXdpPort::open(&mq.host, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((q0.queue(), q1.queue()), (0, 1));
    assert_eq!(q1.mode(), q0.mode());
    drop(q0);
    assert!(mq.xdp_attached(), "queue 1 still uses the program");
    drop(q1);
    assert!(!mq.xdp_attached(), "detached with the last socket");
}

/// Run as nobody (the test binary runs itself under setpriv), opening a
/// port says which privileges it needs.
#[test]
fn without_privileges_the_error_names_them() {
    const CHILD: &str = "IRONFLOW_AFXDP_UNPRIVILEGED";
    if std::env::var_os(CHILD).is_some() {
        let e = AfXdpPort::open("lo", 0)
            .err()
            .expect("refused without privileges");
        println!("error: {e}");
        assert!(matches!(e, Error::NotPermitted { .. }), "{e}");
        return;
    }
    if !is_root() {
        eprintln!("skipped: needs root to run itself as nobody");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(&exe)
        .args(["--exact", "without_privileges_the_error_names_them"])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: cannot run setpriv: {e}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && text.is_empty() {
        // Not our test failing: nobody cannot run the binary (a private
        // target directory).
        eprintln!(
            "skipped: nobody cannot run {}: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    assert!(out.status.success(), "{text}");
    // libtest prints the test's name on the same line, before it.
    let line = text
        .lines()
        .find_map(|l| l.find("error: ").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no error line from the child: {text}"));
    eprintln!("{line}");
    assert!(
        line.contains("afxdp lo") && line.contains("CAP_NET_ADMIN"),
        "{line}"
    );
}

#[test]
fn missing_interface_and_queue_are_named() {
    // No root needed: these are checked before any socket is made.
    let e = AfXdpPort::open("ifxdp-none0", 0)
        .err()
        .expect("no such interface");
    assert!(matches!(e, Error::NoInterface { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("ifxdp-none0") && msg.contains("ip link show"),
        "{msg}"
    );
    let e = AfXdpPort::open("lo", 4096).err().expect("no such queue");
    assert!(matches!(e, Error::NoQueue { .. }), "{e}");
    let e = AfXdpPort::open("a/b", 0).err().expect("bad name");
    assert!(matches!(e, Error::Setup { .. }), "{e}");
}

/// Packets/s through one veth: one port sends as fast as it can on one
/// end, another receives on the other (both ends in this namespace, no
/// addresses). `cargo test --release -p ironflow-datapath --test
/// ports_afxdp -- --ignored --nocapture throughput`; IRONFLOW_AFXDP_SECS
/// sets the length (3 s).
#[test]
#[ignore]
fn throughput() {
    let Some(veth) = Veth::new(false) else { return };
    let secs = std::env::var("IRONFLOW_AFXDP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    // IRONFLOW_AFXDP_MODE=generic measures generic (SKB) mode instead.
    let opts = AfXdpOptions {
        mode: match std::env::var("IRONFLOW_AFXDP_MODE").as_deref() {
            Ok("generic") => Some(XdpMode::GenericCopy),
            Ok("native") => Some(XdpMode::NativeCopy),
            _ => None,
        },
        ..AfXdpOptions::default()
    };
    let Some(mut tx) = open(&veth.host, &opts) else {
        return;
    };
    let Some(mut rx) = open(&veth.peer, &opts) else {
        return;
    };
    let frame = test_frame(&[0x02, 0, 0, 0, 0, 1], &[0x02, 0, 0, 0, 0, 2], 0, 64);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let receiver = std::thread::spawn(move || {
        let mut pool = PacketPool::new(1024);
        let mut batch = PacketBatch::new();
        let mut n = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            n += rx.recv(&mut pool, &mut batch).unwrap_or(0) as u64;
            pool.free_batch(&mut batch);
        }
        (n, rx.afxdp_stats())
    });
    let mut pool = PacketPool::new(1024);
    let mut batch = PacketBatch::new();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        while !batch.is_full() {
            let mut p: Packet = pool.alloc();
            p.set_data(&frame);
            batch.push(p).ok();
        }
        sent += tx.send(&mut pool, &mut batch).unwrap_or(0) as u64;
    }
    let el = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (received, rs) = receiver.join().expect("receiver thread");
    let ts = tx.stats();
    println!(
        "afxdp {} -> peer: sent {:.0} pps (dropped {:.0}/s, {} kicks), received {:.0} pps ({:?}); batch {BATCH_SIZE}, 64-byte frames, {el:.1} s",
        tx.mode(),
        sent as f64 / el,
        ts.tx_dropped as f64 / el,
        tx.afxdp_stats().tx_kicks,
        received as f64 / el,
        rs,
    );
}
