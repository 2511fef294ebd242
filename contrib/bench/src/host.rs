//! A plugin started and greeted the way lightningd does it, with the emulator's own messages
//! (`getmanifest` params, `init` options and configuration), timed from the moment the
//! process is spawned. The emulator runs the handshake internally without exposing its
//! timing, so the startup figures use this thin host over its public pieces; the node and
//! its RPC socket are the emulator's.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lightningd_emulator::commands::Settings;
use lightningd_emulator::emulator::{getmanifest_params, init_configuration};
use lightningd_emulator::manifest::{self, ManifestOutcome};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a reply may take before the measurement is declared failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Hosted {
    pub pid: u32,
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    buf: Vec<u8>,
    pub spawned: Instant,
    next_id: u64,
}

/// The handshake's times, from spawn.
#[derive(Clone, Copy, Debug)]
pub struct Handshake {
    pub manifest: Duration,
    pub init: Duration,
}

impl Hosted {
    /// Spawns `exe` as lightningd does: no arguments, cwd the lightning dir, stdin/stdout piped,
    /// `LIGHTNINGD_PLUGIN=1` and `LIGHTNINGD_VERSION` set.
    pub fn spawn(exe: &Path, cwd: &Path, env: &[(&str, &str)]) -> anyhow::Result<Hosted> {
        let mut cmd = Command::new(exe);
        cmd.current_dir(cwd)
            .env("LIGHTNINGD_PLUGIN", "1")
            .env(
                "LIGHTNINGD_VERSION",
                lightningd_emulator::node::LIGHTNINGD_VERSION,
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id().context("the process exited at once")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        Ok(Hosted {
            pid,
            child,
            stdin,
            stdout,
            buf: Vec::new(),
            spawned,
            next_id: 1,
        })
    }

    /// Sends a request with lightningd's id style and waits for its reply (log notifications
    /// and other messages in between are skipped). Returns the result and when it arrived.
    pub async fn request(
        &mut self,
        method: &str,
        params: Value,
    ) -> anyhow::Result<(Value, Instant)> {
        let id = format!("cln:{method}#{}", self.next_id);
        self.next_id += 1;
        let mut out = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )?;
        out.extend_from_slice(b"\n\n");
        self.stdin.write_all(&out).await?;
        self.stdin.flush().await?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            while let Some(msg) = self.next_message()? {
                if msg.get("id").and_then(Value::as_str) == Some(id.as_str()) {
                    let at = Instant::now();
                    if let Some(e) = msg.get("error") {
                        bail!("{method} answered with an error: {e}");
                    }
                    return Ok((msg.get("result").cloned().unwrap_or(Value::Null), at));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stdout.read(&mut chunk))
                .await
                .with_context(|| format!("no reply to {method} within {REPLY_TIMEOUT:?}"))??;
            if n == 0 {
                bail!("the process closed stdout before replying to {method}");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn next_message(&mut self) -> anyhow::Result<Option<Value>> {
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                let used = stream.byte_offset();
                self.buf.drain(..used);
                Ok(Some(v))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            None => Ok(None),
            Some(Err(e)) => bail!("not JSON-RPC on stdout: {e}"),
        }
    }

    /// getmanifest, then init at once, as lightningd does for a plugin started on its own.
    /// `options` are the operator's option values; `plain` skips lightningd's manifest checks
    /// (the floor declares nothing).
    pub async fn handshake(
        &mut self,
        settings: &Settings,
        options: &[(String, Value)],
        plain: bool,
    ) -> anyhow::Result<Handshake> {
        let (manifest, at) = self.request("getmanifest", getmanifest_params()).await?;
        let manifest_time = at - self.spawned;
        let init_options = if plain {
            Map::new()
        } else {
            match manifest::validate(&manifest)? {
                ManifestOutcome::Accepted(m) => {
                    manifest::init_options(&m, options).map_err(anyhow::Error::msg)?
                }
                ManifestOutcome::Disabled(why) => bail!("the plugin disabled itself: {why}"),
            }
        };
        let init = json!({
            "options": init_options,
            "configuration": init_configuration(settings, true),
        });
        let (result, at) = self.request("init", init).await?;
        if let Some(why) = result.get("disable") {
            bail!("the plugin disabled itself at init: {why}");
        }
        Ok(Handshake {
            manifest: manifest_time,
            init: at - self.spawned,
        })
    }

    /// Kills the process and reaps it.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
