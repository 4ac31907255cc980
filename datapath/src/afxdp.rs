//! The AF_XDP port backend: one AF_XDP socket on one queue of a network
//! interface, through the xsk-rs crate (libxdp underneath).
//!
//! [`AfXdpPort::open`] tries the fastest setup first and falls back:
//!
//! 1. native XDP, zero-copy ([`XdpMode::NativeZeroCopy`]): frames are DMAed
//!    into the UMEM; only drivers with AF_XDP support (ice, i40e, mlx5, …)
//!    accept it;
//! 2. native XDP, copy mode ([`XdpMode::NativeCopy`]): the XDP program runs
//!    in the driver and the kernel copies each frame into the UMEM (veth
//!    lands here: it has native XDP but refuses zero-copy);
//! 3. generic (SKB) XDP, copy mode ([`XdpMode::GenericCopy`]): for drivers
//!    without native XDP; the program runs after the kernel built an skb,
//!    the slowest of the three but available on every interface.
//!
//! [`AfXdpPort::mode`] and [`Port::name`] say which one is in use. The XDP
//! program that redirects the queue's frames to the socket is libxdp's
//! default one, loaded once per interface (libxdp shares it between the
//! sockets on the interface's queues and detaches it when the last one
//! closes).
//!
//! The UMEM holds `2 * ring` frames of [`UMEM_FRAME`] bytes: half of them
//! live on the fill ring (or in the kernel's hands, being received into),
//! half are for sending. [`Port::recv`] copies each received frame into a
//! packet of the worker's [`PacketPool`] and gives the UMEM frame straight
//! back to the fill ring; [`Port::send`] copies each packet into a free UMEM
//! frame and kicks the TX ring. In copy mode the kernel copies each frame
//! once anyway; receiving into the pool's frames without a copy (a UMEM
//! made of the pool's memory, or packets that can point into the UMEM) is
//! a later optimisation that only pays in zero-copy mode.
//!
//! libbpf and libxdp print to stderr by default, a few lines at every
//! open ("skipping unrecognized data section", "no bpffs found"). The
//! first open routes their output through `quiet_print`: informational
//! lines are dropped, and each distinct warning is printed once per
//! process (on x86_64; elsewhere their own printing stays).
//!
//! Without a bpffs at /sys/fs/bpf (a machine without systemd) libxdp
//! loads its program without its dispatcher: the socket works, but no
//! other XDP program can share the interface.
//!
//! Everything is non-blocking: `recv` takes what the RX ring holds, `send`
//! drops (and counts) what the TX ring or the free frames cannot take.

use crate::packet::{PacketBatch, PacketPool, BATCH_SIZE};
use crate::port::{Port, PortStats};
use std::ffi::CString;
use std::fmt;
use std::io::{self, Write};
use std::num::NonZeroU32;
use std::path::Path;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// Bytes in a UMEM frame. The kernel keeps 256 bytes of XDP headroom in
/// front of each frame's data, so the longest frame a port receives or
/// sends is [`UMEM_FRAME`] − 256 = 1792 bytes: a 1500-byte MTU frame plus
/// a Geneve encapsulation (58 bytes) and a VLAN tag fit.
pub const UMEM_FRAME: u32 = 2048;

/// Default depth of each of the four rings.
pub const DEFAULT_RING: u32 = 1024;

/// How the socket is attached, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Native XDP in the driver, frames DMAed straight into the UMEM.
    NativeZeroCopy,
    /// Native XDP in the driver, frames copied into the UMEM.
    NativeCopy,
    /// Generic XDP (after the kernel built an skb), frames copied.
    GenericCopy,
}

impl XdpMode {
    /// Every mode, in the order [`AfXdpPort::open`] tries them.
    pub const ALL: [XdpMode; 3] = [
        XdpMode::NativeZeroCopy,
        XdpMode::NativeCopy,
        XdpMode::GenericCopy,
    ];

    fn xdp_flags(self) -> XdpFlags {
        match self {
            XdpMode::NativeZeroCopy | XdpMode::NativeCopy => XdpFlags::XDP_FLAGS_DRV_MODE,
            XdpMode::GenericCopy => XdpFlags::XDP_FLAGS_SKB_MODE,
        }
    }

    fn bind_flags(self) -> BindFlags {
        let copy = match self {
            XdpMode::NativeZeroCopy => BindFlags::XDP_ZEROCOPY,
            XdpMode::NativeCopy | XdpMode::GenericCopy => BindFlags::XDP_COPY,
        };
        copy | BindFlags::XDP_USE_NEED_WAKEUP
    }

    /// True when the kernel copies frames (TX then happens inside the
    /// `sendto` that kicks the ring, 32 frames per call).
    pub fn is_copy(self) -> bool {
        self != XdpMode::NativeZeroCopy
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::NativeZeroCopy => "native zero-copy",
            XdpMode::NativeCopy => "native copy",
            XdpMode::GenericCopy => "generic copy",
        })
    }
}

/// Settings of [`AfXdpPort::open_with`]; the defaults are what
/// [`AfXdpPort::open`] uses.
#[derive(Debug, Clone)]
pub struct AfXdpOptions {
    /// Depth of the fill, completion, RX and TX rings (a power of two).
    /// The UMEM gets twice as many frames.
    pub ring: u32,
    /// Only this mode instead of the fallback chain (tests, or an operator
    /// who wants an error rather than a slow port).
    pub mode: Option<XdpMode>,
}

impl Default for AfXdpOptions {
    fn default() -> Self {
        AfXdpOptions {
            ring: DEFAULT_RING,
            mode: None,
        }
    }
}

/// Why a port could not be opened. Its `Display` is one line that names
/// the interface and says what to fix.
#[derive(Debug)]
pub enum Error {
    /// No interface of that name (in this network namespace).
    NoInterface { ifname: String },
    /// The interface exists but has no such RX queue.
    NoQueue { ifname: String, queue: u32 },
    /// The kernel said EPERM/EACCES.
    NotPermitted { ifname: String, detail: String },
    /// Another XDP program or AF_XDP socket holds the interface or queue.
    Busy { ifname: String, detail: String },
    /// Every mode tried was refused; `detail` lists what each one said.
    /// `forced`: only the mode of [`AfXdpOptions::mode`] was tried.
    XdpRefused {
        ifname: String,
        detail: String,
        forced: bool,
    },
    /// A bad name or setting, or the UMEM or its rings could not be set up.
    Setup { ifname: String, detail: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoInterface { ifname } => write!(
                f,
                "afxdp {ifname}: no such interface in this network namespace (check `ip link show {ifname}`)"
            ),
            Error::NoQueue { ifname, queue } => write!(
                f,
                "afxdp {ifname}: no RX queue {queue} (see `ls /sys/class/net/{ifname}/queues`)"
            ),
            Error::NotPermitted { ifname, detail } => write!(
                f,
                "afxdp {ifname}: {detail}: needs root, or CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF"
            ),
            Error::Busy { ifname, detail } => write!(
                f,
                "afxdp {ifname}: {detail}: another XDP program or AF_XDP socket holds it (check `ip link show {ifname}`; `ip link set {ifname} xdp off` removes a stale program)"
            ),
            Error::XdpRefused {
                ifname,
                detail,
                forced: true,
            } => write!(
                f,
                "afxdp {ifname}: refused ({detail}); open it without forcing a mode to fall back to a slower one"
            ),
            Error::XdpRefused { ifname, detail, .. } => write!(
                f,
                "afxdp {ifname}: AF_XDP refused in every mode ({detail}); use the AF_PACKET backend on this interface, or a kernel with XDP sockets (CONFIG_XDP_SOCKETS)"
            ),
            Error::Setup { ifname, detail } => write!(f, "afxdp {ifname}: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match e {
            Error::NoInterface { .. } | Error::NoQueue { .. } => io::ErrorKind::NotFound,
            Error::NotPermitted { .. } => io::ErrorKind::PermissionDenied,
            Error::Busy { .. } => io::ErrorKind::ResourceBusy,
            Error::XdpRefused { .. } => io::ErrorKind::Unsupported,
            Error::Setup { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Counters beyond [`PortStats`], for `ironflow port show` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfXdpStats {
    /// Received frames longer than a packet frame takes (dropped).
    pub rx_too_long: u64,
    /// Packets longer than a UMEM frame takes (dropped, and counted in
    /// `tx_dropped` too).
    pub tx_too_long: u64,
    /// `sendto` kicks of the TX ring.
    pub tx_kicks: u64,
    /// Kernel counters of the socket (`XDP_STATISTICS`): frames dropped for
    /// want of room in the RX ring or of frames on the fill ring.
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_ring_empty: u64,
}

/// A [`Port`] on one queue of an interface, through an AF_XDP socket.
pub struct AfXdpPort {
    name: String,
    ifname: String,
    queue: u32,
    mode: XdpMode,
    ring: u32,
    // The queues hold the socket (and, through it, the UMEM); the UMEM
    // handle is kept for reading and writing frames.
    umem: Umem,
    fill: FillQueue,
    comp: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    /// UMEM frames free for sending.
    tx_free: Vec<FrameDesc>,
    /// Received frames the fill ring did not take back yet (it always
    /// should: it is as deep as the receive half of the UMEM).
    fill_backlog: Vec<FrameDesc>,
    /// Frames on the TX ring or in flight, not yet completed.
    tx_in_flight: u32,
    /// Scratch descriptors for one ring operation (no allocation per poll).
    scratch: Vec<FrameDesc>,
    stats: PortStats,
    extra: AfXdpStats,
}

/// Routes libbpf's and libxdp's log lines through [`quiet_print`], once.
fn quiet_libraries() {
    #[cfg(target_arch = "x86_64")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: both calls only store a function pointer (the
            // libraries' own printing is replaced process-wide; nothing
            // else in ironflow uses them), and `quiet_print` has the
            // signature the libraries call it with on x86_64.
            unsafe {
                libxdp_sys::libxdp_set_print(Some(quiet_print::<libxdp_sys::__va_list_tag>));
                libbpf_sys::libbpf_set_print(Some(quiet_print::<libbpf_sys::__va_list_tag>));
            }
        });
    }
}

/// A libbpf/libxdp print callback: warnings (level 0 in both) are printed
/// to stderr, each distinct one once per process; the rest is dropped.
///
/// # Safety
///
/// Called by the libraries only, with a printf format and its arguments.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn quiet_print<V>(
    level: std::os::raw::c_uint,
    format: *const std::os::raw::c_char,
    args: *mut V,
) -> std::os::raw::c_int {
    use std::collections::HashSet;
    use std::sync::Mutex;
    extern "C" {
        // On x86_64 a `va_list` argument is passed as a pointer to the
        // libraries' `__va_list_tag`, whatever the Rust type naming it.
        fn vsnprintf(
            buf: *mut std::os::raw::c_char,
            len: usize,
            format: *const std::os::raw::c_char,
            args: *mut std::ffi::c_void,
        ) -> std::os::raw::c_int;
    }
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if level != 0 || format.is_null() {
        return 0;
    }
    let mut buf = [0 as std::os::raw::c_char; 512];
    // SAFETY: `buf` is writable for its length, and `format` and `args`
    // are the printf pair the library handed over.
    let n = unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), format, args.cast()) };
    if n < 0 {
        return 0;
    }
    // SAFETY: vsnprintf NUL-terminates within `buf`.
    let line = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    let line = line.to_string_lossy().trim_end().to_string();
    if let Ok(mut seen) = SEEN.lock() {
        if seen.get_or_insert_with(HashSet::new).insert(line.clone()) {
            eprintln!("{line}");
        }
    }
    n
}

impl AfXdpPort {
    /// Opens an AF_XDP socket on `queue` of `ifname`, trying native
    /// zero-copy, then native copy, then generic copy mode.
    pub fn open(ifname: &str, queue: u32) -> Result<AfXdpPort, Error> {
        AfXdpPort::open_with(ifname, queue, &AfXdpOptions::default())
    }

    /// [`AfXdpPort::open`] with settings.
    pub fn open_with(ifname: &str, queue: u32, opts: &AfXdpOptions) -> Result<AfXdpPort, Error> {
        quiet_libraries();
        let setup = |detail: String| Error::Setup {
            ifname: ifname.to_string(),
            detail,
        };
        // Checked here rather than left to the kernel, whose answer to
        // both (ENODEV, EINVAL from bind) does not say what was wrong.
        if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', '\0']) {
            return Err(setup(
                "not an interface name (1 to 15 bytes, no '/')".into(),
            ));
        }
        let sys = Path::new("/sys/class/net").join(ifname);
        if !sys.exists() {
            return Err(Error::NoInterface {
                ifname: ifname.to_string(),
            });
        }
        if !sys.join(format!("queues/rx-{queue}")).exists() {
            return Err(Error::NoQueue {
                ifname: ifname.to_string(),
                queue,
            });
        }
        let ring = QueueSize::new(opts.ring)
            .map_err(|_| setup(format!("ring size {} is not a power of two", opts.ring)))?;
        let frames = opts
            .ring
            .checked_mul(2)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| setup(format!("ring size {} is out of range", opts.ring)))?;
        let iface = Interface::new(
            CString::new(ifname).map_err(|_| setup("interface name holds a NUL".into()))?,
        );

        let modes: &[XdpMode] = match &opts.mode {
            Some(m) => std::slice::from_ref(m),
            None => &XdpMode::ALL,
        };
        let mut refusals = Vec::new();
        for &mode in modes {
            match AfXdpPort::try_mode(ifname, &iface, queue, ring, frames, mode) {
                Ok(port) => return Ok(port),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Refused(e)) => {
                    // Permission and busy errors would be the same in every
                    // mode: say so now rather than after two more tries.
                    match e.raw_os_error() {
                        Some(errno::EPERM) | Some(errno::EACCES) => {
                            return Err(Error::NotPermitted {
                                ifname: ifname.to_string(),
                                detail: format!("{mode}: {e}"),
                            })
                        }
                        Some(errno::EBUSY) => {
                            return Err(Error::Busy {
                                ifname: ifname.to_string(),
                                detail: format!("queue {queue}: {e}"),
                            })
                        }
                        _ => refusals.push(format!("{mode}: {e}")),
                    }
                }
            }
        }
        Err(Error::XdpRefused {
            ifname: ifname.to_string(),
            detail: refusals.join("; "),
            forced: opts.mode.is_some(),
        })
    }

    /// One attempt: a fresh UMEM and a socket bound in `mode`.
    fn try_mode(
        ifname: &str,
        iface: &Interface,
        queue: u32,
        ring: QueueSize,
        frames: NonZeroU32,
        mode: XdpMode,
    ) -> Result<AfXdpPort, Attempt> {
        let setup = |detail: String| {
            Attempt::Fatal(Error::Setup {
                ifname: ifname.to_string(),
                detail,
            })
        };
        let frame_size =
            FrameSize::new(UMEM_FRAME).map_err(|e| setup(format!("UMEM frame size: {e}")))?;
        let umem_config = UmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .frame_headroom(0)
            .build()
            .map_err(|e| setup(format!("UMEM settings: {e}")))?;
        let (umem, mut descs) = Umem::new(umem_config, frames, false).map_err(|e| {
            let cause = os_cause(&e);
            let detail = format!("creating the UMEM ({frames} frames): {cause}");
            // Registering a UMEM is the first thing that needs privileges.
            match cause.raw_os_error() {
                Some(errno::EPERM) | Some(errno::EACCES) => Attempt::Fatal(Error::NotPermitted {
                    ifname: ifname.to_string(),
                    detail,
                }),
                _ => setup(detail),
            }
        })?;
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .xdp_flags(mode.xdp_flags())
            .bind_flags(mode.bind_flags())
            .build();
        // SAFETY: the UMEM is fresh and not shared with any other socket,
        // so the contract about binding a shared UMEM twice (which needs
        // XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD) does not apply.
        let created = unsafe { Socket::new(socket_config, &umem, iface, queue) };
        let (tx, rx, rings) = created.map_err(|e| Attempt::Refused(os_cause(&e)))?;
        let Some((mut fill, comp)) = rings else {
            return Err(setup(
                "no fill and completion rings for a fresh UMEM".into(),
            ));
        };
        let half = ring.get() as usize;
        // The first half of the frames goes to the kernel to receive into.
        let tx_free = descs.split_off(half);
        // SAFETY: the descriptors are this UMEM's own, and no one else
        // holds them: they go from here to the kernel.
        let filled = unsafe { fill.produce(&descs) };
        if filled != descs.len() {
            return Err(setup(format!(
                "fill ring took {filled} of {} frames",
                descs.len()
            )));
        }
        Ok(AfXdpPort {
            name: format!("{ifname} (afxdp queue {queue}, {mode})"),
            ifname: ifname.to_string(),
            queue,
            mode,
            ring: ring.get(),
            umem,
            fill,
            comp,
            rx,
            tx,
            tx_free,
            fill_backlog: Vec::with_capacity(half),
            tx_in_flight: 0,
            scratch: vec![FrameDesc::default(); BATCH_SIZE.max(half)],
            stats: PortStats::default(),
            extra: AfXdpStats::default(),
        })
    }

    /// How the socket is attached.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface it is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The queue it is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Counters beyond [`PortStats`], the kernel's read now.
    pub fn afxdp_stats(&self) -> AfXdpStats {
        let mut s = self.extra;
        if let Ok(k) = self.rx.fd().xdp_statistics() {
            s.kernel_rx_dropped = k.rx_dropped();
            s.kernel_rx_ring_full = k.rx_ring_full();
            s.kernel_fill_ring_empty = k.rx_fill_ring_empty_descs();
        }
        s
    }

    /// Takes completed TX frames back onto the free list.
    fn reclaim(&mut self) {
        let room = self.scratch.len();
        // SAFETY: the completion ring hands back frames of this UMEM that
        // the kernel is done with; they go onto the free list only.
        let n = unsafe { self.comp.consume(&mut self.scratch[..room]) };
        self.tx_free.extend_from_slice(&self.scratch[..n]);
        self.tx_in_flight = self.tx_in_flight.saturating_sub(n as u32);
    }

    /// Kicks the TX ring. In copy mode the kernel sends at most 32 frames
    /// per `sendto`, inside the call, so it is repeated until the ring is
    /// drained (or the kernel stops taking them: a full device queue).
    fn kick(&mut self) -> io::Result<()> {
        if !self.mode.is_copy() {
            if self.tx.needs_wakeup() {
                self.extra.tx_kicks += 1;
                self.tx.wakeup()?;
            }
            return Ok(());
        }
        let mut last_pending = u32::MAX;
        loop {
            let pending = self.ring - self.tx.nb_free_exact();
            if pending == 0 || pending >= last_pending {
                return Ok(());
            }
            last_pending = pending;
            self.extra.tx_kicks += 1;
            self.tx.wakeup()?;
        }
    }
}

/// Why one mode did not work: refused by the kernel (try the next mode)
/// or broken in a way the next mode cannot fix.
enum Attempt {
    Refused(io::Error),
    Fatal(Error),
}

/// The errno values the mode fallback tells apart (xsk-rs re-exports no
/// libc, and these are the same on every Linux architecture).
mod errno {
    pub const EPERM: i32 = 1;
    pub const EACCES: i32 = 13;
    pub const EBUSY: i32 = 16;
}

/// The operating-system error under one of xsk-rs's errors (they carry
/// it as their source), or the error's own text when there is none.
fn os_cause(e: &dyn std::error::Error) -> io::Error {
    match e.source().and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(io) => match io.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(io.kind(), io.to_string()),
        },
        None => io::Error::other(e.to_string()),
    }
}

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        if self.tx_in_flight > 0 {
            // Frames an earlier `send` left on the TX ring (the device
            // queue was full) go out now rather than at the next send.
            self.kick()?;
            self.reclaim();
        }
        let room = (BATCH_SIZE - batch.len()).min(self.scratch.len());
        if room == 0 {
            return Ok(0);
        }
        // SAFETY: the RX ring hands over frames of this UMEM that the
        // kernel has filled; they are read below and then returned to the
        // fill ring, and nothing else touches them in between.
        let n = unsafe { self.rx.consume(&mut self.scratch[..room]) };
        let mut got = 0;
        for desc in &self.scratch[..n] {
            // SAFETY: `desc` came from this UMEM's RX ring and is ours
            // until it goes back on the fill ring below.
            let data = unsafe { self.umem.data(desc) };
            let data = data.contents();
            let mut p = pool.alloc();
            let buf = p.rx_buffer();
            if data.len() > buf.len() {
                self.extra.rx_too_long += 1;
                pool.free(p);
                continue;
            }
            buf[..data.len()].copy_from_slice(data);
            p.set_len(data.len());
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += data.len() as u64;
            match batch.push(p) {
                Ok(()) => got += 1,
                Err(p) => pool.free(p),
            }
        }
        if n > 0 {
            // SAFETY: the frames were just read and are not used again
            // until the kernel hands them back on the RX ring.
            let back = unsafe { self.fill.produce(&self.scratch[..n]) };
            self.fill_backlog.extend_from_slice(&self.scratch[back..n]);
        }
        if !self.fill_backlog.is_empty() {
            // SAFETY: as above; these were read in an earlier poll.
            let back = unsafe { self.fill.produce(&self.fill_backlog) };
            self.fill_backlog.drain(..back);
        }
        if self.fill.needs_wakeup() {
            // A zero-timeout poll: lets a zero-copy driver refill.
            self.fill.wakeup(self.rx.fd_mut(), 0)?;
        }
        Ok(got)
    }

    fn send(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        if self.tx_free.len() < batch.len() {
            self.reclaim();
        }
        let mut ready = 0;
        let mut bytes = 0u64;
        for p in batch.drain() {
            let data = p.data();
            let Some(mut desc) = self.tx_free.pop() else {
                self.stats.tx_dropped += 1;
                pool.free(p);
                continue;
            };
            // SAFETY: `desc` is a free TX frame of this UMEM (never
            // submitted, or back from the completion ring).
            let mut frame = unsafe { self.umem.data_mut(&mut desc) };
            let mut cursor = frame.cursor();
            cursor.set_pos(0);
            if data.len() > cursor.buf_len() || cursor.write_all(data).is_err() {
                self.extra.tx_too_long += 1;
                self.stats.tx_dropped += 1;
                self.tx_free.push(desc);
                pool.free(p);
                continue;
            }
            bytes += data.len() as u64;
            self.scratch[ready] = desc;
            ready += 1;
            pool.free(p);
        }
        // SAFETY: the descriptors are this UMEM's frames, just written and
        // not used again until they come back on the completion ring.
        let sent = unsafe { self.tx.produce(&self.scratch[..ready]) };
        if sent < ready {
            // A full TX ring: the frames not taken are free again.
            self.stats.tx_dropped += (ready - sent) as u64;
            for desc in &self.scratch[sent..ready] {
                bytes -= desc.lengths().data() as u64;
            }
            let (_, rest) = self.scratch[..ready].split_at(sent);
            self.tx_free.extend_from_slice(rest);
        }
        self.stats.tx_packets += sent as u64;
        self.stats.tx_bytes += bytes;
        self.tx_in_flight += sent as u32;
        if self.tx_in_flight > 0 {
            self.kick()?;
            self.reclaim();
        }
        Ok(sent)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
