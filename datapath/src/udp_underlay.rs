//! The underlay through the kernel's UDP stack: Geneve packets leave by a
//! UDP socket bound to the node's encap IP and port 6081, and arrive the
//! same way, so the kernel routes, resolves neighbours and fragments.
//!
//! The datapath builds whole outer frames (Ethernet, IPv4, UDP, Geneve) as
//! it would for a raw underlay interface. This port sends their IPv4
//! packets as they are through a raw socket (`IPPROTO_RAW`: the kernel
//! routes, resolves the next hop and adds the link header, and leaves the
//! UDP header alone), so the UDP source port is the flow hash a stock
//! chassis would pick and the checksum the one the datapath computed —
//! a UDP socket would put its own port 6081 there and leave the checksum
//! to the device, which a veth never fills in and which OVS's userspace
//! datapath then drops. Without the privilege for a raw socket it sends
//! what follows the UDP header through the UDP socket instead.
//!
//! On receipt it puts outer headers back in front of the datagram (the
//! sender's address as the IPv4 source, no UDP checksum: the kernel has
//! checked it) so that decapsulation sees the same frames either way. A
//! batch goes in one `sendmmsg`, and one `recvmmsg` fills a batch.

use crate::packet::{Packet, PacketBatch, PacketPool, BATCH_SIZE};
use crate::port::{Port, PortStats};
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Outer Ethernet + IPv4 + UDP, which the kernel adds and removes.
const OUTER: usize = 14 + 20 + 8;

pub struct UdpUnderlay {
    name: String,
    socket: UdpSocket,
    /// Sends whole IPv4 packets, when the process may open one.
    raw: Option<OwnedFd>,
    local: SocketAddrV4,
    /// The UDP port peers listen on (6081 for Geneve).
    peer_port: u16,
    stats: PortStats,
}

impl UdpUnderlay {
    /// Binds `local` (the encap IP and, for Geneve, port 6081); datagrams
    /// go to port `peer_port` of each destination.
    pub fn bind(local: SocketAddrV4, peer_port: u16) -> io::Result<UdpUnderlay> {
        let socket = UdpSocket::bind(local).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind the underlay UDP socket to {local}: {e} (is ovn-encap-ip an address of this host, and the port free?)"),
            )
        })?;
        socket.set_nonblocking(true)?;
        set_buffers(&socket, SOCKET_BUFFER);
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => local,
        };
        let raw = raw_sender();
        Ok(UdpUnderlay {
            name: format!("udp:{local}"),
            socket,
            raw,
            local,
            peer_port,
            stats: PortStats::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Whether packets leave as the datapath built them (a raw socket), or
    /// through the UDP socket with its port and the kernel's checksum.
    pub fn sends_raw(&self) -> bool {
        self.raw.is_some()
    }
}

/// A raw IPv4 socket for sending whole packets, if the process may have
/// one (`CAP_NET_RAW`). It receives nothing (`IPPROTO_RAW`).
fn raw_sender() -> Option<OwnedFd> {
    // SAFETY: plain system call, no pointers.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: just opened, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let value = libc::c_int::try_from(SOCKET_BUFFER).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: a valid socket, an int option and its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
    }
    Some(fd)
}

/// Socket buffer in each direction: the default (about 200 KiB) holds a
/// fraction of a millisecond of a TCP transfer at 10 Gbit/s and the
/// kernel drops the rest between two polls; the AF_PACKET port uses the
/// same.
const SOCKET_BUFFER: usize = 4 << 20;

/// Sets the receive and send buffers with `SO_*BUFFORCE` (root, past
/// `net.core.*mem_max`), else the capped `SO_*BUF`; a refusal leaves the
/// default, which works, only slower.
fn set_buffers(socket: &UdpSocket, bytes: usize) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: a valid socket, an int option and its size.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}

/// Writes outer headers for a datagram of `len` bytes from `src` to `dst`
/// into `hdr` (which is [`OUTER`] bytes).
fn outer_headers(hdr: &mut [u8], src: SocketAddrV4, dst: SocketAddrV4, len: usize) {
    hdr[0..12].fill(0);
    hdr[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (20 + 8 + len) as u16;
    let ip = &mut hdr[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let mut sum: u32 = 0;
    for pair in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut hdr[34..42];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    // No checksum: the kernel verified the one the sender computed.
    udp[6..8].copy_from_slice(&[0, 0]);
}

/// A `sockaddr_in` for `a`.
fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = a.port().to_be();
    sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    sa
}

impl Port for UdpUnderlay {
    fn name(&self) -> &str {
        &self.name
    }

    /// Up to the batch's room of datagrams in one `recvmmsg`, each
    /// straight into a pool frame behind room for the outer headers.
    fn recv(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let want = BATCH_SIZE.saturating_sub(batch.len());
        if want == 0 {
            return Ok(0);
        }
        let mut held: [Option<Packet>; BATCH_SIZE] = std::array::from_fn(|_| None);
        // SAFETY: all-zero is valid for these C structs (null pointers,
        // zero lengths); every pointer is set below before use.
        let mut names: [libc::sockaddr_in; BATCH_SIZE] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH_SIZE] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH_SIZE] = unsafe { std::mem::zeroed() };
        for i in 0..want {
            let mut p = pool.alloc();
            let buf = &mut p.rx_buffer()[OUTER..];
            iovs[i].iov_base = buf.as_mut_ptr().cast();
            iovs[i].iov_len = buf.len();
            held[i] = Some(p);
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..want]` point at live buffers (the held packets'
        // frames are boxed: they do not move) and at `names`/`iovs`, which
        // outlive the call.
        let got = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                want as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let got = if got < 0 {
            let e = io::Error::last_os_error();
            for p in held.iter_mut().filter_map(Option::take) {
                pool.free(p);
            }
            return match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        } else {
            got as usize
        };
        let mut n = 0;
        for i in 0..want {
            let Some(mut p) = held[i].take() else {
                continue;
            };
            let len = msgs[i].msg_len as usize;
            let from = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(names[i].sin_addr.s_addr)),
                u16::from_be(names[i].sin_port),
            );
            let fits = i < got && names[i].sin_family == libc::AF_INET as libc::sa_family_t;
            if !fits || !p.set_len(OUTER + len) {
                pool.free(p);
                continue;
            }
            outer_headers(&mut p.data_mut()[..OUTER], from, self.local, len);
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += len as u64;
            match batch.push(p) {
                Ok(()) => n += 1,
                Err(p) => pool.free(p),
            }
        }
        Ok(n)
    }

    /// The whole batch in one `sendmmsg`: each frame's Geneve header and
    /// what follows, to its outer destination address.
    fn send(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut sending: [Option<Packet>; BATCH_SIZE] = std::array::from_fn(|_| None);
        // SAFETY: as in `recv`.
        let mut names: [libc::sockaddr_in; BATCH_SIZE] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH_SIZE] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH_SIZE] = unsafe { std::mem::zeroed() };
        let mut count = 0;
        for p in batch.drain() {
            let data = p.data();
            let dst = match (data.get(30..34), data.len() > OUTER, count < BATCH_SIZE) {
                (Some(d), true, true) => Ipv4Addr::new(d[0], d[1], d[2], d[3]),
                _ => {
                    self.stats.tx_dropped += 1;
                    pool.free(p);
                    continue;
                }
            };
            names[count] = sockaddr(SocketAddrV4::new(dst, self.peer_port));
            // The IPv4 packet whole, or the UDP payload for the UDP socket.
            let payload = &data[if self.raw.is_some() { 14 } else { OUTER }..];
            iovs[count].iov_base = payload.as_ptr() as *mut libc::c_void;
            iovs[count].iov_len = payload.len();
            let h = &mut msgs[count].msg_hdr;
            h.msg_name = (&mut names[count] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut iovs[count];
            h.msg_iovlen = 1;
            sending[count] = Some(p);
            count += 1;
        }
        let (mut done, mut ok) = (0, 0);
        while done < count {
            // SAFETY: `msgs[done..count]` point at the held packets' data
            // and at `names`/`iovs`, all alive across the call.
            let fd = self
                .raw
                .as_ref()
                .map_or(self.socket.as_raw_fd(), |r| r.as_raw_fd());
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[done..].as_mut_ptr(),
                    (count - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc <= 0 {
                // A full socket buffer or an unreachable peer costs the
                // datagram at the head; the rest get their own try.
                self.stats.tx_dropped += 1;
                done += 1;
                continue;
            }
            for iov in &iovs[done..done + rc as usize] {
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += iov.iov_len as u64;
            }
            done += rc as usize;
            ok += rc as usize;
        }
        for p in sending.iter_mut().filter_map(Option::take) {
            pool.free(p);
        }
        Ok(ok)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironflow_tunnel::geneve::{decap, write_headers, EncapParams, OvnMetadata, ENCAP_LEN};

    #[test]
    fn geneve_crosses_the_kernel_and_decapsulates_the_same() {
        // Loopback only, on Geneve's port as decapsulation expects.
        let port = ironflow_tunnel::geneve::GENEVE_PORT;
        let a = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), port);
        let b = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), port);
        let mut ua = UdpUnderlay::bind(a, port).unwrap();
        let mut ub = UdpUnderlay::bind(b, port).unwrap();
        let inner: Vec<u8> = (0..64u8).collect();
        let params = EncapParams {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: *a.ip(),
            dst_ip: *b.ip(),
            ttl: 64,
            src_port: 40000,
            meta: OvnMetadata {
                vni: 7,
                inport_key: 3,
                outport_key: 1,
            },
        };
        let mut frame = vec![0u8; ENCAP_LEN];
        assert!(write_headers(&mut frame, &inner, &params));
        frame.extend_from_slice(&inner);

        let mut pool = PacketPool::new(8);
        let mut batch = PacketBatch::new();
        batch.push(Packet::from_slice(&frame).unwrap()).ok();
        assert_eq!(ua.send(&mut pool, &mut batch).unwrap(), 1);
        let mut got = PacketBatch::new();
        for _ in 0..1000 {
            if ub.recv(&mut pool, &mut got).unwrap() > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let p = got.pop().expect("the datagram arrived");
        let d = decap(p.data()).expect("decapsulates");
        assert_eq!(d.src_ip, *a.ip());
        assert_eq!(d.meta, params.meta);
        assert_eq!(&p.data()[d.inner_offset..], &inner[..]);
        assert_eq!(ub.stats().rx_packets, 1);
        // Something that is no tunnel frame is dropped and counted.
        batch.push(Packet::from_slice(&[1, 2, 3]).unwrap()).ok();
        ua.send(&mut pool, &mut batch).unwrap();
        assert_eq!(ua.stats().tx_dropped, 1);
    }

    /// `cargo test --release -p ironflow-datapath --lib underlay_rate --
    /// --ignored --nocapture`: Geneve datagrams of 64-byte frames through
    /// the kernel over loopback, one thread sending and receiving.
    #[test]
    #[ignore]
    fn underlay_rate() {
        let a = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 16083);
        let b = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 16083);
        let mut ua = UdpUnderlay::bind(a, 16083).unwrap();
        let mut ub = UdpUnderlay::bind(b, 16083).unwrap();
        let params = EncapParams {
            src_mac: [0; 6],
            dst_mac: [0; 6],
            src_ip: *a.ip(),
            dst_ip: *b.ip(),
            ttl: 64,
            src_port: 40000,
            meta: OvnMetadata {
                vni: 7,
                inport_key: 3,
                outport_key: 1,
            },
        };
        let inner = [0u8; 64];
        let mut frame = vec![0u8; ENCAP_LEN];
        assert!(write_headers(&mut frame, &inner, &params));
        frame.extend_from_slice(&inner);
        let mut pool = PacketPool::new(1024);
        let (mut out, mut got) = (PacketBatch::new(), PacketBatch::new());
        let (mut sent, mut received) = (0u64, 0u64);
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(2) {
            for _ in 0..BATCH_SIZE {
                let mut p = pool.alloc();
                p.set_data(&frame);
                out.push(p).ok();
            }
            sent += ua.send(&mut pool, &mut out).unwrap() as u64;
            loop {
                let n = ub.recv(&mut pool, &mut got).unwrap();
                received += n as u64;
                pool.free_batch(&mut got);
                if n == 0 {
                    break;
                }
            }
        }
        let s = start.elapsed().as_secs_f64();
        eprintln!(
            "UDP underlay over loopback: sent {:.2} Mpps, received {:.2} Mpps (batches of {BATCH_SIZE})",
            sent as f64 / s / 1e6,
            received as f64 / s / 1e6
        );
    }

    #[test]
    fn a_busy_address_is_a_clear_error() {
        let a = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 16082);
        let _first = UdpUnderlay::bind(a, 16082).unwrap();
        let e = UdpUnderlay::bind(a, 16082).err().unwrap().to_string();
        assert!(e.contains("ovn-encap-ip"), "{e}");
    }
}
