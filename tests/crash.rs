//! Crash safety: the real plugin is killed at every crash point of a purchase (in the manual
//! and the automatic flow) and started again on the same node. Afterwards the simulator has
//! exactly one `liquidity.buy` for the purchase, the node at most one `pay` per payment hash,
//! and the order ends as it would have without the crash.

mod common;

use std::time::Duration;

use common::*;
use lightningd_emulator::Emulator;
use magma_sim::{Operation, SellerScript, Sim, SimConfig};
use serde_json::{Value, json};

const API_KEY: &str = "amboss_crash_test_key_0123456789";

fn happy(api_keys: Vec<String>) -> SimConfig {
    SimConfig {
        default_seller: SellerScript::Happy,
        block_interval_secs: 0,
        api_keys,
        ..SimConfig::default()
    }
}

async fn wait_dead(emu: &Emulator) {
    for _ in 0..500 {
        if !emu.plugin_running() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the plugin did not stop at its crash point: {:?}",
        emu.stderr()
    );
}

async fn only_order(emu: &Emulator) -> Value {
    for _ in 0..500 {
        let all = emu
            .call("magma-orders", json!({}))
            .await
            .expect("magma-orders");
        if let Some(o) = all["orders"].as_array().and_then(|a| a.first()) {
            return o.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no order stored");
}

async fn drive_until_final(sim: &Sim, emu: &Emulator, id: &str) -> Value {
    for _ in 0..600 {
        let o = order_state(emu, id).await;
        let state = o["state"].as_str().unwrap_or("");
        if ["DONE", "ABANDONED", "REJECTED", "REFUNDED", "FAILED"].contains(&state) {
            return o;
        }
        sim.advance(Duration::from_secs(30));
        emu.node().mine_blocks(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("order {id} never ended: {:#}", order_state(emu, id).await);
}

fn buys(sim: &Sim) -> usize {
    sim.request_log()
        .iter()
        .filter(|r| r.operation == Operation::Buy)
        .count()
}

/// Kills the plugin at `point` during a purchase started by `start`, restarts it, and returns
/// the order's end and the simulator.
async fn crash_and_recover(point: &str, api_key: bool, automatic: bool) -> (Sim, Emulator, Value) {
    let keys = if api_key {
        vec![API_KEY.to_string()]
    } else {
        vec![]
    };
    let (sim, _server, mut emu, _follow) = purchase_world(happy(keys), |c| {
        let c = c
            .env("CLN_MAGMA_CRASH_AT", point)
            .env("CLN_MAGMA_TEST_DEBOUNCE_MS", "30");
        let c = if api_key {
            c.env("AMBOSS_API_KEY", API_KEY)
        } else {
            c
        };
        if automatic {
            c.option("magma-mode", "auto")
                .option("magma-min-inbound-sat", 5_000_000)
                .option("magma-check-interval", 3600)
        } else {
            c
        }
    })
    .await;
    if !automatic {
        // The command dies with the plugin (or answers just before it does).
        let _ = emu.call("magma-buy", json!([1000])).await;
    }
    wait_dead(&emu).await;
    assert!(
        emu.stderr()
            .iter()
            .any(|l| l.contains(&format!("crash point {point}"))),
        "stopped at {point}: {:?}",
        emu.stderr()
    );
    emu.set_plugin_env("CLN_MAGMA_CRASH_AT", None);
    emu.restart_plugin().await.expect("the plugin starts again");
    let id = only_order(&emu).await["id"].as_str().unwrap().to_string();
    let end = drive_until_final(&sim, &emu, &id).await;
    // Whatever happened, at most one pay per payment hash reached the node.
    for order in sim.orders() {
        assert!(
            emu.node().pay_calls_for(&order.payment_hash) <= 1,
            "{point}: paid twice"
        );
    }
    (sim, emu, end)
}

/// With an API key every crash point recovers to the outcome of an uninterrupted purchase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_of_a_manual_buy_recovers_to_done() {
    for point in cln_magma::crash::POINTS {
        let (sim, emu, end) = crash_and_recover(point, true, false).await;
        assert_eq!(end["state"], "DONE", "{point}: {end:#}");
        assert_eq!(buys(&sim), 1, "{point}: exactly one liquidity.buy");
        let hash = end["invoice"]["payment_hash"].as_str().unwrap();
        assert_eq!(
            emu.node().pay_calls_for(hash),
            1,
            "{point}: paid exactly once"
        );
        assert_eq!(
            emu.call("magma-orders", json!({})).await.unwrap()["orders"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{point}: one order"
        );
        finish(emu).await;
    }
}

/// The automatic flow passes the same points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_of_an_automatic_buy_recovers_to_done() {
    for point in cln_magma::crash::POINTS {
        let (sim, emu, end) = crash_and_recover(point, true, true).await;
        assert_eq!(end["state"], "DONE", "{point}: {end:#}");
        assert_eq!(end["trigger"], "auto");
        assert_eq!(buys(&sim), 1, "{point}: exactly one liquidity.buy");
        let hash = end["invoice"]["payment_hash"].as_str().unwrap();
        assert_eq!(
            emu.node().pay_calls_for(hash),
            1,
            "{point}: paid exactly once"
        );
        finish(emu).await;
    }
}

/// Without an API key, an answer lost in a crash cannot be found again: the order is
/// abandoned, never paid and never bought twice (design.md §5, invariant 2). Once the answer
/// is stored, the session key carries the order to its end as without a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_api_key_a_lost_answer_is_abandoned_and_the_rest_recover() {
    for point in cln_magma::crash::POINTS {
        let (sim, emu, end) = crash_and_recover(point, false, false).await;
        match *point {
            "intent-stored" | "buy-answered" => {
                assert_eq!(end["state"], "ABANDONED", "{point}: {end:#}");
                assert!(buys(&sim) <= 1, "{point}: never bought twice");
                for order in sim.orders() {
                    assert_eq!(emu.node().pay_calls_for(&order.payment_hash), 0, "{point}");
                }
            }
            _ => {
                assert_eq!(end["state"], "DONE", "{point}: {end:#}");
                assert_eq!(buys(&sim), 1, "{point}");
            }
        }
        finish(emu).await;
    }
}
