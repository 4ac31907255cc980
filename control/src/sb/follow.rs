//! Follows a live Southbound database and publishes [`SbView`]s.
//!
//! A session connects, reads the server's schema, monitors the tables and
//! columns both sides know (`monitor_cond`, or `monitor` on servers without
//! it) and applies updates as they come. The follower runs sessions in a
//! loop, trying the remotes of a cluster in turn with exponential backoff.
//! A view is published only once a session has the server's whole initial
//! contents, so a reconnect never shows a half-empty network: until then
//! the last complete view stays current, marked disconnected.

use super::build::build_network;
use super::tables::{SbTables, MONITORED};
use crate::ovsdb::{
    Client, ClientError, ClientOptions, DatabaseSchema, Event, Payload, Remote, Replica,
};
use ironflow_pipeline::LogicalNetwork;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub const SB_DB: &str = "OVN_Southbound";

/// Which monitor method to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MonitorMethod {
    /// `monitor_cond`, falling back to `monitor` if the server lacks it.
    #[default]
    Auto,
    /// RFC 7047 `monitor` only.
    Plain,
}

#[derive(Debug, Clone)]
pub struct FollowOptions {
    pub client: ClientOptions,
    pub monitor: MonitorMethod,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            client: ClientOptions::default(),
            monitor: MonitorMethod::Auto,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(8),
        }
    }
}

/// One complete view of the SB, as of some update.
#[derive(Debug, Clone)]
pub struct SbView {
    /// Increases with every change of `network`.
    pub generation: u64,
    pub network: Arc<LogicalNetwork>,
    pub schema_version: String,
    /// The remote the view came from.
    pub remote: String,
    /// False while the follower is reconnecting (the view is then the last
    /// complete one).
    pub connected: bool,
}

/// Live connection to the SB with a decoded copy of the tables we follow.
pub struct Session {
    client: Client,
    events: mpsc::UnboundedReceiver<Event>,
    replica: Replica,
    tables: SbTables,
    monitor_id: Value,
    /// `update` (RFC 7047) rather than `update2`.
    plain_updates: bool,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the server has no {SB_DB} database (it has {0}); is this the Southbound remote?")]
    NotSouthbound(String),
    #[error("connection to {remote} lost: {reason}")]
    Closed { remote: String, reason: String },
}

impl Session {
    /// Connects and reads the whole initial contents.
    pub async fn open(remote: &Remote, opts: &FollowOptions) -> Result<Session, SessionError> {
        let (client, events) = Client::connect(remote, &opts.client).await?;
        let dbs = client.list_dbs().await?;
        if !dbs.iter().any(|db| db == SB_DB) {
            return Err(SessionError::NotSouthbound(dbs.join(", ")));
        }
        let schema = client.get_schema(SB_DB).await?;
        let requests = monitor_requests(&schema);
        let monitor_id = json!("ironflow-sb");
        let (initial, plain_updates) = match opts.monitor {
            MonitorMethod::Plain => (client.monitor(SB_DB, &monitor_id, requests).await?, true),
            MonitorMethod::Auto => match client
                .monitor_cond(SB_DB, &monitor_id, requests.clone())
                .await
            {
                Err(ClientError::Rpc { error, .. })
                    if error.get("error") == Some(&json!("unknown method")) =>
                {
                    info!(%remote, "server lacks monitor_cond; using monitor");
                    (client.monitor(SB_DB, &monitor_id, requests).await?, true)
                }
                other => (other?, false),
            },
        };
        let mut session = Session {
            client,
            events,
            replica: Replica::new(schema),
            tables: SbTables::default(),
            monitor_id,
            plain_updates,
        };
        session.apply(Updates::of(&initial));
        Ok(session)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn schema(&self) -> &DatabaseSchema {
        self.replica.schema()
    }

    pub fn tables(&self) -> &SbTables {
        &self.tables
    }

    pub fn network(&self) -> LogicalNetwork {
        build_network(&self.tables)
    }

    /// Applies one update; returns whether any row changed.
    fn apply(&mut self, updates: Updates) -> bool {
        let report = match (self.plain_updates, updates) {
            (true, Updates::Value(v)) => self.replica.apply_update(v),
            (false, Updates::Value(v)) => self.replica.apply_update2(v),
            (true, Updates::Text(t)) => self.replica.apply_update_text(t),
            (false, Updates::Text(t)) => self.replica.apply_update2_text(t),
        };
        let errors = self.tables.sync(&self.replica, &report);
        let remote = self.client.remote();
        // Bounded, so a flood of bad rows cannot flood the log.
        const SHOWN: usize = 10;
        for issue in report.issues.iter().take(SHOWN) {
            warn!(%remote, "ignoring SB update: {issue}");
        }
        for error in errors.iter().take(SHOWN) {
            warn!(%remote, "ignoring SB row: {error}");
        }
        let bad = report.issues.len() + errors.len();
        if bad > 2 * SHOWN {
            warn!(%remote, "{bad} bad rows in one update, {} not shown", bad - 2 * SHOWN);
        }
        report.rows_changed() > 0
    }

    /// Waits for the next batch of updates and applies it, with every other
    /// notification already queued (so a burst costs one rebuild). Returns
    /// whether anything changed.
    pub async fn next_change(&mut self) -> Result<bool, SessionError> {
        let first = self.events.recv().await;
        let mut changed = self.handle(first)?;
        while let Ok(event) = self.events.try_recv() {
            changed |= self.handle(Some(event))?;
        }
        Ok(changed)
    }

    fn handle(&mut self, event: Option<Event>) -> Result<bool, SessionError> {
        let remote = self.client.remote().to_string();
        match event {
            None => Err(SessionError::Closed {
                remote,
                reason: "connection task ended".into(),
            }),
            Some(Event::Closed { reason }) => Err(SessionError::Closed { remote, reason }),
            Some(Event::Notification { method, params }) => {
                let items = Updates::items(&params);
                let ours = |id: &Updates| id.is(&self.monitor_id);
                let updates = match (method.as_str(), items.as_deref()) {
                    ("update" | "update2", Some([id, updates])) if ours(id) => *updates,
                    ("update3", Some([id, _txn, updates])) if ours(id) => *updates,
                    _ => {
                        warn!(%remote, %method, "ignoring unexpected notification");
                        return Ok(false);
                    }
                };
                Ok(self.apply(updates))
            }
        }
    }
}

/// An update (or a notification's parameter) parsed, or as JSON text when
/// the message was large (see [`Payload`]).
#[derive(Clone, Copy)]
enum Updates<'a> {
    Value(&'a Value),
    Text(&'a str),
}

impl<'a> Updates<'a> {
    fn of(payload: &'a Payload) -> Updates<'a> {
        match payload {
            Payload::Value(v) => Updates::Value(v),
            Payload::Text(t) => Updates::Text(t.get()),
        }
    }

    /// The items of a notification's params (an array: the client checked).
    fn items(params: &'a Payload) -> Option<Vec<Updates<'a>>> {
        match params {
            Payload::Value(v) => Some(v.as_array()?.iter().map(Updates::Value).collect()),
            Payload::Text(t) => {
                let items: Vec<&RawValue> = serde_json::from_str(t.get()).ok()?;
                Some(items.into_iter().map(|i| Updates::Text(i.get())).collect())
            }
        }
    }

    fn is(&self, want: &Value) -> bool {
        match self {
            Updates::Value(v) => *v == want,
            Updates::Text(t) => serde_json::from_str::<Value>(t).is_ok_and(|v| v == *want),
        }
    }
}

/// Asks for the tables and columns ironflow reads that the server has.
fn monitor_requests(schema: &DatabaseSchema) -> Value {
    let mut requests = Map::new();
    for (table, columns) in MONITORED {
        let Some(ts) = schema.tables.get(*table) else {
            info!(table, schema = %schema.version, "SB schema lacks a table ironflow reads; treating it as empty");
            continue;
        };
        let known: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|c| ts.columns.contains_key(*c))
            .collect();
        if known.len() < columns.len() {
            debug!(table, "SB schema lacks some columns ironflow reads");
        }
        requests.insert(table.to_string(), json!([{ "columns": known }]));
    }
    Value::Object(requests)
}

/// Reads the whole SB once from the first remote that answers.
pub async fn read_once(
    remotes: &[Remote],
    opts: &FollowOptions,
) -> Result<(LogicalNetwork, String, String), SessionError> {
    let mut last_err = None;
    for remote in remotes {
        match Session::open(remote, opts).await {
            Ok(session) => {
                return Ok((
                    session.network(),
                    session.schema().version.clone(),
                    remote.to_string(),
                ))
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("parse_remotes never returns an empty list"))
}

/// A running follower; dropping it stops following.
pub struct SbFollower {
    views: watch::Receiver<Option<Arc<SbView>>>,
    task: JoinHandle<()>,
}

impl Drop for SbFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SbFollower {
    pub fn spawn(remotes: Vec<Remote>, opts: FollowOptions) -> SbFollower {
        assert!(!remotes.is_empty(), "SbFollower needs a remote");
        let (tx, views) = watch::channel(None);
        let task = tokio::spawn(follow(remotes, opts, tx));
        SbFollower { views, task }
    }

    /// The latest complete view (`None` before the first sync).
    pub fn current(&self) -> Option<Arc<SbView>> {
        self.views.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<SbView>>> {
        self.views.clone()
    }

    /// Waits until a view satisfies `pred`, for at most `limit`.
    pub async fn wait_for(
        &self,
        limit: Duration,
        mut pred: impl FnMut(&SbView) -> bool,
    ) -> Option<Arc<SbView>> {
        let mut rx = self.subscribe();
        let found =
            tokio::time::timeout(limit, rx.wait_for(|v| v.as_deref().is_some_and(&mut pred))).await;
        match found {
            Ok(Ok(view)) => view.clone(),
            _ => None,
        }
    }
}

async fn follow(remotes: Vec<Remote>, opts: FollowOptions, tx: watch::Sender<Option<Arc<SbView>>>) {
    let mut generation = 0u64;
    let mut backoff = opts.backoff_min;
    for remote in remotes.iter().cycle() {
        match Session::open(remote, &opts).await {
            Ok(mut session) => {
                info!(%remote, "following the Southbound database");
                backoff = opts.backoff_min;
                let schema_version = session.schema().version.clone();
                let mut publish = |network: LogicalNetwork, connected: bool| {
                    generation += 1;
                    tx.send_replace(Some(Arc::new(SbView {
                        generation,
                        network: Arc::new(network),
                        schema_version: schema_version.clone(),
                        remote: remote.to_string(),
                        connected,
                    })));
                };
                publish(session.network(), true);
                let err = loop {
                    match session.next_change().await {
                        Ok(true) => publish(session.network(), true),
                        Ok(false) => {}
                        Err(e) => break e,
                    }
                };
                warn!("{err}; reconnecting");
                tx.send_modify(|view| {
                    if let Some(v) = view {
                        Arc::make_mut(v).connected = false;
                    }
                });
            }
            Err(e) => warn!("{e}; retrying in {backoff:?}"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(opts.backoff_max);
    }
}
