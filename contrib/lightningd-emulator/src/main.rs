//! `lightningd-emulator`: run a plugin against the emulated node and serve its RPC socket.

use anyhow::{Context, bail};
use clap::Parser;
use lightningd_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Run a Core Lightning plugin against an emulated lightningd"
)]
struct Args {
    /// The plugin executable.
    #[arg(long, required_unless_present = "call")]
    plugin: Option<PathBuf>,
    /// A plugin option, `name=value` (repeatable; `name` alone sets a flag).
    #[arg(long = "plugin-option", value_name = "NAME=VALUE")]
    plugin_options: Vec<String>,
    #[arg(long, default_value = "regtest")]
    network: String,
    /// Directory for the RPC socket (`lightning-rpc`); a temporary one if absent.
    #[arg(long)]
    lightning_dir: Option<PathBuf>,
    /// Client mode: call METHOD with JSON params on the socket in --lightning-dir and print
    /// the result, like lightning-cli.
    #[arg(long, num_args = 1..=2, value_names = ["METHOD", "PARAMS"], requires = "lightning_dir")]
    call: Option<Vec<String>>,
}

/// A value as typed on the command line: JSON if it parses (numbers, booleans), else a string.
fn option_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(text.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();

    if let Some(call) = &args.call {
        let dir = args
            .lightning_dir
            .as_ref()
            .context("--call needs --lightning-dir")?;
        let method = &call[0];
        let params: Value = match call.get(1) {
            Some(p) => serde_json::from_str(p).context("PARAMS must be JSON")?,
            None => Value::Object(Default::default()),
        };
        let path = dir.join("lightning-rpc");
        let id = Value::String(format!("cli:{method}#{}", std::process::id()));
        match lightningd_emulator::rpc_server::call(&path, id, method, params).await {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            Err(e) => {
                eprintln!("{}", serde_json::to_string_pretty(&e)?);
                std::process::exit(1);
            }
        }
        return Ok(());
    }

    let Some(plugin) = args.plugin else {
        bail!("--plugin is required");
    };
    let mut cfg = EmulatorConfig::new(plugin);
    cfg.network = args.network;
    cfg.lightning_dir = args.lightning_dir;
    for o in &args.plugin_options {
        match o.split_once('=') {
            Some((k, v)) => cfg.options.push((k.to_string(), option_value(v))),
            None => cfg.options.push((o.clone(), Value::Bool(true))),
        }
    }
    let mut emu = Emulator::start(cfg).await?;
    println!("{}", emu.rpc_path().display());
    if let Some(reason) = emu.disabled() {
        eprintln!("plugin disabled itself: {reason}");
    } else {
        eprintln!(
            "plugin running; node id {}; Ctrl-C to stop",
            emu.node().id()
        );
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    if emu.disabled().is_none() {
        let status = emu.shutdown().await?;
        eprintln!("plugin exited: {status}");
    }
    Ok(())
}
