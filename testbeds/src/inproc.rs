//! In-process ironflow daemons for integration tests: a node against a
//! real central with pods on in-memory ports and Geneve over kernel UDP
//! on a loopback address, and the helpers those tests share (sending a
//! frame until the answer shows, IPv4 header checksums).

use crate::central::OvnCentral;
use ironflow_control::chassis::ChassisConfig;
use ironflow_control::daemon::{run_with, DaemonConfig, PortSpec};
use ironflow_control::ovsdb::parse_remotes;
use ironflow_datapath::port::{MemPeer, MemPort};
use ironflow_datapath::udp_underlay::UdpUnderlay;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where an in-process node's management socket is: unique per test
/// process and node.
pub fn mgmt_socket(name: &str, ip: Ipv4Addr) -> PathBuf {
    std::env::temp_dir().join(format!("ironflow-{}-{name}-{ip}.sock", std::process::id()))
}

/// The config of chassis `name` on underlay address `ip` (a loopback
/// address, port 6081) with one in-memory port per `iface_ids` entry;
/// the peers are the pods' ends, in the same order. One worker, no state
/// file, the socket at [`mgmt_socket`].
pub fn mem_node(
    central: &OvnCentral,
    name: &str,
    ip: Ipv4Addr,
    iface_ids: &[&str],
) -> (DaemonConfig, Vec<MemPeer>) {
    let mut ports = Vec::new();
    let mut peers = Vec::new();
    for id in iface_ids {
        let (port, peer) = MemPort::pair(id, 256);
        ports.push(PortSpec {
            ifname: format!("mem-{id}"),
            iface_id: id.to_string(),
            port: Box::new(port),
            backend: "memory".into(),
        });
        peers.push(peer);
    }
    let underlay = UdpUnderlay::bind(SocketAddrV4::new(ip, 6081), 6081)
        .unwrap_or_else(|e| panic!("underlay on {ip}: {e}"));
    let cfg = DaemonConfig {
        chassis: ChassisConfig {
            name: name.into(),
            hostname: name.into(),
            encap_type: "geneve".into(),
            encap_ip: ip,
            bridge_mappings: String::new(),
        },
        remotes: parse_remotes(&central.sb_remote()).expect("the central's SB remote"),
        ports,
        underlay: Box::new(underlay),
        mgmt_socket: Some(mgmt_socket(name, ip)),
        state_file: None,
        workers: 1,
        localnet: Vec::new(),
    };
    (cfg, peers)
}

/// A daemon running on the test's runtime: stop it with the sender, and
/// await the handle for its clean exit.
pub struct Running {
    pub stop: oneshot::Sender<()>,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn spawn(cfg: DaemonConfig) -> Running {
        let (stop, wait) = oneshot::channel::<()>();
        let handle = tokio::spawn(run_with(
            cfg,
            async {
                wait.await.ok();
            },
            |_| {},
        ));
        Running { stop, handle }
    }

    /// Stops the daemon and checks it exited cleanly (ports released,
    /// chassis unregistered).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.handle
            .await
            .expect("the daemon task")
            .expect("a clean exit");
    }
}

/// Sends `frame` from `from` every 50 ms until a frame on `to` satisfies
/// `want` (nodes see each other's claims on their own time); panics
/// after 20 s naming `what`.
pub async fn until(
    from: &MemPeer,
    frame: &[u8],
    to: &MemPeer,
    what: &str,
    want: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "{what}: nothing came");
        assert!(from.inject(frame), "{what}: the port's queue is full");
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Some(f) = to.receive() {
            if want(&f) {
                return f;
            }
        }
    }
}

/// The Internet checksum of `bytes` (an IPv4 header with its checksum
/// field zero; or a whole one, which then sums to 0).
pub fn ipv4_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|p| u32::from(u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
