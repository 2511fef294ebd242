//! Every fixture in fixtures/cln (real lightningd v26.06 output) against the emulator:
//! RPC results must have the same JSON shape (keys and value types, recursively) as the node
//! model's answer in the same scenario; errors and deterministic results must be equal; plugin
//! messages must parse as the emulator's protocol types and match what it sends.

mod common;

use common::{fixture, fixtures_dir};
use lightningd_emulator::bolt11::{NewInvoice, create_invoice};
use lightningd_emulator::commands::Settings;
use lightningd_emulator::emulator::{getmanifest_params, init_configuration};
use lightningd_emulator::plugin_host::request_id;
use lightningd_emulator::protocol::Message;
use lightningd_emulator::util::{hex, secret_from_seed, sha256};
use lightningd_emulator::{
    ChannelSpec, Emulator, EmulatorConfig, ManualPayee, NodeConfig, NodeHandle, peer_id,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

/// Keys that lightningd includes or omits depending on timing (the peer's channel_update).
const TIMING_OPTIONAL: &[&str] = &["updates.remote"];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shape_diff(path: &str, ours: &Value, theirs: &Value, out: &mut Vec<String>) {
    if kind(ours) != kind(theirs) {
        out.push(format!(
            "{path}: ours {} vs fixture {}",
            kind(ours),
            kind(theirs)
        ));
        return;
    }
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: BTreeSet<_> = a.keys().collect();
            let kb: BTreeSet<_> = b.keys().collect();
            for k in ka.symmetric_difference(&kb) {
                let p = format!("{path}.{k}").trim_start_matches('.').to_string();
                if !TIMING_OPTIONAL.iter().any(|o| p.ends_with(o)) {
                    let side = if a.contains_key(*k) {
                        "only ours"
                    } else {
                        "only fixture"
                    };
                    out.push(format!("{p}: {side}"));
                }
            }
            for k in ka.intersection(&kb) {
                shape_diff(&format!("{path}.{k}"), &a[*k], &b[*k], out);
            }
        }
        (Value::Array(a), Value::Array(b)) if !b.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                shape_diff(&format!("{path}[{i}]"), x, b.get(i).unwrap_or(&b[0]), out);
            }
        }
        _ => {}
    }
}

fn assert_shape(name: &str, ours: &Value) {
    let theirs = fixture(name);
    let mut diffs = vec![];
    shape_diff("", ours, &theirs, &mut diffs);
    assert!(
        diffs.is_empty(),
        "{name}: shape differs:\n{}\nours: {ours:#}",
        diffs.join("\n")
    );
}

fn assert_error(name: &str, e: &lightningd_emulator::RpcError) {
    let f = fixture(name);
    assert_eq!(e.code, f["error"]["code"].as_i64().unwrap(), "{name}");
    assert_eq!(e.message, f["error"]["message"].as_str().unwrap(), "{name}");
}

async fn node_only(node: NodeConfig) -> Emulator {
    let mut cfg = EmulatorConfig::new("/nonexistent/plugin");
    cfg.node = node;
    Emulator::start_node(cfg).await.expect("node starts")
}

fn req(name: &str) -> (String, Value) {
    let r = &fixture("_requests.json")[name];
    let params = if r["params"].is_null() {
        json!({})
    } else {
        r["params"].clone()
    };
    (r["method"].as_str().unwrap().to_string(), params)
}

async fn call_fixture(emu: &Emulator, name: &str) -> Result<Value, lightningd_emulator::RpcError> {
    let (m, p) = req(name);
    emu.call(&m, p).await
}

/// Every file in the fixture folders, so a new fixture cannot be silently skipped.
fn all_fixture_files() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in ["", "plugin/"] {
        let dir = fixtures_dir().join(sub);
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            // README.md says what the folder holds; it is not a capture.
            if e.path().is_file() && e.file_name() != "README.md" {
                out.insert(format!("{sub}{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_covered() {
    let mut covered: BTreeSet<String> = BTreeSet::new();
    let mut cover = |n: &str| {
        covered.insert(n.to_string());
    };
    cover("VERSION");
    cover("_requests.json");

    // --- node a: getinfo, listfunds, connect, fundchannel, channels, pays, datastore ---
    let a = node_only(NodeConfig {
        onchain_sat: vec![5_000_000],
        ..NodeConfig::default()
    })
    .await;
    assert_shape(
        "getinfo.json",
        &call_fixture(&a, "getinfo.json").await.unwrap(),
    );
    cover("getinfo.json");
    assert_shape(
        "listfunds.onchain-only.json",
        &call_fixture(&a, "listfunds.onchain-only.json")
            .await
            .unwrap(),
    );
    cover("listfunds.onchain-only.json");
    assert_shape(
        "connect.json",
        &call_fixture(&a, "connect.json").await.unwrap(),
    );
    cover("connect.json");
    assert_shape(
        "fundchannel.json",
        &call_fixture(&a, "fundchannel.json").await.unwrap(),
    );
    cover("fundchannel.json");
    assert_shape(
        "listpeerchannels.opening.opener-local.json",
        &a.call("listpeerchannels", json!({})).await.unwrap(),
    );
    cover("listpeerchannels.opening.opener-local.json");
    a.node().mine_blocks(3);
    assert_shape(
        "listpeerchannels.normal.opener-local.json",
        &a.call("listpeerchannels", json!({})).await.unwrap(),
    );
    cover("listpeerchannels.normal.opener-local.json");
    let b_id = req("connect.json").1["id"].as_str().unwrap().to_string();
    a.node()
        .open_channel(ChannelSpec::remote_opened(&b_id, 2_000_000_000));
    a.node().mine_blocks(3);
    assert_shape(
        "listpeerchannels.normal.json",
        &a.call("listpeerchannels", json!({})).await.unwrap(),
    );
    cover("listpeerchannels.normal.json");
    assert_shape(
        "listfunds.with-channels.json",
        &a.call("listfunds", json!({})).await.unwrap(),
    );
    cover("listfunds.with-channels.json");

    // decode: the real invoice decodes to exactly lightningd's answer.
    let decoded = call_fixture(&a, "decode.bolt11.json").await.unwrap();
    assert_eq!(decoded, fixture("decode.bolt11.json"));
    cover("decode.bolt11.json");
    assert_error(
        "rpc-error.decode-invalid.json",
        &call_fixture(&a, "rpc-error.decode-invalid.json")
            .await
            .unwrap_err(),
    );
    cover("rpc-error.decode-invalid.json");
    assert_error(
        "rpc-error.unknown-command.json",
        &call_fixture(&a, "rpc-error.unknown-command.json")
            .await
            .unwrap_err(),
    );
    cover("rpc-error.unknown-command.json");

    // pay: one settled, one cancelled by the payee.
    let payee_secret = secret_from_seed("fixture-payee");
    let payee = Arc::new(ManualPayee::new());
    a.node().add_payee(payee.clone());
    let make = |n: u8, amount: u64| {
        let preimage = sha256(&[n]);
        let bolt11 = create_invoice(
            &payee_secret,
            &NewInvoice {
                network: "regtest",
                amount_msat: Some(amount),
                description: "fixture payment",
                preimage,
                expiry_secs: 3600,
                created_at: lightningd_emulator::util::now_secs(),
            },
        )
        .unwrap();
        (
            bolt11,
            hex::encode(&preimage),
            hex::encode(&sha256(&preimage)),
        )
    };
    let (ok_bolt11, ok_pre, ok_hash) = make(1, 10_000_000);
    let (bad_bolt11, _, bad_hash) = make(2, 5_000_000);
    let p2 = payee.clone();
    let (h1, pre1, h2) = (ok_hash.clone(), ok_pre.clone(), bad_hash.clone());
    tokio::spawn(async move {
        p2.wait_held(&h1).await;
        p2.settle(&h1, &pre1);
        p2.wait_held(&h2).await;
        p2.cancel(&h2);
    });
    let paid = a.call("pay", json!({"bolt11": ok_bolt11})).await.unwrap();
    assert_shape("pay.success.json", &paid);
    cover("pay.success.json");
    let failed = a.call("pay", json!([bad_bolt11])).await.unwrap_err();
    assert_error("pay.failure.json", &failed);
    cover("pay.failure.json");
    let pays = a.call("listpays", json!({})).await.unwrap();
    assert_shape("listpays.json", &pays);
    assert_shape("listpays.immediately-after-failed-pay.json", &pays);
    cover("listpays.json");
    cover("listpays.immediately-after-failed-pay.json");
    assert_shape(
        "listsendpays.json",
        &a.call("listsendpays", json!({})).await.unwrap(),
    );
    cover("listsendpays.json");

    // datastore: the fixture sequence gives exactly the fixture answers.
    for name in [
        "datastore.create.json",
        "datastore.error.must-create-exists.json",
        "datastore.replace-hex.json",
        "listdatastore.json",
        "deldatastore.json",
        "listdatastore.empty.json",
    ] {
        match call_fixture(&a, name).await {
            Ok(v) => assert_eq!(v, fixture(name), "{name}"),
            Err(e) => assert_error(name, &e),
        }
        cover(name);
    }

    // --- node b: remote-opened channel, then its own channel, invoices ---
    let b = node_only(NodeConfig {
        seed: "node-b".into(),
        ..NodeConfig::default()
    })
    .await;
    let a_id = peer_id("a");
    b.node()
        .open_channel(ChannelSpec::remote_opened(&a_id, 1_000_000_000));
    assert_shape(
        "listpeerchannels.opening.opener-remote.json",
        &b.call("listpeerchannels", json!({})).await.unwrap(),
    );
    cover("listpeerchannels.opening.opener-remote.json");
    b.node().mine_blocks(3);
    let fund = b
        .call("fundchannel", json!({"id": a_id, "amount": 2_000_000}))
        .await
        .unwrap();
    assert_shape("fundchannel.b-to-a.json", &fund);
    cover("fundchannel.b-to-a.json");
    assert_shape(
        "listpeerchannels.normal-and-opening.json",
        &b.call("listpeerchannels", json!({})).await.unwrap(),
    );
    cover("listpeerchannels.normal-and-opening.json");
    b.node().mine_blocks(3);
    assert_shape(
        "listpeerchannels.normal.node-b.json",
        &b.call("listpeerchannels", json!({})).await.unwrap(),
    );
    cover("listpeerchannels.normal.node-b.json");
    assert_shape(
        "invoice.json",
        &call_fixture(&b, "invoice.json").await.unwrap(),
    );
    cover("invoice.json");
    assert!(b.node().mark_invoice_paid("fixture-1"));
    assert_shape(
        "listinvoices.paid.json",
        &call_fixture(&b, "listinvoices.paid.json").await.unwrap(),
    );
    cover("listinvoices.paid.json");
    // A plugin's result is relayed verbatim: checked end to end in tests/e2e.rs.
    assert!(fixture("plugin.capture-echo.result.json")["received_params"].is_object());
    cover("plugin.capture-echo.result.json");

    // --- plugin messages ---
    for name in plugin_message_fixtures() {
        cover(&name);
    }
    let missing: Vec<_> = all_fixture_files().difference(&covered).cloned().collect();
    assert!(missing.is_empty(), "fixtures not exercised: {missing:?}");
}

fn plugin_message_fixtures() -> Vec<String> {
    all_fixture_files()
        .into_iter()
        .filter(|n| n.starts_with("plugin/"))
        .collect()
}

fn messages_of(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|m| match m {
                // stdin.raw.json holds the raw strings the plugin read.
                Value::String(s) => serde_json::from_str(s).expect("raw message parses"),
                other => other.clone(),
            })
            .collect(),
        other => vec![other.clone()],
    }
}

#[test]
fn plugin_fixtures_parse_as_protocol_messages() {
    for name in plugin_message_fixtures() {
        for m in messages_of(&fixture(&name)) {
            let parsed =
                Message::from_value(m.clone()).unwrap_or_else(|e| panic!("{name}: {e}: {m}"));
            let has_id = m.get("id").is_some();
            match parsed {
                Message::Request(r) => assert!(has_id, "{name}: {}", r.method),
                Message::Notification(n) => assert!(!has_id, "{name}: {}", n.method),
                Message::Response(_) => panic!("{name}: lightningd sent a response? {m}"),
            }
        }
    }
    let all = messages_of(&fixture("plugin/stdin.all.json"));
    let raw = messages_of(&fixture("plugin/stdin.raw.json"));
    assert_eq!(
        all, raw,
        "stdin.raw.json and stdin.all.json hold the same messages"
    );
}

#[test]
fn handshake_messages_match_lightningd() {
    let gm = fixture("plugin/getmanifest.request.json");
    assert_eq!(gm["params"], getmanifest_params());
    assert_eq!(
        request_id("getmanifest", None, 20, true),
        gm["id"],
        "ids are cln:METHOD#N"
    );
    let echo = fixture("plugin/rpcmethod.capture-echo.request.json");
    assert_eq!(
        request_id("capture-echo", Some("fixture-52"), 121, true),
        echo["id"],
        "forwarded ids chain the client's id"
    );

    let init = fixture("plugin/init.request.json");
    let settings = Settings {
        network: "regtest".into(),
        lightning_dir: PathBuf::from("/home/operator/.lightning-b/regtest"),
        rpc_file: "lightning-rpc".into(),
        plugin_path: PathBuf::from("/x"),
        proxy: None,
        always_use_proxy: false,
    };
    assert_eq!(
        init["params"]["configuration"],
        init_configuration(&settings, true),
        "same keys and values as lightningd for the same settings"
    );
    // With a proxy, cln-plugin's Configuration reads these keys.
    let with_proxy = init_configuration(
        &Settings {
            proxy: Some("127.0.0.1:9050".parse().unwrap()),
            always_use_proxy: true,
            ..settings
        },
        true,
    );
    assert_eq!(
        with_proxy["proxy"],
        json!({"type": "ipv4", "address": "127.0.0.1", "port": 9050})
    );
    assert_eq!(with_proxy["always_use_proxy"], json!(true));
    assert_eq!(with_proxy["torv3-enabled"], json!(true));
}

fn drain(rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>) -> Vec<(String, Value)> {
    let mut out = vec![];
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn assert_notification_shape(name: &str, topic: &str, params: &Value) {
    let f = fixture(name);
    let f = match &f {
        Value::Array(a) => a[0].clone(),
        other => other.clone(),
    };
    assert_eq!(f["method"], json!(topic), "{name}");
    let mut diffs = vec![];
    shape_diff("", params, &f["params"], &mut diffs);
    assert!(
        diffs.is_empty(),
        "{name}: {}\nours: {params:#}",
        diffs.join("\n")
    );
}

#[tokio::test]
async fn node_notifications_match_lightningd() {
    let (node, mut rx) = NodeHandle::new(&NodeConfig::default(), "regtest", "/tmp/x");
    let peer = peer_id("b");
    node.open_channel(ChannelSpec::remote_opened(&peer, 1_000_000_000));
    let ev = drain(&mut rx);
    let topics: Vec<_> = ev.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        ["connect", "channel_state_changed", "channel_opened"]
    );
    assert_notification_shape("plugin/notification.connect.json", &ev[0].0, &ev[0].1);
    assert_notification_shape(
        "plugin/notification.channel_state_changed.json",
        &ev[1].0,
        &ev[1].1,
    );
    assert_notification_shape(
        "plugin/notification.channel_opened.json",
        &ev[2].0,
        &ev[2].1,
    );

    node.mine_blocks(3);
    let ev = drain(&mut rx);
    assert_notification_shape("plugin/notification.block_added.json", &ev[0].0, &ev[0].1);
    let (topic, lockin) = ev.last().unwrap();
    assert_eq!(topic, "channel_state_changed");
    let all = fixture("plugin/notification.channel_state_changed.all.json");
    let mut diffs = vec![];
    shape_diff("", lockin, &all[1]["params"], &mut diffs);
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(lockin["channel_state_changed"]["cause"], json!("remote"));
    assert_eq!(
        lockin["channel_state_changed"]["new_state"],
        json!("CHANNELD_NORMAL")
    );
}

#[test]
fn invoice_notifications_match_lightningd() {
    let (node, mut rx) = NodeHandle::new(&NodeConfig::default(), "regtest", "/tmp/x");
    lightningd_emulator::invoice::invoice(
        &node,
        &json!({"amount_msat": 10_000_000, "label": "fixture-1", "description": "d"}),
    )
    .unwrap();
    node.mark_invoice_paid("fixture-1");
    let ev = drain(&mut rx);
    assert_notification_shape(
        "plugin/notification.invoice_creation.json",
        &ev[0].0,
        &ev[0].1,
    );
    assert_notification_shape(
        "plugin/notification.invoice_payment.json",
        &ev[1].0,
        &ev[1].1,
    );
}
