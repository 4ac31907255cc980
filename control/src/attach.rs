//! Attaching a network interface to the datapath: which port backend to
//! use for it (`--backend auto|afpacket|afxdp|tap`) and opening it.
//!
//! `auto` looks at what the interface is:
//!
//! - a tun/tap device: the TAP backend (it is the kernel's side of a tap);
//! - a virtual interface such as a veth: AF_PACKET. On veth AF_XDP only has
//!   copy mode, measured no faster than AF_PACKET here (both about 0.8 Mpps
//!   on one core), and it loses what AF_PACKET's virtio-net header carries:
//!   a pod that keeps checksum and TSO offloads on sends partial checksums
//!   and 64 KiB super-frames, which AF_PACKET completes and segments;
//! - a physical NIC (it has a `device` in sysfs): AF_XDP, which may get
//!   zero-copy from the driver, falling back to AF_PACKET when the XDP
//!   setup fails;
//! - no interface of that name: an error that says how to make one, or to
//!   ask for `--backend tap`, which creates an internal port (like an OVS
//!   `type=internal` interface) such as a node's `k8s-<node>` port.

use anyhow::{bail, Result};
use ironflow_datapath::afpacket::AfPacketPort;
use ironflow_datapath::port::Port;
use ironflow_datapath::tap::{TapOptions, TapPort};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use tracing::{info, warn};

/// A port backend, as `--backend` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Auto,
    AfPacket,
    AfXdp,
    Tap,
}

impl FromStr for Backend {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Backend> {
        Ok(match s {
            "auto" => Backend::Auto,
            "afpacket" => Backend::AfPacket,
            "afxdp" => Backend::AfXdp,
            "tap" => Backend::Tap,
            other => bail!("unknown backend \"{other}\": use auto, afpacket, afxdp or tap"),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Auto => "auto",
            Backend::AfPacket => "afpacket",
            Backend::AfXdp => "afxdp",
            Backend::Tap => "tap",
        })
    }
}

/// What kind of interface a name is, from sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Missing,
    Tap,
    Virtual,
    Physical,
}

fn kind_of(ifname: &str) -> Kind {
    let sys = Path::new("/sys/class/net").join(ifname);
    if ifname.is_empty() || ifname.contains('/') || !sys.exists() {
        Kind::Missing
    } else if sys.join("tun_flags").exists() {
        Kind::Tap
    } else if sys.join("device").exists() {
        Kind::Physical
    } else {
        Kind::Virtual
    }
}

/// An attached interface and the backend that ended up serving it.
pub struct Attached {
    pub port: Box<dyn Port>,
    pub backend: Backend,
}

/// Opens `ifname` with `backend` (`auto` picks, see the module docs) and
/// logs which backend it got.
pub fn attach(ifname: &str, backend: Backend) -> Result<Attached> {
    let kind = kind_of(ifname);
    if kind == Kind::Missing && backend != Backend::Tap {
        bail!(
            "no network interface named \"{ifname}\": create it first (e.g. `ip link add {ifname} type veth peer name …`), or use --backend tap to make an internal port"
        );
    }
    let chosen = match backend {
        Backend::Auto => match kind {
            Kind::Tap => Backend::Tap,
            Kind::Physical => Backend::AfXdp,
            Kind::Virtual | Kind::Missing => Backend::AfPacket,
        },
        other => other,
    };
    let attached = match chosen {
        Backend::AfXdp => match open_afxdp(ifname) {
            Ok(port) => Attached {
                port,
                backend: Backend::AfXdp,
            },
            Err(e) if backend == Backend::Auto => {
                warn!("{ifname}: AF_XDP failed ({e:#}); using AF_PACKET");
                Attached {
                    port: open_afpacket(ifname)?,
                    backend: Backend::AfPacket,
                }
            }
            Err(e) => return Err(e),
        },
        Backend::AfPacket => Attached {
            port: open_afpacket(ifname)?,
            backend: Backend::AfPacket,
        },
        Backend::Tap => {
            if !matches!(kind, Kind::Tap | Kind::Missing) {
                bail!("\"{ifname}\" exists and is not a tap: use --backend afpacket (or auto) for it, or pick another name for an internal port");
            }
            // Persistent, like an OVS internal port: a restarted daemon
            // finds it with its addresses and routes.
            let opts = TapOptions {
                persist: true,
                ..TapOptions::default()
            };
            Attached {
                port: Box::new(TapPort::open_with(ifname, &opts)?),
                backend: Backend::Tap,
            }
        }
        Backend::Auto => unreachable!("auto was resolved above"),
    };
    info!(
        "attached {ifname} with the {} backend ({})",
        attached.backend,
        attached.port.name()
    );
    Ok(attached)
}

/// An AF_PACKET port, saying so when it could not have the rings it
/// asked for and works with `recvmmsg`/`sendmmsg` instead.
fn open_afpacket(ifname: &str) -> Result<Box<dyn Port>> {
    let port = AfPacketPort::open(ifname)?;
    if let Some(why) = port.ring_fallback() {
        warn!("{ifname}: no AF_PACKET rings ({why}); using recvmmsg/sendmmsg");
    }
    Ok(Box::new(port))
}

#[cfg(feature = "afxdp")]
fn open_afxdp(ifname: &str) -> Result<Box<dyn Port>> {
    let port =
        ironflow_datapath::afxdp::AfXdpPort::open(ifname, 0).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Box::new(port))
}

#[cfg(not(feature = "afxdp"))]
fn open_afxdp(_ifname: &str) -> Result<Box<dyn Port>> {
    bail!("this ironflow was built without AF_XDP (the `afxdp` feature): use --backend afpacket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_and_print() {
        for b in ["auto", "afpacket", "afxdp", "tap"] {
            assert_eq!(b.parse::<Backend>().unwrap().to_string(), b);
        }
        let e = "xdp".parse::<Backend>().unwrap_err().to_string();
        assert!(e.contains("auto, afpacket, afxdp or tap"), "{e}");
    }

    #[test]
    fn a_missing_interface_says_how_to_fix_it() {
        let e = attach("ifl-nothere0", Backend::Auto)
            .err()
            .expect("no such interface")
            .to_string();
        assert!(
            e.contains("no network interface named \"ifl-nothere0\""),
            "{e}"
        );
        assert!(e.contains("--backend tap"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn loopback_is_virtual() {
        assert_eq!(kind_of("lo"), Kind::Virtual);
        assert_eq!(kind_of("../lo"), Kind::Missing);
    }
}
