//! The TAP port backend: a kernel network interface whose other side is
//! this process, for internal ports such as the node's management port.
//!
//! [`TapPort::open`] opens `/dev/net/tun` with `IFF_TAP | IFF_NO_PI |
//! IFF_VNET_HDR`, creates the named tap (or attaches to an existing one,
//! e.g. made persistent with `ip tuntap add mode tap vnet_hdr`) and brings
//! it up. A tap the port created disappears when the port is dropped; a
//! persistent one stays. Frames are read and written one per system call,
//! in a loop over the batch (a tap has no batched I/O short of io_uring;
//! a management port does not carry pod traffic).
//!
//! Offloads: every frame carries a virtio-net header both ways. With
//! [`TapOptions::offload`] on (the default) the port tells the kernel
//! (`TUNSETOFFLOAD`) that it takes partial checksums and TCP super-frames
//! (TSO over IPv4 and IPv6, with ECN): the host's TCP then writes 64 KiB
//! to the tap per system call instead of 45 frames, and the port completes
//! checksums and cuts segments itself (see [`crate::vnet`]). Off, the
//! kernel does both before the frame reaches the port. Frames the port
//! writes carry a zeroed header: their checksums are complete, and the
//! kernel checks them as it would a NIC's.

use crate::afpacket::check_ifname;
use crate::packet::{Packet, PacketBatch, PacketPool, MAX_RX_LEN};
use crate::port::{Port, PortStats};
use crate::vnet::{finish_rx, OffloadStats, VNET_HDR_LEN, VNET_HDR_NONE};
use std::collections::VecDeque;
use std::io;
use std::mem::zeroed;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Bytes after the packet frame for the rest of a super-frame.
const OVERFLOW: usize = 65536;

/// The header every written frame carries. A static so that its address
/// is stable for the duration of a write.
static TX_HDR: [u8; VNET_HDR_LEN] = VNET_HDR_NONE;

/// Settings of a TAP port.
#[derive(Debug, Clone)]
pub struct TapOptions {
    /// Take partial checksums and TSO super-frames from the kernel (and
    /// finish them in the port), see the module docs.
    pub offload: bool,
    /// Bring the interface up.
    pub up: bool,
    /// Keep the interface when the port closes (`TUNSETPERSIST`), with
    /// its addresses and routes, as an OVS internal port outlives
    /// ovs-vswitchd: a restarted daemon attaches to it again.
    /// [`delete_persistent`] removes it.
    pub persist: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            offload: true,
            up: true,
            persist: false,
        }
    }
}

/// A port on a tap interface.
pub struct TapPort {
    name: String,
    ifname: String,
    fd: OwnedFd,
    stats: PortStats,
    offload: OffloadStats,
    hdr: [u8; VNET_HDR_LEN],
    /// A frame taken from the pool for the next read and not filled.
    spare: Option<Packet>,
    overflow: Box<[u8]>,
    /// Segments of a super-frame that did not fit the caller's batch.
    pending: VecDeque<Packet>,
}

fn os_err(ifname: &str, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("TAP port {ifname}: {what}: {e}"))
}

/// An `ifreq` naming `ifname` (checked by the caller: under IFNAMSIZ
/// bytes, no NUL).
fn ifreq(ifname: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data (a name and a union of integers and
    // pointers); all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    ifr
}

fn ioctl_int(fd: RawFd, req: libc::Ioctl, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: these tun ioctls take their argument by value.
    let r = unsafe { libc::ioctl(fd, req, arg) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ioctl_ptr<T>(fd: RawFd, req: libc::Ioctl, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, writable `T` of the type the request reads
    // and writes, for the call.
    let r = unsafe { libc::ioctl(fd, req, arg as *mut T) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets IFF_UP on `ifname` (in this process's network namespace).
fn bring_up(ifname: &str) -> io::Result<()> {
    // SAFETY: plain system call, no pointers.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut ifr = ifreq(ifname);
    ioctl_ptr(
        sock.as_raw_fd(),
        libc::SIOCGIFFLAGS as libc::Ioctl,
        &mut ifr,
    )?;
    // SAFETY: SIOCGIFFLAGS filled the union's flags member.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl_ptr(
        sock.as_raw_fd(),
        libc::SIOCSIFFLAGS as libc::Ioctl,
        &mut ifr,
    )
}

/// Deletes a tap made persistent ([`TapOptions::persist`]) once no port
/// has it open: attaches, clears the flag, and closes.
pub fn delete_persistent(ifname: &str) -> io::Result<()> {
    let port = TapPort::open_with(
        ifname,
        &TapOptions {
            offload: false,
            up: false,
            persist: false,
        },
    )?;
    ioctl_int(port.fd.as_raw_fd(), libc::TUNSETPERSIST, 0)
        .map_err(|e| os_err(ifname, "TUNSETPERSIST", e))
}

impl TapPort {
    /// Creates (or attaches to) tap `ifname`, with the default settings.
    pub fn open(ifname: &str) -> io::Result<TapPort> {
        TapPort::open_with(ifname, &TapOptions::default())
    }

    /// [`TapPort::open`] with settings.
    pub fn open_with(ifname: &str, opts: &TapOptions) -> io::Result<TapPort> {
        check_ifname(ifname, "TAP")?;
        let path = c"/dev/net/tun";
        // SAFETY: `path` is a NUL-terminated static string.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(os_err(
                ifname,
                "open /dev/net/tun",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` was just opened and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifr = ifreq(ifname);
        ifr.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        if let Err(e) = ioctl_ptr(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) {
            let what = match e.raw_os_error() {
                Some(libc::EPERM) => "create or attach (needs CAP_NET_ADMIN)",
                Some(libc::EBUSY) => "attach (another process holds it)",
                Some(libc::EINVAL) => "attach (it exists and is not a single-queue tap)",
                _ => "TUNSETIFF",
            };
            return Err(os_err(ifname, what, e));
        }
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        let mut v = hdr_len;
        ioctl_ptr(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &mut v)
            .map_err(|e| os_err(ifname, "TUNSETVNETHDRSZ", e))?;
        let offloads = if opts.offload {
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN
        } else {
            0
        };
        ioctl_int(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(offloads),
        )
        .map_err(|e| os_err(ifname, "TUNSETOFFLOAD", e))?;
        if opts.persist {
            ioctl_int(fd.as_raw_fd(), libc::TUNSETPERSIST, 1)
                .map_err(|e| os_err(ifname, "TUNSETPERSIST", e))?;
        }
        if opts.up {
            bring_up(ifname).map_err(|e| os_err(ifname, "bring up", e))?;
        }
        Ok(TapPort {
            name: format!("tap:{ifname}"),
            ifname: ifname.to_string(),
            fd,
            stats: PortStats::default(),
            offload: OffloadStats::default(),
            hdr: [0; VNET_HDR_LEN],
            spare: None,
            // vec! of zeroes is a calloc: untouched pages stay unmapped.
            overflow: vec![0u8; OVERFLOW].into_boxed_slice(),
            pending: VecDeque::new(),
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// What the port did about offloads.
    pub fn offload_stats(&self) -> OffloadStats {
        self.offload
    }

    /// The tap's file descriptor, for a worker that sleeps in poll/epoll.
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Port for TapPort {
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
        while !batch.is_full() && self.pending.is_empty() {
            let mut p = self.spare.take().unwrap_or_else(|| pool.alloc());
            let buf = p.rx_buffer();
            let iov = [
                libc::iovec {
                    iov_base: self.hdr.as_mut_ptr().cast(),
                    iov_len: VNET_HDR_LEN,
                },
                libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: MAX_RX_LEN,
                },
                libc::iovec {
                    iov_base: self.overflow.as_mut_ptr().cast(),
                    iov_len: OVERFLOW,
                },
            ];
            // SAFETY: the three buffers are owned by this port or by `p`,
            // writable, of the lengths given, and untouched during the call.
            let r = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 3) };
            if r < 0 {
                self.spare = Some(p);
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(n),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(os_err(&self.ifname, "read", e)),
                };
            }
            let Some(len) = (r as usize).checked_sub(VNET_HDR_LEN) else {
                self.offload.rx_malformed += 1;
                self.spare = Some(p);
                continue;
            };
            let TapPort {
                hdr,
                overflow,
                pending,
                offload,
                stats,
                ..
            } = self;
            let mut out = |p: Packet| {
                if stats.deliver(p, batch, pending) {
                    n += 1;
                }
            };
            finish_rx(p, hdr, len, Some(overflow), pool, offload, &mut out);
        }
        Ok(n)
    }

    fn send(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut sent = 0;
        let mut fail = None;
        for p in batch.drain() {
            if fail.is_some() {
                self.stats.tx_dropped += 1;
                pool.free(p);
                continue;
            }
            let iov = [
                libc::iovec {
                    // The kernel only reads it.
                    iov_base: TX_HDR.as_ptr().cast_mut().cast(),
                    iov_len: VNET_HDR_LEN,
                },
                libc::iovec {
                    iov_base: p.data().as_ptr().cast_mut().cast(),
                    iov_len: p.len(),
                },
            ];
            // SAFETY: both buffers are live for the call and only read.
            let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if r >= 0 {
                sent += 1;
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += p.len() as u64;
            } else {
                self.stats.tx_dropped += 1;
                let e = io::Error::last_os_error();
                match e.raw_os_error().unwrap_or(0) {
                    // The tap is down, full, or refused this one frame.
                    libc::EAGAIN
                    | libc::ENOBUFS
                    | libc::EIO
                    | libc::EINVAL
                    | libc::EMSGSIZE
                    | libc::EINTR => {}
                    _ => fail = Some(os_err(&self.ifname, "write", e)),
                }
            }
            pool.free(p);
        }
        match fail {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
