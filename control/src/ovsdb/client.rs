//! One OVSDB JSON-RPC connection on tokio.
//!
//! A task owns the socket: it matches replies to requests, answers the
//! server's `echo`, probes an idle server with its own `echo` (dropping the
//! connection when that goes unanswered, as ovn-controller does), and hands
//! notifications (`update`, `update2`, `update3`, …) to the caller in order.
//! Malformed messages are counted and logged; only a stream that can no
//! longer be split ends the connection.

use super::framing::JsonSplitter;
use super::jsonrpc::{Message, MessageError};
use super::remote::Remote;
use super::schema::DatabaseSchema;
use bytes::BytesMut;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tracing::{debug, warn};

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Idle time after which we probe the server with `echo`, and the time
    /// we then give it to answer. `None` disables probing.
    pub probe_interval: Option<Duration>,
    pub connect_timeout: Duration,
    /// Largest message accepted; a whole SB database arrives as one.
    pub max_message: usize,
    /// Messages at least this long keep their result or params as text
    /// ([`Payload::Text`]); [`TEXT_PAYLOAD_MIN`] unless a test wants the
    /// text path for small messages too.
    pub text_payload_min: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            // ovn-controller's default ovn-remote-probe-interval.
            probe_interval: Some(Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(5),
            max_message: 1 << 30,
            text_payload_min: TEXT_PAYLOAD_MIN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {remote}: {error}")]
    Connect {
        remote: String,
        error: std::io::Error,
    },
    #[error("connection to {remote} lost: {reason}")]
    Disconnected { remote: String, reason: String },
    #[error("{method} failed: {error}")]
    Rpc { method: String, error: Value },
    #[error("transaction failed: {0}")]
    Transact(String),
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

/// What a connection has seen, as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub messages_in: u64,
    pub messages_out: u64,
    /// Messages that were not JSON or not JSON-RPC, dropped.
    pub malformed: u64,
    /// Server requests with a method we do not serve, answered with an error.
    pub unknown_method: u64,
    /// Replies whose id matched no request of ours.
    pub stray_replies: u64,
    pub echoes_answered: u64,
    pub probes_sent: u64,
}

#[derive(Default)]
struct Counters {
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    malformed: AtomicU64,
    unknown_method: AtomicU64,
    stray_replies: AtomicU64,
    echoes_answered: AtomicU64,
    probes_sent: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ClientStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientStats {
            messages_in: get(&self.messages_in),
            messages_out: get(&self.messages_out),
            malformed: get(&self.malformed),
            unknown_method: get(&self.unknown_method),
            stray_replies: get(&self.stray_replies),
            echoes_answered: get(&self.echoes_answered),
            probes_sent: get(&self.probes_sent),
        }
    }
}

/// Messages at least this long keep their reply's result or their
/// notification's params as text ([`Payload::Text`]) by default. The SB's
/// updates are mostly a few rows; its initial contents are megabytes.
pub const TEXT_PAYLOAD_MIN: usize = 1 << 20;

/// A reply's result or a notification's params. A small message's comes
/// parsed; a large one's (a whole SB's initial contents, tens of
/// megabytes) as its JSON text, which the replica reads row by row: as
/// a tree of JSON values it would take several times the memory of the
/// text, and of the replica built from it.
#[derive(Debug, Clone)]
pub enum Payload {
    Value(Value),
    /// Valid JSON: the parser checked it on the way in.
    Text(Box<RawValue>),
}

impl Payload {
    /// The value, parsed if it came as text.
    pub fn into_value(self) -> Result<Value, ClientError> {
        match self {
            Payload::Value(v) => Ok(v),
            Payload::Text(text) => serde_json::from_str(text.get())
                .map_err(|e| ClientError::Protocol(format!("unreadable payload: {e}"))),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        match (self, other) {
            (Payload::Value(a), Payload::Value(b)) => a == b,
            (Payload::Text(a), Payload::Text(b)) => a.get() == b.get(),
            _ => {
                let parsed = |p: &Payload| p.clone().into_value().ok();
                parsed(self) == parsed(other)
            }
        }
    }
}

/// A notification from the server, or the end of the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Notification {
        method: String,
        params: Payload,
    },
    /// The connection is gone; no more events follow.
    Closed {
        reason: String,
    },
}

type ReplySender = oneshot::Sender<Result<Payload, Value>>;

/// A message from the server, as the connection task hands it on.
enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Payload,
    },
    Reply {
        id: Value,
        result: Payload,
    },
    Error {
        id: Value,
        error: Value,
    },
}

impl From<Message> for Incoming {
    fn from(msg: Message) -> Incoming {
        match msg {
            Message::Request { id, method, params } => Incoming::Request { id, method, params },
            Message::Notification { method, params } => Incoming::Notification {
                method,
                params: Payload::Value(params),
            },
            Message::Reply { id, result } => Incoming::Reply {
                id,
                result: Payload::Value(result),
            },
            Message::Error { id, error } => Incoming::Error { id, error },
        }
    }
}

impl Incoming {
    /// Reads a message, as [`Message::from_json`] would, but leaves a large
    /// message's result or params as text.
    fn parse(frame: &[u8], text_min: usize) -> Result<Incoming, String> {
        if frame.len() < text_min {
            let value: Value = serde_json::from_slice(frame).map_err(|e| e.to_string())?;
            return Message::from_json(value)
                .map(Incoming::from)
                .map_err(|e| e.to_string());
        }
        // Each member as text (the last of a repeated one, as a parsed
        // object keeps it); only the small ones are parsed further.
        let mut obj: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(frame).map_err(|e| e.to_string())?;
        let parse = |raw: Box<RawValue>| -> Result<Value, String> {
            serde_json::from_str(raw.get()).map_err(|e| e.to_string())
        };
        let refuse = |why: String| MessageError(why).to_string();
        let id = obj
            .remove("id")
            .map(parse)
            .transpose()?
            .unwrap_or(Value::Null);
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = parse(method)? else {
                return Err(refuse("\"method\" is not a string".into()));
            };
            let params = obj
                .remove("params")
                .filter(|p| p.get().starts_with('['))
                .ok_or_else(|| refuse(format!("params of {method:?} is not an array")))?;
            return Ok(if id.is_null() {
                Incoming::Notification {
                    method,
                    params: Payload::Text(params),
                }
            } else {
                Incoming::Request {
                    id,
                    method,
                    params: parse(params)?,
                }
            });
        }
        if id.is_null() {
            return Err(refuse("neither a method nor an id".into()));
        }
        let error = obj.remove("error").map(parse).transpose()?;
        match (obj.remove("result"), error) {
            (_, Some(error)) if !error.is_null() => Ok(Incoming::Error { id, error }),
            (Some(result), _) => Ok(Incoming::Reply {
                id,
                result: Payload::Text(result),
            }),
            _ => Err(refuse("a reply with neither result nor error".into())),
        }
    }
}

enum Command {
    Send {
        msg: Message,
        reply: Option<(u64, ReplySender)>,
    },
    /// Abandon request `id`: tell the server, fail the caller's wait now.
    Cancel { id: u64 },
}

/// Handle to a connection; cheap to clone. The connection closes when every
/// handle is dropped or the server goes away.
#[derive(Clone)]
pub struct Client {
    remote: String,
    commands: mpsc::UnboundedSender<Command>,
    next_id: Arc<AtomicU64>,
    counters: Arc<Counters>,
    close_reason: Arc<Mutex<Option<String>>>,
}

/// A request on its way; await [`PendingRequest::reply`], or cancel it.
pub struct PendingRequest {
    pub id: u64,
    method: String,
    rx: oneshot::Receiver<Result<Payload, Value>>,
    client: Client,
}

impl PendingRequest {
    pub async fn reply(self) -> Result<Value, ClientError> {
        self.reply_payload().await?.into_value()
    }

    /// The result as it came: parsed, or (a large one) as text.
    pub async fn reply_payload(self) -> Result<Payload, ClientError> {
        match self.rx.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(ClientError::Rpc {
                method: self.method,
                error,
            }),
            Err(_) => Err(self.client.disconnected()),
        }
    }
}

impl Client {
    /// Connects to `remote` and starts the connection task. Events arrive on
    /// the returned receiver.
    pub async fn connect(
        remote: &Remote,
        opts: &ClientOptions,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Event>), ClientError> {
        let name = remote.to_string();
        let connect_err = |error| ClientError::Connect {
            remote: name.clone(),
            error,
        };
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        match remote {
            Remote::Unix(path) => {
                let stream = timeout(opts.connect_timeout, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|_| connect_err(timed_out()))?
                    .map_err(connect_err)?;
                Ok(Self::from_stream(stream, name, opts))
            }
            Remote::Tcp(addr) => {
                let stream = timeout(opts.connect_timeout, tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| connect_err(timed_out()))?
                    .map_err(connect_err)?;
                // Small requests must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                Ok(Self::from_stream(stream, name, opts))
            }
        }
    }

    /// Runs the protocol over an already connected byte stream.
    pub fn from_stream<S>(
        stream: S,
        remote: String,
        opts: &ClientOptions,
    ) -> (Client, mpsc::UnboundedReceiver<Event>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let client = Client {
            remote,
            commands: cmd_tx,
            next_id: Arc::new(AtomicU64::new(1)),
            counters: Arc::new(Counters::default()),
            close_reason: Arc::new(Mutex::new(None)),
        };
        let conn = Connection {
            remote: client.remote.clone(),
            pending: HashMap::new(),
            events: event_tx,
            counters: client.counters.clone(),
            next_id: client.next_id.clone(),
            probe_interval: opts.probe_interval,
            splitter: JsonSplitter::new(opts.max_message),
            text_payload_min: opts.text_payload_min,
        };
        let close_reason = client.close_reason.clone();
        tokio::spawn(async move {
            let reason = conn.run(stream, cmd_rx).await;
            debug!(%reason, "ovsdb connection closed");
            *close_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        });
        (client, event_rx)
    }

    pub fn remote(&self) -> &str {
        &self.remote
    }

    pub fn stats(&self) -> ClientStats {
        self.counters.snapshot()
    }

    fn disconnected(&self) -> ClientError {
        let reason = self
            .close_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "connection closed".into());
        ClientError::Disconnected {
            remote: self.remote.clone(),
            reason,
        }
    }

    /// Sends a request and returns a handle to its reply.
    pub fn start_request(
        &self,
        method: &str,
        params: Value,
    ) -> Result<PendingRequest, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let msg = Message::Request {
            id: json!(id),
            method: method.to_string(),
            params,
        };
        self.commands
            .send(Command::Send {
                msg,
                reply: Some((id, tx)),
            })
            .map_err(|_| self.disconnected())?;
        Ok(PendingRequest {
            id,
            method: method.to_string(),
            rx,
            client: self.clone(),
        })
    }

    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.start_request(method, params)?.reply().await
    }

    pub fn notify(&self, method: &str, params: Value) -> Result<(), ClientError> {
        let msg = Message::Notification {
            method: method.to_string(),
            params,
        };
        self.commands
            .send(Command::Send { msg, reply: None })
            .map_err(|_| self.disconnected())
    }

    /// Abandons a request (RFC 7047 §4.1.4): the server is told to drop
    /// it and its [`PendingRequest::reply`] fails with "canceled" at once.
    /// ovsdb-server 3.x drops a cancelled transaction without answering it,
    /// so the answer is not waited for; a late one is discarded.
    pub fn cancel(&self, request: &PendingRequest) -> Result<(), ClientError> {
        self.commands
            .send(Command::Cancel { id: request.id })
            .map_err(|_| self.disconnected())
    }

    /// Round trip to the server.
    pub async fn echo(&self) -> Result<Duration, ClientError> {
        let start = Instant::now();
        self.request("echo", json!(["ironflow"])).await?;
        Ok(start.elapsed())
    }

    pub async fn list_dbs(&self) -> Result<Vec<String>, ClientError> {
        let reply = self.request("list_dbs", json!([])).await?;
        serde_json::from_value(reply.clone())
            .map_err(|_| ClientError::Protocol(format!("list_dbs returned {reply}")))
    }

    pub async fn get_schema(&self, db: &str) -> Result<DatabaseSchema, ClientError> {
        let reply = self.request("get_schema", json!([db])).await?;
        DatabaseSchema::from_json(&reply).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// `monitor_cond` (ovsdb-server(7)): the reply is the initial contents
    /// in `update2` form, and later changes arrive as `update2`.
    pub async fn monitor_cond(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: Value,
    ) -> Result<Payload, ClientError> {
        self.start_request("monitor_cond", json!([db, monitor_id, requests]))?
            .reply_payload()
            .await
    }

    /// RFC 7047 `monitor`: the reply and later `update`s use the old form.
    pub async fn monitor(
        &self,
        db: &str,
        monitor_id: &Value,
        requests: Value,
    ) -> Result<Payload, ClientError> {
        self.start_request("monitor", json!([db, monitor_id, requests]))?
            .reply_payload()
            .await
    }

    pub async fn monitor_cancel(&self, monitor_id: &Value) -> Result<(), ClientError> {
        self.request("monitor_cancel", json!([monitor_id]))
            .await
            .map(drop)
    }

    /// Runs a transaction and returns each operation's result, or the first
    /// error the server reported for it.
    pub async fn transact(&self, db: &str, ops: Vec<Value>) -> Result<Vec<Value>, ClientError> {
        let n_ops = ops.len();
        let mut params = vec![json!(db)];
        params.extend(ops);
        let reply = self.request("transact", Value::Array(params)).await?;
        let Value::Array(results) = reply else {
            return Err(ClientError::Protocol(format!("transact returned {reply}")));
        };
        // RFC 7047 §4.1.3: an error is either in the failing operation's
        // slot or, for a commit failure, in an extra slot past the last.
        if let Some(failed) = results.iter().find(|r| r.get("error").is_some()) {
            let what = failed["error"].as_str().unwrap_or("error");
            let details = failed.get("details").and_then(Value::as_str).unwrap_or("");
            return Err(ClientError::Transact(format!("{what}: {details}")));
        }
        if results.len() < n_ops {
            return Err(ClientError::Protocol(format!(
                "transact returned {} results for {n_ops} operations",
                results.len()
            )));
        }
        Ok(results)
    }
}

struct Connection {
    remote: String,
    pending: HashMap<u64, Option<ReplySender>>,
    events: mpsc::UnboundedSender<Event>,
    counters: Arc<Counters>,
    next_id: Arc<AtomicU64>,
    probe_interval: Option<Duration>,
    splitter: JsonSplitter,
    text_payload_min: usize,
}

impl Connection {
    /// Runs until the connection ends; returns why.
    async fn run<S>(
        mut self,
        mut stream: S,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> String
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut last_rx = Instant::now();
        let mut probe_sent: Option<Instant> = None;
        let reason = loop {
            let deadline = self
                .probe_interval
                .map(|every| probe_sent.unwrap_or(last_rx) + every);
            let idle = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = stream.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => break "closed by the server".to_string(),
                        Ok(_) => {}
                        Err(e) => break format!("read error: {e}"),
                    }
                    last_rx = Instant::now();
                    probe_sent = None;
                    if buf.capacity() - buf.len() < 16 * 1024 {
                        buf.reserve(64 * 1024);
                    }
                    if let Err(reason) = self.drain_messages(&mut buf, &mut stream).await {
                        break reason;
                    }
                    // A large message grew the buffer to its size; the
                    // buffer would keep that memory for good (reading
                    // into it again touches it all) unless replaced. The
                    // bytes kept are at the same places: the splitter's
                    // position stays right.
                    if buf.capacity() > 1 << 20 && buf.len() <= 64 * 1024 {
                        let mut fresh = BytesMut::with_capacity(64 * 1024);
                        fresh.extend_from_slice(&buf);
                        buf = fresh;
                    }
                }
                cmd = commands.recv() => {
                    let msg = match cmd {
                        None => break "closed by ironflow".to_string(),
                        Some(Command::Send { msg, reply }) => {
                            if let Some((id, tx)) = reply {
                                self.pending.insert(id, Some(tx));
                            }
                            msg
                        }
                        Some(Command::Cancel { id }) => {
                            // Keep the id, answerless, so a late reply is
                            // recognised and dropped quietly.
                            if let Some(Some(tx)) = self.pending.insert(id, None) {
                                let _ = tx.send(Err(json!("canceled")));
                            }
                            Message::Notification { method: "cancel".into(), params: json!([id]) }
                        }
                    };
                    if let Err(e) = self.write(&mut stream, &msg).await {
                        break format!("write error: {e}");
                    }
                }
                _ = idle => {
                    if probe_sent.is_some() {
                        break format!(
                            "no answer to the inactivity probe in {:?}",
                            self.probe_interval.unwrap_or_default()
                        );
                    }
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    self.pending.insert(id, None);
                    Counters::bump(&self.counters.probes_sent);
                    let probe = Message::Request { id: json!(id), method: "echo".into(), params: json!([]) };
                    if let Err(e) = self.write(&mut stream, &probe).await {
                        break format!("write error: {e}");
                    }
                    probe_sent = Some(Instant::now());
                }
            }
        };
        let _ = self.events.send(Event::Closed {
            reason: reason.clone(),
        });
        reason
    }

    async fn write<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        msg: &Message,
    ) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&msg.to_json()).expect("JSON values serialise");
        stream.write_all(&bytes).await?;
        Counters::bump(&self.counters.messages_out);
        Ok(())
    }

    /// Handles every whole message in `buf`. Errs only when the stream is
    /// beyond repair.
    async fn drain_messages<S>(&mut self, buf: &mut BytesMut, stream: &mut S) -> Result<(), String>
    where
        S: AsyncWrite + Unpin,
    {
        while let Some(end) = self.splitter.scan(buf).map_err(|e| e.to_string())? {
            let frame = buf.split_to(end);
            Counters::bump(&self.counters.messages_in);
            let msg = Incoming::parse(&frame, self.text_payload_min);
            // A large message's text is copied out: the buffer can go.
            drop(frame);
            match msg {
                Ok(msg) => self.dispatch(msg, stream).await?,
                Err(e) => {
                    Counters::bump(&self.counters.malformed);
                    warn!(remote = %self.remote, "dropping malformed message: {e}");
                }
            }
        }
        Ok(())
    }

    async fn dispatch<S: AsyncWrite + Unpin>(
        &mut self,
        msg: Incoming,
        stream: &mut S,
    ) -> Result<(), String> {
        match msg {
            Incoming::Reply { id, result } => self.complete(&id, Ok(result)),
            Incoming::Error { id, error } => self.complete(&id, Err(error)),
            Incoming::Request { id, method, params } => {
                let answer = if method == "echo" {
                    Counters::bump(&self.counters.echoes_answered);
                    Message::Reply { id, result: params }
                } else {
                    Counters::bump(&self.counters.unknown_method);
                    warn!(remote = %self.remote, %method, "server called a method ironflow does not serve");
                    Message::Error {
                        id,
                        error: json!({"error": "unknown method", "details": method}),
                    }
                };
                self.write(stream, &answer)
                    .await
                    .map_err(|e| format!("write error: {e}"))?;
            }
            Incoming::Notification { method, params } => {
                // The receiver may be gone when the owner stopped listening;
                // the connection then only serves requests.
                let _ = self.events.send(Event::Notification { method, params });
            }
        }
        Ok(())
    }

    fn complete(&mut self, id: &Value, outcome: Result<Payload, Value>) {
        match id.as_u64().and_then(|id| self.pending.remove(&id)) {
            Some(Some(tx)) => {
                let _ = tx.send(outcome);
            }
            Some(None) => {} // answer to our probe or to a cancelled request
            None => {
                Counters::bump(&self.counters.stray_replies);
                warn!(remote = %self.remote, %id, "reply to no request of ours");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncBufReadExt, BufReader};

    /// A scripted peer on the far end of an in-memory pipe, for the corner
    /// cases a well-behaved ovsdb-server never produces. The real server is
    /// exercised by the integration tests in `testbeds`.
    fn pipe(
        opts: ClientOptions,
    ) -> (
        Client,
        mpsc::UnboundedReceiver<Event>,
        tokio::io::DuplexStream,
    ) {
        let (ours, theirs) = duplex(1 << 16);
        let (client, events) = Client::from_stream(ours, "test".into(), &opts);
        (client, events, theirs)
    }

    async fn read_json(peer: &mut BufReader<tokio::io::DuplexStream>) -> Value {
        // Our writes carry no delimiter; read byte by byte through the splitter.
        let mut splitter = JsonSplitter::new(1 << 20);
        let mut buf = Vec::new();
        loop {
            let byte = peer.fill_buf().await.unwrap()[0];
            peer.consume(1);
            buf.push(byte);
            if let Some(end) = splitter.scan(&buf).unwrap() {
                return serde_json::from_slice(&buf[..end]).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn survives_garbage_answers_echo_and_refuses_unknown_methods() {
        let (client, mut events, peer) = pipe(ClientOptions::default());
        let mut peer = BufReader::new(peer);
        let pending = client.start_request("list_dbs", json!([])).unwrap();
        let req = read_json(&mut peer).await;
        assert_eq!(req["method"], "list_dbs");
        let script = format!(
            "{{\"not json\" }} [1] {{\"id\":\"e1\",\"method\":\"echo\",\"params\":[7]}}\
             {{\"id\":\"q\",\"method\":\"frobnicate\",\"params\":[]}}\
             {{\"id\":999,\"result\":[],\"error\":null}}\
             {{\"id\":null,\"method\":\"update2\",\"params\":[\"m\",{{}}]}}\
             {{\"id\":{},\"result\":[\"OVN_Southbound\"],\"error\":null}}",
            req["id"]
        );
        peer.get_mut().write_all(script.as_bytes()).await.unwrap();
        let echo_reply = read_json(&mut peer).await;
        assert_eq!(
            echo_reply,
            json!({"id": "e1", "result": [7], "error": null})
        );
        let refusal = read_json(&mut peer).await;
        assert_eq!(refusal["error"]["error"], "unknown method");
        assert_eq!(pending.reply().await.unwrap(), json!(["OVN_Southbound"]));
        assert!(
            matches!(events.recv().await, Some(Event::Notification { method, .. }) if method == "update2")
        );
        let stats = client.stats();
        assert_eq!(
            (stats.malformed, stats.unknown_method, stats.stray_replies),
            (2, 1, 1)
        );
        assert_eq!(stats.echoes_answered, 1);
    }

    #[tokio::test]
    async fn large_messages_keep_their_payload_as_text() {
        let (client, mut events, peer) = pipe(ClientOptions::default());
        let mut peer = BufReader::new(peer);
        let pending = client.start_request("monitor_cond", json!([])).unwrap();
        let req = read_json(&mut peer).await;
        let big = "x".repeat(TEXT_PAYLOAD_MIN);
        let reply = json!({"id": req["id"], "result": {"T": {"u": big}}, "error": null});
        let note = json!({"id": null, "method": "update2", "params": ["m", {"T": {}}], "pad": big});
        let bad = json!({"id": null, "method": "update2", "params": {"not": "a list"}, "pad": big});
        let script = format!("{reply} {bad} {note}");
        peer.get_mut().write_all(script.as_bytes()).await.unwrap();
        let payload = pending.reply_payload().await.unwrap();
        assert!(matches!(payload, Payload::Text(_)));
        let value = payload.into_value().unwrap();
        assert_eq!(value["T"]["u"].as_str().map(str::len), Some(big.len()));
        let Some(Event::Notification { method, params }) = events.recv().await else {
            panic!("the notification should come through");
        };
        assert_eq!(method, "update2");
        assert!(matches!(params, Payload::Text(_)));
        assert_eq!(params, Payload::Value(json!(["m", {"T": {}}])));
        assert_eq!(client.stats().malformed, 1);
    }

    #[tokio::test]
    async fn out_of_sync_stream_closes_and_fails_pending_requests() {
        let (client, mut events, peer) = pipe(ClientOptions::default());
        let mut peer = BufReader::new(peer);
        let pending = client.start_request("echo", json!([])).unwrap();
        read_json(&mut peer).await;
        peer.get_mut().write_all(b"HTTP/1.1 400\r\n").await.unwrap();
        let err = pending.reply().await.unwrap_err();
        assert!(err.to_string().contains("out of sync"), "{err}");
        assert!(matches!(events.recv().await, Some(Event::Closed { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn probes_a_silent_server_then_gives_up() {
        let opts = ClientOptions {
            probe_interval: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        let (client, mut events, peer) = pipe(opts);
        let mut peer = BufReader::new(peer);
        let probe = read_json(&mut peer).await;
        assert_eq!(probe["method"], "echo");
        let Some(Event::Closed { reason }) = events.recv().await else {
            panic!("connection should close");
        };
        assert!(reason.contains("inactivity probe"), "{reason}");
        assert_eq!(client.stats().probes_sent, 1);
    }
}
