//! The snapshot file: a [`LogicalNetwork`] frozen to JSON.
//!
//! `ironflow sb dump` writes it and every command that takes `--db` also
//! takes `--snapshot FILE` instead, so traces and tests can run without a
//! live database. The layout is documented in the README; `version` changes
//! whenever a reader of the old layout would misread the new one.

use crate::LogicalNetwork;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Marks a JSON file as an ironflow snapshot.
pub const FORMAT: &str = "ironflow-sb-snapshot";
/// The layout version this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: String,
    pub version: u32,
    /// Version of the SB schema the network was read from (`20.27.0` for
    /// OVN 23.03), when known.
    #[serde(default)]
    pub sb_schema_version: Option<String>,
    /// Where it was read from (the OVSDB remote), when known.
    #[serde(default)]
    pub source: Option<String>,
    pub network: LogicalNetwork,
}

/// Why a snapshot could not be read; the message says what to fix.
#[derive(Debug)]
pub enum SnapshotError {
    NotJson(serde_json::Error),
    WrongFormat(String),
    WrongVersion(u32),
    BadContent(serde_json::Error),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NotJson(e) => write!(f, "not a JSON snapshot ({e})"),
            SnapshotError::WrongFormat(found) => write!(
                f,
                "not an ironflow snapshot (format is {found:?}, want {FORMAT:?}); make one with `ironflow sb dump`"
            ),
            SnapshotError::WrongVersion(v) => write!(
                f,
                "snapshot version {v} is not supported (this ironflow reads version {VERSION}); dump it again with this ironflow"
            ),
            SnapshotError::BadContent(e) => write!(f, "snapshot content is malformed: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl Snapshot {
    pub fn new(network: LogicalNetwork) -> Self {
        Snapshot {
            format: FORMAT.to_string(),
            version: VERSION,
            sb_schema_version: None,
            source: None,
            network,
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string map keys cannot fail.
        serde_json::to_string_pretty(self).expect("snapshot serialises")
    }

    pub fn from_json(text: &str) -> Result<Snapshot, SnapshotError> {
        // Check the header first, so a wrong file gets a message about what
        // it is rather than about the first field that fails to parse. The
        // header pass skips the rest without building it in memory.
        #[derive(Deserialize)]
        struct Header {
            #[serde(default)]
            format: String,
            #[serde(default)]
            version: u64,
        }
        let header: Header = serde_json::from_str(text).map_err(SnapshotError::NotJson)?;
        if header.format != FORMAT {
            return Err(SnapshotError::WrongFormat(header.format));
        }
        if header.version != u64::from(VERSION) {
            return Err(SnapshotError::WrongVersion(
                u32::try_from(header.version).unwrap_or(u32::MAX),
            ));
        }
        serde_json::from_str(text).map_err(SnapshotError::BadContent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::*;
    use crate::Uuid;

    fn sample() -> LogicalNetwork {
        let mut net = LogicalNetwork::default();
        let dp = Uuid([7; 16]);
        net.datapaths.insert(
            dp,
            Datapath {
                uuid: dp,
                name: "kube-node1".into(),
                tunnel_key: 4,
                kind: DatapathKind::Switch,
                ..Default::default()
            },
        );
        net.ports.insert(
            "sshd-2".into(),
            LogicalPort {
                name: "sshd-2".into(),
                datapath: dp,
                tunnel_key: 3,
                mac: vec!["0a:00:00:00:00:01 192.168.2.3".into()],
                port_type: PortType::Vif,
                ..Default::default()
            },
        );
        let flow = LogicalFlow {
            uuid: Uuid([1; 16]),
            scope: FlowScope::Datapath(dp),
            pipeline: Pipeline::Egress,
            table_id: 9,
            priority: 50,
            match_: "outport == \"sshd-2\"".into(),
            actions: "output;".into(),
            stage_name: Some("ls_out_port_sec_l2".into()),
            stage_hint: None,
            source: None,
            controller_meter: None,
            tags: Default::default(),
        };
        net.logical_flows.insert(flow.uuid, flow.into());
        net
    }

    #[test]
    fn round_trips_through_json() {
        let snap = Snapshot::new(sample());
        let back = Snapshot::from_json(&snap.to_json()).unwrap();
        assert_eq!(back, snap);
    }

    #[test]
    fn explains_wrong_files() {
        let err = Snapshot::from_json("{\"format\":\"x\"}").unwrap_err();
        assert!(err.to_string().contains("ironflow sb dump"), "{err}");
        let err = Snapshot::from_json("[1,").unwrap_err();
        assert!(matches!(err, SnapshotError::NotJson(_)));
        let text = Snapshot::new(sample())
            .to_json()
            .replace("\"version\": 1", "\"version\": 99");
        assert!(matches!(
            Snapshot::from_json(&text),
            Err(SnapshotError::WrongVersion(99))
        ));
    }
}
