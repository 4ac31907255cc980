//! Translation into datapath actions on the seed topology, bound to
//! chassis as in the seed write-up: the actions of each pass, where passes
//! end, and that the mask is sound (bits outside it never change the
//! answer).

use ironflow_pipeline::classifier::Key;
use ironflow_pipeline::dpaction::{CtNat, DpAction};
use ironflow_pipeline::interp::{ct_state, translate, Entry, Translation};
use ironflow_pipeline::lflow::symbols::KeyField;
use ironflow_pipeline::program::{compile, Program};
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::trace::microflow_key;
use ironflow_pipeline::LogicalNetwork;

/// The seed with its pods where the write-up has them.
fn seed() -> LogicalNetwork {
    let mut net = Snapshot::from_json(include_str!("../../testdata/seed-snapshot.json"))
        .unwrap()
        .network;
    for (port, chassis) in [
        ("sshd-2", "kube-node1"),
        ("k8s-kube-node1", "kube-node1"),
        ("web-1", "kube-node2"),
        ("k8s-kube-node2", "kube-node2"),
        ("k8s-kube-master", "kube-master"),
    ] {
        net.ports.get_mut(port).unwrap().chassis = Some(chassis.into());
    }
    net
}

const WEB1_TO_SSHD2: &str = "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 \
     && eth.dst == 00:00:00:d3:4b:aa && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 \
     && ip.ttl == 64 && tcp.src == 40000 && tcp.dst == 22";

struct Seed {
    net: LogicalNetwork,
    program: Program,
}

impl Seed {
    fn new() -> Self {
        let net = seed();
        let program = compile(&net);
        Seed { net, program }
    }

    fn entry(&self, switch: &str, port: &str) -> Entry {
        Entry::Port {
            datapath: self.net.find_datapath(switch).unwrap().uuid,
            inport: self.net.ports[port].tunnel_key,
        }
    }

    fn key(&self, switch: &str, microflow: &str) -> Key {
        let dp = self.net.find_datapath(switch).unwrap();
        microflow_key(&self.net, dp, microflow).unwrap()
    }

    fn translate(&self, chassis: &str, entry: Entry, key: &Key, recorded: &[Key]) -> Translation {
        translate(&self.program, &self.net, chassis, entry, key, recorded)
    }
}

/// What conntrack would make of `key` at a recirculation: tracked and
/// established, addresses unchanged.
fn after_ct(key: &Key) -> Key {
    let mut k = *key;
    k[KeyField::CtState.index()] = u128::from(ct_state::EST | ct_state::TRK);
    k
}

#[test]
fn cross_node_path_is_two_passes_ending_in_a_tunnel() {
    let s = Seed::new();
    let entry = s.entry("kube-node2", "web-1");
    let key = s.key("kube-node2", WEB1_TO_SSHD2);

    let first = s.translate("kube-node2", entry, &key, &[]);
    let Some(DpAction::Ct(ct)) = first.actions.last() else {
        panic!("pass 0 ends in conntrack: {:?}", first.actions);
    };
    assert!(ct.recirculates);
    // The switch has load balancers: ct_lb_mark without backends applies
    // the NAT a connection already has.
    assert_eq!(ct.nat, Some(CtNat::Existing));
    let frozen = first.freeze.clone().expect("pass 0 freezes");
    assert_eq!(frozen.pass, 1);
    assert!(!first.controller);

    let second = s.translate("kube-node2", entry, &key, &[after_ct(&key)]);
    assert!(second.freeze.is_none(), "{:?}", second.actions);
    let router_mac = 0x0000_00c0_2ec7;
    let sshd_mac = 0x0a00_0000_0001;
    let sets: Vec<_> = second
        .actions
        .iter()
        .filter(|a| matches!(a, DpAction::Set { .. } | DpAction::DecTtl))
        .cloned()
        .collect();
    assert!(sets.contains(&DpAction::Set {
        field: KeyField::EthSrc,
        value: router_mac
    }));
    assert!(sets.contains(&DpAction::Set {
        field: KeyField::EthDst,
        value: sshd_mac
    }));
    assert!(sets.contains(&DpAction::DecTtl));
    let Some(DpAction::Tunnel(t)) = second.actions.last() else {
        panic!("pass 1 ends in a tunnel: {:?}", second.actions);
    };
    let node1 = s.net.find_datapath("kube-node1").unwrap();
    assert_eq!(&*t.chassis, "kube-node1");
    assert_eq!(t.datapath_key, node1.tunnel_key);
    assert_eq!(t.outport_key, s.net.ports["sshd-2"].tunnel_key);
    assert_eq!(t.inport_key, s.net.ports["stor-kube-node1"].tunnel_key);

    // Routing pins the destination (the next hop's MAC binding is looked
    // up by it).
    let dst = second.mask[KeyField::Nw4Dst.index()];
    assert_eq!(dst, 0xffff_ffff);
    assert_eq!(
        second.mask[KeyField::Xxreg(0).index()],
        0,
        "metadata is not masked"
    );
}

#[test]
fn a_pass_is_the_same_for_every_packet_its_mask_allows() {
    let s = Seed::new();
    let probes = [
        ("kube-node2", "web-1", WEB1_TO_SSHD2),
        // Same switch, another port.
        (
            "kube-node2",
            "web-1",
            "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 06:52:0a:5f:3f:7c \
             && ip4.src == 192.168.3.3 && ip4.dst == 192.168.3.2 && ip.ttl == 64 && udp.dst == 53",
        ),
        // ARP for the router.
        (
            "kube-node2",
            "web-1",
            "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == ff:ff:ff:ff:ff:ff \
             && arp.op == 1 && arp.sha == 0a:00:00:00:00:02 && arp.spa == 192.168.3.3 \
             && arp.tpa == 192.168.3.1",
        ),
        // TTL about to expire.
        (
            "kube-node2",
            "web-1",
            "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
             && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 1 && tcp.dst == 22",
        ),
    ];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u128::from(rng) << 64 | u128::from(rng.rotate_left(32))
    };
    for (switch, port, microflow) in probes {
        let entry = s.entry(switch, port);
        let key = s.key(switch, microflow);
        let mut history = Vec::new();
        for pass in 0..4 {
            let t = s.translate("kube-node2", entry, &key, &history);
            for _ in 0..50 {
                // Change every header bit the mask leaves out.
                let mut other = key;
                for (i, field) in KeyField::ALL.iter().enumerate() {
                    if matches!(
                        field,
                        KeyField::Xxreg(_)
                            | KeyField::Xreg4
                            | KeyField::Flags
                            | KeyField::InPort
                            | KeyField::OutPort
                    ) {
                        continue;
                    }
                    let free = !t.mask[i] & field.full_mask();
                    other[i] = (key[i] & !free) | (next() & free);
                }
                let hist: Vec<Key> = history
                    .iter()
                    .map(|h: &Key| {
                        let mut h = *h;
                        for (i, v) in h.iter_mut().enumerate() {
                            if *v == key[i] {
                                *v = other[i];
                            }
                        }
                        h
                    })
                    .collect();
                let u = s.translate("kube-node2", entry, &other, &hist);
                if pass == 0 {
                    assert_eq!(u.actions, t.actions, "{microflow}: pass 0 actions differ");
                    assert_eq!(u.freeze, t.freeze, "{microflow}: pass 0 freeze differs");
                    assert_eq!(u.controller, t.controller);
                }
            }
            match t.freeze {
                Some(_) => history.push(after_ct(&key)),
                None => break,
            }
        }
    }
}

#[test]
fn later_passes_depend_on_their_own_input_only() {
    // Pass 1 of the cross-node path, fed keys that differ from the probe
    // outside pass 1's mask (as a cache hit in pass 0 then a miss in pass
    // 1 would): same actions.
    let s = Seed::new();
    let entry = s.entry("kube-node2", "web-1");
    let key = s.key("kube-node2", WEB1_TO_SSHD2);
    let after = after_ct(&key);
    let t = s.translate("kube-node2", entry, &key, &[after]);
    let mut other = after;
    let tos = KeyField::IpTos.index();
    assert_eq!(t.mask[tos], 0, "DSCP does not matter");
    other[tos] = 0x28;
    let mut first = key;
    first[tos] = 0x28;
    let u = s.translate("kube-node2", entry, &first, &[other]);
    assert_eq!(u.actions, t.actions);
}

#[test]
fn tunnel_entry_runs_the_egress_pipeline_only() {
    let s = Seed::new();
    let node1 = s.net.find_datapath("kube-node1").unwrap();
    let entry = Entry::Tunnel {
        datapath: node1.uuid,
        inport: s.net.ports["stor-kube-node1"].tunnel_key,
        outport: s.net.ports["sshd-2"].tunnel_key,
    };
    let key = s.key(
        "kube-node1",
        "inport == \"stor-kube-node1\" && eth.src == 00:00:00:c0:2e:c7 \
         && eth.dst == 0a:00:00:00:00:01 \
         && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 63 && tcp.dst == 22",
    );
    let mut history = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let t = s.translate("kube-node1", entry, &key, &history);
        let done = t.freeze.is_none();
        last = Some(t);
        if done {
            break;
        }
        history.push(after_ct(&key));
    }
    let last = last.unwrap();
    assert_eq!(
        last.actions.last(),
        Some(&DpAction::Output {
            datapath_key: node1.tunnel_key,
            port_key: s.net.ports["sshd-2"].tunnel_key
        }),
        "{:?} {:?}",
        last.actions,
        last.drop_reason
    );
}

#[test]
fn controller_actions_hand_the_pass_over() {
    let s = Seed::new();
    let entry = s.entry("kube-node2", "web-1");
    let key = s.key(
        "kube-node2",
        "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
         && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 1 && tcp.dst == 22",
    );
    let mut history = Vec::new();
    for _ in 0..4 {
        let t = s.translate("kube-node2", entry, &key, &history);
        if t.controller {
            return;
        }
        assert!(t.freeze.is_some(), "{:?} {:?}", t.actions, t.drop_reason);
        history.push(after_ct(&key));
    }
    panic!("TTL expiry (icmp4 time exceeded) never reached the controller");
}
