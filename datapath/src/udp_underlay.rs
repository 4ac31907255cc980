//! The underlay through the kernel's UDP stack: Geneve packets leave by a
//! UDP socket bound to the node's encap IP and port 6081, and arrive the
//! same way, so the kernel routes, resolves neighbours and fragments.
//!
//! The datapath builds whole outer frames (Ethernet, IPv4, UDP, Geneve) as
//! it would for a raw underlay interface; this port sends what follows the
//! UDP header to the frame's destination address, and on receipt puts
//! outer headers back in front of the datagram (the sender's address as
//! the IPv4 source, no UDP checksum: the kernel has checked it) so that
//! decapsulation sees the same frames either way.

use crate::packet::{PacketBatch, PacketPool};
use crate::port::{Port, PortStats};
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

/// Outer Ethernet + IPv4 + UDP, which the kernel adds and removes.
const OUTER: usize = 14 + 20 + 8;

pub struct UdpUnderlay {
    name: String,
    socket: UdpSocket,
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
        Ok(UdpUnderlay {
            name: format!("udp:{local}"),
            socket,
            local,
            peer_port,
            stats: PortStats::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }
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
    use std::os::fd::AsRawFd;
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

impl Port for UdpUnderlay {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut n = 0;
        while !batch.is_full() {
            let mut p = pool.alloc();
            let buf = p.rx_buffer();
            let (len, from) = match self.socket.recv_from(&mut buf[OUTER..]) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    pool.free(p);
                    break;
                }
                Err(e) => {
                    pool.free(p);
                    return Err(e);
                }
            };
            let SocketAddr::V4(from) = from else {
                pool.free(p);
                continue;
            };
            outer_headers(&mut buf[..OUTER], from, self.local, len);
            if !p.set_len(OUTER + len) {
                pool.free(p);
                continue;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += len as u64;
            if let Err(p) = batch.push(p) {
                pool.free(p);
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut n = 0;
        for p in batch.drain() {
            let data = p.data();
            let sent = match data.get(30..34).zip(data.get(OUTER..)) {
                Some((dst, payload)) => {
                    let dst = Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]);
                    self.socket
                        .send_to(payload, SocketAddrV4::new(dst, self.peer_port))
                        .map(|_| payload.len())
                }
                None => Err(io::Error::new(ErrorKind::InvalidData, "not a tunnel frame")),
            };
            match sent {
                Ok(len) => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += len as u64;
                    n += 1;
                }
                Err(_) => self.stats.tx_dropped += 1,
            }
            pool.free(p);
        }
        Ok(n)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;
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

    #[test]
    fn a_busy_address_is_a_clear_error() {
        let a = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 16082);
        let _first = UdpUnderlay::bind(a, 16082).unwrap();
        let e = UdpUnderlay::bind(a, 16082).err().unwrap().to_string();
        assert!(e.contains("ovn-encap-ip"), "{e}");
    }
}
