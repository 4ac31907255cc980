//! `ironflow run`: the node daemon, in the foreground or (`--detach`) in
//! the background, with its settings from flags and an optional TOML file,
//! pods attached by interface name and `iface-id`, until SIGINT or SIGTERM.

use super::detach;
use super::settings::{merge, FileSettings, FlagSettings};
use crate::attach::{attach, Backend};
use crate::daemon::{run_with, DaemonConfig, LocalnetSpec, PortSpec};
use crate::ovsdb::parse_remotes;
use anyhow::{bail, Context, Result};
use clap::Args;
use ironflow_datapath::udp_underlay::UdpUnderlay;
use std::net::SocketAddrV4;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The Southbound database (`ovn-remote`): unix:PATH or tcp:IP:PORT,
    /// several comma-separated for a cluster.
    #[arg(long)]
    pub ovn_remote: Option<String>,
    /// This chassis's name (`system-id`).
    #[arg(long)]
    pub system_id: Option<String>,
    /// This node's underlay IPv4 address for tunnels (`ovn-encap-ip`).
    #[arg(long)]
    pub encap_ip: Option<String>,
    /// Tunnel type (`ovn-encap-type`): geneve.
    #[arg(long)]
    pub encap_type: Option<String>,
    /// `ovn-bridge-mappings`: PHYSNET:IFNAME,… — where OVS names a bridge,
    /// ironflow takes the interface the physical network is reached by
    /// (attached with --backend's choice).
    #[arg(long)]
    pub bridge_mappings: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// A TOML file with the same settings by their external_ids names.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Attach interface IFNAME as the logical port IFACE_ID (repeatable).
    #[arg(long = "port", value_name = "IFNAME=IFACE_ID")]
    pub ports: Vec<String>,
    /// How --port interfaces are attached: auto (the best that works:
    /// AF_PACKET on veth, AF_XDP on NICs, TAP on taps), afpacket, afxdp,
    /// or tap (creates the interface as an internal port).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// The management socket (`ironflow show|stats|flows|port|trace --live`
    /// talk to it).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_MGMT_SOCKET)]
    pub mgmt_socket: PathBuf,
    /// Where ports added with `ironflow port add` are kept, so that a
    /// restarted daemon comes back with them. Default: next to the
    /// management socket (`<socket>.ports.json`; /run does not outlive a
    /// reboot, and neither do a node's pod interfaces).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Worker threads forwarding (poll-mode, each owning some of the
    /// ports); one core each while traffic runs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub workers: usize,
    /// Run in the background; the command returns once the node is up
    /// (status 0) or failed to start (its error, status 1).
    #[arg(long)]
    pub detach: bool,
    /// Write the daemon's pid here (removed on a clean exit).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// With --detach: where the log goes (appended); else it is dropped.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// Where the management socket is unless told otherwise.
pub const DEFAULT_MGMT_SOCKET: &str = "/run/ironflow/ironflow.sock";

/// Checks what can be checked before forking, so that `--detach` reports
/// plain mistakes on the terminal.
pub fn precheck(args: &RunArgs) -> Result<()> {
    args.backend.parse::<Backend>()?;
    if args.workers == 0 || args.workers > 256 {
        bail!("--workers {}: give 1 to 256 worker threads", args.workers);
    }
    if args.log_file.is_some() && !args.detach {
        bail!("--log-file goes with --detach (in the foreground the log is stderr)");
    }
    Ok(())
}

pub async fn run_node(args: RunArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => FileSettings::read(path)?,
        None => FileSettings::default(),
    };
    let settings = merge(
        file,
        FlagSettings {
            ovn_remote: args.ovn_remote,
            encap_type: args.encap_type,
            encap_ip: args.encap_ip,
            system_id: args.system_id,
            bridge_mappings: args.bridge_mappings,
            hostname: args.hostname,
        },
    )?;
    let remotes = parse_remotes(&settings.ovn_remote)
        .with_context(|| format!("ovn-remote \"{}\"", settings.ovn_remote))?;
    if !args.detach {
        if let Some(p) = &args.pidfile {
            detach::foreground_pidfile(p)?;
        }
    }
    // The underlay first: a wrong encap IP is the commonest mistake, and
    // nothing should be registered in the SB for a node that cannot run.
    let encap_ip = settings.chassis.encap_ip;
    let underlay = UdpUnderlay::bind(SocketAddrV4::new(encap_ip, 6081), 6081).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrNotAvailable {
            anyhow::anyhow!(
                "encap IP {encap_ip} is not an address of this node: give --encap-ip (ovn-encap-ip) an address of one of its interfaces"
            )
        } else if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "UDP port 6081 on {encap_ip} is taken (another ironflow or OVS on this node?)"
            )
        } else {
            anyhow::anyhow!("cannot open the Geneve underlay on {encap_ip}:6081: {e}")
        }
    })?;
    if !underlay.sends_raw() {
        tracing::warn!(
            "no raw socket (CAP_NET_RAW): Geneve leaves through the UDP socket, from port 6081 rather than the flow's hash, its checksum left to the device"
        );
    }
    let backend: Backend = args.backend.parse()?;
    let mut ports = Vec::new();
    for spec in &args.ports {
        let Some((ifname, iface_id)) = spec.split_once('=') else {
            bail!("--port {spec}: write it IFNAME=IFACE_ID (e.g. --port veth-web1=web-1)");
        };
        let a = attach(ifname, backend).with_context(|| format!("--port {spec}"))?;
        ports.push(PortSpec {
            ifname: ifname.to_string(),
            iface_id: iface_id.to_string(),
            port: a.port,
            backend: a.backend.to_string(),
        });
    }
    let mut localnet = Vec::new();
    for mapping in settings
        .chassis
        .bridge_mappings
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        let Some((physnet, ifname)) = mapping.split_once(':') else {
            bail!("ovn-bridge-mappings {mapping:?}: write PHYSNET:IFNAME (e.g. physnet1:eth1)");
        };
        let a =
            attach(ifname, backend).with_context(|| format!("ovn-bridge-mappings {mapping}"))?;
        localnet.push(LocalnetSpec {
            physnet: physnet.to_string(),
            ifname: ifname.to_string(),
            port: a.port,
            backend: a.backend.to_string(),
        });
    }
    if let Some(dir) = args.mgmt_socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("cannot create {} for the management socket", dir.display())
        })?;
    }
    let state = args.state.unwrap_or_else(|| {
        let mut p = args.mgmt_socket.clone().into_os_string();
        p.push(".ports.json");
        PathBuf::from(p)
    });
    let cfg = DaemonConfig {
        chassis: settings.chassis,
        remotes,
        ports,
        underlay: Box::new(underlay),
        mgmt_socket: Some(args.mgmt_socket),
        state_file: Some(state),
        workers: args.workers,
        localnet,
    };
    let result = run_with(cfg, shutdown_signal(), |_| detach::notify_ready()).await;
    detach::remove_pidfile();
    result
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
