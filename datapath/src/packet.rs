//! Packet buffers: fixed-size frames with headroom, the per-worker pool
//! that recycles them, and the batches the workers move them in.
//!
//! A frame is [`FRAME_SIZE`] bytes. A received packet starts [`HEADROOM`]
//! bytes in, so a Geneve encapsulation (58 bytes of outer headers) or a
//! VLAN tag is pushed in front of it without moving the payload. The
//! packet remembers where its L3 and L4 headers are, as offsets into the
//! frame rather than into the data: pushing or pulling outer headers moves
//! the start of the data but not the inner headers, so the offsets stay
//! right with no bookkeeping.
//!
//! Frames come from a [`PacketPool`] that each worker owns (no locks) and
//! go back to it with [`PacketPool::free`]; popping and pushing a free list
//! costs about a nanosecond where the allocator costs tens (see the
//! `packet` group of the `extract` bench). A packet dropped without
//! `free` is not leaked: its frame goes back to the allocator instead.
//! Returning frames on drop would need every packet to point at its pool
//! (a reference count per packet, or a thread-local), which costs more
//! than the explicit call the worker loop makes anyway.

use std::fmt;

/// Bytes in a frame.
pub const FRAME_SIZE: usize = 2048;
/// Bytes kept free in front of a received packet for headers to be pushed.
pub const HEADROOM: usize = 128;
/// The longest packet a frame receives (without eating into headroom).
pub const MAX_RX_LEN: usize = FRAME_SIZE - HEADROOM;
/// Packets a batch holds: what a worker takes from a port in one poll.
pub const BATCH_SIZE: usize = 32;

const NO_OFS: u16 = u16::MAX;

/// The storage of one packet. Cache-line aligned so that the headers a
/// packet starts with share as few lines as possible.
#[repr(C, align(64))]
struct Frame([u8; FRAME_SIZE]);

impl Frame {
    fn boxed() -> Box<Frame> {
        Box::new(Frame([0; FRAME_SIZE]))
    }
}

/// One packet: a frame, where its data lies in it, and where its L3 and L4
/// headers start.
///
/// Invariant: `start + len <= FRAME_SIZE`; `l3` and `l4` are frame offsets
/// or [`NO_OFS`].
pub struct Packet {
    frame: Box<Frame>,
    start: u16,
    len: u16,
    l3: u16,
    l4: u16,
}

impl Packet {
    /// An empty packet in a freshly allocated frame (the slow path and
    /// tests; the fast path takes frames from a [`PacketPool`]).
    pub fn new() -> Packet {
        Packet::with_frame(Frame::boxed())
    }

    fn with_frame(frame: Box<Frame>) -> Packet {
        Packet {
            frame,
            start: HEADROOM as u16,
            len: 0,
            l3: NO_OFS,
            l4: NO_OFS,
        }
    }

    /// A packet holding a copy of `data`, or `None` if it is longer than
    /// [`MAX_RX_LEN`].
    pub fn from_slice(data: &[u8]) -> Option<Packet> {
        let mut p = Packet::new();
        p.set_data(data).then_some(p)
    }

    /// Replaces the contents with a copy of `data` (at the usual headroom),
    /// forgetting the header offsets. False, and nothing changed, if it
    /// does not fit.
    pub fn set_data(&mut self, data: &[u8]) -> bool {
        let Some(room) = self.frame.0.get_mut(HEADROOM..HEADROOM + data.len()) else {
            return false;
        };
        room.copy_from_slice(data);
        self.start = HEADROOM as u16;
        self.len = data.len() as u16;
        self.l3 = NO_OFS;
        self.l4 = NO_OFS;
        true
    }

    /// Empties the packet and hands out the whole receive area (from the
    /// headroom to the end of the frame) for a port to fill; then call
    /// [`Packet::set_len`] with what it wrote.
    pub fn rx_buffer(&mut self) -> &mut [u8] {
        self.start = HEADROOM as u16;
        self.len = 0;
        self.l3 = NO_OFS;
        self.l4 = NO_OFS;
        &mut self.frame.0[HEADROOM..]
    }

    /// Sets the data length (after [`Packet::rx_buffer`], or to trim or
    /// grow at the tail). False, and nothing changed, if the frame has no
    /// room for it.
    pub fn set_len(&mut self, len: usize) -> bool {
        if usize::from(self.start) + len > FRAME_SIZE {
            return false;
        }
        self.len = len as u16;
        true
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let s = usize::from(self.start);
        &self.frame.0[s..s + usize::from(self.len)]
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let s = usize::from(self.start);
        &mut self.frame.0[s..s + usize::from(self.len)]
    }

    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.start)
    }

    /// Bytes free after the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        FRAME_SIZE - usize::from(self.start) - usize::from(self.len)
    }

    /// Grows the data by `n` bytes at the front and returns them (their
    /// contents are whatever the frame held) for the caller to fill; `None`
    /// if the headroom is short.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> Option<&mut [u8]> {
        let new_start = usize::from(self.start).checked_sub(n)?;
        self.start = new_start as u16;
        self.len += n as u16;
        Some(&mut self.frame.0[new_start..new_start + n])
    }

    /// Removes `n` bytes from the front and returns them; `None` (and
    /// nothing removed) if the packet is shorter. Header offsets that fall
    /// inside the removed part are forgotten.
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> Option<&[u8]> {
        if n > usize::from(self.len) {
            return None;
        }
        let old = usize::from(self.start);
        self.start += n as u16;
        self.len -= n as u16;
        if self.l3 < self.start {
            self.l3 = NO_OFS;
        }
        if self.l4 < self.start {
            self.l4 = NO_OFS;
        }
        Some(&self.frame.0[old..old + n])
    }

    /// Grows the data by `n` bytes at the tail and returns them for the
    /// caller to fill; `None` if the tailroom is short.
    #[inline]
    pub fn push_back(&mut self, n: usize) -> Option<&mut [u8]> {
        let end = usize::from(self.start) + usize::from(self.len);
        let room = self.frame.0.get_mut(end..end + n)?;
        self.len += n as u16;
        Some(room)
    }

    /// Shortens the data to `len` bytes (no effect if it is shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < usize::from(self.len) {
            self.len = len as u16;
        }
    }

    /// Where the L3 header starts, from the start of the data.
    #[inline]
    pub fn l3_offset(&self) -> Option<usize> {
        self.rel(self.l3)
    }

    /// Where the L4 header starts, from the start of the data.
    #[inline]
    pub fn l4_offset(&self) -> Option<usize> {
        self.rel(self.l4)
    }

    #[inline]
    fn rel(&self, ofs: u16) -> Option<usize> {
        if ofs == NO_OFS {
            return None;
        }
        usize::from(ofs).checked_sub(usize::from(self.start))
    }

    /// Records where the L3 and L4 headers start, from the start of the
    /// data (what [`crate::extract::extract`] returns). Offsets past the
    /// frame are recorded as absent.
    #[inline]
    pub fn set_layers(&mut self, l3: Option<usize>, l4: Option<usize>) {
        let abs = |o: Option<usize>| match o {
            Some(o) if o < FRAME_SIZE - usize::from(self.start) => self.start + o as u16,
            _ => NO_OFS,
        };
        self.l3 = abs(l3);
        self.l4 = abs(l4);
    }

    /// The data from the L3 header on (what conntrack looks at).
    pub fn l3(&self) -> Option<&[u8]> {
        self.l3_offset().and_then(|o| self.data().get(o..))
    }

    /// The data from the L4 header on.
    pub fn l4(&self) -> Option<&[u8]> {
        self.l4_offset().and_then(|o| self.data().get(o..))
    }
}

impl Default for Packet {
    fn default() -> Self {
        Packet::new()
    }
}

impl Clone for Packet {
    /// A copy in a new frame (the slow path's; the fast path never copies).
    fn clone(&self) -> Packet {
        let mut frame = Frame::boxed();
        frame.0.copy_from_slice(&self.frame.0);
        Packet {
            frame,
            start: self.start,
            len: self.len,
            l3: self.l3,
            l4: self.l4,
        }
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len)
            .field("headroom", &self.start)
            .field("l3", &self.l3_offset())
            .field("l4", &self.l4_offset())
            .finish()
    }
}

/// A worker's free frames. Never shared between threads: each worker owns
/// one, so allocation is a pop and freeing a push.
pub struct PacketPool {
    // Boxes, not frames: a frame moves between the pool and a packet as a
    // pointer, never as 2 KiB of bytes.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Frame>>,
    fresh: u64,
}

impl PacketPool {
    /// A pool with `frames` frames allocated up front. It keeps at most that
    /// many (at least a few batches' worth) on its free list.
    pub fn new(frames: usize) -> PacketPool {
        let cap = frames.max(4 * BATCH_SIZE);
        let mut free = Vec::with_capacity(cap);
        free.extend((0..frames).map(|_| Frame::boxed()));
        PacketPool { free, fresh: 0 }
    }

    /// An empty packet, from the free list when it has one (else from the
    /// allocator, which [`PacketPool::fresh_allocations`] counts).
    #[inline]
    pub fn alloc(&mut self) -> Packet {
        match self.free.pop() {
            Some(frame) => Packet::with_frame(frame),
            None => {
                self.fresh += 1;
                Packet::new()
            }
        }
    }

    /// Takes a packet's frame back. A full free list lets it go to the
    /// allocator rather than grow (which would allocate).
    #[inline]
    pub fn free(&mut self, p: Packet) {
        if self.free.len() < self.free.capacity() {
            self.free.push(p.frame);
        }
    }

    /// Frees every packet of a batch, leaving it empty.
    pub fn free_batch(&mut self, batch: &mut PacketBatch) {
        for p in batch.pkts.drain(..) {
            if self.free.len() < self.free.capacity() {
                self.free.push(p.frame);
            }
        }
    }

    /// Frames on the free list.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Frames allocated because the free list was empty: not zero in a
    /// steady state means the pool is too small.
    pub fn fresh_allocations(&self) -> u64 {
        self.fresh
    }
}

/// Up to [`BATCH_SIZE`] packets, handled together so that per-poll costs
/// (a system call, a cache probe's setup) spread over many packets. Its
/// storage is allocated once; pushing never reallocates.
pub struct PacketBatch {
    pkts: Vec<Packet>,
}

impl PacketBatch {
    pub fn new() -> PacketBatch {
        PacketBatch {
            pkts: Vec::with_capacity(BATCH_SIZE),
        }
    }

    /// Adds a packet; a full batch hands it back.
    #[inline]
    pub fn push(&mut self, p: Packet) -> Result<(), Packet> {
        if self.pkts.len() >= BATCH_SIZE {
            return Err(p);
        }
        self.pkts.push(p);
        Ok(())
    }

    #[inline]
    pub fn pop(&mut self) -> Option<Packet> {
        self.pkts.pop()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.pkts.len() >= BATCH_SIZE
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Packet> {
        self.pkts.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Packet> {
        self.pkts.iter_mut()
    }

    pub fn as_slice(&self) -> &[Packet] {
        &self.pkts
    }

    pub fn as_mut_slice(&mut self) -> &mut [Packet] {
        &mut self.pkts
    }

    /// Takes every packet out, leaving the batch empty (and its storage).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Packet> {
        self.pkts.drain(..)
    }
}

impl Default for PacketBatch {
    fn default() -> Self {
        PacketBatch::new()
    }
}

impl<'a> IntoIterator for &'a mut PacketBatch {
    type Item = &'a mut Packet;
    type IntoIter = std::slice::IterMut<'a, Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pull_keep_inner_offsets() {
        let mut p = Packet::from_slice(&[0xaa; 60]).unwrap();
        p.set_layers(Some(14), Some(34));
        assert_eq!(p.headroom(), HEADROOM);
        let hdr = p.push_front(58).unwrap();
        hdr.fill(0x11);
        assert_eq!(p.len(), 118);
        assert_eq!(p.l3_offset(), Some(72));
        assert_eq!(p.l4_offset(), Some(92));
        assert_eq!(&p.data()[..58], &[0x11; 58]);
        assert_eq!(p.pull_front(58).unwrap(), &[0x11; 58]);
        assert_eq!(p.l3_offset(), Some(14));
        assert_eq!(p.data(), &[0xaa; 60]);
        // Pulling past L3 forgets it.
        p.pull_front(20).unwrap();
        assert_eq!(p.l3_offset(), None);
        assert_eq!(p.l4_offset(), Some(14));
    }

    #[test]
    fn limits_are_refused_not_panicked() {
        let mut p = Packet::from_slice(&[1, 2, 3]).unwrap();
        assert!(p.push_front(HEADROOM + 1).is_none());
        assert_eq!(p.len(), 3);
        assert!(p.pull_front(4).is_none());
        assert!(p.push_front(HEADROOM).is_some());
        assert!(p.push_front(1).is_none());
        assert!(Packet::from_slice(&vec![0; MAX_RX_LEN + 1]).is_none());
        let mut q = Packet::from_slice(&vec![0; MAX_RX_LEN]).unwrap();
        assert_eq!(q.tailroom(), 0);
        assert!(q.push_back(1).is_none());
        assert!(!q.set_len(MAX_RX_LEN + 1));
        q.truncate(10);
        assert_eq!(q.push_back(2).unwrap().len(), 2);
        assert_eq!(q.len(), 12);
        q.set_layers(Some(FRAME_SIZE), Some(4));
        assert_eq!(q.l3_offset(), None);
        assert_eq!(q.l4().map(<[u8]>::len), Some(8));
    }

    #[test]
    fn rx_buffer_then_set_len() {
        let mut p = Packet::new();
        let buf = p.rx_buffer();
        assert_eq!(buf.len(), MAX_RX_LEN);
        buf[..4].copy_from_slice(&[9, 8, 7, 6]);
        assert!(p.set_len(4));
        assert_eq!(p.data(), &[9, 8, 7, 6]);
    }

    #[test]
    fn pool_recycles_frames() {
        let mut pool = PacketPool::new(2);
        let a = pool.alloc();
        let b = pool.alloc();
        let c = pool.alloc();
        assert_eq!(pool.fresh_allocations(), 1);
        assert_eq!(pool.available(), 0);
        let mut batch = PacketBatch::new();
        for p in [a, b, c] {
            batch.push(p).unwrap();
        }
        assert_eq!(batch.len(), 3);
        pool.free_batch(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(pool.available(), 3);
        let d = pool.alloc();
        assert!(d.is_empty());
        assert_eq!(d.headroom(), HEADROOM);
        pool.free(d);
        assert_eq!(pool.fresh_allocations(), 1);
    }

    #[test]
    fn batch_is_bounded() {
        let mut batch = PacketBatch::new();
        for _ in 0..BATCH_SIZE {
            batch.push(Packet::new()).unwrap();
        }
        assert!(batch.is_full());
        assert!(batch.push(Packet::new()).is_err());
        assert_eq!(batch.drain().count(), BATCH_SIZE);
        assert!(batch.is_empty());
    }
}
