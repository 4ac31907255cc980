//! TCP connection state, driven by the flags of each packet.
//!
//! Each end of a connection (peer) moves through `Closed → SynSent →
//! Established → Closing → FinWait2 → TimeWait` as OVS's userspace
//! conntrack moves its peers (lib/conntrack-tcp.c), which is what the
//! ACL stages of OVN see through `ct.new`/`ct.est`/`ct.inv`. What is left
//! out is OVS's sequence-window check: a packet is judged by its flags and
//! the peers' states alone, as OVS does with `tcp_seq_chk` turned off. An
//! out-of-window segment is therefore not `inv` here.

use super::proto::{Tm, Update};

/// TCP header flag bits as the flow key's `TCP_FLAGS` carries them.
pub mod flags {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const PSH: u16 = 0x08;
    pub const ACK: u16 = 0x10;
    pub const URG: u16 = 0x20;
}
use flags::*;

/// How far one end of a connection has got. The order matters: states
/// are compared as OVS compares its `CT_DPIF_TCPS_*` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TcpState {
    Closed,
    SynSent,
    Established,
    /// Sent a FIN.
    Closing,
    /// Its FIN was acknowledged.
    FinWait2,
    /// Reset.
    TimeWait,
}

impl TcpState {
    /// The state numbered `b & 7` in declaration order (what `as u8`
    /// gives); numbers past the last are the last.
    #[inline]
    pub(crate) fn from_bits(b: u8) -> TcpState {
        match b & 7 {
            0 => TcpState::Closed,
            1 => TcpState::SynSent,
            2 => TcpState::Established,
            3 => TcpState::Closing,
            4 => TcpState::FinWait2,
            _ => TcpState::TimeWait,
        }
    }

    /// The name `ovs-appctl dpctl/dump-conntrack` uses.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::Established => "ESTABLISHED",
            TcpState::Closing => "CLOSING",
            TcpState::FinWait2 => "FIN_WAIT_2",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }
}

/// Flag combinations no TCP stack sends (OVS's `tcp_invalid_flags`, from
/// pf): SYN with RST or FIN; neither SYN, ACK nor RST; FIN, PSH or URG
/// without ACK.
#[inline]
fn invalid_flags(f: u16) -> bool {
    if f & SYN != 0 {
        if f & (RST | FIN) != 0 {
            return true;
        }
    } else if f & (ACK | RST) == 0 {
        return true;
    }
    f & ACK == 0 && f & (FIN | PSH | URG) != 0
}

/// Whether a packet with these flags may open a connection. Like OVS's
/// userspace conntrack (`tcp_valid_new`), a connection may be picked up
/// mid-stream (a plain ACK opens one, so flows survive a restart or a
/// flush), but never by a SYN|ACK: that is half of someone else's
/// handshake.
pub(crate) fn valid_new(f: u16) -> bool {
    !invalid_flags(f) && f & (SYN | ACK) != SYN | ACK
}

/// Both ends of a connection: `[original sender, replier]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpConn {
    pub peer: [TcpState; 2],
}

impl TcpConn {
    /// The state after the packet that opens the connection.
    pub(crate) fn new() -> (TcpConn, Tm) {
        (
            TcpConn {
                peer: [TcpState::SynSent, TcpState::Closed],
            },
            Tm::TcpFirstPacket,
        )
    }

    /// Moves the peers on for a packet with flags `f` from the original
    /// sender (`reply` false) or the replier; the timeout class to rearm
    /// with, if any.
    #[inline]
    pub(crate) fn update(&mut self, reply: bool, f: u16) -> (Update, Option<Tm>) {
        if invalid_flags(f) {
            return (Update::Invalid, None);
        }
        let (s, d) = if reply { (1, 0) } else { (0, 1) };
        if f & (SYN | ACK) == SYN {
            if self.peer[s] >= TcpState::FinWait2 && self.peer[d] >= TcpState::FinWait2 {
                // A new SYN on a closed connection's tuple: the old one is
                // over and this packet starts another (port reuse).
                self.peer = [TcpState::Closed; 2];
                return (Update::Reopen, None);
            }
            if self.peer[s] <= TcpState::SynSent {
                // A retransmitted SYN is still `new`.
                self.peer[s] = TcpState::SynSent;
                return (Update::ValidNew, Some(Tm::TcpFirstPacket));
            }
        }
        if self.peer[s] < TcpState::SynSent {
            self.peer[s] = TcpState::SynSent;
        }
        if f & FIN != 0 && self.peer[s] < TcpState::Closing {
            self.peer[s] = TcpState::Closing;
        }
        if f & ACK != 0 {
            match self.peer[d] {
                TcpState::SynSent => self.peer[d] = TcpState::Established,
                TcpState::Closing => self.peer[d] = TcpState::FinWait2,
                _ => {}
            }
        }
        if f & RST != 0 {
            self.peer = [TcpState::TimeWait; 2];
        }
        (Update::Valid, Some(self.timeout_class()))
    }

    #[inline]
    fn timeout_class(&self) -> Tm {
        let [a, b] = self.peer;
        let (lo, hi) = (a.min(b), a.max(b));
        if lo >= TcpState::FinWait2 {
            Tm::TcpClosed
        } else if lo >= TcpState::Closing {
            Tm::TcpFinWait
        } else if lo < TcpState::Established {
            Tm::TcpOpening
        } else if hi >= TcpState::Closing {
            Tm::TcpClosing
        } else {
            Tm::TcpEstablished
        }
    }

    /// One state for the whole connection, for dumps: the furthest either
    /// end has got.
    pub(crate) fn state(&self) -> TcpState {
        self.peer[0].max(self.peer[1])
    }
}
