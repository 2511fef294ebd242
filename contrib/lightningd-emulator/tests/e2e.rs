//! End to end with a real cln-plugin 0.7 plugin (examples/test-plugin.rs).

mod common;

use common::{fixture, start_test_plugin};
use lightningd_emulator::{ChannelSpec, EmulatorConfig, peer_id};
use serde_json::json;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_methods_setconfig_notifications_logs() {
    let emu = start_test_plugin(|c| c.option("test-greeting", "hi")).await;
    assert_eq!(emu.disabled(), None);
    let manifest = emu.manifest();
    assert_eq!(manifest["nonnumericids"], json!(true));

    emu.wait_for_log("test-plugin started greeting=hi level=1", T)
        .await
        .unwrap();

    // By name and by position; the plugin's result is relayed verbatim.
    let by_name = emu
        .call("test-echo", json!({"hello": "world", "n": 1}))
        .await
        .unwrap();
    let capture = fixture("plugin.capture-echo.result.json");
    assert_eq!(by_name["received_params"], capture["received_params"]);
    assert_eq!(by_name["greeting"], json!("hi"));
    assert_eq!(by_name["flag"], json!(false));
    let by_pos = emu.call("test-echo", json!(["x", 2])).await.unwrap();
    assert_eq!(by_pos["received_params"], json!(["x", 2]));

    // Errors with their code.
    let e = emu.call("test-fail", json!({})).await.unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (1234, "test-fail always fails")
    );

    // setconfig: value reaches the plugin (as a string), bad values are refused.
    let r = emu.setconfig("test-level", json!(5)).await.unwrap();
    assert_eq!(r["config"]["config"], json!("test-level"));
    assert_eq!(r["config"]["value_int"], json!(5));
    emu.wait_for_log("setconfig test-level=5", T).await.unwrap();
    let echo = emu.call("test-echo", json!({})).await.unwrap();
    assert_eq!(echo["level"], json!(5));
    let e = emu.setconfig("test-level", json!(-1)).await.unwrap_err();
    assert_eq!(e.code, -32602);
    let e = emu.setconfig("test-level", json!("abc")).await.unwrap_err();
    assert_eq!(e.code, -32602, "lightningd checks the int type itself");
    let e = emu
        .setconfig("test-greeting", json!("x"))
        .await
        .unwrap_err();
    assert_eq!(e.code, -32602, "not a dynamic option");

    // Custom notification, declared in the manifest.
    emu.call("test-notify", json!({})).await.unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while emu.notifications().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (topic, params) = emu.notifications()[0].clone();
    assert_eq!(topic, "test_event");
    assert_eq!(params["n"], json!(1));
    assert_eq!(params["test_event"]["n"], json!(1));

    // Notifications from the node model reach subscribed topics.
    emu.node().mine_blocks(2);
    let h = emu.node().blockheight();
    emu.wait_for_log(&format!("block_added height={h}"), T)
        .await
        .unwrap();
    let peer = peer_id("carol");
    emu.node()
        .open_channel(ChannelSpec::remote_opened(&peer, 500_000_000));
    emu.wait_for_log(&format!("connect from \"{peer}\""), T)
        .await
        .unwrap();

    // The plugin's own RPC calls are recorded, and typed cln-rpc parsing of getinfo works.
    let info = emu.call("test-getinfo", json!({})).await.unwrap();
    assert_eq!(info["id"], json!(emu.node().id()));
    assert_eq!(info["typed_id"], json!(emu.node().id()));
    let calls = emu.plugin_rpc_calls();
    assert_eq!(
        calls.iter().filter(|(m, _)| m == "getinfo").count(),
        2,
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|(m, _)| m == "test-echo"),
        "calls made by the test are not the plugin's"
    );

    // help lists plugin commands with their usage.
    let help = emu.call("help", json!({})).await.unwrap();
    assert!(
        help["help"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["command"] == json!("test-echo [a] [b]"))
    );
    let e = emu.call("nosuchcommand", json!({})).await.unwrap_err();
    let want = fixture("rpc-error.unknown-command.json");
    assert_eq!(e.code, want["error"]["code"].as_i64().unwrap());
    assert_eq!(e.message, want["error"]["message"].as_str().unwrap());

    assert!(
        emu.stdout_violations().is_empty(),
        "{:?}",
        emu.stdout_violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_restart_keeps_node_state_and_shutdown_exits() {
    let mut emu = start_test_plugin(|c| c).await;
    emu.call(
        "datastore",
        json!({"key": ["t", "k"], "string": "v", "mode": "must-create"}),
    )
    .await
    .unwrap();
    emu.wait_for_log("test-plugin started", T).await.unwrap();

    emu.kill_plugin().await.unwrap();
    assert!(!emu.plugin_running());
    let e = emu.call("test-echo", json!({})).await.unwrap_err();
    assert_eq!(e.code, -32601, "a dead plugin's methods are gone");

    emu.restart_plugin().await.unwrap();
    assert!(emu.plugin_running());
    let started = || {
        emu.logs()
            .iter()
            .filter(|l| l.message.starts_with("test-plugin started"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + T;
    while started() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(started(), 2, "a new instance went through getmanifest/init");
    let ds = emu
        .call("listdatastore", json!({"key": ["t"]}))
        .await
        .unwrap();
    assert_eq!(ds["datastore"][0]["string"], json!("v"));
    emu.call("test-echo", json!({})).await.unwrap();

    // Subscribed to shutdown: gets it and exits by itself (only its shutdown handler ends it
    // while stdin stays open; a kill after the grace period would not be a success).
    let status = emu.shutdown().await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(emu.stdout_violations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_on_stdin_makes_the_plugin_exit() {
    let mut emu = start_test_plugin(|c| c).await;
    // cln-plugin's `join()` only sees an EOF that happens after it was called: let the plugin
    // get there first (lightningd never closes the pipe right after init either).
    emu.wait_for_log("test-plugin started", T).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = emu.close_stdin().await.unwrap();
    assert!(
        status.code().is_some(),
        "exited by itself, not killed: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_disable_is_recorded() {
    let emu = start_test_plugin(|c| c.env("TEST_PLUGIN_DISABLE", "no api key")).await;
    assert_eq!(emu.disabled().as_deref(), Some("no api key"));
    assert!(!emu.plugin_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_stdout_is_a_violation() {
    let emu = start_test_plugin(|c| c.env("TEST_PLUGIN_GARBAGE", "1")).await;
    let deadline = tokio::time::Instant::now() + T;
    while emu.stdout_violations().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        emu.stdout_violations(),
        vec!["this is not JSON".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_option_values_are_refused_like_lightningd() {
    let r = lightningd_emulator::Emulator::start(
        EmulatorConfig::new(common::test_plugin()).option("test-level", "abc"),
    )
    .await;
    let msg = format!("{:#}", r.err().expect("refused"));
    assert!(msg.contains("'abc' is not a number"), "{msg}");
    let r = lightningd_emulator::Emulator::start(
        EmulatorConfig::new(common::test_plugin()).option("no-such-option", 1),
    )
    .await;
    let msg = format!("{:#}", r.err().expect("refused"));
    assert!(msg.contains("unknown parameter no-such-option"), "{msg}");
}
