//! The ports added at run time (`ironflow port add`), kept in a JSON file
//! so that a daemon restarted after a crash or a kill comes back with
//! them, as OVS keeps its ports in its database.
//!
//! Ports given as `--port` flags are not written: the command line says
//! them again on every start, and a port dropped from it should go.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One port to attach on start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPort {
    pub ifname: String,
    pub iface_id: String,
    pub backend: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    ports: Vec<SavedPort>,
}

/// The saved ports; none when the file does not exist yet.
pub fn load(path: &Path) -> Result<Vec<SavedPort>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let state: StateFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an ironflow state file (fix or remove it)",
            path.display()
        )
    })?;
    Ok(state.ports)
}

/// Writes `ports` to `path` whole (through a temporary file and a rename,
/// so a crash mid-write leaves the old file).
pub fn save(path: &Path, ports: &[SavedPort]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&StateFile {
        ports: ports.to_vec(),
    })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        assert!(load(&path).unwrap().is_empty());
        let ports = vec![SavedPort {
            ifname: "veth-web1".into(),
            iface_id: "web-1".into(),
            backend: "auto".into(),
        }];
        save(&path, &ports).unwrap();
        assert_eq!(load(&path).unwrap(), ports);
        std::fs::write(&path, "{").unwrap();
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(e.contains("not an ironflow state file"), "{e}");
    }
}
