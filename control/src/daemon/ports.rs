//! The node's ports as the control task keeps them: attached, missing
//! (saved but without an interface), and the changes to them — `ironflow
//! port add|del`, interfaces that vanish and come back — carried to the
//! workers, the bindings, the SB claims and the state file.

use super::state::{self, SavedPort};
use super::worker::{WorkerCommand, WorkerPort};
use super::{Current, Node};
use crate::attach::{attach, Backend};
use crate::chassis::{claim, release};
use crate::mgmt::{MgmtState, Reply};
use anyhow::{bail, Result};
use ironflow_datapath::port::PortId;
use serde_json::json;
use tracing::{info, warn};

/// A port the daemon has (or was asked to have and could not open).
pub(super) struct Attachment {
    pub(super) id: PortId,
    pub(super) ifname: String,
    pub(super) iface_id: String,
    pub(super) backend: String,
    /// Added at run time or restored from the state file: saved there.
    pub(super) saved: bool,
    /// The worker thread that owns it.
    pub(super) worker: usize,
}

/// A port whose interface is not there.
pub(super) struct Missing {
    pub(super) port: SavedPort,
    pub(super) error: String,
    pub(super) saved: bool,
}

/// The daemon's own view of its ports, owned by the control task.
pub(super) struct Ports {
    pub(super) list: Vec<Attachment>,
    /// Ports whose interface is not there (it could not be opened on
    /// start, or it vanished): listed with why, kept in the state file if
    /// they were saved, and attached again when the interface comes back.
    pub(super) missing: Vec<Missing>,
    /// Ports on physical networks: (port, physnet).
    pub(super) localnet: Vec<(PortId, String)>,
    pub(super) next_id: PortId,
}

impl Ports {
    pub(super) fn bindings(&self) -> Vec<(PortId, String)> {
        self.list
            .iter()
            .map(|a| (a.id, a.iface_id.clone()))
            .collect()
    }

    fn saved(&self) -> Vec<SavedPort> {
        let mut v: Vec<SavedPort> = self
            .list
            .iter()
            .filter(|a| a.saved)
            .map(|a| SavedPort {
                ifname: a.ifname.clone(),
                iface_id: a.iface_id.clone(),
                backend: a.backend.clone(),
            })
            .collect();
        v.extend(
            self.missing
                .iter()
                .filter(|m| m.saved)
                .map(|m| m.port.clone()),
        );
        v
    }
}

pub(super) fn publish_missing(mgmt: &MgmtState, ports: &Ports) {
    if let Ok(mut m) = mgmt.missing.lock() {
        *m = ports
            .missing
            .iter()
            .map(|m| json!({"ifname": m.port.ifname, "iface_id": m.port.iface_id, "backend": m.port.backend, "error": m.error}))
            .collect();
    }
}

impl Node<'_> {
    fn save(&self, ports: &Ports) -> Result<()> {
        publish_missing(self.mgmt, ports);
        match self.state_file {
            Some(path) => state::save(path, &ports.saved()),
            None => Ok(()),
        }
    }

    pub(super) async fn add_port(
        &mut self,
        ports: &mut Ports,
        current: &Current,
        ifname: &str,
        iface_id: &str,
        backend: &str,
    ) -> Result<Reply> {
        if let Some(a) = ports.list.iter().find(|a| a.ifname == ifname) {
            bail!(
                "{ifname} is already attached (as {}): `ironflow port del {ifname}` first",
                a.iface_id
            );
        }
        if let Some(a) = ports.list.iter().find(|a| a.iface_id == iface_id) {
            bail!(
                "logical port {iface_id} is already bound to {}: `ironflow port del {}` first",
                a.ifname,
                a.ifname
            );
        }
        let (id, used) = self
            .attach_port(ports, current, ifname, iface_id, backend, true)
            .await?;
        ports.missing.retain(|m| m.port.ifname != ifname);
        self.save(ports)?;
        Ok(json!({"port": id, "ifname": ifname, "iface_id": iface_id, "backend": used}))
    }

    /// Opens `ifname`, hands it to the worker, binds and claims it.
    async fn attach_port(
        &mut self,
        ports: &mut Ports,
        current: &Current,
        ifname: &str,
        iface_id: &str,
        backend: &str,
        saved: bool,
    ) -> Result<(PortId, String)> {
        let wanted: Backend = backend.parse()?;
        let name = ifname.to_string();
        let attached = tokio::task::spawn_blocking(move || attach(&name, wanted)).await??;
        let id = ports.next_id;
        ports.next_id += 1;
        let used = attached.backend.to_string();
        // The worker with the fewest ports (the first also has the
        // underlay).
        let worker = (0..self.workers.len())
            .min_by_key(|&k| {
                ports.list.iter().filter(|a| a.worker == k).count() + usize::from(k == 0)
            })
            .unwrap_or(0);
        self.set_owner(id, Some(worker));
        let (ack, added) = tokio::sync::oneshot::channel();
        self.workers[worker]
            .send(WorkerCommand::Add(
                WorkerPort::new(id, ifname, iface_id, &used, attached.port),
                ack,
            ))
            .map_err(|_| anyhow::anyhow!("the worker thread has stopped"))?;
        added
            .await
            .map_err(|_| anyhow::anyhow!("the worker thread has stopped"))?;
        ports.list.push(Attachment {
            id,
            ifname: ifname.to_string(),
            iface_id: iface_id.to_string(),
            backend: backend.to_string(),
            saved,
            worker,
        });
        self.publish(ports, current);
        if let Err(e) = claim(self.client, iface_id, &self.chassis.name).await {
            warn!("cannot claim {iface_id}: {e}");
        }
        info!("port {ifname} attached as {iface_id} ({used})");
        Ok((id, used))
    }

    /// Takes `a` out of the worker and the bindings and releases its
    /// logical port.
    async fn detach_port(&mut self, ports: &Ports, current: &Current, a: &Attachment) {
        self.publish(ports, current);
        let (ack, removed) = tokio::sync::oneshot::channel();
        if self.workers[a.worker]
            .send(WorkerCommand::Remove(a.id, ack))
            .is_ok()
        {
            let _ = removed.await;
        }
        self.set_owner(a.id, None);
        if let Err(e) = release(self.client, &a.iface_id).await {
            warn!("cannot release {}: {e}", a.iface_id);
        }
    }

    /// Follows interfaces that vanish and come back (a pod restarted
    /// with the same veth name): a vanished one is detached and listed as
    /// missing; a missing one that exists again is attached.
    pub(super) async fn recheck(&mut self, ports: &mut Ports, current: &Current) {
        let exists = |ifname: &str| std::path::Path::new("/sys/class/net").join(ifname).exists();
        let mut changed = false;
        let mut i = 0;
        while i < ports.list.len() {
            // Internal (tap) ports vanish with the daemon only, and
            // in-memory ones are no interface at all.
            let kernel = matches!(
                ports.list[i].backend.as_str(),
                "auto" | "afpacket" | "afxdp"
            );
            if !kernel || exists(&ports.list[i].ifname) {
                i += 1;
                continue;
            }
            let a = ports.list.remove(i);
            warn!(
                "interface {} ({}) vanished: port detached until it comes back",
                a.ifname, a.iface_id
            );
            self.detach_port(ports, current, &a).await;
            ports.missing.push(Missing {
                port: SavedPort {
                    ifname: a.ifname,
                    iface_id: a.iface_id,
                    backend: a.backend,
                },
                error: "the interface vanished".into(),
                saved: a.saved,
            });
            changed = true;
        }
        let back: Vec<usize> = (0..ports.missing.len())
            .filter(|&i| exists(&ports.missing[i].port.ifname))
            .collect();
        for i in back.into_iter().rev() {
            let m = ports.missing.remove(i);
            let p = &m.port;
            match self
                .attach_port(ports, current, &p.ifname, &p.iface_id, &p.backend, m.saved)
                .await
            {
                Ok(_) => changed = true,
                Err(e) => ports.missing.push(Missing {
                    error: format!("{e:#}"),
                    ..m
                }),
            }
        }
        if changed {
            if let Err(e) = self.save(ports) {
                warn!("{e:#}");
            }
        }
    }

    pub(super) async fn del_port(
        &mut self,
        ports: &mut Ports,
        current: &Current,
        name: &str,
    ) -> Result<Reply> {
        if let Some(i) = ports.missing.iter().position(|m| m.port.ifname == name) {
            let m = ports.missing.remove(i);
            self.save(ports)?;
            return Ok(json!({"ifname": m.port.ifname, "iface_id": m.port.iface_id}));
        }
        let Some(i) = ports.list.iter().position(|a| a.ifname == name) else {
            bail!("no port {name} on this node (`ironflow port list` shows them)");
        };
        let a = ports.list.remove(i);
        self.detach_port(ports, current, &a).await;
        // An internal port this node made goes with it (it persists
        // across restarts otherwise).
        if a.backend == "tap" {
            if let Err(e) = ironflow_datapath::tap::delete_persistent(&a.ifname) {
                warn!("cannot delete the internal port {}: {e}", a.ifname);
            }
        }
        self.save(ports)?;
        info!("port {} ({}) deleted", a.ifname, a.iface_id);
        Ok(json!({"ifname": a.ifname, "iface_id": a.iface_id}))
    }
}
