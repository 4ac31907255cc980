//! The node's controller side (ovn-controller's pinctrl): packets the
//! datapath handed over because a pass needs the controller are carried
//! out by the slow path (`interp::execute`), the packets that makes are
//! built and sent where the pipeline sent them, and what `put_arp` /
//! `put_nd` learned goes to the control task to be written to the SB.
//!
//! It runs on the worker thread between batches, rate-limited by a token
//! bucket so that a flood of packets needing the controller cannot take
//! the worker from forwarding.

use ironflow_datapath::compose::{self, ComposeError};
use ironflow_datapath::config::Config;
use ironflow_datapath::dns::{self, Question};
use ironflow_datapath::engine::Engine;
use ironflow_datapath::exec::{Exec, Flow};
use ironflow_datapath::extract::extract_packet;
use ironflow_datapath::keymap::to_logical;
use ironflow_datapath::packet::{Packet, PacketPool};
use ironflow_datapath::port::PortId;
use ironflow_datapath::rewrite;
use ironflow_datapath::worker::Punt;
use ironflow_datapath::{dhcp, dhcp6};
use ironflow_pipeline::classifier::Key;
use ironflow_pipeline::dpaction::{DpAction, TunnelOutput};
use ironflow_pipeline::interp::{
    execute, Answer, Entry, Learned, Output, SimulatedConntrack, Translation,
};
use ironflow_pipeline::lflow::symbols::KeyField;
use ironflow_tunnel::geneve::{source_port, ENCAP_LEN};
use ironflow_tunnel::ovs_hash::frame_hash;
use std::net::IpAddr;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

/// Packets per second the controller takes on one worker, and the burst
/// it absorbs: ovn-controller's default for controller packets is in the
/// same range, and this is far from what a core can forward.
const RATE: f64 = 2000.0;
const BURST: f64 = 500.0;

/// What the controller did, for `ironflow stats`.
#[derive(Debug, Clone, Default)]
pub struct PinctrlStats {
    /// Packets carried out.
    pub handled: u64,
    /// Packets sent for them (generated, or the original going on).
    pub sent: u64,
    /// Left alone: over the rate limit.
    pub rate_limited: u64,
    /// Packets a controller action would make that ironflow does not
    /// build yet (IPv6 ND, DHCPv6, DNS answers, …).
    pub unsupported: u64,
    /// Triggering packets too broken to answer (or DHCP messages that
    /// get no answer), or with no way in.
    pub failed: u64,
    /// MAC bindings learned.
    pub learned: u64,
}

/// The controller side of one worker.
pub struct Pinctrl {
    tokens: f64,
    refilled: Instant,
    pub stats: PinctrlStats,
    learned: UnboundedSender<Learned>,
}

/// Header fields an original packet may have changed on its way through
/// the controller's pass.
const HEADERS: [KeyField; 10] = [
    KeyField::EthSrc,
    KeyField::EthDst,
    KeyField::Nw4Src,
    KeyField::Nw4Dst,
    KeyField::Ip6Src,
    KeyField::Ip6Dst,
    KeyField::IpTtl,
    KeyField::IpTos,
    KeyField::TpSrc,
    KeyField::TpDst,
];

impl Pinctrl {
    pub fn new(learned: UnboundedSender<Learned>) -> Pinctrl {
        Pinctrl {
            tokens: BURST,
            refilled: Instant::now(),
            stats: PinctrlStats::default(),
            learned,
        }
    }

    fn admit(&mut self) -> bool {
        let now = Instant::now();
        let secs = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + secs * RATE).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Carries out `punt`, appending what it sends to `out`.
    pub fn handle(
        &mut self,
        engine: &Engine,
        pool: &mut PacketPool,
        punt: Punt,
        out: &mut Vec<(PortId, Packet)>,
    ) {
        if !self.admit() {
            self.stats.rate_limited += 1;
            pool.free(punt.packet);
            return;
        }
        self.stats.handled += 1;
        let config = engine.config();
        let Some(entry) = config.entry(&punt.first) else {
            self.stats.failed += 1;
            pool.free(punt.packet);
            return;
        };
        let first = to_logical(&punt.first);
        let recorded: Vec<Key> = punt.after_ct.iter().map(to_logical).collect();
        // Conntrack after the controller action (rare: generated packets
        // go out without a trip) answers as ovn-trace's default does.
        let mut ct = SimulatedConntrack {
            states: Vec::new(),
            next: 0,
            lb_dst: None,
        };
        let dns = dns_query(&config, entry, &first, punt.packet.data());
        let outcome = execute(
            &config.program,
            &config.net,
            &config.chassis,
            entry,
            &first,
            &recorded,
            &mut ct,
            dns.is_some(),
        );
        for l in outcome.learned {
            self.stats.learned += 1;
            let _ = self.learned.send(l);
        }
        for o in &outcome.outputs {
            let frame = match (o.generated_by, &outcome.answer) {
                (Some(kind), _) => compose::generated(kind, &o.key, punt.packet.data()),
                // The request goes back as the answer to it.
                (None, Some(answer)) => {
                    let Some(frame) = answered(answer, &o.key, punt.packet.data(), dns.as_ref())
                    else {
                        self.stats.failed += 1;
                        continue;
                    };
                    Ok(frame)
                }
                (None, None) => Ok(rewritten(punt.packet.data(), punt.first.in_port(), &o.key)),
            };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    match e {
                        ComposeError::Unsupported => self.stats.unsupported += 1,
                        ComposeError::Malformed => self.stats.failed += 1,
                    }
                    debug!("controller: no frame for {:?}: {e:?}", o.generated_by);
                    continue;
                }
            };
            let mut p = pool.alloc();
            if !p.set_data(&frame) {
                pool.free(p);
                self.stats.failed += 1;
                continue;
            }
            match deliver(&config, engine, o, &mut p) {
                Some(port) => {
                    self.stats.sent += 1;
                    out.push((port, p));
                }
                None => {
                    self.stats.failed += 1;
                    pool.free(p);
                }
            }
        }
        pool.free(punt.packet);
    }
}

/// The frame answering `request` (a DHCP message or a router
/// solicitation) with the options the pipeline gave, addressed as `key`
/// says; none for a request that gets no answer.
fn answered(
    answer: &Answer,
    key: &Key,
    request: &[u8],
    dns: Option<&(Question, Vec<IpAddr>)>,
) -> Option<Vec<u8>> {
    match answer {
        Answer::Dhcp4(options) => {
            let reply = dhcp::reply(compose::udp4_payload(request)?, options).ok()?;
            Some(compose::udp(key, &reply))
        }
        Answer::Dhcp6(options) => {
            let reply = dhcp6::reply(compose::udp6_payload(request)?, options).ok()?;
            Some(compose::udp(key, &reply))
        }
        Answer::RouterAdvertisement(options) => Some(compose::router_advertisement(key, options)),
        Answer::Dns => {
            let (q, addrs) = dns?;
            let v6 = key[KeyField::EthType.index()] == 0x86dd;
            let query = if v6 {
                compose::udp6_payload(request)?
            } else {
                compose::udp4_payload(request)?
            };
            Some(compose::udp(key, &dns::response(query, q, addrs)))
        }
    }
}

/// A DNS query in `frame` for a name the DNS records of the switch it
/// entered know, with the addresses that answer it: what makes
/// `dns_lookup` succeed.
fn dns_query(
    config: &Config,
    entry: Entry,
    first: &Key,
    frame: &[u8],
) -> Option<(Question, Vec<IpAddr>)> {
    if first[KeyField::IpProto.index()] != 17 || first[KeyField::TpDst.index()] != 53 {
        return None;
    }
    let payload = compose::udp4_payload(frame).or_else(|| compose::udp6_payload(frame))?;
    let q = dns::question(payload)?;
    let datapath = match entry {
        Entry::Port { datapath, .. } | Entry::Tunnel { datapath, .. } => datapath,
    };
    let addrs = dns::matching(&q, &config.net.dns_lookup(datapath, &q.name)?);
    (!addrs.is_empty()).then_some((q, addrs))
}

/// The original frame with the header fields the pass changed.
fn rewritten(frame: &[u8], in_port: u32, key: &Key) -> Vec<u8> {
    let Some(mut p) = Packet::from_slice(frame) else {
        return frame.to_vec();
    };
    // Extracted in place: the rewrites need the packet's header offsets.
    let (mut fk, _) = extract_packet(&mut p, in_port);
    let before = to_logical(&fk);
    for f in HEADERS {
        let (old, new) = (before[f.index()], key[f.index()]);
        if old != new {
            // A field the packet lacks stays as it is, as in the datapath.
            let _ = rewrite::set(&mut p, &mut fk, f, new);
        }
    }
    p.data().to_vec()
}

/// Sends `p` out the local port or into the tunnel the output names;
/// returns the datapath port it leaves by.
fn deliver(config: &Config, engine: &Engine, o: &Output, p: &mut Packet) -> Option<PortId> {
    let Some(t) = &o.tunnel else {
        return config.outputs.get(&(o.datapath_key, o.port_key)).copied();
    };
    let translation = Translation {
        actions: vec![DpAction::Tunnel(TunnelOutput {
            chassis: t.chassis.as_str().into(),
            datapath_key: t.datapath_key,
            inport_key: t.inport_key,
            outport_key: t.outport_key,
        })],
        ..Default::default()
    };
    let flow = Flow::install(translation, config, engine);
    let Some(Exec::Tunnel(tunnel)) = flow.actions.first() else {
        return None;
    };
    let hash = frame_hash(p.data());
    p.push_front(ENCAP_LEN)?;
    let (hdr, inner) = p.data_mut().split_at_mut(ENCAP_LEN);
    tunnel
        .template
        .write(hdr, inner, source_port(hash))
        .then_some(tunnel.encap.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_packet_goes_on_with_every_rewrite() {
        // UDP 192.168.3.3 -> 192.168.2.99, TTL 64, checksums right.
        let mut f = vec![0, 0, 0, 0xd3, 0x4b, 0xaa, 0x0a, 0, 0, 0, 0, 2, 0x08, 0x00];
        let mut ip = [
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 168, 3, 3, 192, 168, 2, 99,
        ];
        let sum = !ironflow_tunnel::geneve::fold(ironflow_tunnel::geneve::sum_words(&ip, 0));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0x80, 0, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        let (fk, _) = ironflow_datapath::extract::extract(&f, 1);
        let mut key = to_logical(&fk);
        key[KeyField::IpTtl.index()] = 63;
        key[KeyField::EthSrc.index()] = 0x0000_00c0_2ec7;
        key[KeyField::EthDst.index()] = 0x0a00_0000_0099;
        let out = rewritten(&f, 1, &key);
        assert_eq!(&out[0..6], &[0x0a, 0, 0, 0, 0, 0x99]);
        assert_eq!(&out[6..12], &[0, 0, 0, 0xc0, 0x2e, 0xc7]);
        assert_eq!(out[22], 63, "TTL");
        let check =
            ironflow_tunnel::geneve::fold(ironflow_tunnel::geneve::sum_words(&out[14..34], 0));
        assert_eq!(check, 0xffff, "IPv4 header checksum");
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_then_the_rate() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut p = Pinctrl::new(tx);
        let admitted = (0..10_000).filter(|_| p.admit()).count();
        // The burst, and what the rate refilled while the loop ran.
        assert!((500..=600).contains(&admitted), "{admitted}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let later = (0..10_000).filter(|_| p.admit()).count();
        assert!((150..=500).contains(&later), "about 200 in 0.1 s: {later}");
    }
}
