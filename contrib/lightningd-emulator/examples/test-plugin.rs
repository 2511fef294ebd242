//! A tiny cln-plugin 0.7 plugin used by the emulator's end-to-end tests.
//!
//! Options: `test-greeting` (string, default "hello"), `test-level` (int, default 1, dynamic),
//! `test-flag` (flag). Methods: `test-echo [a] [b]`, `test-notify`, `test-getinfo`,
//! `test-fail`. Custom notification `test_event`. Subscribes to `block_added`, `connect` and
//! `shutdown` (exits on it). Environment: `TEST_PLUGIN_DISABLE=reason` makes `init` answer
//! `disable`; `TEST_PLUGIN_GARBAGE=1` prints a stray line on stdout after init.

use cln_plugin::options::{
    ConfigOption, DefaultIntegerConfigOption, DefaultStringConfigOption, FlagConfigOption,
    config_type,
};
use cln_plugin::{Builder, Plugin, RpcMethodBuilder, messages::NotificationTopic};
use serde_json::{Value, json};

const GREETING: DefaultStringConfigOption =
    DefaultStringConfigOption::new_str_with_default("test-greeting", "hello", "a greeting");
const LEVEL: DefaultIntegerConfigOption = ConfigOption::<config_type::DefaultInteger> {
    name: "test-level",
    default: 1,
    description: "a dynamic level",
    deprecated: false,
    dynamic: true,
    multi: false,
};
const FLAG: FlagConfigOption = FlagConfigOption::new_flag("test-flag", "a flag");

type State = ();

async fn echo(p: Plugin<State>, params: Value) -> Result<Value, anyhow::Error> {
    log::info!("test-echo called with {params}");
    Ok(json!({
        "received_params": params,
        "greeting": p.option(&GREETING)?,
        "level": p.option(&LEVEL)?,
        "flag": p.option(&FLAG)?,
    }))
}

async fn notify(p: Plugin<State>, _params: Value) -> Result<Value, anyhow::Error> {
    p.send_custom_notification("test_event".into(), json!({"n": 1, "what": "hello"}))
        .await?;
    Ok(json!({"sent": true}))
}

async fn getinfo(p: Plugin<State>, _params: Value) -> Result<Value, anyhow::Error> {
    let cfg = p.configuration();
    let path = std::path::Path::new(&cfg.lightning_dir).join(&cfg.rpc_file);
    let mut rpc = cln_rpc::ClnRpc::new(&path).await?;
    let info: Value = rpc
        .call_raw("getinfo", &json!({}))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let typed = rpc
        .call_typed(&cln_rpc::model::requests::GetinfoRequest {})
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(
        json!({"id": info["id"], "typed_id": typed.id.to_string(), "blockheight": typed.blockheight}),
    )
}

async fn fail(_p: Plugin<State>, _params: Value) -> Result<Value, anyhow::Error> {
    Err(anyhow::anyhow!(
        json!({"code": 1234, "message": "test-fail always fails"}).to_string()
    ))
}

async fn setconfig(p: Plugin<State>, params: Value) -> Result<Value, anyhow::Error> {
    let name = params["config"].as_str().unwrap_or_default().to_string();
    let val = params["val"].as_str().unwrap_or_default().to_string();
    log::info!("setconfig {name}={val}");
    if name != "test-level" {
        return Err(anyhow::anyhow!(
            json!({"code": -32602, "message": format!("{name} is not dynamic")}).to_string()
        ));
    }
    let level: i64 = val.parse().map_err(|_| {
        anyhow::anyhow!(
            json!({"code": -32602, "message": format!("test-level: {val} is not an integer")})
                .to_string()
        )
    })?;
    if level < 0 {
        return Err(anyhow::anyhow!(
            json!({"code": -32602, "message": "test-level must be >= 0"}).to_string()
        ));
    }
    p.set_option_str(&name, cln_plugin::options::Value::Integer(level))?;
    Ok(json!({}))
}

async fn on_block(_p: Plugin<State>, v: Value) -> Result<(), anyhow::Error> {
    log::info!("block_added height={}", v["block_added"]["height"]);
    Ok(())
}

async fn on_connect(_p: Plugin<State>, v: Value) -> Result<(), anyhow::Error> {
    log::info!("connect from {}", v["connect"]["id"]);
    Ok(())
}

async fn on_shutdown(p: Plugin<State>, _v: Value) -> Result<(), anyhow::Error> {
    log::info!("shutdown received");
    // Give the log line a moment to reach lightningd before the process exits.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    p.shutdown()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), anyhow::Error> {
    let builder = Builder::new(tokio::io::stdin(), tokio::io::stdout())
        .option(GREETING)
        .option(LEVEL)
        .option(FLAG)
        .notification(NotificationTopic::new("test_event"))
        .rpcmethod_from_builder(
            RpcMethodBuilder::new("test-echo", echo)
                .description("echoes its params")
                .usage("[a] [b]"),
        )
        .rpcmethod("test-notify", "sends test_event", notify)
        .rpcmethod("test-getinfo", "calls getinfo", getinfo)
        .rpcmethod("test-fail", "always fails", fail)
        .setconfig_callback(setconfig)
        .subscribe("block_added", on_block)
        .subscribe("connect", on_connect)
        .subscribe("shutdown", on_shutdown)
        .dynamic();
    let Some(configured) = builder.configure().await? else {
        return Ok(());
    };
    if let Ok(reason) = std::env::var("TEST_PLUGIN_DISABLE") {
        configured.disable(&reason).await?;
        return Ok(());
    }
    let plugin = configured.start(()).await?;
    log::info!(
        "test-plugin started greeting={} level={}",
        plugin.option(&GREETING)?,
        plugin.option(&LEVEL)?
    );
    if std::env::var("TEST_PLUGIN_GARBAGE").is_ok() {
        println!("this is not JSON");
    }
    plugin.join().await?;
    // tokio's stdin reader sits in a blocking thread that runtime shutdown would wait for until
    // lightningd closes the pipe (it kills us 30 s after `shutdown`): exit right away instead.
    std::process::exit(0);
}
