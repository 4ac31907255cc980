//! The node daemon's core: register the chassis, follow the Southbound,
//! compile and publish each new logical network to the datapath without
//! stopping it, run the worker threads over the ports, and undo it all on
//! a clean exit. The ports' changes are in `ports`, what the node keeps
//! true in the SB in `southbound`, the workers in `worker` and the
//! controller side in [`pinctrl`].
//!
//! The control side runs on tokio; the workers are plain threads polling
//! their ports in batches, reading the published config through the
//! engine's atomic pointer, so a recompile never stops forwarding.

pub mod pinctrl;
mod ports;
mod southbound;
pub mod state;
mod worker;

use crate::attach::{attach, Backend};
use crate::chassis::{claim, register, release, unregister, ChassisConfig};
use crate::mgmt::{serve, MgmtState, PortRequest, ProgramInfo, WorkerShare};
use crate::ovsdb::{Client, Remote};
use crate::sb::{FollowOptions, SbFollower};
use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use ironflow_datapath::config::{Config, Underlay};
use ironflow_datapath::conntrack::CtConfig;
use ironflow_datapath::engine::Engine;
use ironflow_datapath::port::{Port, PortId};
use ironflow_pipeline::network::PortType;
use ironflow_pipeline::program::{compile_for, Program};
use ironflow_pipeline::LogicalNetwork;
use ports::{publish_missing, Attachment, Missing, Ports};
use std::collections::HashMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};
use worker::{worker_loop, Lanes, WorkerCommand, WorkerPort};

/// The datapath port number of the underlay.
pub const UNDERLAY_PORT: PortId = 0;

/// How long to wait for the Southbound before saying it cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often interfaces that vanished or are missing are looked for.
const RECHECK: Duration = Duration::from_secs(1);

/// How long after a publish the memory it freed is given back: by then
/// the workers have let go of the config it replaced (see `worker`; a
/// tick missed during the compile comes at once after it, too early).
const TRIM_DELAY: Duration = Duration::from_millis(500);

/// How often drops and malformed frames are summed up in the log.
const DROP_LOG: Duration = Duration::from_secs(10);

/// A port to attach, bound to a logical port (its `iface-id`).
pub struct PortSpec {
    /// The interface's name (what `ironflow port del` takes).
    pub ifname: String,
    pub iface_id: String,
    pub port: Box<dyn Port>,
    /// The backend serving it, for `ironflow port list`.
    pub backend: String,
}

/// What `ironflow run` is told.
pub struct DaemonConfig {
    pub chassis: ChassisConfig,
    pub remotes: Vec<Remote>,
    pub ports: Vec<PortSpec>,
    /// The port Geneve packets leave and arrive by.
    pub underlay: Box<dyn Port>,
    /// Where to serve the management socket, if anywhere.
    pub mgmt_socket: Option<PathBuf>,
    /// Where ports added at run time are kept (see [`state`]); none keeps
    /// them for this run only.
    pub state_file: Option<PathBuf>,
    /// Worker threads (at least one); ports are spread over them.
    pub workers: usize,
    /// The interfaces `ovn-bridge-mappings` names: each physical network's
    /// traffic leaves and enters the logical network through its
    /// switch's localnet port (`options:network_name`).
    pub localnet: Vec<LocalnetSpec>,
}

/// A physical network and the interface it is reached by.
pub struct LocalnetSpec {
    pub physnet: String,
    pub ifname: String,
    pub port: Box<dyn Port>,
    pub backend: String,
}

/// The network the node runs and its compiled program.
type Current = (Arc<LogicalNetwork>, Arc<Program>);

/// The datapath config for `net` (compiled as `program`) as `chassis`
/// runs it, with `bindings` of datapath ports to logical ports.
fn datapath_config(
    net: Arc<LogicalNetwork>,
    program: Arc<Program>,
    chassis: &ChassisConfig,
    bindings: &[(PortId, String)],
    localnet: &[(PortId, String)],
) -> Config {
    // Each mapped physical network binds to its localnet port, found
    // anew in every view (northd may add it at any time).
    let localnet_bindings: Vec<(PortId, String)> = localnet
        .iter()
        .filter_map(|(port, physnet)| {
            let mut ports = net.ports.values().filter(|p| {
                p.port_type == PortType::Localnet
                    && p.options.get("network_name").map(String::as_str) == Some(physnet.as_str())
            });
            let first = ports.next()?;
            if ports.next().is_some() {
                warn!(
                    "several localnet ports on {physnet}: only {} is bound",
                    first.name
                );
            }
            Some((*port, first.name.clone()))
        })
        .collect();
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
    for (port, iface_id) in bindings.iter().chain(&localnet_bindings) {
        if let Err(e) = config.bind(*port, iface_id) {
            // A port may be attached before its logical port exists; it
            // binds on the Southbound update that brings it.
            info!("port {port} not bound yet: {e}");
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

/// Compiles `net` for `chassis` off the async threads; returns it with
/// the seconds the compile took.
async fn compile_view(net: Arc<LogicalNetwork>, chassis: &ChassisConfig) -> Result<(Current, f64)> {
    let name = chassis.name.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        let program = Arc::new(compile_for(&net, Some(&name)));
        ((net, program), start.elapsed().as_secs_f64())
    })
    .await?)
}

/// Hands the memory freed since the last publish back to the system.
///
/// glibc keeps freed memory for reuse, in the arena of each thread that
/// allocated it, and returns only what lies at the top of the main heap.
/// Reading a whole SB and compiling it free a few hundred MiB scattered
/// through the heaps (what the read worked with, the compile's per-thread
/// working sets, the program replaced): at 850 × 20 about 110 MiB that
/// the process would otherwise keep resident until the next compile
/// happened to reuse it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the
    // allocator's own free lists, under its locks.
    unsafe {
        libc::malloc_trim(0);
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
    let workers = cfg.workers.max(1);
    let remote = cfg
        .remotes
        .first()
        .context("give the Southbound database's address (--ovn-remote)")?
        .clone();
    let (client, _events) =
        tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(&remote, &Default::default()))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "cannot connect to the Southbound database at {remote}: no answer in {}s (check --ovn-remote)",
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
            .with_context(|| {
                format!("cannot connect to the Southbound database at {remote} (check --ovn-remote)")
            })?;
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

    // The ports: the command line's, then the saved ones.
    let mut ports = Ports {
        list: Vec::new(),
        missing: Vec::new(),
        localnet: Vec::new(),
        next_id: 1,
    };
    let mut worker_ports = Vec::new();
    for l in cfg.localnet {
        let id = ports.next_id;
        ports.next_id += 1;
        info!(
            "physical network {} on {} ({})",
            l.physnet, l.ifname, l.backend
        );
        let label = format!("localnet:{}", l.physnet);
        worker_ports.push(WorkerPort::new(id, &l.ifname, &label, &l.backend, l.port));
        ports.localnet.push((id, l.physnet));
    }
    for p in cfg.ports {
        let id = ports.next_id;
        ports.next_id += 1;
        worker_ports.push(WorkerPort::new(
            id,
            &p.ifname,
            &p.iface_id,
            &p.backend,
            p.port,
        ));
        ports.list.push(Attachment {
            id,
            ifname: p.ifname,
            iface_id: p.iface_id,
            backend: p.backend,
            saved: false,
            worker: 0,
        });
    }
    let saved = match &cfg.state_file {
        Some(path) => state::load(path)?,
        None => Vec::new(),
    };
    for s in saved {
        if ports.list.iter().any(|a| a.ifname == s.ifname) {
            continue;
        }
        let opened = s
            .backend
            .parse::<Backend>()
            .and_then(|b| attach(&s.ifname, b));
        match opened {
            Ok(a) => {
                let id = ports.next_id;
                ports.next_id += 1;
                info!(
                    "restored port {} ({}) from the state file",
                    s.ifname, s.iface_id
                );
                worker_ports.push(WorkerPort::new(
                    id,
                    &s.ifname,
                    &s.iface_id,
                    &a.backend.to_string(),
                    a.port,
                ));
                ports.list.push(Attachment {
                    id,
                    ifname: s.ifname,
                    iface_id: s.iface_id,
                    backend: s.backend,
                    saved: true,
                    worker: 0,
                });
            }
            Err(e) => {
                warn!(
                    "saved port {} ({}) not attached: {e:#}",
                    s.ifname, s.iface_id
                );
                ports.missing.push(Missing {
                    port: s,
                    error: format!("{e:#}"),
                    saved: true,
                });
            }
        }
    }

    let chassis = cfg.chassis.clone();
    let (mut current, compile_seconds) = compile_view(first.network.clone(), &chassis).await?;
    let config = datapath_config(
        current.0.clone(),
        current.1.clone(),
        &chassis,
        &ports.bindings(),
        &ports.localnet,
    );
    let engine = Engine::new(config, CtConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (requests_tx, mut requests) = mpsc::channel(16);
    let mgmt = Arc::new(MgmtState {
        chassis: chassis.clone(),
        engine: engine.clone(),
        workers: (0..workers).map(|_| WorkerShare::default()).collect(),
        requests: requests_tx,
        missing: Mutex::new(Vec::new()),
        program: Mutex::new(ProgramInfo::published(&current.1, 1, compile_seconds)),
    });
    let (learned_tx, mut learned) = mpsc::unbounded_channel();
    publish_missing(&mgmt, &ports);
    // The underlay on the first worker, the ports spread over all.
    let mut per_worker: Vec<Vec<WorkerPort>> = (0..workers).map(|_| Vec::new()).collect();
    per_worker[0].push(WorkerPort::new(
        UNDERLAY_PORT,
        "(underlay)",
        "",
        "udp",
        cfg.underlay,
    ));
    let mut owners = HashMap::from([(UNDERLAY_PORT, 0)]);
    for wp in worker_ports {
        let k = (0..workers)
            .min_by_key(|&k| per_worker[k].len())
            .unwrap_or(0);
        owners.insert(wp.id, k);
        if let Some(a) = ports.list.iter_mut().find(|a| a.id == wp.id) {
            a.worker = k;
        }
        per_worker[k].push(wp);
    }
    let owners = Arc::new(ArcSwap::from_pointee(owners));
    let inboxes: Vec<_> = (0..workers).map(|_| std::sync::mpsc::channel()).collect();
    let peers: Vec<_> = inboxes.iter().map(|(tx, _)| tx.clone()).collect();
    let mut worker_txs = Vec::new();
    let mut threads = Vec::new();
    for (me, (wports, (_, inbox))) in per_worker.into_iter().zip(inboxes).enumerate() {
        let (tx, rx) = std::sync::mpsc::channel();
        worker_txs.push(tx);
        let lanes = Lanes {
            me,
            inbox,
            peers: peers.clone(),
            owners: owners.clone(),
        };
        let (engine, stop, mgmt) = (engine.clone(), stop.clone(), mgmt.clone());
        let pinctrl = pinctrl::Pinctrl::new(learned_tx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("ironflow-worker-{me}"))
                .spawn(move || worker_loop(engine, wports, rx, lanes, stop, mgmt, pinctrl))
                .context("cannot start a worker thread")?,
        );
    }
    drop((peers, learned_tx));
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
    for a in &ports.list {
        if let Err(e) = claim(&client, &a.iface_id, &chassis.name).await {
            warn!("cannot claim {}: {e}", a.iface_id);
        }
    }
    started(&mgmt);

    let mut node = Node {
        client: &client,
        chassis: &chassis,
        engine: &engine,
        workers: worker_txs,
        owners,
        state_file: cfg.state_file.as_deref(),
        mgmt: &mgmt,
    };
    node.claim_gateways(&current.0).await;
    tokio::pin!(shutdown);
    let mut drop_log = tokio::time::interval(DROP_LOG);
    drop_log.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_drops = DropCounts::default();
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = first.generation;
    // Held, the first view would keep its network (the whole SB as first
    // read) for as long as the daemon runs.
    drop(first);
    // The first read and compile freed what they worked with.
    let mut trim_due = Some(tokio::time::Instant::now());
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((request, reply)) = requests.recv() => {
                let answer = match request {
                    PortRequest::Add { ifname, iface_id, backend } => {
                        node.add_port(&mut ports, &current, &ifname, &iface_id, &backend).await
                    }
                    PortRequest::Del { name } => node.del_port(&mut ports, &current, &name).await,
                };
                let _ = reply.send(answer.map_err(|e| format!("{e:#}")));
            }
            changed = views.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(view) = views.borrow_and_update().clone() else { continue };
                if view.generation == last {
                    continue;
                }
                last = view.generation;
                let compile_seconds;
                (current, compile_seconds) = compile_view(view.network.clone(), &chassis).await?;
                node.publish(&ports, &current);
                if let Ok(mut p) = mgmt.program.lock() {
                    let compiles = p.compiles + 1;
                    *p = ProgramInfo::published(&current.1, compiles, compile_seconds);
                }
                trim_due = Some(tokio::time::Instant::now() + TRIM_DELAY);
                node.keep_registered(&ports, &current.0).await;
                node.claim_gateways(&current.0).await;
            }
            _ = recheck.tick() => {
                node.recheck(&mut ports, &current).await;
                if trim_due.is_some_and(|at| tokio::time::Instant::now() >= at) {
                    trim_due = None;
                    release_freed_memory();
                }
            }
            Some(l) = learned.recv() => node.learn(l, &current.0).await,
            _ = drop_log.tick() => log_drops(&mgmt, &mut last_drops),
        }
    }

    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    if let Some(server) = server {
        server.abort();
        if let Some(path) = &cfg.mgmt_socket {
            let _ = std::fs::remove_file(path);
        }
    }
    for a in &ports.list {
        let _ = release(&client, &a.iface_id).await;
    }
    unregister(&client, &chassis.name)
        .await
        .context("cannot unregister the chassis")?;
    info!(chassis = %chassis.name, "chassis unregistered");
    Ok(())
}

/// What the drop log compares against.
#[derive(Default)]
struct DropCounts {
    malformed: u64,
    drops: std::collections::BTreeMap<Arc<str>, u64>,
}

/// Logs what was dropped since the last call, one line, only when
/// something was: bad input is counted per packet (`ironflow stats`) and
/// logged at a rate that cannot flood the log.
fn log_drops(mgmt: &MgmtState, last: &mut DropCounts) {
    let stats = mgmt.worker_stats();
    let mut parts = Vec::new();
    let malformed = stats.malformed.saturating_sub(last.malformed);
    if malformed > 0 {
        parts.push(format!("{malformed} malformed frames"));
    }
    let dropped: Vec<String> = stats
        .drops
        .iter()
        .filter_map(|(reason, n)| {
            let new = n.saturating_sub(last.drops.get(reason).copied().unwrap_or(0));
            (new > 0).then(|| format!("{new} {reason}"))
        })
        .collect();
    if !dropped.is_empty() {
        parts.push(format!("dropped {}", dropped.join(", ")));
    }
    if !parts.is_empty() {
        warn!(
            "in the last {}s: {} (`ironflow stats` has the totals)",
            DROP_LOG.as_secs(),
            parts.join("; ")
        );
    }
    *last = DropCounts {
        malformed: stats.malformed,
        drops: stats.drops,
    };
}

/// What the control task needs to change the node's ports.
struct Node<'a> {
    client: &'a Client,
    chassis: &'a ChassisConfig,
    engine: &'a Arc<Engine>,
    /// Each worker's command channel, by index.
    workers: Vec<Sender<WorkerCommand>>,
    /// Which worker owns each port (the workers read it to hand packets
    /// to each other).
    owners: Arc<ArcSwap<HashMap<PortId, usize>>>,
    state_file: Option<&'a std::path::Path>,
    mgmt: &'a MgmtState,
}

impl Node<'_> {
    /// Publishes which worker owns port `id` (none: it is gone).
    fn set_owner(&self, id: PortId, worker: Option<usize>) {
        let mut owners = HashMap::clone(&self.owners.load());
        match worker {
            Some(k) => owners.insert(id, k),
            None => owners.remove(&id),
        };
        self.owners.store(Arc::new(owners));
    }

    /// Publishes the current network with the current bindings.
    fn publish(&self, ports: &Ports, current: &Current) {
        let config = datapath_config(
            current.0.clone(),
            current.1.clone(),
            self.chassis,
            &ports.bindings(),
            &ports.localnet,
        );
        self.engine.publish(config);
    }
}
