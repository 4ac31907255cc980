//! `ironflow run`: the node daemon in the foreground, with its settings
//! from flags and an optional TOML file, pods attached by interface name
//! and `iface-id`, until SIGINT or SIGTERM.

use super::settings::{merge, FileSettings, FlagSettings};
use crate::daemon::{run, DaemonConfig, PortSpec};
use crate::ovsdb::parse_remotes;
use anyhow::{bail, Context, Result};
use clap::Args;
use ironflow_datapath::port::Port;
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
    /// `ovn-bridge-mappings`: physnet:bridge,…
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
    /// How ports are attached: auto (the best that works) or afxdp.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// The management socket (`ironflow show|stats|flows` talk to it).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_MGMT_SOCKET)]
    pub mgmt_socket: PathBuf,
}

/// Where the management socket is unless told otherwise.
pub const DEFAULT_MGMT_SOCKET: &str = "/run/ironflow/ironflow.sock";

/// Opens `ifname` with the backend asked for.
fn open_port(ifname: &str, backend: &str) -> Result<Box<dyn Port>> {
    match backend {
        "auto" | "afxdp" => {
            let port = ironflow_datapath::afxdp::AfXdpPort::open(ifname, 0)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tracing::info!("attached {}", port.name());
            Ok(Box::new(port))
        }
        "afpacket" => Ok(Box::new(ironflow_datapath::afpacket::AfPacketPort::open(
            ifname,
        )?)),
        other => bail!("unknown backend \"{other}\": use auto, afxdp or afpacket"),
    }
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
    let mut ports = Vec::new();
    for spec in &args.ports {
        let Some((ifname, iface_id)) = spec.split_once('=') else {
            bail!("--port {spec}: write it IFNAME=IFACE_ID (e.g. --port veth-web1=web-1)");
        };
        ports.push(PortSpec {
            iface_id: iface_id.to_string(),
            port: open_port(ifname, &args.backend).with_context(|| format!("--port {spec}"))?,
        });
    }
    let underlay = UdpUnderlay::bind(SocketAddrV4::new(settings.chassis.encap_ip, 6081), 6081)?;
    if let Some(dir) = args.mgmt_socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("cannot create {} for the management socket", dir.display())
        })?;
    }
    let cfg = DaemonConfig {
        chassis: settings.chassis,
        remotes,
        ports,
        underlay: Box::new(underlay),
        mgmt_socket: Some(args.mgmt_socket),
    };
    run(cfg, shutdown_signal()).await
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
