//! The port backend trait, and the in-memory backend that tests,
//! benchmarks and the embedded harness attach pods with.
//!
//! A port moves batches of packets; the worker polls it. The in-memory
//! port is a pair of bounded lock-free queues: the datapath side is a
//! [`Port`], the other end ([`MemPeer`]) is whoever plays the pod (a test,
//! a smoltcp stack, another node's underlay).

use crate::packet::{Packet, PacketBatch, PacketPool};
use crossbeam_queue::ArrayQueue;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

/// A datapath port number (OVS's `in_port`/`output:N`).
pub type PortId = u32;

/// Counters of one port, as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets the port could not take (its queue or ring was full).
    pub tx_dropped: u64,
}

impl PortStats {
    /// Counts a received packet and hands it to `batch`; one that does not
    /// fit (a super-frame's segments can outnumber the room) waits in
    /// `pending` for the next `recv`. True if it went into the batch.
    #[inline]
    pub(crate) fn deliver(
        &mut self,
        p: Packet,
        batch: &mut PacketBatch,
        pending: &mut VecDeque<Packet>,
    ) -> bool {
        self.rx_packets += 1;
        self.rx_bytes += p.len() as u64;
        match batch.push(p) {
            Ok(()) => true,
            Err(p) => {
                pending.push_back(p);
                false
            }
        }
    }
}

/// Something packets come in from and go out to.
pub trait Port: Send {
    /// What `ironflow port list` shows.
    fn name(&self) -> &str;
    /// Appends up to the batch's free room of received packets; returns
    /// how many. Frames come from `pool`.
    fn recv(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize>;
    /// Sends every packet of `batch` (emptying it), returning frames to
    /// `pool`; packets it cannot take are dropped and counted.
    fn send(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize>;
    fn stats(&self) -> PortStats;
}

/// Default depth of each in-memory queue.
pub const MEM_QUEUE: usize = 4096;

/// The datapath side of an in-memory port.
pub struct MemPort {
    name: String,
    /// Packets from the peer to the datapath.
    rx: Arc<ArrayQueue<Packet>>,
    /// Packets from the datapath to the peer.
    tx: Arc<ArrayQueue<Packet>>,
    stats: PortStats,
}

/// The far end of an in-memory port: what a pod (or a test) holds.
#[derive(Clone)]
pub struct MemPeer {
    to_datapath: Arc<ArrayQueue<Packet>>,
    from_datapath: Arc<ArrayQueue<Packet>>,
}

impl MemPort {
    /// A port and its peer, each direction `depth` packets deep.
    pub fn pair(name: &str, depth: usize) -> (MemPort, MemPeer) {
        let rx = Arc::new(ArrayQueue::new(depth.max(1)));
        let tx = Arc::new(ArrayQueue::new(depth.max(1)));
        (
            MemPort {
                name: name.to_string(),
                rx: rx.clone(),
                tx: tx.clone(),
                stats: PortStats::default(),
            },
            MemPeer {
                to_datapath: rx,
                from_datapath: tx,
            },
        )
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv(&mut self, _pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut n = 0;
        while !batch.is_full() {
            let Some(p) = self.rx.pop() else { break };
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += p.len() as u64;
            if batch.push(p).is_err() {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, pool: &mut PacketPool, batch: &mut PacketBatch) -> io::Result<usize> {
        let mut n = 0;
        for p in batch.drain() {
            let len = p.len() as u64;
            match self.tx.push(p) {
                Ok(()) => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += len;
                    n += 1;
                }
                Err(p) => {
                    self.stats.tx_dropped += 1;
                    pool.free(p);
                }
            }
        }
        Ok(n)
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

impl MemPeer {
    /// Hands a frame to the datapath; false if the queue is full or the
    /// frame too long.
    pub fn inject(&self, frame: &[u8]) -> bool {
        Packet::from_slice(frame).is_some_and(|p| self.to_datapath.push(p).is_ok())
    }

    /// Hands a packet to the datapath, or gives it back if the queue is full.
    pub fn inject_packet(&self, p: Packet) -> Result<(), Packet> {
        self.to_datapath.push(p)
    }

    /// The next frame the datapath sent, if any.
    pub fn receive(&self) -> Option<Vec<u8>> {
        self.from_datapath.pop().map(|p| p.data().to_vec())
    }

    /// The next packet the datapath sent, if any.
    pub fn receive_packet(&self) -> Option<Packet> {
        self.from_datapath.pop()
    }

    /// Frames waiting for the peer.
    pub fn pending(&self) -> usize {
        self.from_datapath.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_both_ways_and_overflow_is_counted() {
        let (mut port, peer) = MemPort::pair("pod", 2);
        let mut pool = PacketPool::new(8);
        let mut batch = PacketBatch::new();
        assert!(peer.inject(&[1, 2, 3]));
        assert!(peer.inject(&[4]));
        assert!(!peer.inject(&[5]), "queue of 2 is full");
        assert_eq!(port.recv(&mut pool, &mut batch).unwrap(), 2);
        assert_eq!(batch.len(), 2);
        port.send(&mut pool, &mut batch).unwrap();
        assert_eq!(peer.receive().unwrap(), vec![1, 2, 3]);
        assert_eq!(peer.receive().unwrap(), vec![4]);
        assert!(peer.receive().is_none());
        for _ in 0..3 {
            batch.push(Packet::from_slice(&[9]).unwrap()).ok();
        }
        port.send(&mut pool, &mut batch).unwrap();
        let s = port.stats();
        assert_eq!((s.rx_packets, s.tx_packets, s.tx_dropped), (2, 4, 1));
    }
}
