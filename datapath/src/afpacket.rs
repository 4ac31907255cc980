//! The AF_PACKET port backend: a raw packet socket bound to one network
//! interface (typically the host end of a pod's veth). Two ways to move
//! frames through it ([`AfPacketIo`]):
//!
//! - `Ring`, the default: memory-mapped TPACKET_V2 rings
//!   ([`crate::afpacket_ring`]). The kernel copies each received frame
//!   into a slot, the port copies it into a worker's packet frame; to
//!   send, the port fills TX slots and kicks the socket once per batch.
//! - `Mmsg`: `recvmmsg` straight into the worker's packet frames and
//!   `sendmmsg` out of them; what a port falls back to when the kernel
//!   refuses the rings ([`AfPacketPort::ring_fallback`] says why, and
//!   `ironflow` logs it).
//!
//! It works on any interface and any kernel, at the cost of a copy each
//! way inside the kernel; AF_XDP (`afxdp`) is the fast backend where the
//! driver has it, this one is the fallback and the one that copes with
//! pods that keep their default offloads:
//!
//! - **Partial checksums** (TX checksum offload on in the pod, the
//!   default on veth): the socket has `PACKET_VNET_HDR` on, so every frame
//!   comes with a virtio-net header; when it says `NEEDS_CSUM` the port
//!   completes the checksum in software before the frame enters the
//!   datapath (see [`crate::vnet`]). Stock OVS forwards those frames with
//!   the partial checksum, and TCP gets nowhere.
//! - **TSO/GSO super-frames** (TSO on in the pod, also the default): a
//!   pod's TCP hands its veth frames of up to 64 KiB, which arrive here
//!   whole, and are cut into MSS-sized TCPv4/TCPv6 (or `UDP_SEGMENT`)
//!   segments in software. In `Mmsg` mode each message gets, after the
//!   packet frame, a 64 KiB overflow buffer of its own (as OVS's
//!   netdev-linux does with its `aux_bufs`): 2 MiB of address space per
//!   port, allocated zeroed by the system so that only pages a super-frame
//!   ever filled become resident. With rings, a frame too long for its
//!   slot is queued on the socket too and read from there into one such
//!   buffer. [`AfPacketOptions::segment_gso`] off drops (and counts)
//!   super-frames instead, for pods that run with `ethtool -K eth0 tso off
//!   gso off`.
//! - **VLAN tags**: the kernel strips an 802.1Q tag before a packet socket
//!   sees the frame and hands it over beside it (`PACKET_AUXDATA`, or the
//!   ring slot's header); the port puts it back.
//!
//! Frames the port sends carry a zeroed virtio-net header (nothing to
//! offload: the datapath's frames have complete checksums).
//! `PACKET_IGNORE_OUTGOING` keeps them from coming back on the same
//! socket, and the port joins the interface's promiscuous membership so
//! that frames to any MAC arrive (veth delivers them anyway; a physical
//! NIC filters). Everything is non-blocking: `recv` takes what the socket
//! holds, `send` drops and counts what the socket cannot take.
//!
//! `IRONFLOW_AFPACKET=ring|mmsg` picks the mode for ports opened with
//! [`AfPacketPort::open`] (all of `ironflow`'s), so that one binary can
//! be measured both ways.
//!
//! Measured, rings against mmsg, on the project's VM (2 vCPUs, Linux
//! 6.18, shared with other builds and benchmarks while it ran, so only
//! the ratios mean something):
//!
//! - The side-by-side lab, `IRONFLOW_AFPACKET=mmsg|ring ironflow-bench
//!   system --peer ironflow --pairs same-switch,routed,cross-node --rounds
//!   1 --seconds 3`, the two alternated ten times, medians, ring over
//!   mmsg: packets/s 1.06× / 1.24× / 1.05× (same-switch / routed /
//!   cross-node), loss 33% → 15%, 34% → 18%, 64% → 60%, datapath CPU per
//!   packet 0.84× / 0.70× / 0.81×, TCP 1.70× / 1.29× / 1.04×, p50 round
//!   trip 45 → 29 µs, 38 → 31 µs, 70 → 81 µs. An earlier run of three
//!   rounds with 2,048 slots, on a quieter machine: packets/s 1.48× /
//!   1.28× / 1.06×, CPU per packet 0.73× / 0.73× / 0.87×. Across nodes the
//!   tunnel's UDP socket, not AF_PACKET, is half the I/O.
//! - One port forwarding 64-byte frames between two veths
//!   (`forwarding_cost` in [`crate::afpacket_ring`]'s tests, release, five
//!   rounds alternated): the forwarder's CPU per packet 2.34 → 1.40 µs
//!   (receive and send), 103 → 118 kpps; the generator's system call, which
//!   also delivers into the forwarder's socket or ring, 1.56 → 1.81 µs:
//!   the slot copy runs in the sender's context where `recvmmsg`'s
//!   dequeue and copy ran in the datapath's.
//!
//! So the rings are the default. What is left (`--perf`, same-switch,
//! rings): 65% of the worker's samples under the TX kick (the veth, and
//! the destination pod's IP and UDP receive that runs inside it, as it
//! did inside `sendmmsg`), 1% reading the RX ring.

// libc, not nix: the calls here (recvmmsg/sendmmsg with scatter lists into
// pool frames, packet socket options, auxiliary data) are raw structs and
// pointers either way, and nix wraps recvmmsg with allocations per call.
use crate::afpacket_ring::Rings;
use crate::packet::{Packet, PacketBatch, PacketPool, BATCH_SIZE};
use crate::port::{Port, PortStats};
use crate::vnet::{finish_rx, insert_vlan, OffloadStats, VNET_HDR_LEN, VNET_HDR_NONE};
use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes of each message's overflow buffer: with the packet frame in
/// front of it, room for a 64 KiB super-frame and its link header.
pub const OVERFLOW: usize = 65536;

/// Bytes reserved for each message's auxiliary data (one
/// `tpacket_auxdata`, 40 bytes with its `cmsghdr`).
const CONTROL: usize = 64;

/// The header every sent frame carries. A static so that its address is
/// stable for the duration of a `sendmmsg`.
static TX_HDR: [u8; VNET_HDR_LEN] = VNET_HDR_NONE;

/// How an AF_PACKET port moves frames through its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfPacketIo {
    /// Memory-mapped TPACKET_V2 rings ([`crate::afpacket_ring`]); a port
    /// whose rings the kernel refuses uses `Mmsg` instead (and says why,
    /// [`AfPacketPort::ring_fallback`]).
    Ring,
    /// `recvmmsg`/`sendmmsg` into and out of the pool's frames.
    Mmsg,
}

impl AfPacketIo {
    /// The mode `IRONFLOW_AFPACKET` asks for (`ring` or `mmsg`), if it
    /// names one.
    pub fn from_env() -> Option<AfPacketIo> {
        match std::env::var("IRONFLOW_AFPACKET").ok()?.as_str() {
            "ring" => Some(AfPacketIo::Ring),
            "mmsg" => Some(AfPacketIo::Mmsg),
            _ => None,
        }
    }
}

/// Settings of an AF_PACKET port.
#[derive(Debug, Clone)]
pub struct AfPacketOptions {
    /// Socket receive buffer in bytes: what absorbs a burst between two
    /// polls. Set with `SO_RCVBUFFORCE` (root), else `SO_RCVBUF` (capped
    /// by `net.core.rmem_max`).
    pub rcvbuf: usize,
    /// Socket send buffer in bytes (same rules).
    pub sndbuf: usize,
    /// Join the interface's promiscuous membership while the port is open.
    pub promisc: bool,
    /// Send straight to the driver (`PACKET_QDISC_BYPASS`): a little
    /// faster, but the qdisc, tc and packet taps (tcpdump on the
    /// interface) no longer see what the port sends.
    pub qdisc_bypass: bool,
    /// Receive TSO/GSO super-frames and segment them (the overflow
    /// buffers, see the module docs); off drops them.
    pub segment_gso: bool,
    /// Rings or `recvmmsg`/`sendmmsg`.
    pub io: AfPacketIo,
    /// Slots of 2 KiB in each ring (RX and TX), in `Ring` mode, rounded up
    /// to a multiple of 32 (0: no rings, the port falls back to `Mmsg`):
    /// what absorbs a burst between two polls, as `rcvbuf` does for
    /// `Mmsg`.
    /// Unlike a buffer limit it is memory the kernel allocates (and
    /// pins) up front: 1,024 make 4 MiB per port, RX and TX together.
    pub ring_slots: usize,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        AfPacketOptions {
            rcvbuf: 4 << 20,
            sndbuf: 4 << 20,
            promisc: true,
            qdisc_bypass: false,
            segment_gso: true,
            io: AfPacketIo::Ring,
            ring_slots: 1024,
        }
    }
}

/// Auxiliary data space for one message, aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL]);

/// A port on a network interface through a packet socket.
pub struct AfPacketPort {
    name: String,
    ifname: String,
    ifindex: u32,
    /// Declared before `fd`: the rings are unmapped before the socket
    /// closes (the kernel keeps a mapped ring's memory otherwise).
    ring: Option<Rings>,
    /// Why `Ring` mode was asked for and not used.
    fallback: Option<String>,
    /// Polls of an empty RX ring since the socket's error was last read.
    idle_polls: u32,
    fd: OwnedFd,
    stats: PortStats,
    offload: OffloadStats,
    /// Frames taken from the pool for the next `recvmmsg` and not filled:
    /// kept rather than freed, so that an idle poll costs no pool traffic.
    spare: Vec<Packet>,
    /// The virtio-net header of each message.
    hdrs: Box<[[u8; VNET_HDR_LEN]; BATCH_SIZE]>,
    control: Box<[Control; BATCH_SIZE]>,
    /// `BATCH_SIZE` overflow buffers of [`OVERFLOW`] bytes, if segmenting.
    overflow: Option<Box<[u8]>>,
    /// Segments of a super-frame that did not fit the caller's batch.
    pending: VecDeque<Packet>,
}

fn os_err(ifname: &str, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("AF_PACKET port on {ifname}: {what}: {e}"))
}

fn setopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size passed, for the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
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

/// Sets a buffer size with the `*FORCE` option (which ignores the sysctl
/// cap but needs CAP_NET_ADMIN), else the plain one.
fn set_buf(fd: &OwnedFd, force: libc::c_int, plain: libc::c_int, bytes: usize) -> io::Result<()> {
    let v = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    setopt(fd, libc::SOL_SOCKET, force, &v).or_else(|_| setopt(fd, libc::SOL_SOCKET, plain, &v))
}

/// Refuses what the kernel would not take as an interface name (its own
/// answer, EINVAL or ENODEV, would not say what was wrong).
pub(crate) fn check_ifname(ifname: &str, backend: &str) -> io::Result<()> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{backend} port: {ifname:?} is not an interface name (1 to 15 bytes, no '/')"),
        ));
    }
    Ok(())
}

/// The interface index of `ifname`, or an error that names it.
pub(crate) fn ifindex_of(ifname: &str, backend: &str) -> io::Result<u32> {
    check_ifname(ifname, backend)?;
    let c = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{backend} port: no network interface named {ifname:?}"),
        ));
    }
    Ok(idx)
}

/// Opens, sets up and binds the packet socket of a port; with `ring`,
/// with its rings, or the error that kept them from being set up.
fn open_socket(
    ifname: &str,
    ifindex: u32,
    opts: &AfPacketOptions,
    ring: bool,
) -> io::Result<(OwnedFd, Option<Rings>)> {
    // Protocol 0: the socket receives nothing until it is bound to
    // the interface below, so no other interface's frame slips in (nor
    // into the socket's queue before the rings exist).
    // SAFETY: plain system call, no pointers.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        let what = if e.kind() == io::ErrorKind::PermissionDenied {
            "packet socket (needs CAP_NET_RAW)"
        } else {
            "packet socket"
        };
        return Err(os_err(ifname, what, e));
    }
    // SAFETY: `raw` is a descriptor this function just opened and owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    let opt = |level, name, what: &str| {
        setopt(&fd, level, name, &one).map_err(|e| os_err(ifname, what, e))
    };
    // Before the rings: the kernel refuses it once they exist.
    opt(libc::SOL_PACKET, libc::PACKET_VNET_HDR, "PACKET_VNET_HDR")?;
    opt(libc::SOL_PACKET, libc::PACKET_AUXDATA, "PACKET_AUXDATA")?;
    opt(
        libc::SOL_PACKET,
        libc::PACKET_IGNORE_OUTGOING,
        "PACKET_IGNORE_OUTGOING (Linux 4.20 or later)",
    )?;
    if opts.qdisc_bypass {
        opt(libc::SOL_PACKET, PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS")?;
    }
    set_buf(&fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, opts.rcvbuf)
        .map_err(|e| os_err(ifname, "receive buffer", e))?;
    set_buf(&fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, opts.sndbuf)
        .map_err(|e| os_err(ifname, "send buffer", e))?;
    let rings = if ring {
        let r = Rings::new(&fd, ifindex, opts.ring_slots, opts.segment_gso)
            .map_err(|e| os_err(ifname, "packet rings", e))?;
        Some(r)
    } else {
        None
    };

    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a live sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(os_err(ifname, "bind", io::Error::last_os_error()));
    }
    if opts.promisc {
        // SAFETY: packet_mreq is plain data; all zeroes is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        setopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| os_err(ifname, "promiscuous membership", e))?;
    }
    Ok((fd, rings))
}

impl AfPacketPort {
    /// A port on interface `ifname` with the default settings, except
    /// that `IRONFLOW_AFPACKET=mmsg|ring` in the environment picks the
    /// I/O mode (to measure one against the other with the same binary,
    /// or to step around a kernel whose rings misbehave).
    pub fn open(ifname: &str) -> io::Result<AfPacketPort> {
        let mut opts = AfPacketOptions::default();
        if let Some(io) = AfPacketIo::from_env() {
            opts.io = io;
        }
        AfPacketPort::open_with(ifname, &opts)
    }

    /// [`AfPacketPort::open`] with settings.
    pub fn open_with(ifname: &str, opts: &AfPacketOptions) -> io::Result<AfPacketPort> {
        let ifindex = ifindex_of(ifname, "AF_PACKET")?;
        let (fd, ring, fallback) = match opts.io {
            AfPacketIo::Mmsg => (open_socket(ifname, ifindex, opts, false)?.0, None, None),
            AfPacketIo::Ring => match open_socket(ifname, ifindex, opts, true) {
                Ok((fd, ring)) => (fd, ring, None),
                // A fresh socket rather than undoing half a ring setup:
                // the version and ring options cannot all be taken back.
                Err(e) if e.kind() != io::ErrorKind::PermissionDenied => {
                    let (fd, _) = open_socket(ifname, ifindex, opts, false)?;
                    (fd, None, Some(e.to_string()))
                }
                Err(e) => return Err(e),
            },
        };
        let mmsg = ring.is_none();
        Ok(AfPacketPort {
            name: format!("afpacket:{ifname}"),
            ifname: ifname.to_string(),
            ifindex,
            ring,
            fallback,
            idle_polls: 0,
            fd,
            stats: PortStats::default(),
            offload: OffloadStats::default(),
            spare: Vec::with_capacity(BATCH_SIZE),
            hdrs: Box::new([[0; VNET_HDR_LEN]; BATCH_SIZE]),
            control: Box::new([Control([0; CONTROL]); BATCH_SIZE]),
            // vec! of zeroes is a calloc: untouched pages stay unmapped.
            // The rings read super-frames into one buffer of their own.
            overflow: (opts.segment_gso && mmsg)
                .then(|| vec![0u8; BATCH_SIZE * OVERFLOW].into_boxed_slice()),
            pending: VecDeque::new(),
        })
    }

    /// The I/O mode the port ended up with.
    pub fn io(&self) -> AfPacketIo {
        if self.ring.is_some() {
            AfPacketIo::Ring
        } else {
            AfPacketIo::Mmsg
        }
    }

    /// Why the port uses `recvmmsg`/`sendmmsg` although rings were asked
    /// for (the kernel refused them), if it does.
    pub fn ring_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// `recv` in `Ring` mode: up to `room` frames off the RX ring, after
    /// the `n` already in `batch`.
    fn recv_ring(
        &mut self,
        room: usize,
        mut n: usize,
        pool: &mut PacketPool,
        batch: &mut PacketBatch,
    ) -> io::Result<usize> {
        let AfPacketPort {
            ring,
            fd,
            pending,
            offload,
            stats,
            idle_polls,
            ifname,
            ..
        } = self;
        let Some(ring) = ring.as_mut() else {
            return Ok(n);
        };
        let mut out = |p: Packet| {
            if stats.deliver(p, batch, pending) {
                n += 1;
            }
        };
        if ring.recv(fd, room, pool, offload, &mut out) > 0 {
            *idle_polls = 0;
            return Ok(n);
        }
        // Reading the ring is no system call, so nothing else would say
        // that the interface went down or away (`recvmmsg` returns the
        // socket's error): look now and then while it is idle.
        *idle_polls += 1;
        if *idle_polls >= IDLE_ERROR_CHECK {
            *idle_polls = 0;
            if let Some(e) = socket_error(fd) {
                return Err(os_err(ifname, "RX ring", e));
            }
        }
        Ok(n)
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// What the port did about offloads (checksums completed, frames
    /// segmented, frames dropped and why).
    pub fn offload_stats(&self) -> OffloadStats {
        self.offload
    }

    /// The socket, for a worker that sleeps in poll/epoll when idle.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Empty polls of an RX ring between two looks at the socket's error.
const IDLE_ERROR_CHECK: u32 = 4096;

/// The socket's pending error (`SO_ERROR`, which reading clears), if any.
fn socket_error(fd: &OwnedFd) -> Option<io::Error> {
    let mut err: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are live and of the sizes passed.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    match (r, err) {
        (r, _) if r < 0 => Some(io::Error::last_os_error()),
        (_, 0) => None,
        (_, e) => Some(io::Error::from_raw_os_error(e)),
    }
}

/// Not in the libc crate: `linux/if_packet.h`.
const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// The 802.1Q/802.1ad tag the kernel took off a frame, from its
/// `PACKET_AUXDATA`.
fn vlan_of(msg: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: `msg` is the header recvmmsg filled in; its control pointer
    // and length describe the `Control` buffer of this message, and the
    // CMSG_* functions stay inside the length the kernel reported.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR returned a header inside the
        // buffer.
        let (level, kind) = unsafe { ((*c).cmsg_level, (*c).cmsg_type) };
        if level == libc::SOL_PACKET && kind == libc::PACKET_AUXDATA {
            // SAFETY: the kernel wrote a whole tpacket_auxdata after this
            // header (CMSG_DATA may be unaligned for it, hence the read).
            let aux: libc::tpacket_auxdata =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()) };
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                0x8100
            };
            return Some((tpid, aux.tp_vlan_tci));
        }
        // SAFETY: as above.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    None
}

fn zero_iov() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

impl Port for AfPacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut n = 0;
        while !batch.is_full() {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let _ = batch.push(p);
            n += 1;
        }
        let room = BATCH_SIZE - batch.len();
        if room == 0 || !self.pending.is_empty() {
            return Ok(n);
        }
        if self.ring.is_some() {
            return self.recv_ring(room, n, pool, batch);
        }
        while self.spare.len() < room {
            self.spare.push(pool.alloc());
        }
        let niov = if self.overflow.is_some() { 3 } else { 2 };
        let mut iov = [[zero_iov(); 3]; BATCH_SIZE];
        // SAFETY: mmsghdr is plain data (pointers and integers); all
        // zeroes is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH_SIZE] = unsafe { zeroed() };
        for i in 0..room {
            let buf = self.spare[i].rx_buffer();
            iov[i][0] = libc::iovec {
                iov_base: self.hdrs[i].as_mut_ptr().cast(),
                iov_len: VNET_HDR_LEN,
            };
            iov[i][1] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            if let Some(o) = self.overflow.as_mut() {
                iov[i][2] = libc::iovec {
                    iov_base: o[i * OVERFLOW..(i + 1) * OVERFLOW].as_mut_ptr().cast(),
                    iov_len: OVERFLOW,
                };
            }
            let h = &mut msgs[i].msg_hdr;
            h.msg_iov = iov[i].as_mut_ptr();
            h.msg_iovlen = niov;
            h.msg_control = self.control[i].0.as_mut_ptr().cast();
            h.msg_controllen = CONTROL;
        }
        // SAFETY: every message points at buffers this port owns (headers,
        // control, overflow) or at the frames of the packets in `spare`,
        // which stay put (a packet's frame is boxed) and are not touched
        // until the call returns; the lengths are the buffers' own.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                room as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(n),
                _ => Err(os_err(&self.ifname, "recvmmsg", e)),
            };
        }
        let got = r as usize;
        let AfPacketPort {
            spare,
            hdrs,
            overflow,
            pending,
            offload,
            stats,
            ..
        } = self;
        let mut vlans = 0;
        for (i, p) in spare.drain(..got).enumerate() {
            let m = &msgs[i];
            let total = m.msg_len as usize;
            let Some(len) = total.checked_sub(VNET_HDR_LEN) else {
                offload.rx_malformed += 1;
                pool.free(p);
                continue;
            };
            // MSG_TRUNC: longer than the frame and its overflow together.
            let tail = match overflow.as_deref() {
                Some(o) if m.msg_hdr.msg_flags & libc::MSG_TRUNC == 0 => {
                    Some(&o[i * OVERFLOW..(i + 1) * OVERFLOW])
                }
                _ => None,
            };
            let vlan = vlan_of(&m.msg_hdr);
            let mut out = |mut p: Packet| {
                if let Some((tpid, tci)) = vlan {
                    if insert_vlan(&mut p, tpid, tci) {
                        vlans += 1;
                    }
                }
                if stats.deliver(p, batch, pending) {
                    n += 1;
                }
            };
            finish_rx(p, &hdrs[i], len, tail, pool, offload, &mut out);
        }
        offload.vlan_restored += vlans;
        Ok(n)
    }

    fn send(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let count = batch.len().min(BATCH_SIZE);
        if count == 0 {
            return Ok(0);
        }
        if let Some(ring) = self.ring.as_mut() {
            let r = ring.send(&self.fd, batch.iter().take(count).map(|p| p.data()));
            self.stats.tx_packets += r.queued as u64;
            self.stats.tx_bytes += r.bytes;
            self.stats.tx_dropped += r.dropped as u64 + (batch.len() - count) as u64;
            pool.free_batch(batch);
            return match r.err {
                Some(e) => Err(os_err(&self.ifname, "send (TX ring)", e)),
                None => Ok(r.queued),
            };
        }
        let mut iov = [[zero_iov(); 2]; BATCH_SIZE];
        // SAFETY: mmsghdr is plain data; all zeroes is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH_SIZE] = unsafe { zeroed() };
        for (i, p) in batch.iter().take(count).enumerate() {
            iov[i][0] = libc::iovec {
                // The kernel only reads it.
                iov_base: TX_HDR.as_ptr().cast_mut().cast(),
                iov_len: VNET_HDR_LEN,
            };
            iov[i][1] = libc::iovec {
                iov_base: p.data().as_ptr().cast_mut().cast(),
                iov_len: p.len(),
            };
            msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
            msgs[i].msg_hdr.msg_iovlen = 2;
        }
        let mut done = 0;
        let mut sent = 0;
        let mut fail = None;
        while done < count {
            // SAFETY: messages `done..count` point at the static header and
            // at the data of packets in `batch`, which is not touched until
            // the call returns; the kernel only reads them.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[done..].as_mut_ptr(),
                    (count - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                for p in &batch.as_slice()[done..done + r as usize] {
                    self.stats.tx_bytes += p.len() as u64;
                }
                done += r as usize;
                sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error().unwrap_or(0) {
                libc::EINTR => {}
                // This one frame: too long for the interface's MTU, or
                // shorter than a link header.
                libc::EMSGSIZE | libc::EINVAL => {
                    self.stats.tx_dropped += 1;
                    done += 1;
                }
                // The socket or the interface cannot take more now.
                libc::EAGAIN | libc::ENOBUFS | libc::ENETDOWN | libc::ENXIO => {
                    self.stats.tx_dropped += (count - done) as u64;
                    done = count;
                }
                _ => {
                    self.stats.tx_dropped += (count - done) as u64;
                    done = count;
                    fail = Some(os_err(&self.ifname, "sendmmsg", e));
                }
            }
        }
        self.stats.tx_packets += sent as u64;
        pool.free_batch(batch);
        match fail {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
