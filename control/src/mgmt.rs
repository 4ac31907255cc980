//! The management socket (the role of `ovs-appctl`): a unix socket, mode
//! 0600, that answers one JSON request per line — `{"command": "show"}`,
//! `"stats"`, `"flows"`, `"port-list"`, `"port-add"`, `"port-del"`,
//! `"trace"` — with one JSON line, and the client side the `ironflow
//! show|stats|flows|port|trace --live` commands use.

use crate::chassis::ChassisConfig;
use crate::daemon::pinctrl::PinctrlStats;
use anyhow::{bail, Context, Result};
use ironflow_datapath::engine::Engine;
use ironflow_datapath::port::{PortId, PortStats};
use ironflow_datapath::worker::WorkerStats;
use ironflow_pipeline::program::Program;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// One attached port, as `show` and `port list` list it.
#[derive(Debug, Clone)]
pub struct PortInfo {
    pub id: PortId,
    /// The backend's name for it (`afpacket:veth0`).
    pub name: String,
    pub ifname: String,
    pub iface_id: String,
    pub backend: String,
    pub stats: PortStats,
    /// Receive and send failures (a vanished interface, say).
    pub errors: u64,
    pub last_error: Option<String>,
}

/// A change to the node's ports, carried out by the daemon's control task.
#[derive(Debug)]
pub enum PortRequest {
    Add {
        ifname: String,
        iface_id: String,
        backend: String,
    },
    Del {
        name: String,
    },
}

/// A request's answer, or what went wrong in one line.
pub type Reply = Value;

/// A port request with where its answer goes.
pub type PortRequestMsg = (PortRequest, oneshot::Sender<Result<Reply, String>>);

/// What one worker thread shares with the management socket.
#[derive(Default)]
pub struct WorkerShare {
    pub stats: Mutex<WorkerStats>,
    pub ports: Mutex<Vec<PortInfo>>,
    /// What its controller side (pinctrl) did.
    pub controller: Mutex<PinctrlStats>,
    /// Megaflows as `dpctl/dump-flows` prints them, filled by the worker
    /// when asked (it owns its caches).
    pub flows: Mutex<Vec<String>>,
    pub flows_wanted: AtomicBool,
}

/// The program the node compiled last and when it reached the datapath:
/// how an operator (or the control-plane benchmark) tells that a
/// Southbound change is in force, and what the compile cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgramInfo {
    /// Compiles since start: the first, then one per Southbound change.
    pub compiles: u64,
    /// Logical flows compiled (the SB's whole Logical_Flow table).
    pub logical_flows: usize,
    /// Classifier rules installed from them.
    pub rules: usize,
    pub failed: usize,
    pub datapaths: usize,
    pub compile_seconds: f64,
    /// When it was published to the workers, in seconds since the Unix
    /// epoch: a wall clock, so that another process can set it against
    /// when it started the daemon.
    pub published_at: f64,
}

impl ProgramInfo {
    /// `program`, the `compiles`th, published just now.
    pub fn published(program: &Program, compiles: u64, compile_seconds: f64) -> ProgramInfo {
        ProgramInfo {
            compiles,
            logical_flows: program.flows,
            rules: program.rules,
            failed: program.failures.len(),
            datapaths: program.datapaths.len(),
            compile_seconds,
            published_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

/// What the daemon shares with the management socket.
pub struct MgmtState {
    pub chassis: ChassisConfig,
    pub engine: Arc<Engine>,
    /// One per worker thread.
    pub workers: Vec<WorkerShare>,
    /// Port changes go to the daemon's control task.
    pub requests: mpsc::Sender<PortRequestMsg>,
    /// Saved ports whose interface could not be opened.
    pub missing: Mutex<Vec<Value>>,
    /// Set by the daemon after each publish of a new program; kept apart
    /// from the engine's config, whose generation also moves when only
    /// port bindings change.
    pub program: Mutex<ProgramInfo>,
}

/// Adds `b`'s counters to `a`'s.
fn add_stats(a: &mut WorkerStats, b: &WorkerStats) {
    a.packets += b.packets;
    a.passes += b.passes;
    a.upcalls += b.upcalls;
    a.fused += b.fused;
    a.outputs += b.outputs;
    a.tunnelled += b.tunnelled;
    a.decapsulated += b.decapsulated;
    a.to_controller += b.to_controller;
    a.malformed += b.malformed;
    for (reason, n) in &b.drops {
        *a.drops.entry(reason.clone()).or_default() += n;
    }
    let (x, y) = (&mut a.cache, &b.cache);
    x.emc_hits += y.emc_hits;
    x.megaflow_hits += y.megaflow_hits;
    x.misses += y.misses;
    x.inserted += y.inserted;
    x.evicted += y.evicted;
    x.flushes += y.flushes;
    x.subtables_visited += y.subtables_visited;
}

fn add_controller(a: &mut PinctrlStats, b: &PinctrlStats) {
    a.handled += b.handled;
    a.sent += b.sent;
    a.rate_limited += b.rate_limited;
    a.unsupported += b.unsupported;
    a.failed += b.failed;
    a.learned += b.learned;
}

fn port_json(p: &PortInfo) -> Value {
    json!({
        "port": p.id, "name": p.name, "ifname": p.ifname, "iface_id": p.iface_id,
        "backend": p.backend,
        "rx_packets": p.stats.rx_packets, "rx_bytes": p.stats.rx_bytes,
        "tx_packets": p.stats.tx_packets, "tx_bytes": p.stats.tx_bytes,
        "tx_dropped": p.stats.tx_dropped, "errors": p.errors, "last_error": p.last_error,
    })
}

/// A string field of a request.
fn field<'a>(request: &'a Value, name: &str) -> Result<&'a str, String> {
    request
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the request lacks \"{name}\""))
}

impl MgmtState {
    /// The workers' counters summed.
    pub fn worker_stats(&self) -> WorkerStats {
        let mut total = WorkerStats::default();
        for w in &self.workers {
            if let Ok(s) = w.stats.lock() {
                add_stats(&mut total, &s);
            }
        }
        total
    }

    fn controller_stats(&self) -> PinctrlStats {
        let mut total = PinctrlStats::default();
        for w in &self.workers {
            if let Ok(s) = w.controller.lock() {
                add_controller(&mut total, &s);
            }
        }
        total
    }

    /// Every worker's ports, by port number.
    fn all_ports(&self) -> Vec<PortInfo> {
        let mut v: Vec<PortInfo> = self
            .workers
            .iter()
            .filter_map(|w| w.ports.lock().ok().map(|p| p.clone()))
            .flatten()
            .collect();
        v.sort_by_key(|p| p.id);
        v
    }

    fn show(&self) -> Value {
        let config = self.engine.config();
        let tunnels: Vec<Value> = config
            .underlay
            .as_ref()
            .map(|u| {
                u.chassis_ips
                    .iter()
                    .map(|(c, ip)| json!({"chassis": c, "ip": ip.to_string(), "type": "geneve"}))
                    .collect()
            })
            .unwrap_or_default();
        let ports: Vec<Value> = self.all_ports().iter().map(port_json).collect();
        let bound: Vec<Value> = config
            .bindings
            .iter()
            .map(|(port, b)| json!({"port": port, "logical_port": b.logical_port, "datapath_key": b.datapath_key, "port_key": b.port_key}))
            .collect();
        let p = self.program.lock().map(|p| p.clone()).unwrap_or_default();
        json!({
            "chassis": self.chassis.name,
            "hostname": self.chassis.hostname,
            "encap": {"type": self.chassis.encap_type, "ip": self.chassis.encap_ip.to_string()},
            "generation": config.generation,
            "workers": self.workers.len(),
            "tunnels": tunnels,
            "ports": ports,
            "bindings": bound,
            "program": {
                "compiles": p.compiles, "logical_flows": p.logical_flows, "rules": p.rules,
                "failed": p.failed, "datapaths": p.datapaths,
                "compile_seconds": p.compile_seconds, "published_at": p.published_at,
            },
        })
    }

    fn stats(&self) -> Value {
        let w = self.worker_stats();
        let ct = self.engine.conntrack.stats();
        let drops: serde_json::Map<String, Value> = w
            .drops
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let c = self.controller_stats();
        let per_worker: Vec<Value> = self
            .workers
            .iter()
            .map(|share| {
                let s = share.stats.lock().map(|s| s.clone()).unwrap_or_default();
                json!({"packets": s.packets, "upcalls": s.upcalls,
                       "emc_hits": s.cache.emc_hits, "megaflow_hits": s.cache.megaflow_hits})
            })
            .collect();
        json!({
            "controller": {
                "handled": c.handled, "sent": c.sent, "rate_limited": c.rate_limited,
                "unsupported": c.unsupported, "failed": c.failed, "learned": c.learned,
            },
            "worker": {
                "packets": w.packets, "passes": w.passes, "upcalls": w.upcalls,
                "fused": w.fused, "outputs": w.outputs, "tunnelled": w.tunnelled,
                "decapsulated": w.decapsulated, "to_controller": w.to_controller,
                "malformed": w.malformed, "drops": drops,
                "emc_hits": w.cache.emc_hits, "megaflow_hits": w.cache.megaflow_hits,
                "misses": w.cache.misses, "flushes": w.cache.flushes,
            },
            "workers": per_worker,
            "conntrack": {
                "entries": ct.entries, "lookups": ct.lookups, "hits": ct.hits,
                "new": ct.new, "committed": ct.committed, "invalid": ct.invalid,
                "limit_drops": ct.limit_drops, "expired": ct.expired,
            },
            "ports": self.all_ports().iter().map(port_json).collect::<Vec<_>>(),
        })
    }

    async fn flows(&self) -> Value {
        for w in &self.workers {
            w.flows_wanted.store(true, Ordering::Release);
        }
        // Each worker answers within a poll round; give them a moment.
        for _ in 0..200 {
            if self
                .workers
                .iter()
                .all(|w| !w.flows_wanted.load(Ordering::Acquire))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let flows: Vec<String> = self
            .workers
            .iter()
            .filter_map(|w| w.flows.lock().ok().map(|f| f.clone()))
            .flatten()
            .collect();
        json!({ "flows": flows })
    }

    fn port_list(&self) -> Value {
        let ports: Vec<Value> = self
            .all_ports()
            .iter()
            .filter(|p| p.id != 0)
            .map(port_json)
            .collect();
        let missing = self.missing.lock().map(|m| m.clone()).unwrap_or_default();
        json!({"ports": ports, "missing": missing})
    }

    /// Hands a port change to the control task and waits for its answer.
    async fn port_request(&self, request: PortRequest) -> Value {
        let (tx, rx) = oneshot::channel();
        if self.requests.send((request, tx)).await.is_err() {
            return json!({"error": "the daemon is shutting down"});
        }
        match rx.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => json!({ "error": e }),
            Err(_) => json!({"error": "the daemon is shutting down"}),
        }
    }

    async fn answer(&self, line: &str) -> Value {
        let request: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return json!({"error": format!("not JSON: {e}")}),
        };
        let port_add = |r: &Value| -> Result<PortRequest, String> {
            Ok(PortRequest::Add {
                ifname: field(r, "ifname")?.to_string(),
                iface_id: field(r, "iface_id")?.to_string(),
                backend: r
                    .get("backend")
                    .and_then(Value::as_str)
                    .unwrap_or("auto")
                    .to_string(),
            })
        };
        match request.get("command").and_then(Value::as_str) {
            Some("show") => self.show(),
            Some("stats") => self.stats(),
            Some("flows") => self.flows().await,
            Some("port-list") => self.port_list(),
            Some("port-add") => match port_add(&request) {
                Ok(r) => self.port_request(r).await,
                Err(e) => json!({ "error": e }),
            },
            Some("port-del") => match field(&request, "ifname") {
                Ok(name) => {
                    self.port_request(PortRequest::Del {
                        name: name.to_string(),
                    })
                    .await
                }
                Err(e) => json!({ "error": e }),
            },
            Some("tables") => {
                let config = self.engine.config();
                let dp = request.get("datapath").and_then(Value::as_str);
                crate::tables::list(&config.program, dp).unwrap_or_else(|e| json!({ "error": e }))
            }
            Some("trace") => {
                let config = self.engine.config();
                match crate::cli::trace::live(
                    &config.net,
                    &config.program,
                    &config.chassis,
                    &request,
                ) {
                    Ok(v) => v,
                    Err(e) => json!({ "error": e }),
                }
            }
            Some(other) => json!({"error": format!(
                "unknown command \"{other}\": show, stats, flows, tables, port-list, port-add, port-del or trace"
            )}),
            None => json!({"error": "give {\"command\": …}"}),
        }
    }
}

/// Serves `state` on a unix socket at `path` (replacing a stale one),
/// readable and writable by its owner only.
pub async fn serve(path: &Path, state: Arc<MgmtState>) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot create the management socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = state.answer(&line).await;
                if write
                    .write_all(format!("{reply}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
}

/// Sends one command to a running daemon and returns its answer.
pub async fn request(path: &Path, command: &str) -> Result<Value> {
    request_json(path, json!({ "command": command })).await
}

/// Sends one request (`{"command": …, …}`) to a running daemon and
/// returns its answer; an `"error"` answer becomes the error.
pub async fn request_json(path: &Path, request: Value) -> Result<Value> {
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach ironflow at {} (is `ironflow run` running with this --mgmt-socket?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{request}\n").as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let Some(line) = lines.next_line().await? else {
        bail!("ironflow closed the management socket without answering");
    };
    let reply: Value = serde_json::from_str(&line).context("ironflow answered with bad JSON")?;
    if let Some(e) = reply.get("error").and_then(Value::as_str) {
        bail!("{e}");
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironflow_datapath::config::Config;
    use ironflow_datapath::conntrack::CtConfig;
    use ironflow_pipeline::program::compile;
    use ironflow_pipeline::snapshot::Snapshot;

    #[tokio::test]
    async fn show_says_which_program_is_in_force() {
        let text = include_str!("../../testdata/seed-snapshot.json");
        let net = Snapshot::from_json(text).unwrap().network;
        let program = compile(&net);
        let info = ProgramInfo::published(&program, 2, 0.25);
        assert_eq!(info.logical_flows, net.logical_flows.len());
        assert!(info.rules > 0 && info.datapaths > 0);
        let config = Config::with_program(Arc::new(net), Arc::new(program), "kube-node1");
        let (requests, _rx) = mpsc::channel(1);
        let state = MgmtState {
            chassis: ChassisConfig {
                name: "kube-node1".into(),
                hostname: "n1".into(),
                encap_type: "geneve".into(),
                encap_ip: "172.17.42.31".parse().unwrap(),
                bridge_mappings: String::new(),
            },
            engine: Engine::new(config, CtConfig::default()),
            workers: Vec::new(),
            requests,
            missing: Mutex::new(Vec::new()),
            program: Mutex::new(info.clone()),
        };
        let show = state.answer(r#"{"command": "show"}"#).await;
        let p = &show["program"];
        assert_eq!(p["compiles"], 2);
        assert_eq!(p["logical_flows"], info.logical_flows);
        assert_eq!(p["rules"], info.rules);
        assert_eq!(p["failed"], 0);
        assert_eq!(p["compile_seconds"], 0.25);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let at = p["published_at"].as_f64().unwrap();
        assert!(at <= now && now - at < 60.0, "{p}");
    }
}
