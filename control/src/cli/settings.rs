//! `ironflow run`'s settings: a TOML file with the names OVS users know
//! from the Open_vSwitch table's external_ids (`ovn-remote`,
//! `ovn-encap-type`, `ovn-encap-ip`, `system-id`, `ovn-bridge-mappings`),
//! and command-line flags that override it. Mistakes come back as one
//! line that says what to fix.

use crate::chassis::ChassisConfig;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::Path;

/// The file's keys (all optional; flags may give them instead).
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    #[serde(rename = "ovn-remote")]
    pub ovn_remote: Option<String>,
    #[serde(rename = "ovn-encap-type")]
    pub encap_type: Option<String>,
    #[serde(rename = "ovn-encap-ip")]
    pub encap_ip: Option<String>,
    #[serde(rename = "system-id")]
    pub system_id: Option<String>,
    #[serde(rename = "ovn-bridge-mappings")]
    pub bridge_mappings: Option<String>,
    pub hostname: Option<String>,
}

impl FileSettings {
    pub fn read(path: &Path) -> Result<FileSettings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        FileSettings::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<FileSettings> {
        toml::from_str(text).map_err(|e| {
            // toml's messages span lines; the first says what is wrong.
            let msg = e.message().to_string();
            anyhow::anyhow!(
                "{msg} (keys: ovn-remote, ovn-encap-type, ovn-encap-ip, system-id, ovn-bridge-mappings, hostname)"
            )
        })
    }
}

/// What the flags give (each overrides the file).
#[derive(Debug, Default, Clone)]
pub struct FlagSettings {
    pub ovn_remote: Option<String>,
    pub encap_type: Option<String>,
    pub encap_ip: Option<String>,
    pub system_id: Option<String>,
    pub bridge_mappings: Option<String>,
    pub hostname: Option<String>,
}

/// Settings after merging, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub ovn_remote: String,
    pub chassis: ChassisConfig,
}

/// Flags over file; checks what `ironflow run` needs.
pub fn merge(file: FileSettings, flags: FlagSettings) -> Result<Settings> {
    let pick = |flag: Option<String>, file: Option<String>| flag.or(file);
    let Some(ovn_remote) = pick(flags.ovn_remote, file.ovn_remote) else {
        bail!("no Southbound database: give --ovn-remote (e.g. tcp:10.0.0.1:6642) or ovn-remote in the config file");
    };
    let Some(system_id) = pick(flags.system_id, file.system_id) else {
        bail!("no chassis name: give --system-id or system-id in the config file");
    };
    let Some(encap_ip) = pick(flags.encap_ip, file.encap_ip) else {
        bail!("no tunnel address: give --encap-ip (this node's underlay IPv4 address) or ovn-encap-ip in the config file");
    };
    let encap_ip: Ipv4Addr = encap_ip
        .parse()
        .map_err(|_| anyhow::anyhow!("ovn-encap-ip \"{encap_ip}\" is not an IPv4 address"))?;
    let encap_type = pick(flags.encap_type, file.encap_type).unwrap_or_else(|| "geneve".into());
    if encap_type != "geneve" {
        bail!("ovn-encap-type \"{encap_type}\": ironflow speaks geneve only");
    }
    let hostname = pick(flags.hostname, file.hostname)
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| system_id.clone());
    Ok(Settings {
        ovn_remote,
        chassis: ChassisConfig {
            name: system_id,
            hostname,
            encap_type,
            encap_ip,
            bridge_mappings: pick(flags.bridge_mappings, file.bridge_mappings).unwrap_or_default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let file = FileSettings::parse(
            r#"
            ovn-remote = "tcp:10.0.0.1:6642"
            ovn-encap-type = "geneve"
            ovn-encap-ip = "10.99.0.2"
            system-id = "kube-node2"
            ovn-bridge-mappings = "physnet:br-ex"
            hostname = "node2"
            "#,
        )
        .unwrap();
        let s = merge(
            file,
            FlagSettings {
                encap_ip: Some("10.99.0.9".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.ovn_remote, "tcp:10.0.0.1:6642");
        assert_eq!(s.chassis.name, "kube-node2");
        assert_eq!(
            s.chassis.encap_ip,
            Ipv4Addr::new(10, 99, 0, 9),
            "the flag wins"
        );
        assert_eq!(s.chassis.bridge_mappings, "physnet:br-ex");
        assert_eq!(s.chassis.hostname, "node2");
    }

    #[test]
    fn mistakes_say_what_to_fix() {
        let e = |file: &str, flags: FlagSettings| {
            let f = FileSettings::parse(file);
            match f {
                Err(e) => format!("{e:#}"),
                Ok(f) => format!("{:#}", merge(f, flags).unwrap_err()),
            }
        };
        assert!(e("", FlagSettings::default()).contains("--ovn-remote"));
        let some = FlagSettings {
            ovn_remote: Some("unix:/x".into()),
            system_id: Some("n".into()),
            ..Default::default()
        };
        assert!(e("", some.clone()).contains("--encap-ip"));
        assert!(e("ovn-encap-ip = \"nope\"", some.clone()).contains("not an IPv4 address"));
        assert!(e(
            "ovn-encap-ip = \"1.2.3.4\"\novn-encap-type = \"vxlan\"",
            some.clone()
        )
        .contains("geneve only"));
        assert!(e("ovn-remot = \"x\"", some).contains("keys: ovn-remote"));
        assert!(!e("", FlagSettings::default()).contains('\n'));
    }
}
