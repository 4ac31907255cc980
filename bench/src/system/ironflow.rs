//! The `ironflow` peer: the seed lab as the tests run it (a real OVN
//! central, `ironflow run` on each node, pods on veth attached with
//! `ironflow port add`), with the benchmark's pods; on AF_PACKET for the
//! `ironflow` peer, AF_XDP for `ironflow-afxdp`.

use super::{Endpoints, Pair, Testbed, POD_SPECS};
use anyhow::Result;
use ironflow_testbeds::lab::{LabConfig, PodSpec, SeedLab};
use ironflow_testbeds::netns::unique_prefix;

pub struct IronflowLab {
    lab: SeedLab,
}

impl IronflowLab {
    /// With `afxdp`, the pods' ports are AF_XDP sockets, and the pods'
    /// TX checksum offload goes off first: AF_XDP frames carry no word
    /// of a partial checksum.
    pub fn start(afxdp: bool) -> Result<IronflowLab> {
        let mut cfg = LabConfig::new(&unique_prefix("bi"));
        if afxdp {
            cfg.backend = "afxdp".into();
        }
        // The node's own port carries nothing the benchmark sends.
        cfg.mgmt_ports = false;
        cfg.pods = POD_SPECS
            .iter()
            .map(|p| {
                if p.seed {
                    PodSpec::seed(p.lsp, p.node)
                } else {
                    Ok(PodSpec::extra(p.lsp, p.switch, p.mac, p.ip, p.node))
                }
            })
            .collect::<Result<_>>()?;
        let lab = SeedLab::start(cfg)?;
        if afxdp {
            for pod in lab.pods() {
                pod.ns().exec(&["ethtool", "-K", "eth0", "tx", "off"])?;
            }
        }
        Ok(IronflowLab { lab })
    }
}

impl Testbed for IronflowLab {
    fn endpoints(&self, pair: Pair) -> Result<Endpoints> {
        let (src, dst) = pair.pods();
        let (src, dst) = (self.lab.pod(src)?, self.lab.pod(dst)?);
        Ok(Endpoints {
            src_ns: src.ns().name().to_string(),
            dst_ns: dst.ns().name().to_string(),
            dst_ip: dst.spec.ip,
        })
    }

    /// Every node's daemon: the whole datapath of the lab.
    fn datapath_pids(&self) -> Vec<i32> {
        self.lab.nodes().iter().filter_map(|n| n.pid()).collect()
    }
}
