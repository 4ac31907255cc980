//! The daemon's worker threads: each polls the ports it owns in batches,
//! runs what arrives through the datapath, sends what came out — on its
//! own ports, or handed in batches to the worker that owns the output
//! port — takes ports added and removed at run time from the control
//! thread, and shares its counters with the management socket.
//!
//! A port belongs to one worker, so its socket is never used from two
//! threads; the engine (published program, conntrack) is shared.

use super::pinctrl::Pinctrl;
use crate::mgmt::{MgmtState, PortInfo, WorkerShare};
use arc_swap::ArcSwap;
use ironflow_datapath::dump::format_megaflow;
use ironflow_datapath::engine::Engine;
use ironflow_datapath::packet::Packet;
use ironflow_datapath::packet::PacketBatch;
use ironflow_datapath::port::{Port, PortId};
use ironflow_datapath::worker::Worker;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::warn;

/// How long a port that failed is left alone before it is polled again:
/// a vanished interface must not cost a system call per round, nor fill
/// the log.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// What the control thread tells the worker. The worker answers once the
/// change shows in what it reports, so that `port list` right after
/// `port add` or `port del` lists the change.
pub enum WorkerCommand {
    Add(WorkerPort, oneshot::Sender<()>),
    Remove(PortId, oneshot::Sender<()>),
}

/// A port as the worker holds it.
pub struct WorkerPort {
    pub id: PortId,
    pub ifname: String,
    pub iface_id: String,
    pub backend: String,
    pub port: Box<dyn Port>,
    errors: u64,
    last_error: Option<String>,
    quiet_until: Option<Instant>,
}

impl WorkerPort {
    pub fn new(
        id: PortId,
        ifname: &str,
        iface_id: &str,
        backend: &str,
        port: Box<dyn Port>,
    ) -> WorkerPort {
        WorkerPort {
            id,
            ifname: ifname.to_string(),
            iface_id: iface_id.to_string(),
            backend: backend.to_string(),
            port,
            errors: 0,
            last_error: None,
            quiet_until: None,
        }
    }

    /// Counts an I/O error; logs the first and then every power of two.
    fn failed(&mut self, what: &str, e: std::io::Error) {
        self.errors += 1;
        if self.errors & (self.errors - 1) == 0 {
            warn!(
                "port {} ({}): {what}: {e} ({} errors so far; retrying every {}s)",
                self.ifname,
                self.iface_id,
                self.errors,
                ERROR_BACKOFF.as_secs()
            );
        }
        self.last_error = Some(format!("{what}: {e}"));
        self.quiet_until = Some(Instant::now() + ERROR_BACKOFF);
    }

    fn resting(&mut self, now: Instant) -> bool {
        match self.quiet_until {
            Some(t) if now < t => true,
            Some(_) => {
                self.quiet_until = None;
                false
            }
            None => false,
        }
    }
}

/// Packets for another worker's ports.
pub type Handoff = Vec<(PortId, Packet)>;

/// How a worker reaches the ports other workers own.
pub struct Lanes {
    /// This worker's index.
    pub me: usize,
    /// Packets other workers produced for this worker's ports.
    pub inbox: Receiver<Handoff>,
    /// Every worker's inbox, by index.
    pub peers: Vec<Sender<Handoff>>,
    /// Which worker owns each port, published by the control thread.
    pub owners: Arc<ArcSwap<HashMap<PortId, usize>>>,
}

/// Polls every port this worker owns, runs what arrives through the
/// datapath and sends what it produced, until `stop`.
#[allow(clippy::too_many_arguments)]
pub fn worker_loop(
    engine: Arc<Engine>,
    mut ports: Vec<WorkerPort>,
    commands: Receiver<WorkerCommand>,
    lanes: Lanes,
    stop: Arc<AtomicBool>,
    mgmt: Arc<MgmtState>,
    mut pinctrl: Pinctrl,
) {
    let share = &mgmt.workers[lanes.me];
    let mut w = Worker::new(engine.clone());
    let mut sent = Vec::new();
    let mut handoff: Vec<Handoff> = vec![Vec::new(); lanes.peers.len()];
    let mut batch = PacketBatch::new();
    let mut outgoing: HashMap<PortId, PacketBatch> = HashMap::new();
    let mut idle_rounds = 0u32;
    let mut rounds = 0u64;
    let mut seen = engine.generation();
    while !stop.load(Ordering::Relaxed) {
        let mut done = Vec::new();
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                WorkerCommand::Add(p, ack) => {
                    ports.retain(|q| q.id != p.id);
                    ports.push(p);
                    done.push(ack);
                }
                WorkerCommand::Remove(id, ack) => {
                    ports.retain(|q| q.id != id);
                    if let Some(mut b) = outgoing.remove(&id) {
                        w.pool.free_batch(&mut b);
                    }
                    done.push(ack);
                }
            }
        }
        if !done.is_empty() {
            report(&w, &ports, share, &pinctrl, true);
            for ack in done {
                let _ = ack.send(());
            }
        }
        let now = Instant::now();
        let mut busy = false;
        while let Ok(packets) = lanes.inbox.try_recv() {
            busy = true;
            sent.extend(packets);
        }
        let owners = lanes.owners.load();
        if !sent.is_empty() {
            dispatch(
                &mut sent,
                &owners,
                &lanes,
                &mut handoff,
                &mut outgoing,
                &mut ports,
                &mut w,
            );
        }
        for i in 0..ports.len() {
            if ports[i].resting(now) {
                continue;
            }
            let id = ports[i].id;
            match ports[i].port.recv(&mut w.pool, &mut batch) {
                Ok(0) => continue,
                Ok(_) => busy = true,
                Err(e) => {
                    w.pool.free_batch(&mut batch);
                    ports[i].failed("receive", e);
                    continue;
                }
            }
            w.process_batch(id, &mut batch);
            sent.append(&mut w.take_tx());
            for punt in std::mem::take(&mut w.punted) {
                pinctrl.handle(&engine, &mut w.pool, punt, &mut sent);
            }
            dispatch(
                &mut sent,
                &owners,
                &lanes,
                &mut handoff,
                &mut outgoing,
                &mut ports,
                &mut w,
            );
        }
        // A worker takes up a newly published config when a batch comes;
        // an idle one would keep the config it had — the program replaced
        // and the network it came from, hundreds of MiB on a large SB —
        // until a packet arrives.
        let generation = engine.generation();
        if generation != seen {
            seen = generation;
            w.refresh();
        }
        if busy {
            idle_rounds = 0;
        } else {
            // Poll-mode when busy; back off when idle so an idle node
            // costs little.
            idle_rounds = idle_rounds.saturating_add(1);
            if idle_rounds > 1000 {
                std::thread::sleep(Duration::from_micros(200));
            } else {
                std::thread::yield_now();
            }
        }
        rounds += 1;
        if rounds & 255 == 0 || !busy {
            report(&w, &ports, share, &pinctrl, false);
        }
    }
}

/// Shares counters (and megaflows, when asked) with the management socket.
/// `wait`: take the locks even if a reader holds them (a port change
/// must show); else skip a round rather than stall forwarding.
fn report(w: &Worker, ports: &[WorkerPort], mgmt: &WorkerShare, pinctrl: &Pinctrl, wait: bool) {
    if let Ok(mut s) = mgmt.stats.try_lock() {
        *s = w.stats();
    }
    if let Ok(mut s) = mgmt.controller.try_lock() {
        *s = pinctrl.stats.clone();
    }
    let locked = if wait {
        mgmt.ports.lock().ok()
    } else {
        mgmt.ports.try_lock().ok()
    };
    if let Some(mut p) = locked {
        *p = ports
            .iter()
            .map(|q| PortInfo {
                id: q.id,
                name: q.port.name().to_string(),
                ifname: q.ifname.clone(),
                iface_id: q.iface_id.clone(),
                backend: q.backend.clone(),
                stats: q.port.stats(),
                errors: q.errors,
                last_error: q.last_error.clone(),
            })
            .collect();
    }
    if mgmt.flows_wanted.load(Ordering::Acquire) {
        if let Ok(mut f) = mgmt.flows.lock() {
            *f = w
                .megaflows()
                .map(|(k, m, flow, hits)| format_megaflow(k, m, flow, hits))
                .collect();
        }
        mgmt.flows_wanted.store(false, Ordering::Release);
    }
}

/// Sends what `sent` holds: packets for this worker's ports batched per
/// port, the others handed to their owners in one message each.
fn dispatch(
    sent: &mut Vec<(PortId, Packet)>,
    owners: &HashMap<PortId, usize>,
    lanes: &Lanes,
    handoff: &mut [Handoff],
    outgoing: &mut HashMap<PortId, PacketBatch>,
    ports: &mut [WorkerPort],
    w: &mut Worker,
) {
    for (out, p) in sent.drain(..) {
        match owners.get(&out) {
            Some(&owner) if owner != lanes.me => handoff[owner].push((out, p)),
            _ => {
                let b = outgoing.entry(out).or_default();
                if let Err(p) = b.push(p) {
                    w.pool.free(p);
                }
                if b.is_full() {
                    send(ports, out, b, w);
                }
            }
        }
    }
    for (out, b) in outgoing.iter_mut() {
        if !b.is_empty() {
            send(ports, *out, b, w);
        }
    }
    for (owner, packets) in handoff.iter_mut().enumerate() {
        if packets.is_empty() {
            continue;
        }
        if let Err(e) = lanes.peers[owner].send(std::mem::take(packets)) {
            // That worker stopped: the packets go back to the pool.
            for (_, p) in e.0 {
                w.pool.free(p);
            }
        }
    }
}

fn send(ports: &mut [WorkerPort], to: PortId, b: &mut PacketBatch, w: &mut Worker) {
    match ports.iter_mut().find(|q| q.id == to) {
        Some(q) if q.quiet_until.is_none() => {
            if let Err(e) = q.port.send(&mut w.pool, b) {
                w.pool.free_batch(b);
                q.failed("send", e);
            }
        }
        _ => w.pool.free_batch(b),
    }
}
