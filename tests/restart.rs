//! A lightningd restart while the order's HTLC is held at the seller: the plugin is stopped the
//! way lightningd stops it and started again with `startup: true` (a new getmanifest/init),
//! while the node's `pay` for the order is still pending. The node's own payment record
//! survives, as lightningd's does: the emulator keeps its node state (channels, HTLCs in
//! flight, payments, datastore) across plugin restarts. It has no way to restart the node itself
//! — its RPC server, node state and pending `pay` tasks live as long as the `Emulator` — so the
//! node side of a real restart (lightningd reloading the same payment record from its database)
//! is modelled by the node state simply staying.
//!
//! After the restart the order must finish as it would have without it: DONE once the seller
//! settles, exactly one `liquidity.buy`, exactly one `pay` for the payment hash.

mod common;

use std::time::Duration;

use common::*;
use lightningd_emulator::{Emulator, PayStatus};
use magma_sim::{HtlcState, Operation, SellerScript, Sim, SimConfig};
use serde_json::{Value, json};

const API_KEY: &str = "amboss_restart_test_key_0123456789";

fn happy(api_keys: Vec<String>) -> SimConfig {
    SimConfig {
        default_seller: SellerScript::Happy,
        block_interval_secs: 0,
        api_keys,
        ..SimConfig::default()
    }
}

async fn wait_held(sim: &Sim, hash: &str) {
    let mut rx = sim.subscribe();
    let held = async {
        while sim.htlc_state(hash) != Some(HtlcState::Held) {
            rx.changed().await.expect("the simulator runs");
        }
    };
    tokio::time::timeout(WAIT, held)
        .await
        .unwrap_or_else(|_| panic!("the HTLC for {hash} was never held"));
}

fn buys(sim: &Sim) -> usize {
    sim.request_log()
        .iter()
        .filter(|r| r.operation == Operation::Buy)
        .count()
}

/// The node's payment parts for `hash`, all of them still pending.
fn assert_pay_pending(emu: &Emulator, hash: &str) {
    let parts: Vec<_> = emu
        .node()
        .payments()
        .into_iter()
        .filter(|p| p.payment_hash == hash)
        .collect();
    assert!(!parts.is_empty(), "the node has a payment for {hash}");
    for p in &parts {
        assert_eq!(p.status, PayStatus::Pending, "{p:?}");
    }
}

/// How the plugin goes away when lightningd restarts.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// lightningd's orderly stop: the `shutdown` notification, then exit.
    Shutdown,
    /// lightningd killed (or the host lost power): the plugin is SIGKILLed.
    Kill,
}

/// Buys, waits until the HTLC is held at the seller (the node's `pay` pending), optionally
/// lets the seller approve first (the order PAID), restarts the plugin, and follows the order
/// to its end.
async fn restart_while_held(api_key: bool, approved_first: bool, stop: Stop) {
    let label = format!("api_key={api_key} approved_first={approved_first} {stop:?}");
    let keys = if api_key {
        vec![API_KEY.to_string()]
    } else {
        vec![]
    };
    let (sim, _server, mut emu, _follow) = purchase_world(happy(keys), |c| {
        if api_key {
            c.env("AMBOSS_API_KEY", API_KEY)
        } else {
            c
        }
    })
    .await;
    let placed = emu
        .call("magma-buy", json!({"usd_cents": 1000}))
        .await
        .expect("magma-buy");
    assert_eq!(placed["state"], "PAYING", "{label}: {placed:#}");
    let id = placed["id"].as_str().unwrap().to_string();
    let order_id = placed["magma"]["order_id"].as_str().unwrap().to_string();
    let hash = sim.order(&order_id).unwrap().payment_hash;
    wait_held(&sim, &hash).await;
    if approved_first {
        sim.advance(Duration::from_secs(10));
        wait_order(&emu, &id, "PAID", |o| o["state"] == "PAID").await;
    }
    assert_pay_pending(&emu, &hash);
    let before: Value = order_state(&emu, &id).await;

    match stop {
        Stop::Shutdown => {
            let status = emu.shutdown().await.expect("the plugin stops");
            assert_eq!(status.code(), Some(0), "{label}: {:?}", emu.stderr());
        }
        Stop::Kill => emu.kill_plugin().await.expect("the plugin is killed"),
    }
    // lightningd is down: the HTLC stays held at the seller, the node's payment pending.
    assert_eq!(sim.htlc_state(&hash), Some(HtlcState::Held), "{label}");
    assert_pay_pending(&emu, &hash);

    emu.restart_plugin()
        .await
        .expect("lightningd starts the plugin again");
    assert_eq!(emu.disabled(), None, "{label}");
    // Recovery found the node's payment and followed it instead of paying again.
    let resumed = order_state(&emu, &id).await;
    assert_eq!(resumed["state"], before["state"], "{label}: {resumed:#}");
    if !approved_first {
        emu.wait_for_log("the node's payment is Pending; following it", WAIT)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
    }

    let done = drive_until(&sim, &emu, &id, "DONE").await;
    assert_eq!(
        sim.htlc_state(&hash)
            .map(|s| matches!(s, HtlcState::Settled { .. })),
        Some(true),
        "{label}: the seller settled"
    );
    assert_eq!(emu.node().pay_calls_for(&hash), 1, "{label}: paid once");
    assert_eq!(
        emu.plugin_rpc_calls()
            .iter()
            .filter(|(m, _)| m == "pay")
            .count(),
        1,
        "{label}: one pay call in all"
    );
    assert_eq!(buys(&sim), 1, "{label}: one liquidity.buy");
    assert_eq!(sim.orders().len(), 1, "{label}: one Magma order");
    let all = emu.call("magma-orders", json!({})).await.unwrap();
    assert_eq!(all["orders"].as_array().unwrap().len(), 1, "{label}");
    let states: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["PLACING", "PLACED", "PAYING", "PAID", "DONE"],
        "{label}: the same path as without a restart"
    );
    for p in emu
        .node()
        .payments()
        .into_iter()
        .filter(|p| p.payment_hash == hash)
    {
        assert_eq!(p.status, PayStatus::Complete, "{label}: {p:?}");
    }
    finish(emu).await;
}

/// The restart comes while the seller still decides (the order PAYING, the HTLC held): the
/// anonymous order is read again with its stored session key and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_paying_completes_the_order_without_paying_twice() {
    restart_while_held(false, false, Stop::Shutdown).await;
}

/// The same after the seller approved (the order PAID, waiting for the channel), with the API
/// key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_seller_approved_completes_the_order_without_paying_twice() {
    restart_while_held(true, true, Stop::Shutdown).await;
}

/// lightningd killed, not stopped: the plugin gets no shutdown notification at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lightningd_with_the_htlc_held_recovers_the_same_way() {
    restart_while_held(false, false, Stop::Kill).await;
    restart_while_held(true, true, Stop::Kill).await;
}
