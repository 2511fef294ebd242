//! The emulator: a node model, its RPC socket, and one plugin driven through the handshake
//! (`getmanifest`, `init`), notifications, `setconfig`, kill/restart and shutdown.

use crate::commands::{Context, PluginSlot, Settings};
use crate::manifest::{self, ManifestError, ManifestOutcome};
use crate::node::{NodeConfig, NodeHandle};
use crate::plugin_host::{LogLine, PluginProcess, Recorder, SpawnOptions, await_reply};
use crate::protocol::RpcError;
use crate::rpc_server;
use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// lightningd gives a plugin this long to answer `getmanifest` and `init`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// lightningd waits this long for plugins subscribed to `shutdown` before killing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Feature bits lightningd announces in `init.configuration.feature_set` (from the fixture).
fn feature_set() -> Value {
    json!({
        "init": "800898880a8a59a1",
        "node": "808898880a8a59a1",
        "channel": "",
        "invoice": "02000002024100",
        "bolt12_offer": "",
        "bolt12_invreq": "",
        "bolt12_invoice": "020000",
        "channel_type": "08800000800000"
    })
}

#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The plugin executable.
    pub plugin: PathBuf,
    /// Plugin options as the operator set them (config file / `--name=value`); a JSON array
    /// gives several values of a multi option.
    pub options: Vec<(String, Value)>,
    /// Extra environment for the plugin process.
    pub env: Vec<(String, String)>,
    /// `regtest`, `testnet`, `signet` or `bitcoin`.
    pub network: String,
    pub node: NodeConfig,
    /// The lightning (network) directory holding the RPC socket; a temporary one if `None`.
    pub lightning_dir: Option<PathBuf>,
    pub always_use_proxy: bool,
    pub proxy: Option<SocketAddr>,
    /// Kill the plugin on anything on stdout that is not JSON-RPC, as lightningd does.
    pub strict_stdout: bool,
    /// How long `shutdown`/`close_stdin` wait for the plugin to exit before SIGKILL
    /// (lightningd: 30 s).
    pub shutdown_grace: Duration,
}

impl EmulatorConfig {
    pub fn new(plugin: impl Into<PathBuf>) -> Self {
        EmulatorConfig {
            plugin: plugin.into(),
            options: vec![],
            env: vec![],
            network: "regtest".into(),
            node: NodeConfig::default(),
            lightning_dir: None,
            always_use_proxy: false,
            proxy: None,
            strict_stdout: true,
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }

    pub fn option(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.options.push((name.to_string(), value.into()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

/// The params of `getmanifest` (fixtures/cln/plugin/getmanifest.request.json).
pub fn getmanifest_params() -> Value {
    json!({"allow-deprecated-apis": false})
}

/// `init.params.configuration` (fixtures/cln/plugin/init.request.json); `proxy`,
/// `torv3-enabled` and `always_use_proxy` only when a proxy is configured, as lightningd does.
pub fn init_configuration(s: &Settings, startup: bool) -> Value {
    let mut c = Map::new();
    c.insert("lightning-dir".into(), json!(s.lightning_dir));
    c.insert("rpc-file".into(), json!(s.rpc_file));
    c.insert("startup".into(), json!(startup));
    c.insert("network".into(), json!(s.network));
    if let Some(p) = s.proxy {
        let kind = if p.is_ipv4() { "ipv4" } else { "ipv6" };
        c.insert(
            "proxy".into(),
            json!({"type": kind, "address": p.ip().to_string(), "port": p.port()}),
        );
        c.insert("torv3-enabled".into(), json!(true));
        c.insert("always_use_proxy".into(), json!(s.always_use_proxy));
    }
    c.insert("feature_set".into(), feature_set());
    Value::Object(c)
}

pub struct Emulator {
    cfg: EmulatorConfig,
    ctx: Arc<Context>,
    recorder: Arc<Recorder>,
    process: Option<PluginProcess>,
    disabled: Option<String>,
    manifest: Value,
    rpc_path: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    tasks: Vec<JoinHandle<()>>,
    call_counter: AtomicU64,
}

impl Emulator {
    /// Starts the node and its RPC socket, spawns the plugin and runs the handshake. Returns
    /// an error if lightningd would refuse the plugin (the message is lightningd's, see
    /// [`ManifestError`]); returns normally if the plugin disabled itself (see
    /// [`Emulator::disabled`]).
    pub async fn start(cfg: EmulatorConfig) -> anyhow::Result<Emulator> {
        let mut emu = Self::start_node(cfg).await?;
        emu.launch(true).await?;
        Ok(emu)
    }

    /// Starts the node and its RPC socket without the plugin (start it later with
    /// [`Emulator::restart_plugin`]).
    pub async fn start_node(cfg: EmulatorConfig) -> anyhow::Result<Emulator> {
        if cfg.always_use_proxy && cfg.proxy.is_none() {
            bail!("--always-use-proxy needs --proxy");
        }
        let (tempdir, dir) = match &cfg.lightning_dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("creating lightning dir {}", d.display()))?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("lightningd-emulator")
                    .tempdir()
                    .context("creating a temporary lightning dir")?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let plugin = std::fs::canonicalize(&cfg.plugin).unwrap_or_else(|_| cfg.plugin.clone());
        let rpc_file = "lightning-rpc".to_string();
        let rpc_path = dir.join(&rpc_file);
        let (node, mut events) = NodeHandle::new(&cfg.node, &cfg.network, &dir.to_string_lossy());
        let ctx = Arc::new(Context {
            node,
            slot: PluginSlot::default(),
            settings: Settings {
                network: cfg.network.clone(),
                lightning_dir: dir.clone(),
                rpc_file,
                plugin_path: plugin.clone(),
                proxy: cfg.proxy,
                always_use_proxy: cfg.always_use_proxy,
            },
        });
        ctx.slot.set_options(cfg.options.clone());
        let server = rpc_server::serve(&rpc_path, ctx.clone())?;
        let fwd_ctx = ctx.clone();
        let forwarder = tokio::spawn(async move {
            while let Some((topic, params)) = events.recv().await {
                if let Some(conn) = fwd_ctx.slot.current() {
                    conn.notify(&topic, params);
                }
            }
        });
        let emu = Emulator {
            cfg: EmulatorConfig { plugin, ..cfg },
            ctx,
            recorder: Recorder::new(),
            process: None,
            disabled: None,
            manifest: Value::Null,
            rpc_path,
            _tempdir: tempdir,
            tasks: vec![server, forwarder],
            call_counter: AtomicU64::new(1),
        };
        Ok(emu)
    }

    /// Spawns the plugin and performs getmanifest + init.
    async fn launch(&mut self, startup: bool) -> anyhow::Result<()> {
        self.disabled = None;
        if !self.cfg.plugin.is_file() {
            bail!("plugin {} not found", self.cfg.plugin.display());
        }
        let process = PluginProcess::spawn(
            SpawnOptions {
                path: &self.cfg.plugin,
                cwd: &self.ctx.settings.lightning_dir,
                env: &self.cfg.env,
                strict_stdout: self.cfg.strict_stdout,
            },
            self.recorder.clone(),
        )?;
        let conn = process.conn.clone();
        self.ctx.slot.add_pid(conn.pid);
        self.process = Some(process);

        let rx = conn.request("getmanifest", getmanifest_params(), None);
        let result = match self.handshake_reply(rx, "getmanifest").await {
            Ok(r) => r,
            Err(e) => {
                self.kill_quietly().await;
                return Err(e);
            }
        };
        self.manifest = result.clone();
        let manifest = match manifest::validate(&result) {
            Err(e) => {
                self.recorder.note(e.to_string());
                self.kill_quietly().await;
                return Err(anyhow::Error::new(e));
            }
            Ok(ManifestOutcome::Disabled(reason)) => {
                self.recorder
                    .note(format!("Killing plugin: disabled itself: {reason}"));
                self.disabled = Some(reason);
                self.kill_quietly().await;
                return Ok(());
            }
            Ok(ManifestOutcome::Accepted(m)) => m,
        };
        if !startup && !manifest.dynamic {
            self.recorder.note("Killing plugin: Not a dynamic plugin");
            self.kill_quietly().await;
            return Err(anyhow::Error::new(ManifestError(
                "Not a dynamic plugin".into(),
            )));
        }
        let options = match manifest::init_options(&manifest, &self.ctx.slot.options()) {
            Ok(o) => o,
            Err(e) => {
                self.kill_quietly().await;
                bail!("lightningd refuses the plugin options: {e}");
            }
        };
        conn.set_manifest(manifest);
        self.ctx.slot.set_current(Some(conn.clone()));

        let init = json!({
            "options": options,
            "configuration": init_configuration(&self.ctx.settings, startup),
        });
        let rx = conn.request("init", init, None);
        let result = match self.handshake_reply(rx, "init").await {
            Ok(r) => r,
            Err(e) => {
                self.kill_quietly().await;
                return Err(e);
            }
        };
        if let Some(reason) = result.get("disable") {
            let reason = match reason {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            self.recorder
                .note(format!("Killing plugin: disabled itself at init: {reason}"));
            self.disabled = Some(reason);
            self.kill_quietly().await;
            return Ok(());
        }
        conn.set_ready();
        Ok(())
    }

    async fn handshake_reply(
        &self,
        rx: tokio::sync::oneshot::Receiver<Result<Value, RpcError>>,
        what: &str,
    ) -> anyhow::Result<Value> {
        let state = if what == "getmanifest" {
            "before replying to getmanifest"
        } else {
            "before replying to init"
        };
        match await_reply(rx, HANDSHAKE_TIMEOUT).await {
            Ok(v) => Ok(v),
            Err(e) if e.code == crate::protocol::codes::PLUGIN_TERMINATED => {
                let stderr = self.recorder.records().stderr.join("\n");
                bail!("Killing plugin: exited {state} (stderr: {stderr})")
            }
            Err(e) if e.message == "timed out" => bail!("Killing plugin: timed out {state}"),
            Err(e) => bail!("Killing plugin: plugin answered {what} with an error: {e}"),
        }
    }

    async fn kill_quietly(&mut self) {
        self.ctx.slot.set_current(None);
        if let Some(p) = &self.process {
            p.kill();
            let _ = p.wait().await;
        }
    }

    /// Why the plugin disabled itself (getmanifest or init answered `{"disable": ...}`).
    pub fn disabled(&self) -> Option<String> {
        self.disabled.clone()
    }

    /// The plugin's getmanifest result, as sent.
    pub fn manifest(&self) -> Value {
        self.manifest.clone()
    }

    /// Calls a method through the RPC socket, as `lightning-cli` would.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let n = self.call_counter.fetch_add(1, Ordering::SeqCst);
        let id = json!(format!("cli:{method}#{n}"));
        rpc_server::call(&self.rpc_path, id, method, params).await
    }

    /// `setconfig NAME VALUE` through the RPC socket (lightningd forwards it to the plugin as
    /// `setconfig {config, val}` with `val` as a string).
    pub async fn setconfig(&self, name: &str, value: Value) -> Result<Value, RpcError> {
        let mut p = Map::new();
        p.insert("config".into(), json!(name));
        if !value.is_null() {
            p.insert("val".into(), value);
        }
        self.call("setconfig", Value::Object(p)).await
    }

    /// Sends a notification to the plugin as lightningd would (only if it subscribed to the
    /// topic). `params` is sent as given, e.g. `{"block_added": {...}}`.
    pub async fn notify(&self, topic: &str, params: Value) -> anyhow::Result<()> {
        let Some(conn) = self.ctx.slot.current() else {
            bail!("no plugin is running");
        };
        conn.notify(topic, params);
        Ok(())
    }

    /// The node model, for scripting.
    pub fn node(&self) -> &NodeHandle {
        &self.ctx.node
    }

    /// The plugin's `log` notifications (all instances, in order).
    pub fn logs(&self) -> Vec<LogLine> {
        self.recorder.records().logs.clone()
    }

    /// Waits for a log line containing `substring` (already logged lines count).
    pub async fn wait_for_log(
        &self,
        substring: &str,
        timeout: Duration,
    ) -> anyhow::Result<LogLine> {
        let mut rx = self.recorder.subscribe();
        let wait = async {
            loop {
                if let Some(l) = self
                    .recorder
                    .records()
                    .logs
                    .iter()
                    .find(|l| l.message.contains(substring))
                {
                    return Some(l.clone());
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(l)) => Ok(l),
            _ => bail!(
                "no plugin log line containing {substring:?} within {timeout:?}; logs: {:?}",
                self.logs()
            ),
        }
    }

    /// Custom notifications the plugin sent (declared topics only), with their params.
    pub fn notifications(&self) -> Vec<(String, Value)> {
        self.recorder.records().notifications.clone()
    }

    /// Anything the plugin wrote on stdout that is not a JSON-RPC message.
    pub fn stdout_violations(&self) -> Vec<String> {
        self.recorder.records().violations.clone()
    }

    /// Lines the plugin wrote on stderr.
    pub fn stderr(&self) -> Vec<String> {
        self.recorder.records().stderr.clone()
    }

    /// What lightningd would have logged about the plugin (kills, undeclared notifications...).
    pub fn emulator_log(&self) -> Vec<String> {
        self.recorder.records().emulator_log.clone()
    }

    /// RPC calls the plugin made (method, params), in order.
    pub fn plugin_rpc_calls(&self) -> Vec<(String, Value)> {
        self.ctx
            .node
            .calls()
            .into_iter()
            .filter(|c| c.from_plugin)
            .map(|c| (c.method, c.params))
            .collect()
    }

    /// Whether the plugin process is running and past `init`.
    pub fn plugin_running(&self) -> bool {
        self.ctx.slot.current().is_some_and(|c| c.is_ready())
    }

    /// SIGKILLs the plugin (node state stays).
    pub async fn kill_plugin(&mut self) -> anyhow::Result<()> {
        let Some(p) = &self.process else {
            bail!("no plugin process");
        };
        self.ctx.slot.set_current(None);
        p.kill();
        p.wait().await?;
        Ok(())
    }

    /// Sets (or, with `None`, removes) an environment variable for the plugin's next launch, e.g.
    /// to restart it without a test switch it crashed with.
    pub fn set_plugin_env(&mut self, key: &str, value: Option<&str>) {
        self.cfg.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.cfg.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Starts the plugin again (new getmanifest/init with `startup: true`, as after a
    /// lightningd restart) against the same node state. Kills a running instance first.
    pub async fn restart_plugin(&mut self) -> anyhow::Result<()> {
        self.restart_plugin_with(true).await
    }

    /// Like [`Emulator::restart_plugin`]; `startup: false` models `lightning-cli plugin start`
    /// (only dynamic plugins are accepted then).
    pub async fn restart_plugin_with(&mut self, startup: bool) -> anyhow::Result<()> {
        if self
            .process
            .as_ref()
            .is_some_and(|p| p.exit_status().is_none())
        {
            self.kill_plugin().await?;
        }
        self.launch(startup).await
    }

    /// lightningd's shutdown: a plugin subscribed to `shutdown` gets the notification and 30 s
    /// to exit; others get their stdin closed. Then the process is killed if still running.
    pub async fn shutdown(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(p) = &self.process else {
            bail!("no plugin process");
        };
        if let Some(s) = p.exit_status() {
            return Ok(s);
        }
        let conn = p.conn.clone();
        if !conn.notify("shutdown", json!({"shutdown": {}})) {
            conn.close_stdin();
        }
        let status = p.wait_or_kill(self.cfg.shutdown_grace).await;
        self.ctx.slot.set_current(None);
        status
    }

    /// Closes the plugin's stdin (lightningd went away) and waits for it to exit.
    pub async fn close_stdin(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(p) = &self.process else {
            bail!("no plugin process");
        };
        p.conn.close_stdin();
        let status = p.wait_or_kill(self.cfg.shutdown_grace).await;
        self.ctx.slot.set_current(None);
        status
    }

    /// `<lightning-dir>/lightning-rpc`.
    pub fn rpc_path(&self) -> PathBuf {
        self.rpc_path.clone()
    }

    pub fn lightning_dir(&self) -> &Path {
        &self.ctx.settings.lightning_dir
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(p) = &self.process {
            p.kill();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}
