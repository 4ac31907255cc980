//! The in-memory underlay: one L2 segment joining every node's underlay
//! port, carrying the real Geneve frames the datapaths emit.
//!
//! It forwards by destination MAC like a switch that already knows every
//! station (the lab assigned the MACs, so there is nothing to learn):
//! unicast to the one node with that MAC, broadcast and multicast to every
//! node but the sender, unknown unicast nowhere (counted).

use ironflow_datapath::port::MemPeer;

/// What the segment did, as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentStats {
    /// Frames taken from a node's underlay port.
    pub frames: u64,
    /// Copies handed to a node (a broadcast counts once per receiver).
    pub delivered: u64,
    /// Frames to a MAC no node has.
    pub unknown_unicast: u64,
    /// Frames shorter than an Ethernet header.
    pub runts: u64,
    /// Copies a node's full receive queue refused.
    pub queue_full: u64,
}

/// One station on the segment: a node's underlay port, seen from the wire.
struct Station {
    mac: [u8; 6],
    peer: MemPeer,
}

/// The L2 segment.
#[derive(Default)]
pub struct Segment {
    stations: Vec<Station>,
    stats: SegmentStats,
}

impl Segment {
    /// Plugs a node's underlay port in; frames to `mac` reach it.
    pub fn attach(&mut self, mac: [u8; 6], peer: MemPeer) {
        self.stations.push(Station { mac, peer });
    }

    pub fn stats(&self) -> SegmentStats {
        self.stats
    }

    /// Carries every frame waiting on any station one hop; returns how
    /// many frames it took off the wire.
    pub fn carry(&mut self) -> usize {
        let mut moved = 0;
        for from in 0..self.stations.len() {
            while let Some(frame) = self.stations[from].peer.receive() {
                moved += 1;
                self.stats.frames += 1;
                self.forward(from, &frame);
            }
        }
        moved
    }

    fn forward(&mut self, from: usize, frame: &[u8]) {
        let Some(dst) = frame.get(..6) else {
            self.stats.runts += 1;
            return;
        };
        if frame.len() < 14 {
            self.stats.runts += 1;
            return;
        }
        // The group bit: broadcast and multicast go to everyone else.
        let flood = dst[0] & 1 == 1;
        let mut found = false;
        for (i, s) in self.stations.iter().enumerate() {
            if i == from || !(flood || s.mac == dst) {
                continue;
            }
            found = true;
            if s.peer.inject(frame) {
                self.stats.delivered += 1;
            } else {
                self.stats.queue_full += 1;
            }
        }
        if !found && !flood {
            self.stats.unknown_unicast += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironflow_datapath::packet::{Packet, PacketBatch, PacketPool};
    use ironflow_datapath::port::{MemPort, Port};

    /// Frames a node's datapath got from the segment.
    fn received(port: &mut MemPort) -> Vec<Vec<u8>> {
        let mut pool = PacketPool::new(8);
        let mut batch = PacketBatch::new();
        port.recv(&mut pool, &mut batch).unwrap();
        batch.drain().map(|p| p.data().to_vec()).collect()
    }

    #[test]
    fn unicast_broadcast_strangers_and_runts() {
        let mut seg = Segment::default();
        let mut ports = Vec::new();
        for i in 1..=3u8 {
            let (port, peer) = MemPort::pair("underlay", 8);
            seg.attach([2, 0, 0, 0, 0, i], peer);
            ports.push(port);
        }
        let mut pool = PacketPool::new(8);
        let mut to_b = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        to_b.extend_from_slice(&[0; 20]);
        let mut bcast = to_b.clone();
        bcast[..6].copy_from_slice(&[0xff; 6]);
        let mut stranger = to_b.clone();
        stranger[5] = 9;
        // Node a's datapath sends four frames out of its underlay port.
        let mut batch = PacketBatch::new();
        for f in [&to_b[..], &bcast, &stranger, &[1, 2, 3]] {
            batch.push(Packet::from_slice(f).unwrap()).ok();
        }
        ports[0].send(&mut pool, &mut batch).unwrap();
        assert_eq!(seg.carry(), 4);
        let s = seg.stats();
        assert_eq!((s.delivered, s.unknown_unicast, s.runts), (3, 1, 1));
        assert_eq!(received(&mut ports[1]), vec![to_b.clone(), bcast.clone()]);
        assert_eq!(received(&mut ports[2]), vec![bcast]);
        assert!(
            received(&mut ports[0]).is_empty(),
            "never back to the sender"
        );
    }
}
