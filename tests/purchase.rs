//! Manual purchase end to end: `magma-buy` through the real plugin binary under the lightningd
//! emulator, paying the simulator's hold invoice through the node, to the open channel.

mod common;

use std::time::Duration;

use common::*;
use lightningd_emulator::{ChannelSpec, ChannelState, Emulator, magma, peer_id};
use magma_sim::{Operation, SellerScript, Sim, SimConfig};
use serde_json::{Value, json};

/// The tracker's polling period in these tests (the plugin's test switch).
const POLL_MS: u64 = 100;

async fn world(
    seller: SellerScript,
) -> (
    Sim,
    magma_sim::SimServer,
    Emulator,
    tokio::task::JoinHandle<()>,
) {
    let (sim, server) = sim_with(SimConfig {
        default_seller: seller,
        block_interval_secs: 0,
        ..SimConfig::default()
    })
    .await;
    let cfg = config(&server.graphql_url).env("CLN_MAGMA_TEST_POLL_MS", &POLL_MS.to_string());
    let emu = start(cfg).await;
    // 10M sats of outbound to pay from.
    emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), 10_000_000_000).state(ChannelState::Normal),
    );
    let follow = magma::attach(emu.node(), &sim);
    (sim, server, emu, follow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_buy_is_paid_tracked_and_delivered() {
    let (sim, _server, emu, _follow) = world(SellerScript::Happy).await;
    let before = emu.call("magma-status", json!({})).await.unwrap();

    let placed = emu
        .call("magma-buy", json!({"usd_cents": 2000}))
        .await
        .expect("magma-buy");
    let id = placed["id"].as_str().unwrap().to_string();
    assert_eq!(placed["state"], "PAYING", "{placed:#}");
    assert_eq!(placed["pay_mode"], "node");
    // 2000 cents × 543,260 / 100 = 10,865,200 sats of inbound.
    assert_eq!(placed["request"]["expected_inbound_sat"], 10_865_200);
    let order_id = placed["magma"]["order_id"].as_str().unwrap().to_string();
    let sim_order = sim.order(&order_id).expect("the simulator has the order");
    assert_eq!(placed["invoice"]["amount_sat"], sim_order.invoice_sats);
    assert_eq!(placed["magma"]["session_key"], "[redacted]");

    let done = drive_until(&sim, &emu, &id, "DONE").await;
    let states: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states, ["PLACING", "PLACED", "PAYING", "PAID", "DONE"]);
    assert_eq!(done["channel"]["capacity_sat"], 10_865_200);
    assert_eq!(done["channel"]["peer_id"], sim.node_pubkey());

    // Exactly one buy, one pay for the hash, and the 5 s floor per order... scaled: never two
    // get_order for the order closer than the test cadence.
    let log = sim.request_log();
    assert_eq!(
        log.iter().filter(|r| r.operation == Operation::Buy).count(),
        1
    );
    let pays = emu.node().pay_calls_for(&sim_order.payment_hash);
    assert_eq!(pays, 1, "paid exactly once");
    let polls: Vec<u64> = log
        .iter()
        .filter(|r| r.operation == Operation::GetOrder && r.order_id.as_deref() == Some(&order_id))
        .map(|r| r.wall_time)
        .collect();
    assert!(polls.len() >= 3, "the order was followed: {polls:?}");
    for pair in polls.windows(2) {
        assert!(
            pair[1] - pair[0] + 5 >= POLL_MS,
            "polls too close: {polls:?}"
        );
    }

    // Inbound grew by the channel.
    let after = emu.call("magma-status", json!({})).await.unwrap();
    let grew = after["inbound"]["usable_sat"].as_u64().unwrap()
        - before["inbound"]["usable_sat"].as_u64().unwrap();
    assert!(grew >= 10_865_200 * 98 / 100, "inbound grew by {grew}");
    assert_eq!(after["orders"]["live"].as_array().unwrap().len(), 0);

    // The notifications followed every state, without the session key.
    let notes: Vec<_> = emu
        .notifications()
        .into_iter()
        .filter(|(topic, _)| topic == "magma_order")
        .collect();
    assert!(
        notes
            .iter()
            .any(|(_, n)| n.to_string().contains("\"DONE\"")),
        "{notes:?}"
    );
    let secret = stored_session_key(&emu, &id);
    assert_eq!(secret.len(), 32, "a real session key was stored");
    for (_, n) in &notes {
        assert!(!n.to_string().contains(&secret));
    }
    for line in emu.logs() {
        assert!(!line.message.contains(&secret), "{}", line.message);
    }
    for out in [&placed, &done, &after] {
        assert!(!out.to_string().contains(&secret));
    }
    let listed = emu.call("magma-orders", json!({})).await.unwrap();
    assert!(!listed.to_string().contains(&secret));
    finish(emu).await;
}

/// The session key as the plugin stored it in the node's datastore (the only place it may be).
fn stored_session_key(emu: &Emulator, id: &str) -> String {
    let raw = emu
        .node()
        .datastore_get(&["magma", "orders", id])
        .expect("the order is in the datastore");
    let record: Value = serde_json::from_slice(&raw).expect("the record is JSON");
    record["placement"]["session_key"]
        .as_str()
        .expect("an anonymous order keeps its session key")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_outbound_the_invoice_is_handed_out_and_the_order_still_completes() {
    let (sim, _server, emu, _follow) = world(SellerScript::Happy).await;
    let placed = emu
        .call("magma-buy", json!({"usd_cents": 1000, "external": true}))
        .await
        .expect("magma-buy");
    let id = placed["id"].as_str().unwrap().to_string();
    assert_eq!(placed["pay_mode"], "external");
    let invoice = placed["pay_externally"]["invoice"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        placed["pay_externally"]["uri"],
        format!("lightning:{invoice}")
    );
    let order_id = placed["magma"]["order_id"].as_str().unwrap();
    let hash = sim.order(order_id).unwrap().payment_hash;
    assert_eq!(emu.node().pay_calls_for(&hash), 0, "the plugin did not pay");
    // Another wallet pays: the HTLC arrives at the simulator from outside.
    sim.advance(Duration::from_secs(10));
    sim.htlc_held(&hash).unwrap();
    let done = drive_until(&sim, &emu, &id, "DONE").await;
    assert_eq!(done["pay_mode"], "external");
    assert_eq!(emu.node().pay_calls_for(&hash), 0);
    finish(emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_that_never_opens_ends_refunded_as_the_node_reports() {
    let (sim, _server, emu, _follow) = world(SellerScript::NoOpen).await;
    let placed = emu
        .call("magma-buy", json!({"usd_cents": 1000}))
        .await
        .expect("magma-buy");
    let id = placed["id"].as_str().unwrap().to_string();
    let o = drive_until(&sim, &emu, &id, "REFUNDED").await;
    assert_eq!(o["status"], "SELLER_FAILED_TO_OPEN_CHANNEL");
    assert_eq!(o["follow_up"]["what"], "reorder_rails_only");
    finish(emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_store_nothing() {
    let (_sim, _server, emu, _follow) = world(SellerScript::Happy).await;
    for (args, words) in [
        (json!({"usd_cents": -5}), "usd_cents"),
        (json!({"usd_cents": 0}), "usd_cents"),
        (json!({"usd_cents": 499}), "usd_cents must be at least 500"),
        (json!({"usd_cents": "lots"}), "usd_cents"),
        (json!({"usd_cents": 1000, "amount_sat": 5}), "not both"),
        (json!({}), "give usd_cents"),
        (json!({"usd_cents": 1000, "force": "perhaps"}), "force"),
    ] {
        expect_error(emu.call("magma-buy", args.clone()).await, -32602, &[words]);
    }
    let all = emu.call("magma-orders", json!({})).await.unwrap();
    assert_eq!(all["orders"].as_array().unwrap().len(), 0, "nothing stored");
    finish(emu).await;
}

/// With an API key and two live orders, one transaction_list read stands in for the per-order
/// polls: an order is read with get_order only when its status changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_live_orders_are_followed_through_transaction_list() {
    const KEY: &str = "amboss_bulk_reader_0123456789";
    let (sim, _server, emu, _follow) = purchase_world(
        SimConfig {
            default_seller: SellerScript::Happy,
            block_interval_secs: 0,
            api_keys: vec![KEY.to_string()],
            ..SimConfig::default()
        },
        |cfg| {
            cfg.env("AMBOSS_API_KEY", KEY)
                .option("magma-max-inflight", 2)
        },
    )
    .await;
    let a = emu
        .call("magma-buy", json!([1000]))
        .await
        .expect("first buy");
    let b = emu
        .call("magma-buy", json!([1000]))
        .await
        .expect("second buy");
    let ids = [
        a["id"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    ];
    // Let the tracker see both orders once, then hold the market still for ~10 polling periods:
    // with per-order polls that would be ~10 get_order per order; with the bulk read, none.
    for id in &ids {
        wait_order(&emu, id, "a Magma status", |o| o["status"].is_string()).await;
    }
    tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    let count = |op: Operation| {
        sim.request_log()
            .iter()
            .filter(|r| r.operation == op)
            .count()
    };
    let (reads_before, bulk_before) = (
        count(Operation::GetOrder),
        count(Operation::TransactionList),
    );
    tokio::time::sleep(Duration::from_millis(10 * POLL_MS)).await;
    let reads_quiet = count(Operation::GetOrder) - reads_before;
    let bulk_quiet = count(Operation::TransactionList) - bulk_before;
    assert!(
        bulk_quiet >= 5,
        "one transaction_list per period: {bulk_quiet}"
    );
    assert!(
        reads_quiet <= 2,
        "no get_order while nothing changed: {reads_quiet}"
    );
    // Changes are still followed to the end.
    for id in &ids {
        drive_until(&sim, &emu, id, "DONE").await;
    }
    // The floor holds with bulk reads too: no order read twice within half a period.
    let log = sim.request_log();
    for id in &ids {
        let o = order_state(&emu, id).await;
        let order_id = o["magma"]["order_id"].as_str().unwrap();
        let times: Vec<u64> = log
            .iter()
            .filter(|r| {
                r.operation == Operation::GetOrder && r.order_id.as_deref() == Some(order_id)
            })
            .map(|r| r.wall_time)
            .collect();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] + 5 >= POLL_MS / 2,
                "reads too close: {times:?}"
            );
        }
    }
    finish(emu).await;
}

/// Two purchases at once cannot both pass magma-max-inflight: the second sees the first's
/// stored intent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_buys_respect_the_inflight_limit() {
    let (sim, _server, emu, _follow) = world(SellerScript::Happy).await;
    let (a, b) = tokio::join!(
        emu.call("magma-buy", json!([1000])),
        emu.call("magma-buy", json!([1000]))
    );
    let ok = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{a:?} / {b:?}");
    let refused = if a.is_err() { a } else { b };
    expect_error(refused, 1603, &["magma-max-inflight"]);
    assert_eq!(
        sim.request_log()
            .iter()
            .filter(|r| r.operation == Operation::Buy)
            .count(),
        1
    );
    finish(emu).await;
}
