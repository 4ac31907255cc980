//! A pod of the embedded harness: a smoltcp TCP/IP stack on an in-memory
//! port bound to a logical port, with the socket helpers tests use, and a
//! capture of every frame the datapath delivered to it.
//!
//! The stack runs on the lab's virtual clock, so a run is the same every
//! time: the interface's random seed comes from the pod's name, not from
//! the system.

use anyhow::{anyhow, bail, Result};
use ironflow_datapath::port::MemPeer;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{icmp, tcp, udp, AnySocket};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, IpEndpoint,
    Ipv4Cidr,
};
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Frames kept in a pod's capture before the oldest go.
pub const CAPTURE_DEPTH: usize = 4096;

/// An Ethernet MTU: what a veth in a pod has.
const MTU: usize = 1500;
const ETH_HEADER: usize = 14;

/// Socket buffer sizes: enough for a test's exchanges, small enough that a
/// lab of many pods stays light.
const TCP_BUFFER: usize = 64 * 1024;
const DATAGRAMS: usize = 64;
const DATAGRAM_BYTES: usize = 64 * 1024;

/// The ICMP identifier a pod's pings carry.
const PING_IDENT: u16 = 0x1f0f;

/// How a pod's interface is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAddress {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// The on-link prefix length.
    pub prefix: u8,
    /// The default route's next hop (the logical router port), if any.
    pub gateway: Option<Ipv4Addr>,
}

/// A TCP socket of one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpHandle(SocketHandle);

/// A UDP socket of one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpHandle(SocketHandle);

/// An echo reply a pod received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReply {
    pub from: Ipv4Addr,
    pub seq: u16,
    pub data: Vec<u8>,
}

/// The smoltcp device: frames from the datapath come off the peer (and
/// into the capture), frames the stack sends go into the peer.
struct PodDevice {
    peer: MemPeer,
    capture: VecDeque<Vec<u8>>,
    sent: u64,
    /// Frames the port's queue refused (the datapath fell behind).
    refused: u64,
}

impl PodDevice {
    fn record(&mut self, frame: &[u8]) {
        if self.capture.len() >= CAPTURE_DEPTH {
            self.capture.pop_front();
        }
        self.capture.push_back(frame.to_vec());
    }
}

struct PodRx(Vec<u8>);

struct PodTx<'a> {
    peer: &'a MemPeer,
    sent: &'a mut u64,
    refused: &'a mut u64,
}

impl phy::RxToken for PodRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for PodTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        if self.peer.inject(&frame) {
            *self.sent += 1;
        } else {
            *self.refused += 1;
        }
        r
    }
}

impl Device for PodDevice {
    type RxToken<'a> = PodRx;
    type TxToken<'a> = PodTx<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(PodRx, PodTx<'_>)> {
        let frame = self.peer.receive()?;
        self.record(&frame);
        Some((
            PodRx(frame),
            PodTx {
                peer: &self.peer,
                sent: &mut self.sent,
                refused: &mut self.refused,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<PodTx<'_>> {
        Some(PodTx {
            peer: &self.peer,
            sent: &mut self.sent,
            refused: &mut self.refused,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU + ETH_HEADER;
        caps
    }
}

/// The stack half of a pod (absent for a raw pod).
struct Stack {
    iface: Interface,
    sockets: SocketSet<'static>,
    icmp: SocketHandle,
    /// Bytes each TCP socket received, drained from smoltcp every poll so
    /// its window never closes on a test that reads late.
    received: HashMap<SocketHandle, Vec<u8>>,
    replies: Vec<EchoReply>,
    next_port: u16,
}

/// One pod: a logical port on a node, played by smoltcp (or by the test,
/// frame by frame, for a raw pod).
pub struct Pod {
    name: String,
    node: String,
    address: Option<PodAddress>,
    device: PodDevice,
    stack: Option<Stack>,
}

impl Pod {
    /// A pod with a TCP/IP stack on `peer`, its clock at `now`.
    pub(crate) fn new(
        name: &str,
        node: &str,
        address: PodAddress,
        peer: MemPeer,
        now: Instant,
    ) -> Result<Pod> {
        let mac = EthernetAddress(address.mac);
        if !mac.is_unicast() {
            bail!("logical port {name}: {mac} is not a unicast MAC");
        }
        let mut device = PodDevice {
            peer,
            capture: VecDeque::new(),
            sent: 0,
            refused: 0,
        };
        let mut config = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        config.random_seed = seed_of(name);
        let mut iface = Interface::new(config, &mut device, now);
        let cidr = Ipv4Cidr::new(address.ip, address.prefix.min(32));
        iface.update_ip_addrs(|addrs| {
            // One address on an empty list always fits.
            let _ = addrs.push(IpCidr::Ipv4(cidr));
        });
        if let Some(gw) = address.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .map_err(|_| anyhow!("logical port {name}: no room for a default route"))?;
        }
        let mut sockets = SocketSet::new(Vec::new());
        let mut ping = icmp::Socket::new(
            icmp::PacketBuffer::new(
                vec![icmp::PacketMetadata::EMPTY; DATAGRAMS],
                vec![0; DATAGRAM_BYTES],
            ),
            icmp::PacketBuffer::new(
                vec![icmp::PacketMetadata::EMPTY; DATAGRAMS],
                vec![0; DATAGRAM_BYTES],
            ),
        );
        ping.bind(icmp::Endpoint::Ident(PING_IDENT))
            .map_err(|e| anyhow!("logical port {name}: ICMP socket: {e}"))?;
        let icmp = sockets.add(ping);
        Ok(Pod {
            name: name.to_string(),
            node: node.to_string(),
            address: Some(address),
            device,
            stack: Some(Stack {
                iface,
                sockets,
                icmp,
                received: HashMap::new(),
                replies: Vec::new(),
                next_port: 49152,
            }),
        })
    }

    /// A pod without a stack: the test sends and reads frames itself.
    pub(crate) fn raw(name: &str, node: &str, peer: MemPeer) -> Pod {
        Pod {
            name: name.to_string(),
            node: node.to_string(),
            address: None,
            device: PodDevice {
                peer,
                capture: VecDeque::new(),
                sent: 0,
                refused: 0,
            },
            stack: None,
        }
    }

    /// The logical port this pod is.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The chassis it runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Its addressing (None for a raw pod).
    pub fn address(&self) -> Option<PodAddress> {
        self.address
    }

    /// Its IPv4 address; 0.0.0.0 for a raw pod.
    pub fn ip(&self) -> Ipv4Addr {
        self.address.map_or(Ipv4Addr::UNSPECIFIED, |a| a.ip)
    }

    /// Its MAC; all zeros for a raw pod.
    pub fn mac(&self) -> [u8; 6] {
        self.address.map_or([0; 6], |a| a.mac)
    }

    /// Runs the stack once at `now`: takes in what the datapath delivered,
    /// sends what the sockets have. Returns whether anything moved.
    pub(crate) fn poll(&mut self, now: Instant) -> bool {
        let Some(stack) = &mut self.stack else {
            let mut moved = false;
            while let Some(frame) = self.device.peer.receive() {
                self.device.record(&frame);
                moved = true;
            }
            return moved;
        };
        let before = (self.device.capture.len(), self.device.sent);
        let mut changed = stack.iface.poll(now, &mut self.device, &mut stack.sockets)
            == smoltcp::iface::PollResult::SocketStateChanged;
        changed |= stack.drain();
        changed || before != (self.device.capture.len(), self.device.sent)
    }

    fn stack(&mut self) -> Result<&mut Stack> {
        let name = &self.name;
        self.stack
            .as_mut()
            .ok_or_else(|| anyhow!("{name} is a raw pod: it has no TCP/IP stack"))
    }

    // ---- TCP ----

    /// A socket listening on `port`.
    pub fn tcp_listen(&mut self, port: u16) -> Result<TcpHandle> {
        let stack = self.stack()?;
        let mut s = tcp_socket();
        s.listen(port)
            .map_err(|e| anyhow!("listen on port {port}: {e}"))?;
        let h = stack.sockets.add(s);
        stack.received.insert(h, Vec::new());
        Ok(TcpHandle(h))
    }

    /// Opens a connection to `dst`:`port` from the next ephemeral port; it
    /// is established after a few lab steps (see `tcp_established`).
    pub fn tcp_connect(&mut self, dst: Ipv4Addr, port: u16) -> Result<TcpHandle> {
        let stack = self.stack()?;
        let local = stack.next_port;
        stack.next_port = stack.next_port.checked_add(1).unwrap_or(49152);
        let mut s = tcp_socket();
        s.connect(
            stack.iface.context(),
            IpEndpoint::new(IpAddress::Ipv4(dst), port),
            local,
        )
        .map_err(|e| anyhow!("connect to {dst}:{port}: {e}"))?;
        let h = stack.sockets.add(s);
        stack.received.insert(h, Vec::new());
        Ok(TcpHandle(h))
    }

    /// The socket's TCP state (`Closed` for a handle of no TCP socket).
    pub fn tcp_state(&self, h: TcpHandle) -> tcp::State {
        self.tcp_socket(h).map_or(tcp::State::Closed, |s| s.state())
    }

    pub fn tcp_established(&self, h: TcpHandle) -> bool {
        self.tcp_state(h) == tcp::State::Established
    }

    /// The far end of the connection, as this pod sees it.
    pub fn tcp_remote(&self, h: TcpHandle) -> Option<SocketAddrV4> {
        let ep = self.tcp_socket(h)?.remote_endpoint()?;
        match ep.addr {
            IpAddress::Ipv4(ip) => Some(SocketAddrV4::new(ip, ep.port)),
        }
    }

    /// Queues `data`; returns how much fit in the send buffer.
    pub fn tcp_send(&mut self, h: TcpHandle, data: &[u8]) -> Result<usize> {
        let stack = self.stack()?;
        let s = stack
            .sockets
            .iter_mut()
            .find(|(handle, _)| *handle == h.0)
            .and_then(|(_, s)| tcp::Socket::downcast_mut(s))
            .ok_or_else(|| anyhow!("no such TCP socket"))?;
        s.send_slice(data).map_err(|e| anyhow!("send: {e}"))
    }

    /// Everything received on the socket so far (kept until taken).
    pub fn tcp_received(&self, h: TcpHandle) -> &[u8] {
        self.stack
            .as_ref()
            .and_then(|s| s.received.get(&h.0))
            .map_or(&[], Vec::as_slice)
    }

    /// Takes what the socket received so far.
    pub fn tcp_take(&mut self, h: TcpHandle) -> Vec<u8> {
        self.stack
            .as_mut()
            .and_then(|s| s.received.get_mut(&h.0))
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Closes the sending half (FIN once the buffer is sent).
    pub fn tcp_close(&mut self, h: TcpHandle) {
        if let Some(stack) = &mut self.stack {
            if let Some(s) = find_tcp(&mut stack.sockets, h.0) {
                s.close();
            }
        }
    }

    fn tcp_socket(&self, h: TcpHandle) -> Option<&tcp::Socket<'static>> {
        self.stack
            .as_ref()?
            .sockets
            .iter()
            .find(|(handle, _)| *handle == h.0)
            .and_then(|(_, s)| tcp::Socket::downcast(s))
    }

    // ---- UDP ----

    /// A socket bound to `port`.
    pub fn udp_bind(&mut self, port: u16) -> Result<UdpHandle> {
        let stack = self.stack()?;
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; DATAGRAMS],
                vec![0; DATAGRAM_BYTES],
            )
        };
        let mut s = udp::Socket::new(buffer(), buffer());
        s.bind(port).map_err(|e| anyhow!("bind port {port}: {e}"))?;
        Ok(UdpHandle(stack.sockets.add(s)))
    }

    /// Queues one datagram to `dst`.
    pub fn udp_send(&mut self, h: UdpHandle, dst: SocketAddrV4, data: &[u8]) -> Result<()> {
        let stack = self.stack()?;
        let s = find_udp(&mut stack.sockets, h.0).ok_or_else(|| anyhow!("no such UDP socket"))?;
        let ep = IpEndpoint::new(IpAddress::Ipv4(*dst.ip()), dst.port());
        s.send_slice(data, ep)
            .map_err(|e| anyhow!("send to {dst}: {e}"))
    }

    /// The next datagram received, with its sender.
    pub fn udp_recv(&mut self, h: UdpHandle) -> Option<(SocketAddrV4, Vec<u8>)> {
        let s = find_udp(&mut self.stack.as_mut()?.sockets, h.0)?;
        let (data, meta) = s.recv().ok()?;
        let IpAddress::Ipv4(ip) = meta.endpoint.addr;
        Some((SocketAddrV4::new(ip, meta.endpoint.port), data.to_vec()))
    }

    // ---- ICMP ----

    /// Sends an echo request to `dst` with sequence number `seq`.
    pub fn ping(&mut self, dst: Ipv4Addr, seq: u16, data: &[u8]) -> Result<()> {
        let stack = self.stack()?;
        let Some(s) = stack
            .sockets
            .iter_mut()
            .find(|(h, _)| *h == stack.icmp)
            .and_then(|(_, s)| icmp::Socket::downcast_mut(s))
        else {
            bail!("the pod's ICMP socket is gone");
        };
        let repr = Icmpv4Repr::EchoRequest {
            ident: PING_IDENT,
            seq_no: seq,
            data,
        };
        let buf = s
            .send(repr.buffer_len(), IpAddress::Ipv4(dst))
            .map_err(|e| anyhow!("ping {dst}: {e}"))?;
        let mut packet = Icmpv4Packet::new_unchecked(buf);
        repr.emit(&mut packet, &smoltcp::phy::ChecksumCapabilities::default());
        Ok(())
    }

    /// Echo replies received so far, oldest first.
    pub fn echo_replies(&self) -> &[EchoReply] {
        self.stack.as_ref().map_or(&[], |s| s.replies.as_slice())
    }

    // ---- frames ----

    /// Hands a frame to the datapath as if the pod sent it, past the stack;
    /// false if the port's queue is full or the frame too long.
    pub fn inject(&mut self, frame: &[u8]) -> bool {
        let ok = self.device.peer.inject(frame);
        if ok {
            self.device.sent += 1;
        }
        ok
    }

    /// The oldest captured frame the datapath delivered to this pod, taken
    /// off the capture. A pod with a stack saw it too.
    pub fn receive(&mut self) -> Option<Vec<u8>> {
        self.device.capture.pop_front()
    }

    /// Every captured frame still held, oldest first.
    pub fn captured(&self) -> impl Iterator<Item = &[u8]> {
        self.device.capture.iter().map(Vec::as_slice)
    }

    /// Drops the capture.
    pub fn clear_capture(&mut self) {
        self.device.capture.clear();
    }

    /// Frames this pod sent to the datapath, and frames its full port
    /// queue refused.
    pub fn sent(&self) -> (u64, u64) {
        (self.device.sent, self.device.refused)
    }
}

impl Stack {
    /// Moves what sockets received into the pod's own buffers; true if
    /// there was anything.
    fn drain(&mut self) -> bool {
        let mut any = false;
        for (h, s) in self.sockets.iter_mut() {
            if let Some(t) = tcp::Socket::downcast_mut(s) {
                while t.can_recv() {
                    let Ok(chunk) = t.recv(|buf| (buf.len(), buf.to_vec())) else {
                        break;
                    };
                    if chunk.is_empty() {
                        break;
                    }
                    any = true;
                    self.received
                        .entry(h)
                        .or_default()
                        .extend_from_slice(&chunk);
                }
            } else if let Some(i) = icmp::Socket::downcast_mut(s) {
                while let Ok((buf, from)) = i.recv() {
                    any = true;
                    let IpAddress::Ipv4(from) = from;
                    let Ok(packet) = Icmpv4Packet::new_checked(buf) else {
                        continue;
                    };
                    let caps = smoltcp::phy::ChecksumCapabilities::default();
                    if let Ok(Icmpv4Repr::EchoReply { seq_no, data, .. }) =
                        Icmpv4Repr::parse(&packet, &caps)
                    {
                        self.replies.push(EchoReply {
                            from,
                            seq: seq_no,
                            data: data.to_vec(),
                        });
                    }
                }
            }
        }
        any
    }
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
    )
}

fn find_tcp<'a>(
    sockets: &'a mut SocketSet<'static>,
    h: SocketHandle,
) -> Option<&'a mut tcp::Socket<'static>> {
    sockets
        .iter_mut()
        .find(|(handle, _)| *handle == h)
        .and_then(|(_, s)| tcp::Socket::downcast_mut(s))
}

fn find_udp<'a>(
    sockets: &'a mut SocketSet<'static>,
    h: SocketHandle,
) -> Option<&'a mut udp::Socket<'static>> {
    sockets
        .iter_mut()
        .find(|(handle, _)| *handle == h)
        .and_then(|(_, s)| udp::Socket::downcast_mut(s))
}

/// A stable seed per pod name (FNV-1a), so sequence numbers and ports are
/// the same on every run.
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Parses a MAC written `aa:bb:cc:dd:ee:ff` (any case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Parses `IP` or `IP/len` (IPv4 only; None for IPv6 or garbage).
pub fn parse_ipv4_cidr(s: &str) -> Option<(Ipv4Addr, Option<u8>)> {
    match s.split_once('/') {
        Some((ip, len)) => {
            let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
            Some((ip.parse().ok()?, Some(len)))
        }
        None => Some((s.parse().ok()?, None)),
    }
}

/// Whether `a` and `b` share the first `prefix` bits.
pub fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from(a) & mask == u32::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_the_sb_writes_them() {
        assert_eq!(
            parse_mac("00:00:00:C0:2E:C7"),
            Some([0, 0, 0, 0xc0, 0x2e, 0xc7])
        );
        for bad in [
            "",
            "router",
            "0a:00:00:00:00",
            "0a:00:00:00:00:01:02",
            "0g:0:0:0:0:0",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(
            parse_ipv4_cidr("192.168.2.1/24"),
            Some((Ipv4Addr::new(192, 168, 2, 1), Some(24)))
        );
        assert_eq!(
            parse_ipv4_cidr("192.168.2.3"),
            Some((Ipv4Addr::new(192, 168, 2, 3), None))
        );
        assert_eq!(parse_ipv4_cidr("fd00::1/64"), None);
        assert_eq!(parse_ipv4_cidr("1.2.3.4/33"), None);
        let a = Ipv4Addr::new(192, 168, 2, 3);
        assert!(same_subnet(a, Ipv4Addr::new(192, 168, 2, 1), 24));
        assert!(!same_subnet(a, Ipv4Addr::new(192, 168, 3, 1), 24));
        assert!(same_subnet(a, Ipv4Addr::new(10, 0, 0, 1), 0));
    }

    #[test]
    fn seeds_differ_by_name_and_repeat() {
        assert_eq!(seed_of("web-1"), seed_of("web-1"));
        assert_ne!(seed_of("web-1"), seed_of("sshd-2"));
    }
}
