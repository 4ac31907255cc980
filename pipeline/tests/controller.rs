//! Controller passes carried out (`interp::execute`) on the seed, as a
//! node's pinctrl runs them: the packets controller actions make, where
//! they go, and what `put_arp` learns.

use ironflow_pipeline::classifier::Key;
use ironflow_pipeline::interp::{
    ct_state, execute, translate, Entry, Learned, Outcome, SimulatedConntrack,
};
use ironflow_pipeline::lflow::symbols::KeyField;
use ironflow_pipeline::program::{compile, Program};
use ironflow_pipeline::snapshot::Snapshot;
use ironflow_pipeline::trace::microflow_key;
use ironflow_pipeline::LogicalNetwork;

struct Seed {
    net: LogicalNetwork,
    program: Program,
}

impl Seed {
    /// The seed with its pods where the write-up has them; `open` ports
    /// lose their port security (so they may answer for any address).
    fn new(open: &[&str]) -> Seed {
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
        for port in open {
            net.ports.get_mut(*port).unwrap().port_security.clear();
        }
        let program = compile(&net);
        Seed { net, program }
    }

    /// Translates passes of `microflow` (from `port` on `switch`) as
    /// `chassis` until one goes to the controller, then carries that one
    /// out. Conntrack says established at every recirculation.
    fn controller_pass(&self, chassis: &str, switch: &str, port: &str, microflow: &str) -> Outcome {
        let dp = self.net.find_datapath(switch).unwrap();
        let key = microflow_key(&self.net, dp, microflow).unwrap();
        let entry = Entry::Port {
            datapath: dp.uuid,
            inport: self.net.ports[port].tunnel_key,
        };
        let mut history: Vec<Key> = Vec::new();
        for _ in 0..6 {
            let t = translate(&self.program, &self.net, chassis, entry, &key, &history);
            if t.controller {
                let mut ct = SimulatedConntrack {
                    states: Vec::new(),
                    next: 0,
                    lb_dst: None,
                };
                return execute(
                    &self.program,
                    &self.net,
                    chassis,
                    entry,
                    &key,
                    &history,
                    &mut ct,
                    false,
                );
            }
            assert!(t.freeze.is_some(), "{:?} {:?}", t.actions, t.drop_reason);
            let mut after = key;
            after[KeyField::CtState.index()] = u128::from(ct_state::EST | ct_state::TRK);
            history.push(after);
        }
        panic!("{microflow} never reached the controller");
    }
}

fn field(key: &Key, f: KeyField) -> u128 {
    key[f.index()]
}

fn ip(a: [u8; 4]) -> u128 {
    u128::from(u32::from_be_bytes(a))
}

#[test]
fn ttl_expiry_comes_back_as_icmp_time_exceeded_from_the_router() {
    let s = Seed::new(&[]);
    let out = s.controller_pass(
        "kube-node2",
        "kube-node2",
        "web-1",
        "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
         && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.3 && ip.ttl == 1 && tcp.dst == 22",
    );
    assert_eq!(out.outputs.len(), 1, "{:?} {:?}", out.outputs, out.drops);
    let o = &out.outputs[0];
    // northd 23.03 writes `icmp4 { icmp4.type = 11; … }` for it.
    assert_eq!(o.generated_by, Some("icmp4"));
    assert_eq!(o.port, "web-1");
    assert!(o.tunnel.is_none(), "web-1 is on this chassis");
    assert_eq!(o.port_key, s.net.ports["web-1"].tunnel_key);
    let k = &o.key;
    assert_eq!(field(k, KeyField::IpProto), 1);
    assert_eq!(
        (field(k, KeyField::TpSrc), field(k, KeyField::TpDst)),
        (11, 0)
    );
    assert_eq!(field(k, KeyField::Nw4Dst), ip([192, 168, 3, 3]));
    assert_eq!(field(k, KeyField::Nw4Src), ip([192, 168, 3, 1]));
    assert_eq!(field(k, KeyField::EthDst), 0x0a00_0000_0002);
    assert_eq!(field(k, KeyField::EthSrc), 0x0000_00d3_4baa);
}

#[test]
fn an_unknown_next_hop_is_asked_for_with_a_broadcast_arp() {
    let s = Seed::new(&[]);
    let out = s.controller_pass(
        "kube-node2",
        "kube-node2",
        "web-1",
        "inport == \"web-1\" && eth.src == 0a:00:00:00:00:02 && eth.dst == 00:00:00:d3:4b:aa \
         && ip4.src == 192.168.3.3 && ip4.dst == 192.168.2.99 && ip.ttl == 64 && udp.dst == 53",
    );
    assert!(!out.outputs.is_empty(), "{:?}", out.drops);
    for o in &out.outputs {
        assert_eq!(o.generated_by, Some("arp"), "{o:?}");
        assert_eq!(o.datapath, "kube-node1");
        let k = &o.key;
        assert_eq!(field(k, KeyField::EthType), 0x806);
        assert_eq!(field(k, KeyField::ArpOp), 1);
        assert_eq!(field(k, KeyField::EthDst), 0xffff_ffff_ffff);
        assert_eq!(field(k, KeyField::EthSrc), 0x0000_00c0_2ec7);
        // arp.spa / arp.tpa live in the IPv4 address slots.
        assert_eq!(field(k, KeyField::Nw4Src), ip([192, 168, 2, 1]));
        assert_eq!(field(k, KeyField::Nw4Dst), ip([192, 168, 2, 99]));
    }
    // The switch's ports are on kube-node1: one copy goes there.
    let remote: Vec<_> = out
        .outputs
        .iter()
        .filter_map(|o| o.tunnel.as_ref())
        .collect();
    assert_eq!(remote.len(), 1, "{:?}", out.outputs);
    assert_eq!(remote[0].chassis, "kube-node1");
}

#[test]
fn an_arp_reply_to_the_router_is_learned() {
    let s = Seed::new(&["sshd-2"]);
    let out = s.controller_pass(
        "kube-node1",
        "kube-node1",
        "sshd-2",
        "inport == \"sshd-2\" && eth.src == 0a:00:00:00:00:99 && eth.dst == 00:00:00:c0:2e:c7 \
         && arp.op == 2 && arp.spa == 192.168.2.99 && arp.sha == 0a:00:00:00:00:99 \
         && arp.tpa == 192.168.2.1 && arp.tha == 00:00:00:c0:2e:c7",
    );
    // The router (a switch has the same name).
    let router = s.net.ports["rtos-kube-node1"].datapath;
    assert_eq!(
        out.learned,
        vec![Learned::MacBinding {
            datapath: router,
            logical_port: "rtos-kube-node1".into(),
            ip: ip([192, 168, 2, 99]),
            ipv6: false,
            mac: 0x0a00_0000_0099,
        }],
        "{:?}",
        out.drops
    );
}
