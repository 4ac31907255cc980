//! Conntrack tests: state transitions per protocol, zones, mark/label,
//! NAT and load balancing in both directions, limits, expiry, sweeping,
//! malformed input, and threads sharing one table.

use super::tcp::flags::*;
use super::*;
use ironflow_pipeline::dpaction::{Backend, CtNat, NatRange};
use ironflow_pipeline::interp::ct_state::*;
use std::sync::Arc;

const SEC: u64 = 1_000_000_000;
const C: u32 = 0x0a00_0001; // 10.0.0.1, a client
const C2: u32 = 0x0a00_0002;
const S: u32 = 0x0a00_0064; // 10.0.0.100, a server
const VIP: u32 = 0xac10_0001; // 172.16.0.1
const B1: u32 = 0xc0a8_0001; // 192.168.0.1..3, backends
const B2: u32 = 0xc0a8_0002;
const B3: u32 = 0xc0a8_0003;
const SNAT_IP: u32 = 0x6440_0001; // 100.64.0.1

fn ct() -> Conntrack {
    Conntrack::new(CtConfig::default())
}

fn key4(proto: u8, src: u32, dst: u32, sport: u16, dport: u16) -> FlowKey {
    let mut k = FlowKey::ZERO;
    k.set(slots::ETH_TYPE, 0x0800);
    k.set(slots::IP_PROTO, u128::from(proto));
    k.set(slots::IP_SRC, u128::from(src));
    k.set(slots::IP_DST, u128::from(dst));
    k.set(slots::TP_SRC, u128::from(sport));
    k.set(slots::TP_DST, u128::from(dport));
    k
}

fn tcp(src: u32, dst: u32, sport: u16, dport: u16, flags: u16) -> FlowKey {
    let mut k = key4(6, src, dst, sport, dport);
    k.set(slots::TCP_FLAGS, u128::from(flags));
    k
}

fn udp(src: u32, dst: u32, sport: u16, dport: u16) -> FlowKey {
    key4(17, src, dst, sport, dport)
}

fn ipv4_header(proto: u8, src: u32, dst: u32, payload: usize) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.to_be_bytes());
    h.extend_from_slice(&dst.to_be_bytes());
    h
}

/// An ICMP echo request (type 8) or reply (0): its key and IP bytes.
fn echo(src: u32, dst: u32, ty: u8, id: u16) -> (FlowKey, Vec<u8>) {
    let k = key4(1, src, dst, u16::from(ty), 0);
    let mut b = ipv4_header(1, src, dst, 8);
    b.extend_from_slice(&[ty, 0, 0, 0]);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[0, 1]);
    (k, b)
}

/// An ICMP error of `ty`/`code` from `src` to `dst` quoting `inner` (an IP
/// packet's first bytes).
fn icmp_error(src: u32, dst: u32, ty: u8, code: u8, inner: &[u8]) -> (FlowKey, Vec<u8>) {
    let k = key4(1, src, dst, u16::from(ty), u16::from(code));
    let mut b = ipv4_header(1, src, dst, 8 + inner.len());
    b.extend_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(inner);
    (k, b)
}

/// The first bytes of a UDP packet as an ICMP error quotes them.
fn udp_bytes(src: u32, dst: u32, sport: u16, dport: u16) -> Vec<u8> {
    let mut b = ipv4_header(17, src, dst, 8);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&[0, 8, 0, 0]);
    b
}

fn next(zone: u16) -> CtAction {
    CtAction {
        zone,
        recirculates: true,
        ..CtAction::default()
    }
}

fn commit(zone: u16) -> CtAction {
    CtAction {
        zone,
        commit: true,
        ..CtAction::default()
    }
}

fn with_nat(mut a: CtAction, nat: CtNat) -> CtAction {
    a.nat = Some(nat);
    a
}

fn range4(lo: u32, hi: u32, ports: Option<(u16, u16)>) -> NatRange {
    NatRange {
        ipv6: false,
        addr_min: u128::from(lo),
        addr_max: u128::from(hi),
        ports,
    }
}

/// Runs `k` through `ct` and returns the state and the key after.
fn run(ct: &Conntrack, k: FlowKey, a: &CtAction, now: u64) -> (u32, FlowKey) {
    run_l3(ct, k, &[], a, now)
}

fn run_l3(ct: &Conntrack, mut k: FlowKey, l3: &[u8], a: &CtAction, now: u64) -> (u32, FlowKey) {
    let s = ct.execute(&mut k, l3, a, now);
    assert_eq!(
        k.get(slots::CT_STATE),
        u128::from(s),
        "ct_state lands in the key"
    );
    (s, k)
}

fn st(ct: &Conntrack, k: FlowKey, a: &CtAction, now: u64) -> u32 {
    run(ct, k, a, now).0
}

fn addrs(k: &FlowKey) -> (u32, u32, u16, u16) {
    (
        k.get(slots::IP_SRC) as u32,
        k.get(slots::IP_DST) as u32,
        k.get(slots::TP_SRC) as u16,
        k.get(slots::TP_DST) as u16,
    )
}

#[test]
fn tcp_handshake_and_data() {
    let ct = ct();
    // ct_next before any commit: new, and nothing is remembered.
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, SYN), &next(1), 0), NEW | TRK);
    assert!(ct.is_empty());
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, SYN), &commit(1), 0), NEW | TRK);
    assert_eq!(ct.len(), 1);
    // A retransmitted SYN is still new.
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, SYN), &next(1), 1), NEW | TRK);
    assert_eq!(
        st(&ct, tcp(S, C, 80, 1000, SYN | ACK), &next(1), 2),
        EST | RPL | TRK
    );
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, ACK), &next(1), 3), EST | TRK);
    assert_eq!(
        st(&ct, tcp(C, S, 1000, 80, ACK | PSH), &next(1), 4),
        EST | TRK
    );
    assert_eq!(
        st(&ct, tcp(S, C, 80, 1000, ACK | PSH), &next(1), 5),
        EST | RPL | TRK
    );
    let e = ct.entries(5);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].tcp_state, Some(TcpState::Established));
    // Armed when the connection became established; packets a few
    // nanoseconds later leave it (see `rearm`).
    assert_eq!(e[0].expires_ns, 3 + CtTimeouts::default().tcp_established);
    assert_eq!(
        e[0].to_string(),
        "tcp,orig=(src=10.0.0.1,dst=10.0.0.100,sport=1000,dport=80),\
         reply=(src=10.0.0.100,dst=10.0.0.1,sport=80,dport=1000),zone=1,\
         protoinfo=(state=ESTABLISHED)"
    );
    let s = ct.stats();
    assert_eq!((s.committed, s.entries, s.invalid), (1, 1, 0));
    assert_eq!(s.lookups, 7);
    assert_eq!(s.hits, 5);
    assert_eq!(s.new, 3);
}

#[test]
fn tcp_without_entry_follows_ovs_userspace() {
    let ct = ct();
    // Half of someone else's handshake cannot open a connection.
    assert_eq!(
        st(&ct, tcp(S, C, 80, 1000, SYN | ACK), &commit(0), 0),
        INV | TRK
    );
    // Impossible flag combinations neither.
    assert_eq!(
        st(&ct, tcp(C, S, 1, 2, SYN | FIN), &commit(0), 0),
        INV | TRK
    );
    assert_eq!(st(&ct, tcp(C, S, 1, 2, 0), &commit(0), 0), INV | TRK);
    assert_eq!(st(&ct, tcp(C, S, 1, 2, FIN), &commit(0), 0), INV | TRK);
    assert!(ct.is_empty());
    // A mid-stream ACK is picked up (OVS tcp_valid_new), and once
    // committed its connection's next packets are est.
    assert_eq!(st(&ct, tcp(C, S, 5, 6, ACK), &commit(0), 0), NEW | TRK);
    assert_eq!(st(&ct, tcp(C, S, 5, 6, ACK), &next(0), 1), EST | TRK);
    assert_eq!(st(&ct, tcp(S, C, 6, 5, ACK), &next(0), 1), EST | RPL | TRK);
    assert_eq!(ct.stats().invalid, 4);
}

#[test]
fn tcp_invalid_flags_on_a_connection_keep_its_mark() {
    let ct = ct();
    let mut a = commit(0);
    a.mark = Some((7, u32::MAX));
    st(&ct, tcp(C, S, 1000, 80, SYN), &a, 0);
    let (s, k) = run(&ct, tcp(C, S, 1000, 80, SYN | RST), &next(0), 1);
    assert_eq!(s, INV | TRK);
    assert_eq!(k.get(slots::CT_MARK), 7);
}

fn establish(ct: &Conntrack, zone: u16, sport: u16, now: u64) {
    st(ct, tcp(C, S, sport, 80, SYN), &commit(zone), now);
    st(ct, tcp(S, C, 80, sport, SYN | ACK), &next(zone), now);
    st(ct, tcp(C, S, sport, 80, ACK), &next(zone), now);
}

#[test]
fn tcp_rst_closes_and_a_new_syn_reopens() {
    let ct = ct();
    let tm = CtTimeouts::default();
    establish(&ct, 0, 1000, 0);
    assert_eq!(
        st(&ct, tcp(S, C, 80, 1000, RST), &next(0), 10),
        EST | RPL | TRK
    );
    let e = &ct.entries(10)[0];
    assert_eq!(e.tcp_state, Some(TcpState::TimeWait));
    assert_eq!(e.expires_ns, 10 + tm.tcp_closed);
    // Port reuse: the old connection ends, the SYN is new again and a
    // commit makes a fresh connection.
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, SYN), &commit(0), 20), NEW | TRK);
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.entries(20)[0].tcp_state, Some(TcpState::SynSent));
    assert_eq!(
        st(&ct, tcp(S, C, 80, 1000, SYN | ACK), &next(0), 21),
        EST | RPL | TRK
    );
}

#[test]
fn tcp_fin_close_timeouts() {
    let ct = ct();
    let tm = CtTimeouts::default();
    establish(&ct, 0, 1000, 0);
    let exp = |ct: &Conntrack| ct.entries(0)[0].expires_ns;
    assert_eq!(
        st(&ct, tcp(C, S, 1000, 80, FIN | ACK), &next(0), 1),
        EST | TRK
    );
    assert_eq!(exp(&ct), 1 + tm.tcp_closing);
    assert_eq!(
        st(&ct, tcp(S, C, 80, 1000, FIN | ACK), &next(0), 2),
        EST | RPL | TRK
    );
    assert_eq!(exp(&ct), 2 + tm.tcp_fin_wait);
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, ACK), &next(0), 3), EST | TRK);
    assert_eq!(exp(&ct), 3 + tm.tcp_closed);
    assert_eq!(ct.entries(0)[0].tcp_state, Some(TcpState::FinWait2));
    // Closed: a SYN on the same tuple starts over (not committed here).
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, SYN), &next(0), 4), NEW | TRK);
    assert!(ct.is_empty());
}

#[test]
fn udp_is_new_until_answered() {
    let ct = ct();
    let tm = CtTimeouts::default();
    assert_eq!(st(&ct, udp(C, S, 5000, 53), &commit(0), 0), NEW | TRK);
    assert_eq!(st(&ct, udp(C, S, 5000, 53), &next(0), 1), NEW | TRK);
    assert_eq!(ct.entries(1)[0].expires_ns, 1 + tm.other_multiple);
    assert_eq!(st(&ct, udp(S, C, 53, 5000), &next(0), 2), EST | RPL | TRK);
    assert_eq!(ct.entries(2)[0].expires_ns, 2 + tm.other_bidir);
    assert_eq!(st(&ct, udp(C, S, 5000, 53), &next(0), 3), EST | TRK);
    // Another source port is another connection.
    assert_eq!(st(&ct, udp(C, S, 5001, 53), &next(0), 3), NEW | TRK);
    // Protocols without ports are tracked by address.
    assert_eq!(st(&ct, key4(47, C, S, 0, 0), &commit(0), 0), NEW | TRK);
    assert_eq!(st(&ct, key4(47, S, C, 0, 0), &next(0), 0), EST | RPL | TRK);
}

#[test]
fn icmp_echo() {
    let ct = ct();
    let (req, req_l3) = echo(C, S, 8, 77);
    let (rep, rep_l3) = echo(S, C, 0, 77);
    // A reply with nothing asked is invalid.
    assert_eq!(run_l3(&ct, rep, &rep_l3, &commit(0), 0).0, INV | TRK);
    assert_eq!(run_l3(&ct, req, &req_l3, &commit(0), 0).0, NEW | TRK);
    assert_eq!(run_l3(&ct, req, &req_l3, &next(0), 1).0, NEW | TRK);
    assert_eq!(run_l3(&ct, rep, &rep_l3, &next(0), 2).0, EST | RPL | TRK);
    assert_eq!(run_l3(&ct, req, &req_l3, &next(0), 3).0, EST | TRK);
    // Another identifier is another connection.
    let (req2, req2_l3) = echo(C, S, 8, 78);
    assert_eq!(run_l3(&ct, req2, &req2_l3, &next(0), 3).0, NEW | TRK);
    let (rep2, rep2_l3) = echo(S, C, 0, 78);
    assert_eq!(run_l3(&ct, rep2, &rep2_l3, &next(0), 3).0, INV | TRK);
    assert_eq!(
        ct.entries(3)[0].to_string(),
        "icmp,orig=(src=10.0.0.1,dst=10.0.0.100,id=77,type=8,code=0),\
         reply=(src=10.0.0.100,dst=10.0.0.1,id=77,type=0,code=0)"
    );
    // An echo needs its bytes: without them it is invalid, not a panic.
    assert_eq!(st(&ct, req, &next(0), 3), INV | TRK);
}

#[test]
fn icmp_error_is_related() {
    let ct = ct();
    st(&ct, udp(C, S, 5000, 53), &commit(0), 0);
    let router = 0x0a00_00fe;
    // Port unreachable from the server about the client's datagram.
    let quoted = udp_bytes(C, S, 5000, 53);
    let (k, l3) = icmp_error(S, C, 3, 3, &quoted);
    assert_eq!(run_l3(&ct, k, &l3, &next(0), 1).0, REL | RPL | TRK);
    // From a router on the way: still the connection's.
    let (k, l3) = icmp_error(router, C, 11, 0, &quoted);
    assert_eq!(run_l3(&ct, k, &l3, &next(0), 1).0, REL | RPL | TRK);
    // The other way: the client's host reports the server's answer.
    let (k, l3) = icmp_error(C, S, 3, 3, &udp_bytes(S, C, 53, 5000));
    assert_eq!(run_l3(&ct, k, &l3, &next(0), 1).0, REL | TRK);
    // It did not advance the connection: the next request is still new.
    assert_eq!(st(&ct, udp(C, S, 5000, 53), &next(0), 2), NEW | TRK);
    // About nothing we know: invalid, even with commit.
    let (k, l3) = icmp_error(S, C, 3, 3, &udp_bytes(C, S, 5001, 53));
    assert_eq!(run_l3(&ct, k, &l3, &commit(0), 1).0, INV | TRK);
    // Quoting a packet the error's destination did not send: forged.
    let (k, l3) = icmp_error(S, C2, 3, 3, &quoted);
    assert_eq!(run_l3(&ct, k, &l3, &next(0), 1).0, INV | TRK);
    // Truncated quote (fewer than 8 transport bytes).
    let (k, l3) = icmp_error(S, C, 3, 3, &quoted[..24]);
    assert_eq!(run_l3(&ct, k, &l3, &next(0), 1).0, INV | TRK);
    // Errors about ICMP echoes.
    let (_, req_l3) = echo(C, S, 8, 9);
    let (req, _) = echo(C, S, 8, 9);
    run_l3(&ct, req, &req_l3, &commit(0), 0);
    let (k, l3) = icmp_error(router, C, 11, 0, &req_l3);
    assert_eq!(run_l3(&ct, k, &l3, &next(0), 1).0, REL | RPL | TRK);
}

#[test]
fn zones_are_separate() {
    let ct = ct();
    establish(&ct, 1, 1000, 0);
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, ACK), &next(1), 1), EST | TRK);
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, ACK), &next(2), 1), NEW | TRK);
    assert_eq!(st(&ct, tcp(S, C, 80, 1000, ACK), &next(2), 1), NEW | TRK);
    establish(&ct, 2, 1000, 0);
    assert_eq!(ct.len(), 2);
    ct.flush_zone(1);
    assert_eq!(ct.len(), 1);
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, ACK), &next(1), 1), NEW | TRK);
    assert_eq!(st(&ct, tcp(C, S, 1000, 80, ACK), &next(2), 1), EST | TRK);
    ct.flush();
    assert!(ct.is_empty());
    assert!(ct.entries(1).is_empty());
}

#[test]
fn mark_and_label_with_masks() {
    let ct = ct();
    let mut a = commit(0);
    a.mark = Some((0x5, 0xf));
    a.label = Some((1 << 100, 1 << 100));
    let (_, k) = run(&ct, udp(C, S, 1, 2), &a, 0);
    assert_eq!(k.get(slots::CT_MARK), 0x5);
    assert_eq!(k.get(slots::CT_LABEL), 1 << 100);
    // A value's bits outside its mask are not written.
    a.mark = Some((0xff30, 0xf0));
    a.label = Some((0b11, 0b10));
    let (_, k) = run(&ct, udp(C, S, 1, 2), &a, 1);
    assert_eq!(k.get(slots::CT_MARK), 0x35);
    assert_eq!(k.get(slots::CT_LABEL), 1 << 100 | 0b10);
    // Packets that do not commit see the connection's, both ways.
    let (_, k) = run(&ct, udp(S, C, 2, 1), &next(0), 2);
    assert_eq!(k.get(slots::CT_MARK), 0x35);
    assert_eq!(k.get(slots::CT_LABEL), 1 << 100 | 0b10);
    // Without commit the mark is not written.
    let mut b = next(0);
    b.mark = Some((0, u32::MAX));
    let (_, k) = run(&ct, udp(S, C, 2, 1), &b, 2);
    assert_eq!(k.get(slots::CT_MARK), 0x35);
    // No connection: zero, whatever the key had.
    let mut k = udp(C, S, 9, 9);
    k.set(slots::CT_MARK, 99);
    k.set(slots::CT_LABEL, 99);
    let (_, k) = run(&ct, k, &next(0), 2);
    assert_eq!((k.get(slots::CT_MARK), k.get(slots::CT_LABEL)), (0, 0));
    let e = &ct.entries(2)[0];
    assert_eq!((e.mark, e.label), (0x35, 1 << 100 | 0b10));
}

#[test]
fn dnat_both_directions() {
    let ct = ct();
    let dnat = with_nat(commit(0), CtNat::Dst(range4(B1, B1, Some((8080, 8080)))));
    let (s, k) = run(&ct, tcp(C, VIP, 1000, 80, SYN), &dnat, 0);
    assert_eq!(s, NEW | DNAT | TRK);
    assert_eq!(addrs(&k), (C, B1, 1000, 8080));
    // The backend's answer is found by the translated tuple and gets the
    // VIP back as its source.
    let existing = with_nat(next(0), CtNat::Existing);
    let (s, k) = run(&ct, tcp(B1, C, 8080, 1000, SYN | ACK), &existing, 1);
    assert_eq!(s, EST | RPL | SNAT | TRK);
    assert_eq!(addrs(&k), (VIP, C, 80, 1000));
    // The client's next packets keep the backend.
    let (s, k) = run(&ct, tcp(C, VIP, 1000, 80, ACK), &existing, 2);
    assert_eq!(s, EST | DNAT | TRK);
    assert_eq!(addrs(&k), (C, B1, 1000, 8080));
    // Any NAT action applies the recorded translation, not its own range.
    let other = with_nat(commit(0), CtNat::Dst(range4(B2, B2, None)));
    let (_, k) = run(&ct, tcp(C, VIP, 1000, 80, ACK), &other, 3);
    assert_eq!(addrs(&k), (C, B1, 1000, 8080));
    // Without a NAT action the connection is found but nothing changes.
    let (s, k) = run(&ct, tcp(C, VIP, 1000, 80, ACK), &next(0), 4);
    assert_eq!(s, EST | TRK);
    assert_eq!(addrs(&k), (C, VIP, 1000, 80));
    let e = &ct.entries(4)[0];
    assert_eq!(e.nat, NatKind::Dst);
    assert_eq!(e.reply.src, u128::from(B1));
    // A NAT action without commit does not translate a new connection.
    let uncommitted = with_nat(next(0), CtNat::Dst(range4(B1, B1, None)));
    let (s, k) = run(&ct, tcp(C2, VIP, 1000, 80, SYN), &uncommitted, 5);
    assert_eq!(s, NEW | TRK);
    assert_eq!(addrs(&k), (C2, VIP, 1000, 80));
}

#[test]
fn snat_both_directions_and_unique_ports() {
    let ct = ct();
    let snat = with_nat(commit(0), CtNat::Src(range4(SNAT_IP, SNAT_IP, None)));
    let existing = with_nat(next(0), CtNat::Existing);
    // Two clients, same source port, same server: the second one's port
    // must move so that the replies can be told apart.
    let (s, k1) = run(&ct, udp(C, S, 4000, 53), &snat, 0);
    assert_eq!(s, NEW | SNAT | TRK);
    assert_eq!(addrs(&k1), (SNAT_IP, S, 4000, 53));
    let (_, k2) = run(&ct, udp(C2, S, 4000, 53), &snat, 0);
    let (src2, dst2, port2, dport2) = addrs(&k2);
    assert_eq!((src2, dst2, dport2), (SNAT_IP, S, 53));
    assert_ne!(port2, 4000);
    assert!((1024..=65535).contains(&port2), "same class of ports");
    // Replies go back to the right client.
    let (s, k) = run(&ct, udp(S, SNAT_IP, 53, 4000), &existing, 1);
    assert_eq!(s, EST | RPL | DNAT | TRK);
    assert_eq!(addrs(&k), (S, C, 53, 4000));
    let (_, k) = run(&ct, udp(S, SNAT_IP, 53, port2), &existing, 1);
    assert_eq!(addrs(&k), (S, C2, 53, 4000));
    // A low port stays low.
    let (_, k) = run(&ct, udp(C2, S, 123, 53), &snat, 0);
    let (_, k3) = run(&ct, udp(C, S, 123, 53), &snat, 0);
    assert_eq!(addrs(&k).2, 123);
    assert!((1..=511).contains(&addrs(&k3).2) && addrs(&k3).2 != 123);
    // A port range is used as given.
    let ranged = with_nat(
        commit(0),
        CtNat::Src(range4(SNAT_IP, SNAT_IP + 3, Some((20000, 20009)))),
    );
    let mut seen = std::collections::HashSet::new();
    for i in 0..10 {
        let (s, k) = run(&ct, tcp(C, S, 30000 + i, 443, SYN), &ranged, 0);
        assert_eq!(s, NEW | SNAT | TRK);
        let (src, _, sport, _) = addrs(&k);
        assert!((SNAT_IP..=SNAT_IP + 3).contains(&src));
        assert!((20000..=20009).contains(&sport));
        assert!(seen.insert((src, sport)), "translated tuples are unique");
    }
    // ICMP is translated by address (its identifier is not in the key).
    let (req, l3) = echo(C, S, 8, 5);
    let (s, k) = run_l3(&ct, req, &l3, &snat, 0);
    assert_eq!(s, NEW | SNAT | TRK);
    assert_eq!(addrs(&k), (SNAT_IP, S, 8, 0));
    let (rep, l3) = echo(S, SNAT_IP, 0, 5);
    let (s, k) = run_l3(&ct, rep, &l3, &existing, 1);
    assert_eq!(s, EST | RPL | DNAT | TRK);
    assert_eq!(addrs(&k), (S, C, 0, 0));
}

#[test]
fn snat_range_exhaustion_is_counted() {
    let ct = ct();
    let one = with_nat(
        commit(0),
        CtNat::Src(range4(SNAT_IP, SNAT_IP, Some((7000, 7001)))),
    );
    assert_eq!(st(&ct, udp(C, S, 1, 53), &one, 0), NEW | SNAT | TRK);
    assert_eq!(st(&ct, udp(C, S, 2, 53), &one, 0), NEW | SNAT | TRK);
    let (s, k) = run(&ct, udp(C, S, 3, 53), &one, 0);
    assert_eq!(s, NEW | TRK, "not committed, not translated");
    assert_eq!(addrs(&k), (C, S, 3, 53));
    assert_eq!(ct.stats().insert_failed, 1);
    assert_eq!(ct.len(), 2);
}

fn backends() -> Arc<[Backend]> {
    [B1, B2, B3]
        .map(|a| Backend {
            ipv6: false,
            addr: u128::from(a),
            port: Some(8080),
        })
        .into()
}

#[test]
fn load_balancing_sticks_and_spreads() {
    let ct = ct();
    let lb = with_nat(commit(0), CtNat::DstSelect(backends()));
    let existing = with_nat(next(0), CtNat::Existing);
    let mut count = [0; 3];
    for port in 0..300u16 {
        let (s, k) = run(&ct, tcp(C, VIP, 10000 + port, 80, SYN), &lb, 0);
        assert_eq!(s, NEW | DNAT | TRK);
        let (_, dst, sport, dport) = addrs(&k);
        assert_eq!((sport, dport), (10000 + port, 8080));
        let i = [B1, B2, B3].iter().position(|&b| b == dst).unwrap();
        count[i] += 1;
        // Later packets, balanced again or not, keep the backend.
        let (_, k) = run(&ct, tcp(C, VIP, 10000 + port, 80, ACK), &lb, 1);
        assert_eq!(addrs(&k).1, dst);
        let (_, k) = run(&ct, tcp(C, VIP, 10000 + port, 80, ACK), &existing, 1);
        assert_eq!(addrs(&k).1, dst);
        let (s, k) = run(&ct, tcp(dst, C, 8080, 10000 + port, ACK), &existing, 1);
        assert_eq!(s, EST | RPL | SNAT | TRK);
        assert_eq!(addrs(&k), (VIP, C, 80, 10000 + port));
    }
    assert!(count.iter().all(|&n| n > 60), "spread: {count:?}");
    // The choice is a function of the 5-tuple: another table agrees.
    let other = Conntrack::new(CtConfig::default());
    for port in 0..50u16 {
        let a = run(&ct, tcp(C2, VIP, port, 80, SYN), &lb, 0).1;
        let b = run(&other, tcp(C2, VIP, port, 80, SYN), &lb, 0).1;
        assert_eq!(addrs(&a), addrs(&b));
    }
}

#[test]
fn translated_packet_in_the_same_zone_finds_its_connection() {
    let ct = ct();
    let lb = with_nat(commit(3), CtNat::DstSelect(backends()));
    let (s, k) = run(&ct, tcp(C, VIP, 1000, 80, SYN), &lb, 0);
    assert_eq!(s, NEW | DNAT | TRK);
    // A later ct_commit in the same zone (as an ACL stage would do) sees
    // the same connection, keeps the dnat bit and commits nothing new.
    let mut a = commit(3);
    a.mark = Some((1, 1));
    let (s, k2) = run(&ct, k, &a, 0);
    assert_eq!(s, NEW | DNAT | TRK);
    assert_eq!(addrs(&k2), addrs(&k));
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.entries(0)[0].mark, 1);
}

#[test]
fn limit_refuses_commits() {
    let ct = Conntrack::new(CtConfig {
        max_entries: 2,
        ..CtConfig::default()
    });
    assert_eq!(st(&ct, udp(C, S, 1, 1), &commit(0), 0), NEW | TRK);
    assert_eq!(st(&ct, udp(C, S, 2, 1), &commit(0), 0), NEW | TRK);
    assert_eq!(st(&ct, udp(C, S, 3, 1), &commit(0), 0), NEW | TRK);
    assert_eq!(ct.len(), 2);
    assert_eq!(ct.stats().limit_drops, 1);
    // Not committed: its reply is not est.
    assert_eq!(st(&ct, udp(S, C, 1, 3), &next(0), 0), NEW | TRK);
    assert_eq!(st(&ct, udp(S, C, 1, 2), &next(0), 0), EST | RPL | TRK);
    // Room again once they are gone.
    let later = 3600 * SEC;
    for _ in 0..256 {
        ct.sweep(later);
    }
    assert!(ct.is_empty());
    assert_eq!(st(&ct, udp(C, S, 3, 1), &commit(0), later), NEW | TRK);
    assert_eq!(ct.len(), 1);
}

#[test]
fn expiry_and_sweep() {
    let ct = ct();
    let tm = CtTimeouts::default();
    st(&ct, udp(C, S, 1, 1), &commit(0), 0);
    establish(&ct, 0, 1000, 0);
    // Just before the UDP timeout: alive.
    assert_eq!(
        st(&ct, udp(S, C, 1, 1), &next(0), tm.other_first - 1),
        EST | RPL | TRK
    );
    // Past it (from the last packet): gone, even before a sweep.
    let late = tm.other_first - 1 + tm.other_bidir;
    assert_eq!(st(&ct, udp(C, S, 1, 1), &next(0), late), NEW | TRK);
    assert_eq!(ct.len(), 2, "not swept yet");
    // A commit over an expired connection replaces it.
    assert_eq!(st(&ct, udp(C, S, 1, 1), &commit(0), late), NEW | TRK);
    assert_eq!(ct.len(), 2);
    assert_eq!(ct.stats().expired, 1);
    let after = 3600 * SEC;
    let mut n = 0;
    for _ in 0..256 {
        n += ct.sweep(after);
    }
    assert_eq!(n, 1, "the UDP connection; TCP lives 24 h");
    assert_eq!(ct.len(), 1);
    assert_eq!(
        st(&ct, tcp(C, S, 1000, 80, ACK), &next(0), after),
        EST | TRK
    );
    assert_eq!(ct.stats().expired, 2);
}

#[test]
fn sweep_work_is_bounded() {
    let ct = Conntrack::new(CtConfig {
        shards: 16,
        sweep_budget: 1,
        ..CtConfig::default()
    });
    for p in 0..1000 {
        st(&ct, udp(C, S, p, 1), &commit(0), 0);
    }
    let now = 3600 * SEC;
    let first = ct.sweep(now);
    assert!(first > 0 && first < 1000, "one shard at a time: {first}");
    let mut total = first;
    for _ in 0..15 {
        total += ct.sweep(now);
    }
    assert_eq!(total, 1000);
    assert!(ct.is_empty());
    assert_eq!(ct.stats().expired, 1000);
}

#[test]
fn ipv6() {
    let ct = ct();
    let c6: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0001;
    let s6: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0064;
    let key6 = |proto: u8, src: u128, dst: u128, a: u16, b: u16| {
        let mut k = FlowKey::ZERO;
        k.set(slots::ETH_TYPE, 0x86dd);
        k.set(slots::IP_PROTO, u128::from(proto));
        k.set(slots::IP_SRC, src);
        k.set(slots::IP_DST, dst);
        k.set(slots::TP_SRC, u128::from(a));
        k.set(slots::TP_DST, u128::from(b));
        k
    };
    assert_eq!(st(&ct, key6(17, c6, s6, 1, 2), &commit(0), 0), NEW | TRK);
    assert_eq!(
        st(&ct, key6(17, s6, c6, 2, 1), &next(0), 0),
        EST | RPL | TRK
    );
    // The same ports over IPv4 with the addresses' low bits: another
    // connection.
    assert_eq!(st(&ct, udp(1, 0x64, 1, 2), &next(0), 0), NEW | TRK);
    // ICMPv6 echo, with a hop-by-hop header before it.
    let l3 = |src: u128, dst: u128, ty: u8| {
        let mut b = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        b.extend_from_slice(&src.to_be_bytes());
        b.extend_from_slice(&dst.to_be_bytes());
        b.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[ty, 0, 0, 0, 0x12, 0x34, 0, 1]);
        b
    };
    let req = key6(58, c6, s6, 128, 0);
    let rep = key6(58, s6, c6, 129, 0);
    assert_eq!(
        run_l3(&ct, req, &l3(c6, s6, 128), &commit(0), 0).0,
        NEW | TRK
    );
    assert_eq!(
        run_l3(&ct, rep, &l3(s6, c6, 129), &next(0), 0).0,
        EST | RPL | TRK
    );
    // Neighbour discovery is not conntrack's.
    let ns = key6(58, c6, s6, 135, 0);
    assert_eq!(
        run_l3(&ct, ns, &l3(c6, s6, 135), &commit(0), 0).0,
        INV | TRK
    );
    // DNAT over IPv6.
    let b6: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0b01;
    let dnat = with_nat(
        commit(0),
        CtNat::Dst(NatRange {
            ipv6: true,
            addr_min: b6,
            addr_max: b6,
            ports: None,
        }),
    );
    let (s, k) = run(&ct, key6(6, c6, s6, 5, 80).tap_flags(SYN), &dnat, 0);
    assert_eq!(s, NEW | DNAT | TRK);
    assert_eq!(k.get(slots::IP_DST), b6);
    let (s, k) = run(
        &ct,
        key6(6, b6, c6, 80, 5).tap_flags(SYN | ACK),
        &with_nat(next(0), CtNat::Existing),
        0,
    );
    assert_eq!(s, EST | RPL | SNAT | TRK);
    assert_eq!(k.get(slots::IP_SRC), s6);
}

trait TapFlags {
    fn tap_flags(self, f: u16) -> Self;
}

impl TapFlags for FlowKey {
    fn tap_flags(mut self, f: u16) -> Self {
        self.set(slots::TCP_FLAGS, u128::from(f));
        self
    }
}

#[test]
fn not_ip_and_later_fragments_are_invalid() {
    let ct = ct();
    let mut k = udp(C, S, 1, 2);
    k.set(slots::ETH_TYPE, 0x0806);
    assert_eq!(st(&ct, k, &commit(0), 0), INV | TRK);
    let mut k = udp(C, S, 0, 0);
    k.set(slots::IP_FRAG, 3);
    assert_eq!(st(&ct, k, &commit(0), 0), INV | TRK);
    assert!(ct.is_empty());
}

#[test]
fn malformed_bytes_never_panic() {
    let ct = ct();
    let quoted = udp_bytes(C, S, 5000, 53);
    let (ek, el3) = icmp_error(S, C, 3, 3, &quoted);
    let (rk, rl3) = echo(C, S, 8, 1);
    let mut v6 = vec![0x60u8, 0, 0, 0, 0, 8, 0, 64];
    v6.extend_from_slice(&[0; 32]);
    v6.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    let mut k6 = FlowKey::ZERO;
    k6.set(slots::ETH_TYPE, 0x86dd);
    k6.set(slots::IP_PROTO, 58);
    k6.set(slots::TP_SRC, 1);
    // Every truncation of good packets.
    for (k, b) in [(ek, &el3), (rk, &rl3), (k6, &v6)] {
        for n in 0..=b.len() {
            let mut k = k;
            ct.execute(&mut k, &b[..n], &commit(0), 0);
        }
    }
    // Random bytes under every ICMP type, and an IPv6 extension-header
    // chain that points past the end.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (rnd() % 80) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        if let Some(v) = b.first_mut() {
            *v = if rnd() % 2 == 0 { 0x45 } else { 0x60 };
        }
        let ipv6 = b.first() == Some(&0x60);
        let mut k = if ipv6 { k6 } else { rk };
        k.set(slots::TP_SRC, u128::from(rnd() as u8));
        k.set(slots::TP_DST, u128::from(rnd() as u8 % 3));
        ct.execute(&mut k, &b, &commit(0), 0);
    }
}

#[test]
fn threads_commit_and_look_up_concurrently() {
    let ct = Arc::new(Conntrack::new(CtConfig {
        shards: 8,
        ..CtConfig::default()
    }));
    let threads = 4u16;
    let per = 2000u16;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let ct = ct.clone();
            std::thread::spawn(move || {
                let src = C + u32::from(t);
                for p in 0..per {
                    assert_eq!(st(&ct, tcp(src, S, p, 80, SYN), &commit(0), 0), NEW | TRK);
                    assert_eq!(
                        st(&ct, tcp(S, src, 80, p, SYN | ACK), &next(0), 0),
                        EST | RPL | TRK
                    );
                    // Everyone also races on one shared connection.
                    let s = st(&ct, udp(C, S, 7, 7), &commit(0), 0);
                    assert!(s == NEW | TRK || s == EST | TRK, "{s:#x}");
                }
                for p in 0..per {
                    let s = st(&ct, tcp(src, S, p, 80, ACK), &next(0), 1);
                    assert_eq!(s, EST | TRK);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(ct.len(), usize::from(threads) * usize::from(per) + 1);
    let s = ct.stats();
    assert_eq!(s.committed as usize, ct.len());
    assert_eq!(ct.entries(1).len(), ct.len());
}

/// Runs `k` through `ct` with `hint`; the state.
fn hinted(ct: &Conntrack, k: FlowKey, a: &CtAction, now: u64, hint: &mut CtHint) -> u32 {
    let mut k = k;
    let s = ct.execute_hinted(&mut k, &[], a, now, hint);
    assert_eq!(k.get(slots::CT_STATE), u128::from(s));
    s
}

#[test]
fn hints_find_connections_and_never_the_wrong_one() {
    let ct = ct();
    let tm = CtTimeouts::default();
    establish(&ct, 0, 1000, 0);
    establish(&ct, 0, 1001, 0);
    // One hint per direction, as a worker keeps one per exact key.
    let (mut fwd, mut rev) = (CtHint::default(), CtHint::default());
    assert_eq!(
        hinted(&ct, tcp(C, S, 1000, 80, ACK), &next(0), 1, &mut fwd),
        EST | TRK
    );
    assert_eq!(
        hinted(&ct, tcp(S, C, 80, 1000, ACK), &next(0), 1, &mut rev),
        EST | RPL | TRK
    );
    assert_ne!(fwd, CtHint::default());
    assert_ne!(fwd, rev);
    // The hint of another connection, or of its other direction, is
    // checked and not taken.
    let mut other = fwd;
    assert_eq!(
        hinted(&ct, tcp(C, S, 1001, 80, ACK), &next(0), 2, &mut other),
        EST | TRK
    );
    assert_ne!(other, fwd);
    let mut wrong_way = fwd;
    assert_eq!(
        hinted(&ct, tcp(S, C, 80, 1000, ACK), &next(0), 2, &mut wrong_way),
        EST | RPL | TRK
    );
    assert_eq!(wrong_way, rev);
    // State changes still happen through a hint: FIN, then RST.
    assert_eq!(
        hinted(&ct, tcp(C, S, 1000, 80, FIN | ACK), &next(0), 3, &mut fwd),
        EST | TRK
    );
    let e = ct.entries(3);
    let e = e.iter().find(|e| e.orig.sport == 1000).unwrap();
    assert_eq!(e.tcp_state, Some(TcpState::Closing));
    assert_eq!(e.expires_ns, 3 + tm.tcp_closing);
    assert_eq!(
        hinted(&ct, tcp(S, C, 80, 1000, RST), &next(0), 4, &mut rev),
        EST | RPL | TRK
    );
    // Reopened on the same tuple: the hint leads to the new connection.
    assert_eq!(
        hinted(&ct, tcp(C, S, 1000, 80, SYN), &commit(0), 5, &mut fwd),
        NEW | TRK
    );
    assert_eq!(
        hinted(&ct, tcp(C, S, 1000, 80, SYN), &next(0), 6, &mut fwd),
        NEW | TRK
    );
    // Expired: a hint does not bring it back.
    let late = 6 + tm.tcp_first_packet + 1;
    assert_eq!(
        hinted(&ct, tcp(C, S, 1000, 80, ACK), &next(0), late, &mut fwd),
        NEW | TRK
    );
    // Counted as without hints: the same packets through a twin table.
    let twin = self::ct();
    establish(&twin, 0, 1000, 0);
    establish(&twin, 0, 1001, 0);
    for (k, a, now) in [
        (tcp(C, S, 1000, 80, ACK), next(0), 1),
        (tcp(S, C, 80, 1000, ACK), next(0), 1),
        (tcp(C, S, 1001, 80, ACK), next(0), 2),
        (tcp(S, C, 80, 1000, ACK), next(0), 2),
        (tcp(C, S, 1000, 80, FIN | ACK), next(0), 3),
        (tcp(S, C, 80, 1000, RST), next(0), 4),
        (tcp(C, S, 1000, 80, SYN), commit(0), 5),
        (tcp(C, S, 1000, 80, SYN), next(0), 6),
        (tcp(C, S, 1000, 80, ACK), next(0), late),
    ] {
        st(&twin, k, &a, now);
    }
    assert_eq!(ct.stats(), twin.stats());
}

#[test]
fn busy_connections_rearm_their_timeout_coarsely() {
    let ct = ct();
    let tm = CtTimeouts::default();
    establish(&ct, 0, 1000, 0);
    let exp = |ct: &Conntrack| ct.entries(0)[0].expires_ns;
    assert_eq!(exp(&ct), tm.tcp_established);
    // Within a second (1/1024 of a day is more): the expiry stays.
    st(&ct, tcp(C, S, 1000, 80, ACK), &next(0), SEC / 2);
    assert_eq!(exp(&ct), tm.tcp_established);
    // Later: it moves.
    st(&ct, tcp(C, S, 1000, 80, ACK), &next(0), 2 * SEC);
    assert_eq!(exp(&ct), 2 * SEC + tm.tcp_established);
    // UDP's 30 s: within 1/1024 of it (29 ms) it stays, then it moves.
    st(&ct, udp(C, S, 5000, 53), &commit(0), 0);
    st(&ct, udp(S, C, 53, 5000), &next(0), 1);
    let udp_exp = |ct: &Conntrack| {
        ct.entries(0)
            .into_iter()
            .find(|e| e.orig.proto == 17)
            .unwrap()
            .expires_ns
    };
    assert_eq!(udp_exp(&ct), 1 + tm.other_bidir);
    st(&ct, udp(C, S, 5000, 53), &next(0), 20_000_000);
    assert_eq!(udp_exp(&ct), 1 + tm.other_bidir);
    st(&ct, udp(C, S, 5000, 53), &next(0), 40_000_000);
    assert_eq!(udp_exp(&ct), 40_000_000 + tm.other_bidir);
}

#[test]
fn a_burst_repeats_an_unchanged_answer_and_nothing_else() {
    // The same packets through a table with memos (one batch: one time)
    // and through a twin without: same answers, counters and states.
    let (ct, twin) = (ct(), ct());
    for t in [&ct, &twin] {
        establish(t, 0, 1000, 0);
    }
    let mut memos = CtMemos::default();
    let mut hint = CtHint::default();
    let packets = [
        tcp(C, S, 1000, 80, ACK),
        tcp(C, S, 1000, 80, ACK),
        tcp(C, S, 1000, 80, ACK),
        // The other end closes: the next ACK moves the state on, so no
        // answer from before may stand in for it.
        tcp(S, C, 80, 1000, FIN | ACK),
        tcp(C, S, 1000, 80, ACK),
        tcp(C, S, 1000, 80, ACK),
        tcp(C, S, 1000, 80, FIN | ACK),
        tcp(C, S, 1000, 80, FIN | ACK),
    ];
    for (i, k) in packets.iter().enumerate() {
        let mut a = *k;
        let got = ct.execute_repeated(&mut a, &[], &next(0), 10, &mut hint, &mut memos);
        let mut b = *k;
        let want = twin.execute(&mut b, &[], &next(0), 10);
        assert_eq!((got, a), (want, b), "packet {i}");
        assert_eq!(ct.entries(10), twin.entries(10), "packet {i}");
    }
    assert_eq!(ct.stats(), twin.stats());
    assert_eq!(ct.entries(10)[0].tcp_state, Some(TcpState::FinWait2));
}
