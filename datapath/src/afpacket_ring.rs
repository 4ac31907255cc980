//! Memory-mapped packet rings for the AF_PACKET port
//! ([`crate::afpacket`]): `PACKET_RX_RING` and `PACKET_TX_RING` in
//! `TPACKET_V2` layout, shared with the kernel through one `mmap`.
//!
//! The kernel copies each received frame straight into a ring slot from
//! the sender's context (`tpacket_rcv`): no socket buffer is cloned,
//! queued, dequeued and freed per packet as under `recvmmsg`, and the
//! port copies it from the slot into a pool frame. To send, the port
//! writes frames into TX slots and kicks the socket with one empty
//! `send` per batch (`tpacket_snd` walks the slots).
//!
//! Why TPACKET_V2 and not V3: a V3 RX ring hands frames over a whole
//! block at a time, when the block is full or when its retire timer
//! fires (`tp_retire_blk_tov`, in milliseconds, so 1 ms at least), and the
//! timer restarts with each block. Measured on the project's VM (a C
//! probe: one 60-byte frame every 2 ms into a veth, polling the ring for
//! it): with V3 and a 1 ms timeout a frame became visible after 0.92 ms
//! (p50), with V2 after 7–10 µs. A pod's ping-pong goes through two RX
//! rings per round trip (request and reply), so V3 would take the ~30–50
//! µs round trips past 1.8 ms (the goal is 0.1 ms). Blocks small enough to fill at low rates would
//! not hold a super-frame either. V2 hands over each frame as soon as it
//! is written, with its own status word.
//!
//! What the mmsg mode does is kept:
//!
//! - **virtio-net header**: with `PACKET_VNET_HDR` (set before the rings,
//!   the kernel refuses it after), `tpacket_rcv` writes the header just in
//!   front of the MAC header (at `tp_mac - 10`), and `tpacket_snd` reads
//!   one at the start of each TX slot's data.
//! - **Super-frames**: a slot is 2 KiB, so a TSO/GSO super-frame does not
//!   fit. With `PACKET_COPY_THRESH` the kernel then puts the truncated
//!   head in the slot, marks it `TP_STATUS_COPY`, and queues the whole
//!   frame on the socket as if there were no ring; the port reads it from
//!   there with `recvmsg` into a 64 KiB overflow buffer (allocated on the
//!   first super-frame) and segments it. Slot and copy stay in order: the
//!   kernel queues the copy before it marks the slot ready. Without
//!   segmentation ([`AfPacketOptions::segment_gso`] off), or when the
//!   socket's receive buffer is full, the frame stays truncated and is
//!   counted as oversize and dropped.
//! - **VLAN tags**: from the slot header (`tp_vlan_tci`, `tp_vlan_tpid`,
//!   `TP_STATUS_VLAN_VALID`), put back into the frame.
//! - **MTU**: with a virtio-net header on, `tpacket_snd` does not check
//!   frame lengths against the MTU (`sendmsg` does); the port does, with
//!   the interface's MTU read again every second.
//!
//! TX slots stay the kernel's until the socket buffer made of them is
//! freed (after a veth delivered it, once the receiving socket let it
//! go), so a full TX ring means the other side is not keeping up: the
//! port then drops, and counts, what does not fit. A kick that the
//! kernel cuts short (ENOBUFS, EAGAIN) leaves the remaining slots queued
//! in order; the next `send`, or `recv`, kicks again. Slots are never
//! taken back: the kernel walks them from a head of its own, which must
//! stay in step with the port's.
//!
//! [`AfPacketOptions::segment_gso`]: crate::afpacket::AfPacketOptions::segment_gso

use crate::afpacket::OVERFLOW;
use crate::packet::{Packet, PacketPool, MAX_RX_LEN};
use crate::vnet::{finish_rx, insert_vlan, OffloadStats, VNET_HDR_LEN};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Bytes of each slot, RX and TX: an MTU-sized frame with the slot
/// header, address and virtio-net header in front of it (76 bytes on RX)
/// fits; a jumbo frame or a super-frame takes the copy path on RX.
pub const SLOT_SIZE: usize = 2048;

/// Bytes of each ring block (the kernel's unit of allocation). Blocks
/// are a whole number of slots, so slot `i` is at `i * SLOT_SIZE`.
const BLOCK_SIZE: usize = 64 << 10;

/// Where `tpacket_snd` looks for a TX slot's data (`TPACKET2_HDRLEN -
/// sizeof(struct sockaddr_ll)`): the virtio-net header, then the frame.
const TX_DATA: usize = libc::TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>();

/// The longest frame a TX slot holds.
pub const TX_MAX_FRAME: usize = SLOT_SIZE - TX_DATA - VNET_HDR_LEN;

const ETH_HLEN: usize = 14;

/// RX polls between two kicks of a TX ring whose last kick was cut short.
const STALL_RETRY_POLLS: u32 = 64;

/// How often the MTU the TX path checks against is read again.
const MTU_REFRESH: Duration = Duration::from_secs(1);

/// One of the two rings in the shared mapping.
struct Ring {
    base: NonNull<u8>,
    slots: usize,
    /// The next slot to look at: the kernel's and ours stay in step.
    head: usize,
}

impl Ring {
    fn slot(&self, i: usize) -> *mut u8 {
        debug_assert!(i < self.slots);
        // SAFETY: `i < slots` (callers pass `head`), and the ring spans `slots * SLOT_SIZE`
        // bytes of the mapping from `base`.
        unsafe { self.base.as_ptr().add(i * SLOT_SIZE) }
    }

    /// The status word at the start of a slot (`tp_status`).
    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: every slot starts with a 4-byte aligned `u32` (slots
        // are 2 KiB apart in a page-aligned mapping) that lives as long
        // as the mapping, which outlives `&self`; the kernel and the port
        // only ever touch it atomically (the kernel's writes are plain
        // stores followed by barriers, the C equivalent).
        unsafe { AtomicU32::from_ptr(self.slot(i).cast()) }
    }

    fn advance(&mut self) {
        self.head += 1;
        if self.head == self.slots {
            self.head = 0;
        }
    }
}

/// What a received slot holds, checked against the slot's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RxSlot {
    /// Where the frame starts in the slot (its virtio-net header is the
    /// `VNET_HDR_LEN` bytes before).
    pub mac: usize,
    /// Bytes of the frame in the slot.
    pub snap: usize,
    /// Bytes of the whole frame.
    pub len: usize,
    pub status: u32,
    /// The tag the kernel took off, as (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
}

/// Reads and checks a received slot's header: `None` if its offsets and
/// lengths do not describe a frame inside the slot with a virtio-net
/// header in front of it (the kernel never writes such a slot; the check
/// keeps a bad one from reading outside it).
pub(crate) fn parse_rx_slot(slot: &[u8]) -> Option<RxSlot> {
    let u32_at = |o: usize| Some(u32::from_ne_bytes(slot.get(o..o + 4)?.try_into().ok()?));
    let u16_at = |o: usize| Some(u16::from_ne_bytes(slot.get(o..o + 2)?.try_into().ok()?));
    // struct tpacket2_hdr: status, len, snaplen, mac, net, sec, nsec,
    // vlan_tci, vlan_tpid.
    let status = u32_at(0)?;
    let len = u32_at(4)? as usize;
    let snap = u32_at(8)? as usize;
    let mac = usize::from(u16_at(12)?);
    let (tci, tpid) = (u16_at(24)?, u16_at(26)?);
    if mac < size_of::<libc::tpacket2_hdr>() + VNET_HDR_LEN
        || mac.checked_add(snap)? > slot.len()
        || snap > len
    {
        return None;
    }
    let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0 {
            tpid
        } else {
            0x8100
        };
        (tpid, tci)
    });
    Some(RxSlot {
        mac,
        snap,
        len,
        status,
        vlan,
    })
}

/// What [`Rings::send`] did.
pub(crate) struct Sent {
    /// Frames put on the ring, and their bytes.
    pub queued: usize,
    pub bytes: u64,
    /// Frames dropped: too long for the interface or a slot, shorter than
    /// a link header, or no free slot.
    pub dropped: usize,
    /// The kick's error, if it is not one that says "later".
    pub err: Option<io::Error>,
}

/// The RX and TX rings of one packet socket.
pub(crate) struct Rings {
    map: NonNull<u8>,
    map_len: usize,
    rx: Ring,
    tx: Ring,
    ifindex: u32,
    /// The interface's MTU, and when it was read.
    mtu: usize,
    mtu_read: Instant,
    /// A kick was cut short: slots are still queued for the kernel.
    tx_stalled: bool,
    /// RX polls since the last kick while stalled.
    stall_polls: u32,
    /// Where super-frames read from the socket go (see the module docs);
    /// allocated on the first one.
    overflow: Option<Box<[u8]>>,
}

// SAFETY: the mapping belongs to this value alone (it is unmapped on
// drop); the only other party is the kernel, and each slot's status word
// says whose it is. Nothing in it is tied to the thread that made it.
unsafe impl Send for Rings {}

fn setopt<T>(fd: &OwnedFd, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size passed, for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The MTU of interface `ifindex`, asked through `fd` (so in the
/// socket's network namespace).
fn mtu_of(fd: RawFd, ifindex: u32) -> io::Result<usize> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    ifr.ifr_ifru.ifru_ifindex = ifindex as libc::c_int;
    // SAFETY: `ifr` is a live ifreq the kernel fills in (the name, then
    // the MTU); no other memory is touched.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFNAME, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut ifr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU filled in the `mtu` member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(usize::try_from(mtu).unwrap_or(0))
}

impl Rings {
    /// Sets up both rings on `fd`, a packet socket not bound yet with
    /// `PACKET_VNET_HDR` already on, `slots` slots each (rounded up to a
    /// whole block). `copy_big`: have the kernel queue frames too long for
    /// a slot on the socket (super-frames, see the module docs).
    pub(crate) fn new(
        fd: &OwnedFd,
        ifindex: u32,
        slots: usize,
        copy_big: bool,
    ) -> io::Result<Rings> {
        if slots == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no ring slots asked for",
            ));
        }
        let per_block = BLOCK_SIZE / SLOT_SIZE;
        let blocks = slots.min(1 << 20).div_ceil(per_block);
        let slots = blocks * per_block;
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setopt(fd, libc::PACKET_VERSION, &version).map_err(|e| ctx("PACKET_VERSION", e))?;
        // Without it a TX slot the kernel cannot send stops the ring
        // (TP_STATUS_WRONG_FORMAT) until someone clears it.
        let one: libc::c_int = 1;
        setopt(fd, libc::PACKET_LOSS, &one).map_err(|e| ctx("PACKET_LOSS", e))?;
        if copy_big {
            setopt(fd, libc::PACKET_COPY_THRESH, &one).map_err(|e| ctx("PACKET_COPY_THRESH", e))?;
        }
        let req = libc::tpacket_req {
            tp_block_size: BLOCK_SIZE as libc::c_uint,
            tp_block_nr: blocks as libc::c_uint,
            tp_frame_size: SLOT_SIZE as libc::c_uint,
            tp_frame_nr: slots as libc::c_uint,
        };
        setopt(fd, libc::PACKET_RX_RING, &req).map_err(|e| ctx("PACKET_RX_RING", e))?;
        setopt(fd, libc::PACKET_TX_RING, &req).map_err(|e| ctx("PACKET_TX_RING", e))?;
        let ring_len = slots * SLOT_SIZE;
        let map_len = 2 * ring_len;
        // SAFETY: a new shared mapping of the socket's rings (RX then TX,
        // as the kernel lays them out), of the length they were set up
        // with; nothing else is at the address the kernel picks.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ctx("mmap of the rings", io::Error::last_os_error()));
        }
        let map = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        // SAFETY: the TX ring starts `ring_len` bytes into the mapping.
        let tx_base = unsafe { NonNull::new_unchecked(map.as_ptr().add(ring_len)) };
        let mut rings = Rings {
            map,
            map_len,
            rx: Ring {
                base: map,
                slots,
                head: 0,
            },
            tx: Ring {
                base: tx_base,
                slots,
                head: 0,
            },
            ifindex,
            mtu: 0,
            mtu_read: Instant::now(),
            tx_stalled: false,
            stall_polls: 0,
            overflow: None,
        };
        // After the mapping is owned: an error here unmaps it.
        rings.mtu = mtu_of(fd.as_raw_fd(), ifindex).map_err(|e| ctx("interface MTU", e))?;
        Ok(rings)
    }

    /// Takes up to `max` frames off the RX ring, each (or its segments)
    /// to `out` with its VLAN tag put back; frames that cannot be handled
    /// are counted in `offload` and dropped. Returns the slots consumed.
    pub(crate) fn recv(
        &mut self,
        fd: &OwnedFd,
        max: usize,
        pool: &mut PacketPool,
        offload: &mut OffloadStats,
        out: &mut dyn FnMut(Packet),
    ) -> usize {
        // Slots left queued by a cut-short kick go out with the next
        // batch's kick; if no batch comes, from here, though not on every
        // poll: an interface that is down would cost a system call per
        // worker round.
        if self.tx_stalled {
            self.stall_polls += 1;
            if self.stall_polls >= STALL_RETRY_POLLS {
                self.stall_polls = 0;
                self.kick(fd);
            }
        }
        let mut vlans = 0;
        let mut taken = 0;
        while taken < max {
            let i = self.rx.head;
            if self.rx.status(i).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the slot is the port's until its status goes back
            // to TP_STATUS_KERNEL below: the kernel does not write it.
            let slot = unsafe { std::slice::from_raw_parts(self.rx.slot(i), SLOT_SIZE) };
            let mut deliver = |mut p: Packet, vlan: Option<(u16, u16)>| {
                if let Some((tpid, tci)) = vlan {
                    if insert_vlan(&mut p, tpid, tci) {
                        vlans += 1;
                    }
                }
                out(p);
            };
            match parse_rx_slot(slot) {
                None => offload.rx_malformed += 1,
                Some(s) if s.status & libc::TP_STATUS_COPY != 0 => {
                    let overflow = self
                        .overflow
                        .get_or_insert_with(|| vec![0u8; OVERFLOW].into_boxed_slice());
                    recv_copy(fd, overflow, s.vlan, pool, offload, &mut deliver);
                }
                Some(s) if s.snap < s.len => offload.rx_oversize += 1,
                Some(s) => {
                    let mut hdr = [0u8; VNET_HDR_LEN];
                    hdr.copy_from_slice(&slot[s.mac - VNET_HDR_LEN..s.mac]);
                    let frame = &slot[s.mac..s.mac + s.len];
                    let head = s.len.min(MAX_RX_LEN);
                    let mut p = pool.alloc();
                    p.rx_buffer()[..head].copy_from_slice(&frame[..head]);
                    let vlan = s.vlan;
                    finish_rx(
                        p,
                        &hdr,
                        s.len,
                        Some(&frame[head..]),
                        pool,
                        offload,
                        &mut |p| deliver(p, vlan),
                    );
                }
            }
            self.rx
                .status(i)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.rx.advance();
            taken += 1;
        }
        offload.vlan_restored += vlans;
        taken
    }

    /// The longest untagged frame the interface takes now: its MTU and
    /// link header (an 802.1Q-tagged frame may be 4 bytes longer, as
    /// `sendmsg` allows). The MTU is read again once a second at most,
    /// looked at once per batch (a clock read per frame shows in
    /// profiles).
    fn max_frame(&mut self, fd: &OwnedFd) -> usize {
        if self.mtu_read.elapsed() >= MTU_REFRESH {
            self.mtu_read = Instant::now();
            if let Ok(m) = mtu_of(fd.as_raw_fd(), self.ifindex) {
                self.mtu = m;
            }
        }
        self.mtu + ETH_HLEN
    }

    /// Puts `frames` on the TX ring and kicks the kernel.
    pub(crate) fn send<'a>(
        &mut self,
        fd: &OwnedFd,
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> Sent {
        let total = frames.len();
        let (mut queued, mut bytes, mut dropped) = (0usize, 0u64, 0usize);
        let max = self.max_frame(fd);
        for f in frames {
            let tagged = f.get(12..14) == Some(&[0x81, 0x00]);
            let limit = (max + if tagged { 4 } else { 0 }).min(TX_MAX_FRAME);
            if f.len() < ETH_HLEN || f.len() > limit {
                dropped += 1;
                continue;
            }
            let i = self.tx.head;
            let st = self.tx.status(i).load(Ordering::Acquire);
            if st & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0 {
                // Full: the kernel still holds the slot. The rest waits
                // behind it, so drop it all.
                dropped = total - queued;
                break;
            }
            let slot = self.tx.slot(i);
            // SAFETY: the slot is free (its status is not SEND_REQUEST or
            // SENDING), so the kernel does not read it until the status
            // store below; the writes stay inside the slot (`f.len() <=
            // TX_MAX_FRAME`).
            unsafe {
                // A header that asks for nothing, but whose `hdr_len`
                // makes the kernel copy the whole frame into the socket
                // buffer's linear part, as `sendmsg` does, rather than
                // hang the slot's page on it as a fragment: the receiving
                // stack then pulls no headers out of fragments
                // (`forwarding_cost`: 1.4–1.5 µs per forwarded packet
                // against 1.8 µs with fragments).
                let hdr = slot.add(TX_DATA);
                std::ptr::write_bytes(hdr, 0, VNET_HDR_LEN);
                let hdr_len = (f.len() as u16).to_ne_bytes();
                std::ptr::copy_nonoverlapping(hdr_len.as_ptr(), hdr.add(2), 2);
                std::ptr::copy_nonoverlapping(f.as_ptr(), hdr.add(VNET_HDR_LEN), f.len());
                // tp_len: the header and the frame.
                let tp_len = ((VNET_HDR_LEN + f.len()) as u32).to_ne_bytes();
                std::ptr::copy_nonoverlapping(tp_len.as_ptr(), slot.add(4), 4);
            }
            self.tx
                .status(i)
                .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx.advance();
            queued += 1;
            bytes += f.len() as u64;
        }
        let err = if queued > 0 || self.tx_stalled {
            self.kick(fd)
        } else {
            None
        };
        Sent {
            queued,
            bytes,
            dropped,
            err,
        }
    }

    /// Has the kernel send what the TX ring holds. Errors that mean "not
    /// now" leave the slots queued and the next call kicks again; others
    /// are returned.
    fn kick(&mut self, fd: &OwnedFd) -> Option<io::Error> {
        // SAFETY: an empty send: no buffer is passed.
        let r = unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if r >= 0 {
            self.tx_stalled = false;
            return None;
        }
        let e = io::Error::last_os_error();
        self.tx_stalled = true;
        match e.raw_os_error().unwrap_or(0) {
            // As with `sendmmsg`, an interface that is down or gone is
            // not the port's error (a vanished one is detached by the
            // daemon, and its socket's error shows on an idle RX poll).
            libc::EAGAIN | libc::ENOBUFS | libc::EINTR | libc::ENETDOWN | libc::ENXIO => None,
            _ => Some(e),
        }
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that length; nothing
        // refers to it past this point.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}

/// Reads the whole of a frame the kernel queued on the socket because it
/// did not fit its slot (`TP_STATUS_COPY`), and hands it, or its
/// segments, to `out`.
fn recv_copy(
    fd: &OwnedFd,
    overflow: &mut [u8],
    vlan: Option<(u16, u16)>,
    pool: &mut PacketPool,
    offload: &mut OffloadStats,
    out: &mut dyn FnMut(Packet, Option<(u16, u16)>),
) {
    let mut hdr = [0u8; VNET_HDR_LEN];
    let mut p = pool.alloc();
    let buf = p.rx_buffer();
    let mut iov = [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: VNET_HDR_LEN,
        },
        libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        },
        libc::iovec {
            iov_base: overflow.as_mut_ptr().cast(),
            iov_len: overflow.len(),
        },
    ];
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    // SAFETY: the message points at `hdr`, the packet's frame and
    // `overflow`, all live and not otherwise touched during the call,
    // with their own lengths.
    let r = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    let len = (r as usize).checked_sub(VNET_HDR_LEN);
    let Some(len) = len.filter(|_| r >= 0 && msg.msg_flags & libc::MSG_TRUNC == 0) else {
        // Not there (cannot happen: the kernel queues it before marking
        // the slot), or longer than the overflow buffer.
        offload.rx_oversize += 1;
        pool.free(p);
        return;
    };
    let tail = &overflow[..len.saturating_sub(MAX_RX_LEN)];
    finish_rx(p, &hdr, len, Some(tail), pool, offload, &mut |p| {
        out(p, vlan)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_with(status: u32, len: u32, snap: u32, mac: u16, tci: u16, tpid: u16) -> Vec<u8> {
        let mut s = vec![0u8; SLOT_SIZE];
        s[0..4].copy_from_slice(&status.to_ne_bytes());
        s[4..8].copy_from_slice(&len.to_ne_bytes());
        s[8..12].copy_from_slice(&snap.to_ne_bytes());
        s[12..14].copy_from_slice(&mac.to_ne_bytes());
        s[24..26].copy_from_slice(&tci.to_ne_bytes());
        s[26..28].copy_from_slice(&tpid.to_ne_bytes());
        s
    }

    use crate::afpacket::{AfPacketIo, AfPacketOptions, AfPacketPort};
    use crate::checksum::{checksum, fold64, pseudo_header_v4, sum_bytes};
    use crate::packet::{PacketBatch, BATCH_SIZE};
    use crate::port::Port;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::process::Command;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    fn sh(args: &[&str]) -> Result<(), String> {
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
        Ok(())
    }

    fn is_root() -> bool {
        // SAFETY: no arguments, no memory.
        unsafe { libc::geteuid() == 0 }
    }

    /// A veth pair: `host` here, `peer` in a namespace of its own, both
    /// up, IPv6 off (the kernel sends nothing of its own). Dropping it
    /// deletes both.
    struct Veth {
        host: String,
        peer: String,
        ns: String,
    }

    impl Veth {
        fn new() -> Veth {
            static N: AtomicU32 = AtomicU32::new(0);
            let id = format!(
                "{}{}",
                std::process::id() % 100_000,
                N.fetch_add(1, Ordering::Relaxed)
            );
            let v = Veth {
                host: format!("ifrh{id}"),
                peer: format!("ifrp{id}"),
                ns: format!("ifr-ns{id}"),
            };
            sh(&["ip", "netns", "add", &v.ns]).expect("netns");
            sh(&[
                "ip", "link", "add", &v.host, "type", "veth", "peer", "name", &v.peer,
            ])
            .expect("veth");
            let _ = std::fs::write(
                format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", v.host),
                "1",
            );
            sh(&["ip", "link", "set", &v.peer, "netns", &v.ns]).expect("move the peer");
            let exec = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", v.ns.as_str()];
                all.extend_from_slice(args);
                sh(&all)
            };
            exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]).expect("sysctl");
            exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]).expect("sysctl");
            exec(&["ip", "link", "set", &v.peer, "up"]).expect("peer up");
            sh(&["ip", "link", "set", &v.host, "up"]).expect("host up");
            v
        }

        fn exec(&self, args: &[&str]) {
            let mut all = vec!["ip", "netns", "exec", self.ns.as_str()];
            all.extend_from_slice(args);
            sh(&all).expect("command in the namespace");
        }

        /// Runs `f` on a thread inside the namespace: sockets it opens
        /// stay there.
        fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
            let path = format!("/run/netns/{}", self.ns);
            std::thread::spawn(move || {
                let ns = std::fs::File::open(&path).expect("open the namespace");
                // SAFETY: switches this thread's network namespace only.
                let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in the namespace")
        }
    }

    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = sh(&["ip", "link", "del", &self.host]);
            let _ = sh(&["ip", "netns", "del", &self.ns]);
        }
    }

    const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

    fn test_frame(seq: u32, len: usize) -> Vec<u8> {
        let mut f = vec![0x02, 0xc0, 0xff, 0xee, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ETHERTYPE);
        f.extend_from_slice(&seq.to_be_bytes());
        f.resize(len, 0xa5);
        f
    }

    fn seq_of(f: &[u8]) -> Option<u32> {
        (f.get(12..14)? == ETHERTYPE).then(|| u32::from_be_bytes(f[14..18].try_into().unwrap()))
    }

    fn send_all(port: &mut dyn Port, pool: &mut PacketPool, frames: &[Vec<u8>]) -> usize {
        let mut batch = PacketBatch::new();
        let mut sent = 0;
        for chunk in frames.chunks(BATCH_SIZE) {
            for f in chunk {
                batch.push(Packet::from_slice(f).unwrap()).unwrap();
            }
            sent += port.send(pool, &mut batch).expect("send");
        }
        sent
    }

    /// Receives until `want` frames `keep` accepts, or `t`.
    fn collect(
        port: &mut dyn Port,
        pool: &mut PacketPool,
        want: usize,
        t: Duration,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Vec<Vec<u8>> {
        let mut batch = PacketBatch::new();
        let mut got = Vec::new();
        let end = Instant::now() + t;
        while got.len() < want && Instant::now() < end {
            if port.recv(pool, &mut batch).expect("recv") == 0 {
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

    /// The veth's other end, in its namespace, as a plain `recvmmsg` port:
    /// what the ring port under test talks to.
    fn mmsg_peer(v: &Veth) -> AfPacketPort {
        let peer_name = v.peer.clone();
        v.inside(move || {
            let o = AfPacketOptions {
                io: AfPacketIo::Mmsg,
                ..AfPacketOptions::default()
            };
            AfPacketPort::open_with(&peer_name, &o).expect("open peer")
        })
    }

    fn ring_opts(slots: usize) -> AfPacketOptions {
        AfPacketOptions {
            io: AfPacketIo::Ring,
            ring_slots: slots,
            ..AfPacketOptions::default()
        }
    }

    #[test]
    fn frames_cross_the_rings_both_ways_and_wrap_around() {
        if !is_root() {
            eprintln!("skipped: needs root (netns, veth)");
            return;
        }
        let v = Veth::new();
        // 64 slots each: 300 frames go round both rings several times.
        let mut ring = AfPacketPort::open_with(&v.host, &ring_opts(40)).expect("open ring");
        assert_eq!(ring.io(), AfPacketIo::Ring, "{:?}", ring.ring_fallback());
        let mut peer = mmsg_peer(&v);
        let mut pool = PacketPool::new(512);
        let frames: Vec<Vec<u8>> = (0..300u32)
            .map(|i| test_frame(i, 60 + (i as usize * 97) % 1455))
            .collect();
        // Peer → ring, a batch at a time so that the RX ring never fills.
        let mut got = Vec::new();
        for chunk in frames.chunks(BATCH_SIZE) {
            assert_eq!(send_all(&mut peer, &mut pool, chunk), chunk.len());
            got.extend(collect(
                &mut ring,
                &mut pool,
                chunk.len(),
                Duration::from_secs(2),
                |f| seq_of(f).is_some(),
            ));
        }
        assert_eq!(got, frames, "every frame, whole and in order");
        assert_eq!(ring.stats().rx_packets, 300);
        // Ring → peer.
        let mut back = Vec::new();
        for chunk in frames.chunks(BATCH_SIZE) {
            assert_eq!(send_all(&mut ring, &mut pool, chunk), chunk.len());
            back.extend(collect(
                &mut peer,
                &mut pool,
                chunk.len(),
                Duration::from_secs(2),
                |f| seq_of(f).is_some(),
            ));
        }
        assert_eq!(back, frames);
        let s = ring.stats();
        assert_eq!((s.tx_packets, s.tx_dropped), (300, 0));
        // Longer than the MTU, shorter than a link header: dropped and
        // counted, and the ring goes on.
        let bad = vec![test_frame(1, 1515), vec![0u8; 10], test_frame(7, 1514)];
        assert_eq!(send_all(&mut ring, &mut pool, &bad), 1);
        assert_eq!(ring.stats().tx_dropped, 2);
        let last = collect(&mut peer, &mut pool, 1, Duration::from_secs(2), |f| {
            seq_of(f).is_some()
        });
        assert_eq!(last, vec![test_frame(7, 1514)]);
        // A tagged frame may be 4 bytes longer.
        let mut tagged = test_frame(8, 1514);
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        assert_eq!(send_all(&mut ring, &mut pool, &[tagged]), 1);
        // The port did not see its own frames (PACKET_IGNORE_OUTGOING).
        let echoed = collect(&mut ring, &mut pool, 1, Duration::from_millis(200), |f| {
            seq_of(f).is_some()
        });
        assert!(echoed.is_empty());
    }

    #[test]
    fn a_full_tx_ring_drops_and_counts_and_what_waited_goes_out_later() {
        if !is_root() {
            eprintln!("skipped: needs root (netns, veth)");
            return;
        }
        let v = Veth::new();
        let mut ring = AfPacketPort::open_with(&v.host, &ring_opts(32)).expect("open ring");
        assert_eq!(ring.io(), AfPacketIo::Ring);
        let mut peer = mmsg_peer(&v);
        // The interface is down: the kernel takes no slot (ENETDOWN is
        // not the port's error), so 32 fill the ring and the rest is
        // dropped.
        v.exec(&["ip", "link", "set", &v.peer, "down"]);
        sh(&["ip", "link", "set", &v.host, "down"]).unwrap();
        let mut pool = PacketPool::new(256);
        let frames: Vec<Vec<u8>> = (0..48).map(|i| test_frame(i, 60)).collect();
        assert_eq!(send_all(&mut ring, &mut pool, &frames), 32);
        let s = ring.stats();
        assert_eq!((s.tx_packets, s.tx_dropped), (32, 16));
        // Up again: RX polls kick the waiting slots out, in order.
        v.exec(&["ip", "link", "set", &v.peer, "up"]);
        sh(&["ip", "link", "set", &v.host, "up"]).unwrap();
        let mut batch = PacketBatch::new();
        // The peer's socket reports the link going down once (ENETDOWN);
        // take that out of the way.
        let _ = peer.recv(&mut pool, &mut batch);
        for _ in 0..2 * STALL_RETRY_POLLS {
            ring.recv(&mut pool, &mut batch).expect("recv");
            pool.free_batch(&mut batch);
        }
        let got = collect(&mut peer, &mut pool, 32, Duration::from_secs(2), |f| {
            seq_of(f).is_some()
        });
        assert_eq!(got, frames[..32].to_vec());
    }

    #[test]
    fn tcp_super_frames_are_read_whole_and_segmented() {
        if !is_root() {
            eprintln!("skipped: needs root (netns, veth)");
            return;
        }
        // (GSO segmentation, ring slots): the last asks for rings it
        // cannot have, and the port falls back to mmsg, super-frames and
        // all.
        for (segment_gso, slots) in [(true, 256), (false, 256), (true, 0)] {
            let v = Veth::new();
            // A TCP server here on the host end, a client in the
            // namespace with TSO and checksum offload on: its super-frames
            // cross the veth whole, and the port (a tap beside the stack)
            // sees them.
            sh(&["ip", "addr", "add", "10.231.0.2/24", "dev", &v.host]).unwrap();
            v.exec(&["ip", "addr", "add", "10.231.0.1/24", "dev", &v.peer]);
            v.exec(&[
                "ethtool", "-K", &v.peer, "tx", "on", "tso", "on", "gso", "on",
            ]);
            let opts = AfPacketOptions {
                segment_gso,
                ..ring_opts(slots)
            };
            let mut ring = AfPacketPort::open_with(&v.host, &opts).expect("open ring");
            if slots == 0 {
                assert_eq!(ring.io(), AfPacketIo::Mmsg);
                let why = ring.ring_fallback().expect("why");
                assert!(why.contains("no ring slots"), "{why}");
            } else {
                assert_eq!(ring.io(), AfPacketIo::Ring);
                assert_eq!(ring.ring_fallback(), None);
            }
            let server = std::net::TcpListener::bind("10.231.0.2:0").expect("listen");
            let addr = server.local_addr().unwrap();
            let total = 4usize << 20;
            let reader = std::thread::spawn(move || {
                let (mut c, _) = server.accept().expect("accept");
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0;
                while let Ok(k) = c.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n += k;
                }
                n
            });
            v.inside(move || {
                let mut c = std::net::TcpStream::connect(addr).expect("connect");
                let chunk = vec![0x5au8; 1 << 16];
                for _ in 0..total / chunk.len() {
                    c.write_all(&chunk).expect("write");
                }
            });
            assert_eq!(reader.join().unwrap(), total);
            let mut pool = PacketPool::new(4096);
            let is_tcp = |f: &[u8]| f.len() > 34 && f[12..14] == [8, 0] && f[23] == 6;
            let got = collect(
                &mut ring,
                &mut pool,
                usize::MAX,
                Duration::from_millis(500),
                is_tcp,
            );
            let o = ring.offload_stats();
            if segment_gso {
                assert!(o.gso_frames > 0, "{o:?}");
                assert!(o.gso_segments > o.gso_frames);
                assert_eq!((o.rx_malformed, o.rx_oversize), (0, 0), "{o:?}");
                for f in &got {
                    let ihl = usize::from(f[14] & 0xf) * 4;
                    assert_eq!(checksum(&f[14..14 + ihl]), 0);
                    let tot = usize::from(u16::from_be_bytes([f[16], f[17]]));
                    assert!(tot + 14 <= 1514, "segmented to the MTU");
                    let l4 = &f[14 + ihl..14 + tot];
                    let a = |i: usize| u32::from_be_bytes(f[i..i + 4].try_into().unwrap());
                    let pseudo = pseudo_header_v4(a(26), a(30), 6, l4.len() as u16);
                    assert_eq!(fold64(sum_bytes(l4, pseudo)), 0xffff, "TCP checksum");
                }
            } else {
                assert_eq!(o.gso_frames, 0);
                assert!(o.rx_oversize > 0, "super-frames dropped: {o:?}");
            }
        }
    }

    /// CPU time of the calling thread.
    fn thread_cpu() -> Duration {
        // SAFETY: timespec is plain data; all zeroes is a valid value.
        let mut ts: libc::timespec = unsafe { zeroed() };
        // SAFETY: `ts` is live for the call.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// What one port costs against the other, forwarding 64-byte frames
    /// between two veths: a generator in namespace A sends as fast as
    /// it can (mmsg, always) into the forwarder's first port; the
    /// forwarder sends what it gets out of its second port into namespace
    /// B, whose stack drops the frames (no sink to share the CPUs with).
    /// Prints packets/s forwarded and the CPU time per packet of the
    /// forwarder (in polls that found frames: receive and send) and of
    /// the generator (whose system call also runs the delivery into the
    /// forwarder's socket or ring, so a mode can move work there). Modes alternate;
    /// `IFR_ROUNDS`, `IFR_SECONDS`. `--ignored --nocapture forwarding`.
    #[test]
    #[ignore]
    fn forwarding_cost() {
        if !is_root() {
            eprintln!("skipped: needs root (netns, veth)");
            return;
        }
        let env = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let (rounds, secs) = (env("IFR_ROUNDS", 3), env("IFR_SECONDS", 2));
        let (a, b) = (Veth::new(), Veth::new());
        let mut results: Vec<(AfPacketIo, f64, f64, f64)> = Vec::new();
        for _ in 0..rounds {
            for io in [AfPacketIo::Mmsg, AfPacketIo::Ring] {
                let o = AfPacketOptions {
                    io,
                    ..AfPacketOptions::default()
                };
                let mut rx = AfPacketPort::open_with(&a.host, &o).expect("open a");
                let mut tx = AfPacketPort::open_with(&b.host, &o).expect("open b");
                assert_eq!((rx.io(), tx.io()), (io, io));
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let peer = a.peer.clone();
                let gen_stop = stop.clone();
                let path = format!("/run/netns/{}", a.ns);
                let generator = std::thread::spawn(move || {
                    let ns = std::fs::File::open(&path).expect("namespace");
                    // SAFETY: switches this thread's network namespace only.
                    assert_eq!(
                        unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                        0
                    );
                    let o = AfPacketOptions {
                        io: AfPacketIo::Mmsg,
                        qdisc_bypass: true,
                        ..AfPacketOptions::default()
                    };
                    let mut g = AfPacketPort::open_with(&peer, &o).expect("open generator");
                    let mut pool = PacketPool::new(256);
                    let mut batch = PacketBatch::new();
                    let frame = test_frame(0, 60);
                    let (t0, mut sent) = (thread_cpu(), 0u64);
                    while !gen_stop.load(Ordering::Relaxed) {
                        for _ in 0..BATCH_SIZE {
                            let mut p = pool.alloc();
                            p.set_data(&frame);
                            let _ = batch.push(p);
                        }
                        sent += g.send(&mut pool, &mut batch).unwrap_or(0) as u64;
                    }
                    (sent, thread_cpu() - t0)
                });
                let mut pool = PacketPool::new(1024);
                let mut batch = PacketBatch::new();
                // Only the polls that found frames count: an idle
                // forwarder's spinning says nothing about a port's cost
                // (and the machine's other load decides how much of it
                // there is).
                let (mut cpu, start) = (Duration::ZERO, Instant::now());
                while start.elapsed() < Duration::from_secs(secs) {
                    let t0 = thread_cpu();
                    if rx.recv(&mut pool, &mut batch).expect("recv") > 0 {
                        tx.send(&mut pool, &mut batch).expect("send");
                        cpu += thread_cpu() - t0;
                    } else {
                        std::thread::yield_now();
                    }
                }
                let wall = start.elapsed();
                stop.store(true, Ordering::Relaxed);
                let (sent, gen_cpu) = generator.join().expect("generator");
                let fwd = tx.stats().tx_packets.max(1);
                results.push((
                    io,
                    fwd as f64 / wall.as_secs_f64(),
                    cpu.as_nanos() as f64 / fwd as f64,
                    gen_cpu.as_nanos() as f64 / sent.max(1) as f64,
                ));
                let r = results.last().unwrap();
                eprintln!(
                    "{io:?}: {:.0} kpps forwarded, forwarder {:.0} ns/packet, generator {:.0} ns/packet",
                    r.1 / 1e3,
                    r.2,
                    r.3
                );
            }
        }
        for io in [AfPacketIo::Mmsg, AfPacketIo::Ring] {
            let med = |k: fn(&(AfPacketIo, f64, f64, f64)) -> f64| {
                let mut v: Vec<f64> = results.iter().filter(|r| r.0 == io).map(k).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            eprintln!(
                "median {io:?}: {:.0} kpps, forwarder {:.0} ns/packet, generator {:.0} ns/packet",
                med(|r| r.1) / 1e3,
                med(|r| r.2),
                med(|r| r.3)
            );
        }
    }

    #[test]
    fn slot_headers_are_checked_against_the_slot() {
        let u = libc::TP_STATUS_USER;
        let ok = parse_rx_slot(&slot_with(u, 60, 60, 76, 0, 0)).unwrap();
        assert_eq!((ok.mac, ok.snap, ok.len, ok.vlan), (76, 60, 60, None));
        // The frame runs past the slot, starts inside the slot header, or
        // is "longer" in the slot than on the wire.
        for (len, snap, mac) in [
            (4000, 2000, 76),
            (60, 60, 2040),
            (60, 60, u16::MAX),
            (60, 60, 20),
            (60, 61, 76),
            (u32::MAX, u32::MAX, 76),
        ] {
            assert_eq!(
                parse_rx_slot(&slot_with(u, len, snap, mac, 0, 0)),
                None,
                "{len} {snap} {mac}"
            );
        }
        // Truncated: fine to parse, the caller decides.
        let t = parse_rx_slot(&slot_with(u, 9000, 1972, 76, 0, 0)).unwrap();
        assert!(t.snap < t.len);
        // A slice shorter than a header.
        assert_eq!(parse_rx_slot(&[0u8; 20]), None);
    }

    #[test]
    fn vlan_tags_come_from_the_slot_header() {
        let v = libc::TP_STATUS_USER | libc::TP_STATUS_VLAN_VALID;
        let s = parse_rx_slot(&slot_with(v, 60, 60, 76, 100, 0)).unwrap();
        assert_eq!(s.vlan, Some((0x8100, 100)));
        let s = parse_rx_slot(&slot_with(
            v | libc::TP_STATUS_VLAN_TPID_VALID,
            60,
            60,
            76,
            7,
            0x88a8,
        ))
        .unwrap();
        assert_eq!(s.vlan, Some((0x88a8, 7)));
        let s = parse_rx_slot(&slot_with(libc::TP_STATUS_USER, 60, 60, 76, 5, 0x8100)).unwrap();
        assert_eq!(s.vlan, None, "no VLAN_VALID, no tag");
    }
}
