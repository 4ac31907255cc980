//! The node daemon's core: register the chassis, follow the Southbound,
//! compile and publish each new logical network to the datapath without
//! stopping it, run a worker thread over the ports, claim the ports'
//! logical ports, and undo all of it on a clean exit.
//!
//! The control side runs on tokio; the worker is a plain thread polling
//! its ports in batches, reading the published config through the engine's
//! atomic pointer, so a recompile never stops forwarding.

use crate::chassis::{claim, register, release, unregister, ChassisConfig};
use crate::mgmt::{serve, MgmtState, PortInfo};
use crate::ovsdb::{Client, Remote};
use crate::sb::{FollowOptions, SbFollower};
use anyhow::{Context, Result};
use ironflow_datapath::config::{Config, Underlay};
use ironflow_datapath::conntrack::CtConfig;
use ironflow_datapath::dump::format_megaflow;
use ironflow_datapath::engine::Engine;
use ironflow_datapath::packet::PacketBatch;
use ironflow_datapath::port::{Port, PortId};
use ironflow_datapath::worker::{Worker, WorkerStats};
use ironflow_pipeline::program::compile;
use ironflow_pipeline::LogicalNetwork;
use std::collections::HashMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};

/// The datapath port number of the underlay.
pub const UNDERLAY_PORT: PortId = 0;

/// A port to attach, bound to a logical port (its `iface-id`).
pub struct PortSpec {
    pub iface_id: String,
    pub port: Box<dyn Port>,
}

/// What `ironflow run` is told.
pub struct DaemonConfig {
    pub chassis: ChassisConfig,
    pub remotes: Vec<Remote>,
    pub ports: Vec<PortSpec>,
    /// The port Geneve packets leave and arrive by.
    pub underlay: Box<dyn Port>,
    /// Where to serve the management socket, if anywhere.
    pub mgmt_socket: Option<std::path::PathBuf>,
}

/// The datapath config for `net` as `chassis` runs it.
fn datapath_config(
    net: Arc<LogicalNetwork>,
    chassis: &ChassisConfig,
    bindings: &[(PortId, String)],
) -> Config {
    let program = Arc::new(compile(&net));
    // Every other chassis's Geneve endpoint. The kernel's UDP stack
    // resolves next hops, so no MACs are needed.
    let chassis_ips: HashMap<String, Ipv4Addr> = net
        .chassis
        .values()
        .filter(|c| c.name != chassis.name)
        .filter_map(|c| {
            let e = c.encaps.iter().find(|e| e.encap_type == "geneve")?;
            Some((c.name.clone(), e.ip.parse().ok()?))
        })
        .collect();
    let mut config = Config::with_program(net, program, &chassis.name);
    for (port, iface_id) in bindings {
        if let Err(e) = config.bind(*port, iface_id) {
            warn!("port {port} not bound: {e}");
        }
    }
    config.underlay = Some(Underlay {
        port: UNDERLAY_PORT,
        local_ip: chassis.encap_ip,
        local_mac: [0; 6],
        next_hop_macs: chassis_ips.values().map(|ip| (*ip, [0; 6])).collect(),
        chassis_ips,
    });
    config
}

/// Polls every port, runs what arrives through the worker and sends what
/// it produced, until `stop`.
fn worker_loop(
    engine: Arc<Engine>,
    mut ports: Vec<(PortId, String, Box<dyn Port>)>,
    stop: Arc<AtomicBool>,
    mgmt: Arc<MgmtState>,
) {
    let mut w = Worker::new(engine);
    let mut batch = PacketBatch::new();
    let mut outgoing: HashMap<PortId, PacketBatch> = HashMap::new();
    let mut idle_rounds = 0u32;
    let mut rounds = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        for i in 0..ports.len() {
            let id = ports[i].0;
            match ports[i].2.recv(&mut w.pool, &mut batch) {
                Ok(0) => continue,
                Ok(_) => busy = true,
                Err(e) => {
                    warn!("port {}: {e}", ports[i].2.name());
                    continue;
                }
            }
            w.process_batch(id, &mut batch);
            for (out, p) in w.take_tx() {
                let b = outgoing.entry(out).or_default();
                if let Err(p) = b.push(p) {
                    w.pool.free(p);
                }
                if b.is_full() {
                    send(&mut ports, out, b, &mut w);
                }
            }
            for (out, b) in outgoing.iter_mut() {
                if !b.is_empty() {
                    send(&mut ports, *out, b, &mut w);
                }
            }
            // The controller side (pinctrl) is not there yet: punted
            // packets are counted and dropped.
            w.punted.clear();
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
            report(&w, &ports, &mgmt);
        }
    }
}

/// Shares counters (and megaflows, when asked) with the management socket.
fn report(w: &Worker, ports: &[(PortId, String, Box<dyn Port>)], mgmt: &MgmtState) {
    if let Ok(mut s) = mgmt.worker.try_lock() {
        *s = w.stats();
    }
    if let Ok(mut p) = mgmt.ports.try_lock() {
        *p = ports
            .iter()
            .map(|(id, iface_id, port)| PortInfo {
                id: *id,
                name: port.name().to_string(),
                iface_id: iface_id.clone(),
                stats: port.stats(),
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

fn send(
    ports: &mut [(PortId, String, Box<dyn Port>)],
    to: PortId,
    b: &mut PacketBatch,
    w: &mut Worker,
) {
    match ports.iter_mut().find(|(id, _, _)| *id == to) {
        Some((_, _, port)) => {
            if let Err(e) = port.send(&mut w.pool, b) {
                warn!("port {}: {e}", port.name());
            }
        }
        None => w.pool.free_batch(b),
    }
}

/// A running daemon: what its management socket serves.
pub type Daemon = MgmtState;

/// Runs the node until `shutdown` completes, then unclaims its ports and
/// unregisters its chassis.
pub async fn run(cfg: DaemonConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    run_with(cfg, shutdown, |_| {}).await
}

/// [`run`], handing the running daemon to `started` once it forwards.
pub async fn run_with(
    cfg: DaemonConfig,
    shutdown: impl Future<Output = ()>,
    started: impl FnOnce(&Daemon),
) -> Result<()> {
    let remote = cfg
        .remotes
        .first()
        .context("give the Southbound database's address (--ovn-remote)")?
        .clone();
    let (client, _events) = Client::connect(&remote, &Default::default())
        .await
        .with_context(|| format!("cannot connect to the Southbound database at {remote}"))?;
    register(&client, &cfg.chassis)
        .await
        .context("cannot register the chassis")?;
    info!(chassis = %cfg.chassis.name, "chassis registered");

    let follower = SbFollower::spawn(cfg.remotes.clone(), FollowOptions::default());
    let mut views = follower.subscribe();
    let first = loop {
        if let Some(v) = views.borrow_and_update().clone() {
            break v;
        }
        views
            .changed()
            .await
            .context("lost the Southbound follower")?;
    };
    let bindings: Vec<(PortId, String)> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| (i as PortId + 1, p.iface_id.clone()))
        .collect();
    let chassis = cfg.chassis.clone();
    let config = {
        let (net, chassis, bindings) = (first.network.clone(), chassis.clone(), bindings.clone());
        tokio::task::spawn_blocking(move || datapath_config(net, &chassis, &bindings)).await?
    };
    let engine = Engine::new(config, CtConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mgmt = Arc::new(MgmtState {
        chassis: chassis.clone(),
        engine: engine.clone(),
        worker: Mutex::new(WorkerStats::default()),
        ports: Mutex::new(Vec::new()),
        flows: Mutex::new(Vec::new()),
        flows_wanted: AtomicBool::new(false),
    });
    let mut ports: Vec<(PortId, String, Box<dyn Port>)> =
        vec![(UNDERLAY_PORT, "(underlay)".to_string(), cfg.underlay)];
    for (i, p) in cfg.ports.into_iter().enumerate() {
        ports.push((i as PortId + 1, p.iface_id, p.port));
    }
    let worker = {
        let (engine, stop, mgmt) = (engine.clone(), stop.clone(), mgmt.clone());
        std::thread::Builder::new()
            .name("ironflow-worker".into())
            .spawn(move || worker_loop(engine, ports, stop, mgmt))
            .context("cannot start the worker thread")?
    };
    let server = match &cfg.mgmt_socket {
        Some(path) => {
            let (path, mgmt) = (path.clone(), mgmt.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = serve(&path, mgmt).await {
                    warn!("management socket: {e:#}");
                }
            }))
        }
        None => None,
    };
    for (_, iface_id) in &bindings {
        if let Err(e) = claim(&client, iface_id, &chassis.name).await {
            warn!("cannot claim {iface_id}: {e}");
        }
    }
    started(&mgmt);

    tokio::pin!(shutdown);
    let mut last = first.generation;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = views.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(view) = views.borrow_and_update().clone() else { continue };
                if view.generation == last {
                    continue;
                }
                last = view.generation;
                let (net, chassis, bindings) = (view.network.clone(), chassis.clone(), bindings.clone());
                let config = tokio::task::spawn_blocking(move || {
                    datapath_config(net, &chassis, &bindings)
                })
                .await?;
                engine.publish(config);
            }
        }
    }

    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    if let Some(server) = server {
        server.abort();
        if let Some(path) = &cfg.mgmt_socket {
            let _ = std::fs::remove_file(path);
        }
    }
    for (_, iface_id) in &bindings {
        let _ = release(&client, iface_id).await;
    }
    unregister(&client, &chassis.name)
        .await
        .context("cannot unregister the chassis")?;
    info!(chassis = %chassis.name, "chassis unregistered");
    Ok(())
}
