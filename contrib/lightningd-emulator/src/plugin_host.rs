//! Running the plugin process: spawn, stdin writer, stdout reader (responses, `log`, custom
//! notifications, protocol violations), stderr capture, SIGKILL, and the bookkeeping of
//! requests lightningd sends it.

use crate::manifest::Manifest;
use crate::protocol::{self, Frame, FrameDecoder, Message, Request, RpcError, codes};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};

/// lightningd numbers all its requests from one counter.
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(20);

/// A `log` notification from the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// Everything observed from plugin instances (kept across restarts).
#[derive(Default)]
pub struct Recorder {
    inner: Mutex<Records>,
    changed: watch::Sender<u64>,
}

#[derive(Default, Clone)]
pub struct Records {
    pub logs: Vec<LogLine>,
    pub notifications: Vec<(String, Value)>,
    pub violations: Vec<String>,
    pub stderr: Vec<String>,
    /// What lightningd itself would have logged about the plugin.
    pub emulator_log: Vec<String>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    pub fn records(&self) -> MutexGuard<'_, Records> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Records)) {
        f(&mut self.records());
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn note(&self, msg: impl Into<String>) {
        let msg = msg.into();
        log::info!("lightningd-emulator: {msg}");
        self.update(|r| r.emulator_log.push(msg));
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, RpcError>>>>>;

/// The lightningd side of one running plugin instance.
pub struct PluginConn {
    pub pid: u32,
    manifest: OnceLock<Manifest>,
    ready: AtomicBool,
    alive: AtomicBool,
    tx: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    pending: Pending,
}

impl PluginConn {
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.get()
    }

    pub(crate) fn set_manifest(&self, m: Manifest) {
        let _ = self.manifest.set(m);
    }

    /// `init` completed: notifications may be delivered.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.is_alive()
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn send(&self, v: &Value) -> bool {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(protocol::frame(v)).is_ok(),
            None => false,
        }
    }

    /// Closes the plugin's stdin (EOF).
    pub fn close_stdin(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn nonnumeric(&self) -> bool {
        self.manifest.get().is_none_or(|m| m.nonnumericids)
    }

    /// Sends a request; `prefix` is the id of the command that caused it (lightningd chains
    /// ids as `PREFIX/cln:METHOD#N`).
    pub fn request(
        &self,
        method: &str,
        params: Value,
        prefix: Option<&str>,
    ) -> oneshot::Receiver<Result<Value, RpcError>> {
        let n = NEXT_REQUEST_ID.fetch_add(1, Ordering::SeqCst);
        let id = request_id(method, prefix, n, self.nonnumeric());
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(protocol::id_key(&id), tx);
        let sent =
            self.is_alive() && self.send(&Request::new(id.clone(), method, params).to_json());
        let unsent = if sent {
            None
        } else {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&protocol::id_key(&id))
        };
        if let Some(tx) = unsent {
            let _ = tx.send(Err(terminated()));
        }
        rx
    }

    /// Sends a notification if the plugin subscribed to `topic` and finished `init`.
    pub fn notify(&self, topic: &str, params: Value) -> bool {
        let subscribed = self.manifest().is_some_and(|m| m.is_subscribed(topic));
        if !subscribed || !self.is_ready() {
            return false;
        }
        self.send(&Request::notification(topic, params).to_json())
    }
}

/// The id lightningd gives its `n`th request: `PREFIX/cln:METHOD#N` (or `cln:METHOD#N`) for
/// plugins that accept non-numeric ids, else the number.
pub fn request_id(method: &str, prefix: Option<&str>, n: u64, nonnumeric: bool) -> Value {
    match (nonnumeric, prefix) {
        (false, _) => json!(n),
        (true, Some(p)) => json!(format!("{p}/cln:{method}#{n}")),
        (true, None) => json!(format!("cln:{method}#{n}")),
    }
}

fn terminated() -> RpcError {
    RpcError::new(
        codes::PLUGIN_TERMINATED,
        "Plugin terminated before replying to RPC call.",
    )
}

/// Waits for a reply to a request, failing if the plugin dies or time runs out.
pub async fn await_reply(
    rx: oneshot::Receiver<Result<Value, RpcError>>,
    timeout: Duration,
) -> Result<Value, RpcError> {
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(terminated()),
        Err(_) => Err(RpcError::new(codes::LIGHTNINGD, "timed out")),
    }
}

/// A spawned plugin process.
pub struct PluginProcess {
    pub conn: Arc<PluginConn>,
    kill_tx: mpsc::UnboundedSender<()>,
    exit_rx: watch::Receiver<Option<ExitStatus>>,
}

pub struct SpawnOptions<'a> {
    pub path: &'a Path,
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    /// Kill the plugin on a protocol violation, as lightningd does.
    pub strict_stdout: bool,
}

impl PluginProcess {
    /// Starts the plugin the way lightningd does (no arguments, stdin/stdout piped, stderr
    /// inherited by lightningd: captured here), with `LIGHTNINGD_PLUGIN=1`.
    pub fn spawn(opts: SpawnOptions<'_>, recorder: Arc<Recorder>) -> anyhow::Result<PluginProcess> {
        use anyhow::Context;
        let mut cmd = Command::new(opts.path);
        cmd.current_dir(opts.cwd)
            .env("LIGHTNINGD_PLUGIN", "1")
            .env("LIGHTNINGD_VERSION", crate::node::LIGHTNINGD_VERSION)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting plugin {}", opts.path.display()))?;
        let pid = child.id().context("plugin exited immediately")?;
        let stdin = child.stdin.take().context("plugin stdin")?;
        let stdout = child.stdout.take().context("plugin stdout")?;
        let stderr = child.stderr.take().context("plugin stderr")?;

        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(PluginConn {
            pid,
            manifest: OnceLock::new(),
            ready: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            tx: Mutex::new(Some(tx)),
            pending: Arc::new(Mutex::new(HashMap::new())),
        });
        let (kill_tx, mut kill_rx) = mpsc::unbounded_channel::<()>();
        let (exit_tx, exit_rx) = watch::channel(None);

        tokio::spawn(write_stdin(stdin, rx));
        tokio::spawn(read_stderr(stderr, recorder.clone()));
        tokio::spawn(read_stdout(
            stdout,
            conn.clone(),
            recorder.clone(),
            kill_tx.clone(),
            opts.strict_stdout,
        ));
        let rec = recorder;
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = kill_rx.recv() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            match status {
                Ok(s) => {
                    rec.note(format!("plugin (pid {pid}) exited: {s}"));
                    let _ = exit_tx.send(Some(s));
                }
                Err(e) => rec.note(format!("waiting for plugin (pid {pid}): {e}")),
            }
        });
        Ok(PluginProcess {
            conn,
            kill_tx,
            exit_rx,
        })
    }

    /// SIGKILL.
    pub fn kill(&self) {
        let _ = self.kill_tx.send(());
    }

    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit_rx.borrow()
    }

    /// Waits for the process to exit.
    pub async fn wait(&self) -> anyhow::Result<ExitStatus> {
        let mut rx = self.exit_rx.clone();
        loop {
            if let Some(s) = *rx.borrow_and_update() {
                return Ok(s);
            }
            if rx.changed().await.is_err() {
                anyhow::bail!("lost track of the plugin process");
            }
        }
    }

    /// Waits for exit up to `timeout`, then kills.
    pub async fn wait_or_kill(&self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.wait()).await {
            Ok(r) => r,
            Err(_) => {
                self.kill();
                self.wait().await
            }
        }
    }
}

async fn write_stdin(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    while let Some(bytes) = rx.recv().await {
        if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
    // Dropping stdin here gives the plugin EOF.
}

async fn read_stderr(stderr: tokio::process::ChildStderr, rec: Arc<Recorder>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        log::debug!("plugin stderr: {line}");
        rec.update(|r| r.stderr.push(line));
    }
}

async fn read_stdout(
    mut stdout: tokio::process::ChildStdout,
    conn: Arc<PluginConn>,
    rec: Arc<Recorder>,
    kill: mpsc::UnboundedSender<()>,
    strict: bool,
) {
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut killed = false;
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            if let Some(Frame::Garbage(g)) = dec.finish() {
                violation(&rec, &g);
            }
            break;
        }
        dec.push(&buf[..n]);
        while let Some(frame) = dec.next_frame() {
            if killed {
                continue;
            }
            let problem = match frame {
                Frame::Garbage(g) => {
                    violation(&rec, &g);
                    Some(format!("Failed to parse JSON response '{g}'"))
                }
                Frame::Json(v) => match Message::from_value(v.clone()) {
                    Err(e) => {
                        violation(&rec, &v.to_string());
                        Some(e)
                    }
                    Ok(m) => handle_message(m, &conn, &rec),
                },
            };
            if let Some(p) = problem
                && strict
            {
                rec.note(format!("Killing plugin: {p}"));
                let _ = kill.send(());
                killed = true;
            }
        }
    }
    conn.alive.store(false, Ordering::SeqCst);
    conn.close_stdin();
    let pending: Vec<_> = conn
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for (_, tx) in pending {
        let _ = tx.send(Err(terminated()));
    }
}

fn violation(rec: &Recorder, text: &str) {
    rec.note(format!(
        "plugin wrote non-JSON-RPC output on stdout: {text}"
    ));
    rec.update(|r| r.violations.push(text.to_string()));
}

/// Handles one message from the plugin; returns the error lightningd would kill it for.
fn handle_message(m: Message, conn: &PluginConn, rec: &Recorder) -> Option<String> {
    match m {
        Message::Response(r) => {
            let tx = conn
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&protocol::id_key(&r.id));
            match tx {
                Some(tx) => {
                    let _ = tx.send(r.outcome);
                }
                None => rec.note(format!("response to unknown request id {}", r.id)),
            }
            None
        }
        Message::Request(r) => {
            // lightningd takes anything with an id for a response and ignores unknown ids.
            rec.note(format!(
                "plugin sent a request ({}) on stdout; lightningd ignores it",
                r.method
            ));
            None
        }
        Message::Notification(n) => handle_notification(n, conn, rec),
    }
}

fn handle_notification(n: Request, conn: &PluginConn, rec: &Recorder) -> Option<String> {
    match n.method.as_str() {
        "log" => {
            let Some(message) = n.params.get("message").and_then(Value::as_str) else {
                return Some(
                    "Log notification from plugin doesn't have a string \"message\" field".into(),
                );
            };
            let level = match n.params.get("level") {
                None => "info".to_string(),
                Some(l) => {
                    let s = l.as_str().unwrap_or_default().to_ascii_lowercase();
                    if !matches!(
                        s.as_str(),
                        "trace"
                            | "debug"
                            | "info"
                            | "unusual"
                            | "warn"
                            | "warning"
                            | "broken"
                            | "error"
                    ) {
                        return Some(format!(
                            "Unknown log-level {l}, valid values are \"debug\", \"info\", \"warn\", or \"error\"."
                        ));
                    }
                    s
                }
            };
            log::debug!("plugin log [{level}] {message}");
            rec.update(|r| {
                r.logs.push(LogLine {
                    level,
                    message: message.to_string(),
                })
            });
            None
        }
        "message" | "progress" => None,
        topic => {
            if conn
                .manifest()
                .is_some_and(|m| m.declares_notification(topic))
            {
                rec.update(|r| r.notifications.push((topic.to_string(), n.params.clone())));
            } else {
                rec.note(format!(
                    "Plugin attempted to send a notification to topic \"{topic}\" it hasn't declared in its manifest, not forwarding to subscribers."
                ));
            }
            None
        }
    }
}
