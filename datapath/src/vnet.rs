//! The virtio-net header that AF_PACKET (`PACKET_VNET_HDR`) and TAP
//! (`IFF_VNET_HDR`) put in front of each frame, and what a port does with
//! the offload work it describes before the frame enters the datapath:
//! complete a partial checksum, cut a TSO/GSO super-frame into segments.
//!
//! Why the ports ask for the header at all: a pod whose eth0 keeps its
//! default offloads (TX checksum, TSO) hands the kernel TCP/UDP frames
//! whose checksum holds only the pseudo-header sum, and TCP super-frames
//! of up to 64 KiB. The kernel's own forwarding finishes that work at the
//! last moment, in the driver or in `validate_xmit_skb`, but a packet
//! socket or a TAP reader sees the frame before that: without the header
//! there is no way to tell a partial checksum from a wrong one, and stock
//! OVS on AF_PACKET forwards those frames as they are (0 bit/s of TCP,
//! see the ovn-lab recipe). With the header, every received frame says
//! which work is pending, and this module does it in software.
//!
//! The header is in the host's byte order: both AF_PACKET and a TAP
//! without `TUNSETVNETLE`/`TUNSETVNETBE` use the legacy virtio layout,
//! which is native-endian.

use crate::checksum::{checksum, fold64, pseudo_header_v4, pseudo_header_v6, sum_bytes};
use crate::packet::{Packet, PacketPool, MAX_RX_LEN};

/// Bytes of a `struct virtio_net_hdr` (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

/// A header asking for nothing: what the ports put in front of every
/// frame they send (the datapath's frames carry complete checksums).
pub const VNET_HDR_NONE: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start +
/// csum_offset` holds only the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel checked the checksum.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_*`: what kind of super-frame, if any.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
/// UDP fragmentation offload (UFO): IP fragments, never produced by a
/// current kernel; refused.
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
/// UDP segmentation (`UDP_SEGMENT` sockets): one datagram per segment.
pub const GSO_UDP_L4: u8 = 5;
/// Flag on a TCP type: the flow uses ECN (CWR only on the first segment).
pub const GSO_ECN: u8 = 0x80;

/// Most segments one super-frame may be cut into. TCP never uses an MSS
/// below 48 bytes (`tcp_min_snd_mss`), so a 64 KiB frame needs at most
/// about 1,370; a header asking for more is refused rather than allowed
/// to allocate thousands of frames.
pub const MAX_SEGMENTS: usize = 1500;

/// A parsed `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Header bytes (the kernel fills it loosely; segmentation works the
    /// headers out itself).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the frame.
    pub csum_start: u16,
    /// Where the checksum is stored, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// What a port did about offloads, as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// Frames whose partial checksum the port completed.
    pub csum_completed: u64,
    /// Super-frames cut into segments, and the segments they gave.
    pub gso_frames: u64,
    pub gso_segments: u64,
    /// Frames dropped for being longer than a packet frame holds (and not
    /// a super-frame that could be segmented).
    pub rx_oversize: u64,
    /// Frames dropped because their header asked for something the frame
    /// does not allow: a checksum position past its end, an unknown or
    /// unsupported GSO type, headers that do not parse.
    pub rx_malformed: u64,
    /// 802.1Q tags put back into received frames (AF_PACKET hands the tag
    /// over beside the frame).
    pub vlan_restored: u64,
}

/// Completes a partial checksum in place: sums `frame[start..]` (whose
/// checksum field holds the pseudo-header sum) and stores the result at
/// `start + offset`, as the kernel's `skb_checksum_help` does (a zero
/// result is stored as 0xffff, which UDP requires and TCP accepts). False,
/// and nothing written, if the field is not inside the frame.
pub fn complete_csum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let field = start + offset;
    if start >= frame.len() || field + 2 > frame.len() {
        return false;
    }
    let c = !fold64(sum_bytes(&frame[start..], 0));
    let c = if c == 0 { 0xffff } else { c };
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// A frame received in two pieces: the first [`MAX_RX_LEN`] bytes in a
/// packet frame, the rest (of a super-frame) in an overflow buffer.
#[derive(Clone, Copy)]
pub struct Split<'a> {
    pub head: &'a [u8],
    pub tail: &'a [u8],
}

impl<'a> Split<'a> {
    pub fn whole(frame: &'a [u8]) -> Split<'a> {
        Split {
            head: frame,
            tail: &[],
        }
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `dst.len()` bytes from offset `from`; false if they are not
    /// all there.
    fn copy_to(&self, from: usize, dst: &mut [u8]) -> bool {
        let end = from + dst.len();
        if end > self.len() {
            return false;
        }
        let h = self.head.len();
        if end <= h {
            dst.copy_from_slice(&self.head[from..end]);
        } else if from >= h {
            dst.copy_from_slice(&self.tail[from - h..end - h]);
        } else {
            let (a, b) = dst.split_at_mut(h - from);
            a.copy_from_slice(&self.head[from..]);
            b.copy_from_slice(&self.tail[..end - h]);
        }
        true
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Where a super-frame's headers are, checked against the frame.
struct Layout {
    l3: usize,
    l4: usize,
    /// Bytes of headers copied in front of every segment.
    hdrs: usize,
    v4: bool,
    tcp: bool,
    mss: usize,
    segments: usize,
}

impl Layout {
    fn of(frame: Split<'_>, hdr: &VnetHdr) -> Option<Layout> {
        let h = frame.head;
        let (tcp, want_v4) = match hdr.gso_type & !GSO_ECN {
            GSO_TCPV4 => (true, Some(true)),
            GSO_TCPV6 => (true, Some(false)),
            GSO_UDP_L4 => (false, None),
            _ => return None,
        };
        // Ethernet, then any 802.1Q/802.1ad tags.
        let mut l3 = 14;
        let mut ethertype = be16(h, 12)?;
        while ethertype == 0x8100 || ethertype == 0x88a8 {
            ethertype = be16(h, l3 + 2)?;
            l3 += 4;
        }
        let proto = if tcp { 6 } else { 17 };
        let (v4, l4) = match ethertype {
            0x0800 => {
                let vihl = *h.get(l3)?;
                let ihl = usize::from(vihl & 0xf) * 4;
                if vihl >> 4 != 4 || ihl < 20 || *h.get(l3 + 9)? != proto {
                    return None;
                }
                (true, l3 + ihl)
            }
            0x86dd => {
                if *h.get(l3)? >> 4 != 6 {
                    return None;
                }
                // Extension headers: the checksum start says where L4 is;
                // without one the next header must be L4 itself.
                let l4 = if hdr.flags & F_NEEDS_CSUM != 0 {
                    usize::from(hdr.csum_start)
                } else {
                    l3 + 40
                };
                if l4 < l3 + 40 || (l4 == l3 + 40 && *h.get(l3 + 6)? != proto) {
                    return None;
                }
                (false, l4)
            }
            _ => return None,
        };
        if want_v4.is_some_and(|w| w != v4) {
            return None;
        }
        let hdrs = if tcp {
            let doff = usize::from(*h.get(l4 + 12)? >> 4) * 4;
            if doff < 20 {
                return None;
            }
            l4 + doff
        } else {
            l4 + 8
        };
        let mss = usize::from(hdr.gso_size);
        if hdrs > h.len() || hdrs > frame.len() || mss == 0 || hdrs + mss > MAX_RX_LEN {
            return None;
        }
        let segments = (frame.len() - hdrs).div_ceil(mss).max(1);
        if segments > MAX_SEGMENTS {
            return None;
        }
        Some(Layout {
            l3,
            l4,
            hdrs,
            v4,
            tcp,
            mss,
            segments,
        })
    }
}

/// Cuts a TSO/GSO super-frame (TCP over IPv4 or IPv6, or UDP with
/// `UDP_SEGMENT`) into frames of at most `gso_size` payload bytes each,
/// the way the kernel's `tcp_gso_segment`/`__udp_gso_segment` would: the
/// headers are copied in front of each piece, the IPv4 total length, ID
/// (counting up) and header checksum or the IPv6 payload length are set,
/// TCP sequence numbers advance, FIN and PSH stay on the last segment and
/// CWR on the first, and every L4 checksum is computed from scratch.
/// Segments come from `pool` and go to `out`, in order. Returns how many,
/// or `None` (and nothing produced) if the header does not fit the frame.
pub fn segment(
    frame: Split<'_>,
    hdr: &VnetHdr,
    pool: &mut PacketPool,
    out: &mut dyn FnMut(Packet),
) -> Option<usize> {
    let lay = Layout::of(frame, hdr)?;
    let h = frame.head;
    let payload = frame.len() - lay.hdrs;
    let (l3, l4, hdrs) = (lay.l3, lay.l4, lay.hdrs);
    let ip_id = be16(h, l3 + 4)?;
    let seq = u32::from_be_bytes(h.get(l4 + 4..l4 + 8)?.try_into().ok()?);
    for k in 0..lay.segments {
        let off = k * lay.mss;
        let len = lay.mss.min(payload - off);
        let last = k + 1 == lay.segments;
        let seg_len = hdrs + len;
        let mut p = pool.alloc();
        let buf = p.rx_buffer();
        buf[..hdrs].copy_from_slice(&h[..hdrs]);
        // Layout::of checked hdrs + payload == frame.len().
        frame.copy_to(hdrs + off, &mut buf[hdrs..seg_len]);
        let buf = &mut buf[..seg_len];
        let l4_len = seg_len - l4;
        let pseudo = if lay.v4 {
            put16(buf, l3 + 2, (seg_len - l3) as u16);
            put16(buf, l3 + 4, ip_id.wrapping_add(k as u16));
            let ihl = l4 - l3;
            put16(buf, l3 + 10, 0);
            let c = checksum(&buf[l3..l3 + ihl]);
            put16(buf, l3 + 10, c);
            let addr =
                |at: usize| u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            let proto = if lay.tcp { 6 } else { 17 };
            pseudo_header_v4(addr(l3 + 12), addr(l3 + 16), proto, l4_len as u16)
        } else {
            put16(buf, l3 + 4, (seg_len - l3 - 40) as u16);
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&buf[l3 + 8..l3 + 24]);
            dst.copy_from_slice(&buf[l3 + 24..l3 + 40]);
            let proto = if lay.tcp { 6 } else { 17 };
            pseudo_header_v6(&src, &dst, proto, l4_len as u32)
        };
        let field = if lay.tcp {
            buf[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(off as u32).to_be_bytes());
            let mut flags = buf[l4 + 13];
            if k > 0 {
                flags &= !0x80; // CWR
            }
            if !last {
                flags &= !(0x01 | 0x08); // FIN, PSH
            }
            buf[l4 + 13] = flags;
            l4 + 16
        } else {
            put16(buf, l4 + 4, l4_len as u16);
            l4 + 6
        };
        put16(buf, field, 0);
        let c = !fold64(sum_bytes(&buf[l4..], pseudo));
        put16(buf, field, if c == 0 && !lay.tcp { 0xffff } else { c });
        p.set_len(seg_len);
        out(p);
    }
    Some(lay.segments)
}

/// Finishes one received frame: `p` holds its first `min(len,
/// MAX_RX_LEN)` bytes (just received into [`Packet::rx_buffer`]),
/// `overflow` the rest when the frame was longer and the port had room
/// for it, `hdr` its virtio-net header. A plain frame (its checksum
/// completed if the header asks) goes to `out`; a super-frame goes to
/// `out` as segments and its own frame back to `pool`; a frame that cannot
/// be handled is dropped, counted in `stats`, and its frame freed.
pub fn finish_rx(
    mut p: Packet,
    hdr: &[u8; VNET_HDR_LEN],
    len: usize,
    overflow: Option<&[u8]>,
    pool: &mut PacketPool,
    stats: &mut OffloadStats,
    out: &mut dyn FnMut(Packet),
) {
    let hdr = VnetHdr::parse(hdr);
    if hdr.gso_type == GSO_NONE {
        if len > MAX_RX_LEN {
            stats.rx_oversize += 1;
            pool.free(p);
            return;
        }
        p.set_len(len);
        if hdr.flags & F_NEEDS_CSUM != 0 {
            let (start, ofs) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
            if !complete_csum(p.data_mut(), start, ofs) {
                stats.rx_malformed += 1;
                pool.free(p);
                return;
            }
            stats.csum_completed += 1;
        }
        out(p);
        return;
    }
    let tail = if len <= MAX_RX_LEN {
        p.set_len(len);
        Some(&[][..])
    } else {
        p.set_len(MAX_RX_LEN);
        overflow.and_then(|o| o.get(..len - MAX_RX_LEN))
    };
    let Some(tail) = tail else {
        stats.rx_oversize += 1;
        pool.free(p);
        return;
    };
    let frame = Split {
        head: p.data(),
        tail,
    };
    match segment(frame, &hdr, pool, out) {
        Some(n) => {
            stats.gso_frames += 1;
            stats.gso_segments += n as u64;
        }
        None => stats.rx_malformed += 1,
    }
    pool.free(p);
}

/// Puts an 802.1Q/802.1ad tag back after the MAC addresses (AF_PACKET
/// strips it into its auxiliary data). False, and the packet unchanged,
/// if it has no headroom or is shorter than two addresses.
pub fn insert_vlan(p: &mut Packet, tpid: u16, tci: u16) -> bool {
    if p.len() < 12 || p.headroom() < 4 {
        return false;
    }
    if p.push_front(4).is_none() {
        return false;
    }
    let data = p.data_mut();
    data.copy_within(4..16, 0);
    put16(data, 12, tpid);
    put16(data, 14, tci);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::fold64;

    const MAC: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

    fn ipv4_tcp(payload: &[u8], flags: u8) -> Vec<u8> {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x08, 0x00]);
        let tot = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![
            0x30, 0x39, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0, 1, 0x50, flags,
        ];
        tcp.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(&tcp);
        f.extend_from_slice(payload);
        f
    }

    fn ipv6_udp(payload: &[u8]) -> Vec<u8> {
        let mut f = MAC.to_vec();
        f.extend_from_slice(&[0x86, 0xdd]);
        let pl = (8 + payload.len()) as u16;
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&pl.to_be_bytes());
        ip.extend_from_slice(&[17, 64]);
        ip.extend_from_slice(&[0xfd; 16]);
        ip.extend_from_slice(&[0xfe; 16]);
        f.extend_from_slice(&ip);
        let mut udp = vec![0x12, 0x34, 0x56, 0x78];
        udp.extend_from_slice(&pl.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&udp);
        f.extend_from_slice(payload);
        f
    }

    /// Checks IPv4/IPv6 and TCP/UDP checksums of a frame from scratch.
    fn l4_ok(f: &[u8]) -> bool {
        let (l3, v4) = (14, f[12] == 0x08);
        let (l4, proto, pseudo) = if v4 {
            let ihl = usize::from(f[l3] & 0xf) * 4;
            if checksum(&f[l3..l3 + ihl]) != 0 {
                return false;
            }
            let a = |i: usize| u32::from_be_bytes(f[i..i + 4].try_into().unwrap());
            let l4 = l3 + ihl;
            let len = (f.len() - l4) as u16;
            (
                l4,
                f[l3 + 9],
                pseudo_header_v4(a(l3 + 12), a(l3 + 16), f[l3 + 9], len),
            )
        } else {
            let l4 = l3 + 40;
            let s: [u8; 16] = f[l3 + 8..l3 + 24].try_into().unwrap();
            let d: [u8; 16] = f[l3 + 24..l3 + 40].try_into().unwrap();
            (
                l4,
                f[l3 + 6],
                pseudo_header_v6(&s, &d, f[l3 + 6], (f.len() - l4) as u32),
            )
        };
        let _ = proto;
        fold64(sum_bytes(&f[l4..], pseudo)) == 0xffff
    }

    /// Makes the L4 checksum partial (the pseudo-header sum, uncomplemented).
    fn make_partial(f: &mut [u8], field: usize) {
        let l4 = 34;
        let a = |i: usize| u32::from_be_bytes(f[i..i + 4].try_into().unwrap());
        let ps = pseudo_header_v4(a(26), a(30), f[23], (f.len() - l4) as u16);
        put16(f, field, fold64(ps));
    }

    #[test]
    fn header_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), h);
        assert_eq!(VnetHdr::parse(&VNET_HDR_NONE), VnetHdr::default());
    }

    #[test]
    fn partial_tcp_checksum_is_completed() {
        let mut f = ipv4_tcp(b"hello, world", 0x18);
        make_partial(&mut f, 34 + 16);
        assert!(!l4_ok(&f));
        assert!(complete_csum(&mut f, 34, 16));
        assert!(l4_ok(&f));
        // Out-of-frame positions are refused without writing.
        let before = f.clone();
        let n = f.len();
        assert!(!complete_csum(&mut f, n, 0));
        assert!(!complete_csum(&mut f, 34, n));
        assert!(!complete_csum(&mut f, 34, n - 35));
        assert_eq!(f, before);
    }

    #[test]
    fn finish_rx_completes_and_passes_plain_frames() {
        let mut pool = PacketPool::new(8);
        let mut stats = OffloadStats::default();
        let mut f = ipv4_tcp(&[7; 100], 0x18);
        make_partial(&mut f, 50);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut p = pool.alloc();
        p.rx_buffer()[..f.len()].copy_from_slice(&f);
        let mut got = Vec::new();
        finish_rx(
            p,
            &hdr.to_bytes(),
            f.len(),
            None,
            &mut pool,
            &mut stats,
            &mut |p| got.push(p),
        );
        assert_eq!(got.len(), 1);
        assert!(l4_ok(got[0].data()));
        assert_eq!(stats.csum_completed, 1);
        // A header pointing past the frame: dropped, counted.
        let bad = VnetHdr {
            csum_start: 2000,
            ..hdr
        };
        let p = pool.alloc();
        finish_rx(
            p,
            &bad.to_bytes(),
            60,
            None,
            &mut pool,
            &mut stats,
            &mut |p| got.push(p),
        );
        // Too long for a frame, not a super-frame: dropped, counted.
        let p = pool.alloc();
        finish_rx(
            p,
            &VNET_HDR_NONE,
            5000,
            None,
            &mut pool,
            &mut stats,
            &mut |p| got.push(p),
        );
        assert_eq!(got.len(), 1);
        assert_eq!((stats.rx_malformed, stats.rx_oversize), (1, 1));
    }

    fn tso(payload_len: usize, mss: u16) -> (Vec<u8>, VnetHdr) {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 + 3) as u8).collect();
        let mut f = ipv4_tcp(&payload, 0x19 | 0x80); // FIN PSH ACK CWR
        make_partial(&mut f, 50);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 54,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
        };
        (f, hdr)
    }

    #[test]
    fn tcp_v4_super_frame_is_segmented() {
        let (f, hdr) = tso(5000, 1448);
        let mut pool = PacketPool::new(8);
        let mut segs = Vec::new();
        let n = segment(Split::whole(&f), &hdr, &mut pool, &mut |p| segs.push(p)).unwrap();
        assert_eq!(n, 4);
        let mut payload = Vec::new();
        for (k, s) in segs.iter().enumerate() {
            let d = s.data();
            assert!(l4_ok(d), "segment {k}");
            assert_eq!(usize::from(be16(d, 16).unwrap()), d.len() - 14);
            assert_eq!(be16(d, 18).unwrap(), 0x1234 + k as u16);
            let seq = u32::from_be_bytes(d[38..42].try_into().unwrap());
            assert_eq!(seq as usize, 0x1000 + k * 1448);
            let flags = d[47];
            assert_eq!(flags & 0x80 != 0, k == 0, "CWR on the first only");
            assert_eq!(flags & 0x09 != 0, k == 3, "FIN/PSH on the last only");
            assert_eq!(flags & 0x10, 0x10, "ACK on all");
            payload.extend_from_slice(&d[54..]);
        }
        assert_eq!(payload, f[54..]);
        assert_eq!(segs[3].len(), 54 + 5000 - 3 * 1448);
    }

    #[test]
    fn split_super_frame_is_segmented_across_the_pieces() {
        let (f, hdr) = tso(60_000, 1448);
        let (head, tail) = f.split_at(MAX_RX_LEN);
        let mut pool = PacketPool::new(64);
        let mut stats = OffloadStats::default();
        let mut p = pool.alloc();
        p.rx_buffer().copy_from_slice(head);
        let mut overflow = vec![0u8; 65536];
        overflow[..tail.len()].copy_from_slice(tail);
        let mut segs = Vec::new();
        finish_rx(
            p,
            &hdr.to_bytes(),
            f.len(),
            Some(&overflow),
            &mut pool,
            &mut stats,
            &mut |p| segs.push(p),
        );
        assert_eq!(segs.len(), 60_000usize.div_ceil(1448));
        assert_eq!(
            (stats.gso_frames, stats.gso_segments),
            (1, segs.len() as u64)
        );
        let mut payload = Vec::new();
        for s in &segs {
            assert!(l4_ok(s.data()));
            payload.extend_from_slice(&s.data()[54..]);
        }
        assert_eq!(payload, f[54..]);
        // Without the overflow the frame is counted and dropped.
        let p = pool.alloc();
        finish_rx(
            p,
            &hdr.to_bytes(),
            f.len(),
            None,
            &mut pool,
            &mut stats,
            &mut |p| segs.push(p),
        );
        assert_eq!(stats.rx_oversize, 1);
    }

    #[test]
    fn udp_l4_over_ipv6_is_segmented() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let f = ipv6_udp(&payload);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: 62,
            gso_size: 1200,
            csum_start: 54,
            csum_offset: 6,
        };
        let mut pool = PacketPool::new(8);
        let mut segs = Vec::new();
        assert_eq!(
            segment(Split::whole(&f), &hdr, &mut pool, &mut |p| segs.push(p)),
            Some(3)
        );
        let mut got = Vec::new();
        for s in &segs {
            let d = s.data();
            assert!(l4_ok(d));
            assert_eq!(
                usize::from(be16(d, 18).unwrap()),
                d.len() - 54,
                "IPv6 payload length"
            );
            assert_eq!(
                usize::from(be16(d, 58).unwrap()),
                d.len() - 54,
                "UDP length"
            );
            got.extend_from_slice(&d[62..]);
        }
        assert_eq!(got, payload);
    }

    #[test]
    fn bad_super_frames_are_refused_not_panicked() {
        let (f, hdr) = tso(3000, 1448);
        let mut pool = PacketPool::new(8);
        let mut n = 0;
        let mut count = |_: Packet| n += 1;
        for bad in [
            VnetHdr { gso_size: 0, ..hdr },
            VnetHdr { gso_size: 1, ..hdr },
            VnetHdr {
                gso_size: 4000,
                ..hdr
            },
            VnetHdr {
                gso_type: GSO_TCPV6,
                ..hdr
            },
            VnetHdr {
                gso_type: GSO_UDP,
                ..hdr
            },
            VnetHdr { gso_type: 9, ..hdr },
        ] {
            assert_eq!(
                segment(Split::whole(&f), &bad, &mut pool, &mut count),
                None,
                "{bad:?}"
            );
        }
        // Every truncation and a few corruptions of the frame.
        for cut in 0..80 {
            let _ = segment(Split::whole(&f[..cut]), &hdr, &mut pool, &mut count);
        }
        let mut g = f.clone();
        g[46] = 0x10; // TCP data offset 4 bytes
        assert_eq!(segment(Split::whole(&g), &hdr, &mut pool, &mut count), None);
        let mut g = f.clone();
        g[12..14].copy_from_slice(&[0x81, 0x00]);
        let _ = segment(Split::whole(&g), &hdr, &mut pool, &mut count);
        let _ = &mut count;
    }

    #[test]
    fn vlan_tag_goes_back_after_the_macs() {
        let f = ipv4_tcp(b"x", 0x10);
        let mut p = Packet::from_slice(&f).unwrap();
        assert!(insert_vlan(&mut p, 0x8100, 0x0064));
        let d = p.data();
        assert_eq!(&d[..12], &MAC);
        assert_eq!(&d[12..16], &[0x81, 0x00, 0x00, 0x64]);
        assert_eq!(&d[16..], &f[12..]);
        let mut short = Packet::from_slice(&[0; 6]).unwrap();
        assert!(!insert_vlan(&mut short, 0x8100, 1));
    }
}
