//! Per-protocol connection state and timeouts: TCP (see [`super::tcp`]),
//! ICMP/ICMPv6 echo, and "other" (UDP, SCTP and any other protocol,
//! tracked by addresses and ports alone).
//!
//! The states and default timeouts are OVS userspace conntrack's
//! (lib/conntrack-other.c, conntrack-icmp.c, conntrack-tp.c): a
//! connection's packets in the original direction stay `new` until the
//! other end has answered, except TCP, where any non-SYN packet on a
//! committed connection is `est`.

use super::tcp::{self, TcpConn, TcpState};
use super::tuple::{icmp_opens, CtTuple, IPPROTO_TCP};

const SEC: u64 = 1_000_000_000;

/// What a packet did to an existing connection (OVS's `ct_update_res`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Update {
    /// A valid packet of an answered connection: `est`.
    Valid,
    /// A valid packet of a connection not answered yet: `new`.
    ValidNew,
    /// Not a valid next packet: `inv`.
    Invalid,
    /// The connection is over and this packet starts a new one on the
    /// same tuple.
    Reopen,
}

/// Timeout classes (OVS's `CT_TM_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tm {
    TcpFirstPacket,
    TcpOpening,
    TcpEstablished,
    TcpClosing,
    TcpFinWait,
    TcpClosed,
    OtherFirst,
    OtherMultiple,
    OtherBidir,
    IcmpFirst,
    IcmpReply,
}

/// How long an idle connection lives in each state, in nanoseconds. The
/// defaults are OVS's default timeout policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtTimeouts {
    /// After a SYN (`tcp_syn_sent`).
    pub tcp_first_packet: u64,
    /// Handshake under way (`tcp_syn_recv`).
    pub tcp_opening: u64,
    pub tcp_established: u64,
    /// One end has sent a FIN (`tcp_fin_wait`).
    pub tcp_closing: u64,
    /// Both ends have sent a FIN (`tcp_time_wait`).
    pub tcp_fin_wait: u64,
    /// Both FINs acknowledged, or reset (`tcp_close`).
    pub tcp_closed: u64,
    /// One packet seen (`udp_first`).
    pub other_first: u64,
    /// Several packets, one direction (`udp_single`).
    pub other_multiple: u64,
    /// Both directions (`udp_multiple`).
    pub other_bidir: u64,
    pub icmp_first: u64,
    pub icmp_reply: u64,
}

impl Default for CtTimeouts {
    fn default() -> Self {
        CtTimeouts {
            tcp_first_packet: 30 * SEC,
            tcp_opening: 30 * SEC,
            tcp_established: 24 * 3600 * SEC,
            tcp_closing: 15 * 60 * SEC,
            tcp_fin_wait: 45 * SEC,
            tcp_closed: 30 * SEC,
            other_first: 60 * SEC,
            other_multiple: 60 * SEC,
            other_bidir: 30 * SEC,
            icmp_first: 60 * SEC,
            icmp_reply: 30 * SEC,
        }
    }
}

impl CtTimeouts {
    #[inline]
    pub(crate) fn get(&self, tm: Tm) -> u64 {
        match tm {
            Tm::TcpFirstPacket => self.tcp_first_packet,
            Tm::TcpOpening => self.tcp_opening,
            Tm::TcpEstablished => self.tcp_established,
            Tm::TcpClosing => self.tcp_closing,
            Tm::TcpFinWait => self.tcp_fin_wait,
            Tm::TcpClosed => self.tcp_closed,
            Tm::OtherFirst => self.other_first,
            Tm::OtherMultiple => self.other_multiple,
            Tm::OtherBidir => self.other_bidir,
            Tm::IcmpFirst => self.icmp_first,
            Tm::IcmpReply => self.icmp_reply,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OtherState {
    First,
    Multiple,
    Bidir,
}

/// A connection's protocol state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtoState {
    Tcp(TcpConn),
    Other(OtherState),
    /// Whether the echo has been answered.
    Icmp {
        replied: bool,
    },
}

impl ProtoState {
    /// The state of a connection opened by this packet, or `None` when
    /// the packet may not open one (`inv`).
    pub(crate) fn open(t: &CtTuple, tcp_flags: u16) -> Option<(ProtoState, Tm)> {
        if t.proto == IPPROTO_TCP {
            if !tcp::valid_new(tcp_flags) {
                return None;
            }
            let (c, tm) = TcpConn::new();
            Some((ProtoState::Tcp(c), tm))
        } else if t.is_icmp() {
            icmp_opens(t.ipv6, t.icmp_type)
                .then_some((ProtoState::Icmp { replied: false }, Tm::IcmpFirst))
        } else {
            Some((ProtoState::Other(OtherState::First), Tm::OtherFirst))
        }
    }

    /// Moves the state on for a packet in the original direction or a
    /// reply; the timeout class to rearm with, if any.
    #[inline]
    pub(crate) fn update(&mut self, reply: bool, tcp_flags: u16) -> (Update, Option<Tm>) {
        match self {
            ProtoState::Tcp(c) => c.update(reply, tcp_flags),
            ProtoState::Other(s) => {
                if reply {
                    *s = OtherState::Bidir;
                } else if *s == OtherState::First {
                    *s = OtherState::Multiple;
                }
                match s {
                    OtherState::Bidir => (Update::Valid, Some(Tm::OtherBidir)),
                    _ => (Update::ValidNew, Some(Tm::OtherMultiple)),
                }
            }
            ProtoState::Icmp { replied } => {
                *replied |= reply;
                if *replied {
                    (Update::Valid, Some(Tm::IcmpReply))
                } else {
                    (Update::ValidNew, Some(Tm::IcmpFirst))
                }
            }
        }
    }

    /// The state in one byte, for the connection table's state word: kind
    /// in bits 0–1, then the kind's own state (TCP: both peers, 3 bits
    /// each).
    #[inline]
    pub(crate) fn pack(&self) -> u8 {
        match *self {
            ProtoState::Tcp(c) => (c.peer[0] as u8) << 2 | (c.peer[1] as u8) << 5,
            ProtoState::Other(s) => 1 | (s as u8) << 2,
            ProtoState::Icmp { replied } => 2 | u8::from(replied) << 2,
        }
    }

    /// The state [`ProtoState::pack`] made `b` from.
    #[inline]
    pub(crate) fn unpack(b: u8) -> ProtoState {
        match b & 3 {
            0 => ProtoState::Tcp(TcpConn {
                peer: [TcpState::from_bits(b >> 2), TcpState::from_bits(b >> 5)],
            }),
            1 => ProtoState::Other(match (b >> 2) & 3 {
                0 => OtherState::First,
                1 => OtherState::Multiple,
                _ => OtherState::Bidir,
            }),
            _ => ProtoState::Icmp {
                replied: b & 4 != 0,
            },
        }
    }

    /// The state's name for dumps.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ProtoState::Tcp(c) => c.state().name(),
            ProtoState::Other(OtherState::First) => "FIRST",
            ProtoState::Other(OtherState::Multiple) => "MULTIPLE",
            ProtoState::Other(OtherState::Bidir) => "BIDIR",
            ProtoState::Icmp { replied: false } => "FIRST",
            ProtoState::Icmp { replied: true } => "REPLY",
        }
    }

    /// The TCP state, for TCP connections.
    pub(crate) fn tcp(&self) -> Option<TcpState> {
        match self {
            ProtoState::Tcp(c) => Some(c.state()),
            _ => None,
        }
    }
}
