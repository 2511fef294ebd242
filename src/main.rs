//! cln-magma: wiring only. Options, commands and subscriptions are registered here; what they
//! do lives in the library.

use std::collections::BTreeMap;
use std::future::Future;
use std::task::Poll;

use anyhow::Context;
use cln_plugin::options::{
    DefaultBooleanConfigOption, DefaultIntegerConfigOption, DefaultStringConfigOption,
    IntegerConfigOption, StringConfigOption, Value as OptValue,
};
use cln_plugin::{Builder, Plugin, RpcMethodBuilder, messages};
use serde_json::{Value, json};

use cln_magma::app::{App, NodeSettings};
use cln_magma::config::{OPTIONS, OptionDefault, OptionKind};
use cln_magma::rpcerror::CommandError;
use cln_magma::uri;
use cln_magma::{autobuy, commands, purchase, recovery, tracker};

/// Raised by the `shutdown` notification. `Notify` keeps the signal when nobody waits yet;
/// `Plugin::shutdown()` would drop it if it came before `join()` was first polled, and the plugin
/// would then run until lightningd kills it.
static SHUTDOWN: tokio::sync::Notify = tokio::sync::Notify::const_new();

type Stdin = tokio::io::Stdin;
type Stdout = tokio::io::Stdout;

fn main() -> std::process::ExitCode {
    if let Some(code) = outside_lightningd() {
        return code;
    }
    // cln-plugin's log filter. cln-rpc and cln-plugin trace every request's params (datastore
    // writes carry session keys): never below info for them. The plugin's own debug lines are
    // always sent; lightningd shows them with `log-level=debug:cln-magma` (README).
    // SAFETY: no other thread exists yet.
    unsafe {
        std::env::set_var(
            "CLN_PLUGIN_LOG",
            "cln_magma=debug,cln_plugin=info,cln_rpc=info,warn",
        )
    };
    // The log crate's queue is written by a task that never runs again once a panic aborts the
    // process (release builds are `panic = "abort"`): stderr is written at once, and lightningd
    // puts the plugin's stderr in its log.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("cln-magma panicked: {info}");
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Debug builds keep large future state on the stack while polling the purchase flow.
        .thread_stack_size(8 * 1024 * 1024)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cln-magma: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run()) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("cln-magma stopped: {e:#}");
            eprintln!("cln-magma stopped: {e:#}");
            1
        }
    };
    // The runtime would wait for its blocking stdin reader, which only returns when lightningd
    // closes the pipe; after `shutdown` or `disable` there is nothing left to wait for.
    std::process::exit(code);
}

/// Run by hand or by an installer's smoke test (`reckless install` runs the binary alone, often
/// with stdin closed), not by lightningd: say what this is and how to load it, and succeed.
/// lightningd starts plugins with `LIGHTNINGD_PLUGIN=1` in their environment and no arguments.
fn outside_lightningd() -> Option<std::process::ExitCode> {
    use std::io::Write;
    let arg = std::env::args().nth(1);
    let under_lightningd = std::env::var_os("LIGHTNINGD_PLUGIN").is_some();
    let text = match arg.as_deref() {
        Some("--version" | "-V") => format!("cln-magma {}\n", env!("CARGO_PKG_VERSION")),
        Some("--help" | "-h") => usage(),
        None if under_lightningd => return None,
        None => usage(),
        Some(other) => {
            eprintln!("cln-magma: unknown argument {other:?}\n\n{}", usage());
            return Some(std::process::ExitCode::from(2));
        }
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Some(std::process::ExitCode::SUCCESS)
}

fn usage() -> String {
    format!(
        "cln-magma {} — {}\n\n\
         This is a Core Lightning plugin: lightningd runs it, it is not run by hand.\n\
         Load it with `plugin=/path/to/cln-magma` in lightningd's config file, or at run time:\n\
         \x20 lightning-cli plugin start /path/to/cln-magma\n\
         Then `lightning-cli help | grep magma` lists its commands; its options start with `magma-`.\n\n\
         Usage: cln-magma [--help | --version]\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_DESCRIPTION"),
    )
}

async fn run() -> anyhow::Result<()> {
    let mut builder = Builder::new(tokio::io::stdin(), tokio::io::stdout());
    builder = register_options(builder);
    let builder = builder
        // `lightning-cli plugin start|stop` at run time (README "Install").
        .dynamic()
        .setconfig_callback(setconfig)
        .rpcmethod_from_builder(
            RpcMethodBuilder::new("magma-estimate", |p: Plugin<App>, v: Value| async move {
                commands::estimate(p.state(), &v)
                    .await
                    .map_err(CommandError::into_anyhow)
            })
            .description("Price a Magma inbound purchase: expected inbound, cost and ppm, and whether the caps allow it")
            .usage("[usd_cents] [amount_sat]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new("magma-status", |p: Plugin<App>, v: Value| async move {
                commands::status(p.state(), &v)
                    .await
                    .map_err(CommandError::into_anyhow)
            })
            .description("Show the node's inbound liquidity, thresholds, mode and connection URI as cln-magma sees them"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new("magma-buy", |p: Plugin<App>, v: Value| async move {
                purchase::buy(p.state(), &v)
                    .await
                    .map_err(CommandError::into_anyhow)
            })
            .description("Buy inbound liquidity on Magma now: places the order, checks and pays its invoice (or hands it out), and returns the order")
            .usage("[usd_cents] [amount_sat] [private] [rails_cluster_only] [force] [external]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new("magma-orders", |p: Plugin<App>, v: Value| async move {
                commands::orders(p.state(), &v)
                    .await
                    .map_err(CommandError::into_anyhow)
            })
            .description("List Magma orders with their status history, payment, channel and cost (secrets redacted)")
            .usage("[id]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new("magma-suggest", |p: Plugin<App>, v: Value| async move {
                autobuy::suggest(p.state(), &v)
                    .await
                    .map_err(CommandError::into_anyhow)
            })
            .description("What automatic buying would do now, and every reason it would not buy")
            .usage(""),
        )
        .notification(messages::NotificationTopic::new("magma_order"))
        .notification(messages::NotificationTopic::new("magma_decision"))
        .subscribe("channel_opened", wake_policy)
        .subscribe("channel_state_changed", wake_policy)
        .subscribe("block_added", wake_policy)
        .subscribe("shutdown", |_: Plugin<App>, _: Value| async move {
            log::info!("lightningd is shutting down; stopping");
            SHUTDOWN.notify_one();
            Ok(())
        });

    let Some(configured) = builder.configure().await? else {
        return Ok(()); // lightningd --help
    };
    let values = option_values(&configured);
    let cfg = configured.configuration();
    let forced_proxy = match (&cfg.proxy, cfg.always_use_proxy) {
        (Some(p), Some(true)) if p.address.contains(':') => {
            Some(format!("[{}]:{}", p.address, p.port))
        }
        (Some(p), Some(true)) => Some(format!("{}:{}", p.address, p.port)),
        _ => None,
    };
    #[cfg(feature = "test-hooks")]
    if cfg.network != "regtest" {
        let reason = format!(
            "this cln-magma was built with its test switches (--features test-hooks) and runs only on regtest, not on {}; load a release build (cargo build --release)",
            cfg.network
        );
        log::warn!("cln-magma disabled: {reason}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        configured.disable(&reason).await?;
        return Ok(());
    }
    let settings = NodeSettings {
        lightning_dir: cfg.lightning_dir.clone().into(),
        rpc_file: cfg.rpc_file.clone(),
        network: cfg.network.clone(),
        forced_proxy,
    };
    let (app, warnings, mut notices) =
        match App::setup(&values, settings, std::env::var("AMBOSS_API_KEY").ok()) {
            Ok(ok) => ok,
            Err(reason) => {
                log::warn!("cln-magma disabled: {reason}");
                // cln-plugin writes log lines from a background task, and lightningd kills the
                // plugin as soon as it reads the `disable` answer: give the warning time to reach
                // stdout first, or the operator never sees why.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                configured.disable(&reason).await?;
                return Ok(());
            }
        };
    for w in &warnings {
        log::warn!("{w}");
    }
    let plugin = configured.start(app.clone()).await?;
    // `join()` subscribes to the end of the plugin loop (stdin closed) only when first polled:
    // poll it once now, before anything else can happen, so the end cannot be missed.
    let mut ended = std::pin::pin!(plugin.join());
    if let Poll::Ready(r) = std::future::poll_fn(|cx| Poll::Ready(ended.as_mut().poll(cx))).await {
        return r.context("waiting for the plugin to end");
    }
    log::info!(
        "cln-magma {} started: mode {}, Magma at {}, credential: {}",
        env!("CARGO_PKG_VERSION"),
        app.config().mode,
        app.client.api_url(),
        app.key_source.describe()
    );
    cln_magma::crash::panic_point("started");
    tokio::spawn(report_connection_uri(app.clone()));
    let forwarder = plugin.clone();
    tokio::spawn(async move {
        while let Some(notice) = notices.recv().await {
            let topic = notice["topic"]
                .as_str()
                .unwrap_or("magma_order")
                .to_string();
            let body = notice.get("body").cloned().unwrap_or(Value::Null);
            if let Err(e) = forwarder
                .send_custom_notification(topic.clone(), body)
                .await
            {
                log::warn!("cannot send a {topic} notification: {e}");
            }
        }
    });
    let recovering = app.clone();
    tokio::spawn(async move {
        // Orders left half-way by a crash resume before tracking starts.
        recovery::recover(&recovering).await;
        tracker::run(recovering).await;
    });
    tokio::spawn(autobuy::run(app));
    tokio::select! {
        r = ended.as_mut() => r.context("waiting for the plugin to end"),
        () = SHUTDOWN.notified() => Ok(()),
    }
}

fn register_options(mut b: Builder<App, Stdin, Stdout>) -> Builder<App, Stdin, Stdout> {
    for spec in OPTIONS {
        let (n, d) = (spec.name, spec.description);
        b = match (spec.kind, spec.default, spec.dynamic) {
            (OptionKind::Int, Some(OptionDefault::Int(i)), dy) => {
                let o = DefaultIntegerConfigOption::new_i64_with_default(n, i, d);
                b.option(if dy { o.dynamic() } else { o })
            }
            (OptionKind::Int, _, dy) => {
                let o = IntegerConfigOption::new_i64_no_default(n, d);
                b.option(if dy { o.dynamic() } else { o })
            }
            (OptionKind::Str, Some(OptionDefault::Str(s)), dy) => {
                let o = DefaultStringConfigOption::new_str_with_default(n, s, d);
                b.option(if dy { o.dynamic() } else { o })
            }
            (OptionKind::Str, _, dy) => {
                let o = StringConfigOption::new_str_no_default(n, d);
                b.option(if dy { o.dynamic() } else { o })
            }
            (OptionKind::Bool, default, dy) => {
                let v = matches!(default, Some(OptionDefault::Bool(true)));
                let o = DefaultBooleanConfigOption::new_bool_with_default(n, v, d);
                b.option(if dy { o.dynamic() } else { o })
            }
        };
    }
    b
}

fn option_values(
    configured: &cln_plugin::ConfiguredPlugin<App, Stdin, Stdout>,
) -> BTreeMap<String, Value> {
    OPTIONS
        .iter()
        .filter_map(|spec| {
            let value = configured.option_str(spec.name).ok().flatten()?;
            Some((spec.name.to_string(), to_json(&value)?))
        })
        .collect()
}

fn to_json(v: &OptValue) -> Option<Value> {
    Some(match v {
        OptValue::String(s) => json!(s),
        OptValue::Integer(i) => json!(i),
        OptValue::Boolean(b) => json!(b),
        _ => return None,
    })
}

/// `setconfig` for our dynamic options: validated as a whole before it takes effect.
async fn setconfig(plugin: Plugin<App>, params: Value) -> anyhow::Result<Value> {
    let name = params.get("config").and_then(Value::as_str).unwrap_or("");
    let value = params.get("val").cloned().unwrap_or(Value::Null);
    let app = plugin.state();
    match app.set_option(name, &value) {
        Ok(config) => {
            if let Some(v) = config.value(name).and_then(from_json) {
                // Keep cln-plugin's copy in step; it only serves `plugin.option()`.
                let _ = plugin.set_option_str(name, v);
            }
            log::info!(
                "{name} set to {}",
                config.value(name).cloned().unwrap_or(Value::Null)
            );
            if name == cln_magma::config::MODE {
                // Setting the mode is how the operator resumes paused automation.
                autobuy::mark_resumed(app).await;
            }
            // A raised budget or threshold takes effect now, not at the next timer.
            app.policy_wake.notify_one();
            Ok(json!({}))
        }
        Err(e) => Err(CommandError::invalid(e.to_string()).into_anyhow()),
    }
}

fn from_json(v: &Value) -> Option<OptValue> {
    match v {
        Value::String(s) => Some(OptValue::String(s.clone())),
        Value::Number(n) => n.as_i64().map(OptValue::Integer),
        Value::Bool(b) => Some(OptValue::Boolean(*b)),
        _ => None,
    }
}

/// Tells the operator at startup whether sellers will be able to reach the node.
async fn report_connection_uri(app: App) {
    let config = app.config();
    match app.node.getinfo().await {
        Ok(info) => match uri::resolve(config.connection_uri.as_ref(), &info) {
            Ok((uri, source)) => {
                log::info!("sellers will open channels to {uri} ({})", source.as_str())
            }
            Err(e) => log::warn!("{e}"),
        },
        Err(e) => log::warn!("cannot read getinfo to find the connection URI: {e}"),
    }
}

/// A channel event may have changed inbound: let the automatic check look (debounced).
async fn wake_policy(plugin: Plugin<App>, _: Value) -> anyhow::Result<()> {
    plugin.state().policy_wake.notify_one();
    Ok(())
}
