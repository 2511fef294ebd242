//! Automatic buying through the real plugin binary under the emulator, against the simulator:
//! the decision, the budget, the price cap, the in-flight limit, backoff and pause, dry-run.

mod common;

use std::time::Duration;

use common::*;
use lightningd_emulator::{Emulator, EmulatorConfig};
use magma_sim::{Operation, SellerScript, Sim, SimConfig};
use serde_json::{Value, json};

/// Options for an automatic node: keep 5M sats of inbound, aim for 15M; the periodic timer is
/// out of the picture (1 h), so only events and option changes trigger checks.
fn auto(cfg: EmulatorConfig) -> EmulatorConfig {
    cfg.env("CLN_MAGMA_TEST_DEBOUNCE_MS", "30")
        .option("magma-mode", "auto")
        .option("magma-min-inbound-sat", 5_000_000)
        .option("magma-target-inbound-sat", 15_000_000)
        .option("magma-check-interval", 3600)
}

fn happy() -> SimConfig {
    SimConfig {
        default_seller: SellerScript::Happy,
        block_interval_secs: 0,
        ..SimConfig::default()
    }
}

async fn orders(emu: &Emulator) -> Vec<Value> {
    emu.call("magma-orders", json!({}))
        .await
        .expect("magma-orders")["orders"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn buys(sim: &Sim) -> usize {
    sim.request_log()
        .iter()
        .filter(|r| r.operation == Operation::Buy)
        .count()
}

/// Waits (real time, nothing driven) until `cond` holds on the order list.
async fn wait_orders(emu: &Emulator, what: &str, cond: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..500 {
        let list = orders(emu).await;
        if cond(&list) {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never saw {what}: {:#?}", orders(emu).await);
}

async fn suggest(emu: &Emulator) -> Value {
    emu.call("magma-suggest", json!({}))
        .await
        .expect("magma-suggest")
}

fn reasons(s: &Value) -> Vec<String> {
    s["reasons"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["reason"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_inbound_buys_once_to_the_target_and_then_stops() {
    let (sim, _server, emu, _follow) = purchase_world(happy(), auto).await;
    // Inbound 0 < 5M: the first check buys enough to reach 15M:
    // ceil(15,000,000 × 100 / 543,260) = 2762 cents → 2762 × 5432.6 = 15,004,841 sats.
    let list = wait_orders(&emu, "an automatic order", |l| !l.is_empty()).await;
    assert_eq!(list.len(), 1);
    let o = &list[0];
    assert_eq!(o["trigger"], "auto");
    assert_eq!(o["request"]["usd_cents"], 2762);
    assert_eq!(o["request"]["expected_inbound_sat"], 15_004_841);
    let id = o["id"].as_str().unwrap().to_string();

    // Blocks and channel events fire all through the order: each triggers a check, and the
    // order in flight (pending inbound, and the in-flight limit) prevents a second one.
    drive_until(&sim, &emu, &id, "DONE").await;
    for _ in 0..5 {
        emu.node().mine_blocks(1);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(buys(&sim), 1, "exactly one liquidity.buy");
    let s = suggest(&emu).await;
    assert_eq!(s["decision"], "skip");
    assert!(
        reasons(&s).contains(&"inbound_sufficient".to_string()),
        "{s:#}"
    );
    // magma-status carries the last automatic decision.
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert!(
        status["policy"]["last_decision"]["decision"].is_string(),
        "{status:#}"
    );
    let decisions = emu
        .notifications()
        .into_iter()
        .filter(|(t, _)| t == "magma_decision")
        .count();
    assert!(decisions >= 2, "every automatic check is announced");
    finish(emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_budget_blocks_until_setconfig_raises_it() {
    let (sim, _server, emu, _follow) =
        purchase_world(happy(), |c| auto(c).option("magma-budget-usd-cents", 1000)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(buys(&sim), 0);
    let s = suggest(&emu).await;
    let budget = s["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "budget_exhausted")
        .unwrap_or_else(|| panic!("{s:#}"))
        .clone();
    assert_eq!(budget["left_usd_cents"], 1000);
    assert_eq!(budget["needed_usd_cents"], 2762);
    assert!(
        budget["text"]
            .as_str()
            .unwrap()
            .contains("magma-budget-usd-cents")
    );
    // The timer is an hour away: the raise alone must trigger the purchase.
    emu.setconfig("magma-budget-usd-cents", json!(10_000))
        .await
        .unwrap();
    wait_orders(&emu, "the order after the raise, placed", |l| {
        l.len() == 1 && l[0]["state"] != "PLACING"
    })
    .await;
    assert_eq!(buys(&sim), 1);
    finish(emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_above_the_cap_buys_nothing() {
    // The simulator's price is 1996 ppm.
    let (sim, _server, emu, _follow) =
        purchase_world(happy(), |c| auto(c).option("magma-max-fee-ppm", 1500)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    emu.node().mine_blocks(2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(buys(&sim), 0);
    let s = suggest(&emu).await;
    let cap = s["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "price_above_cap")
        .unwrap_or_else(|| panic!("{s:#}"))
        .clone();
    assert_eq!(
        (cap["price_ppm"].clone(), cap["max_fee_ppm"].clone()),
        (json!(1996), json!(1500))
    );
    assert!(orders(&emu).await.is_empty());
    finish(emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_decides_and_announces_but_never_buys() {
    let (sim, _server, emu, _follow) =
        purchase_world(happy(), |c| auto(c).option("magma-mode", "dry-run")).await;
    for _ in 0..3 {
        emu.node().mine_blocks(1);
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let decisions: Vec<Value> = emu
        .notifications()
        .into_iter()
        .filter(|(t, _)| t == "magma_decision")
        .map(|(_, v)| v)
        .collect();
    assert!(!decisions.is_empty(), "dry-run announces its decisions");
    assert!(
        decisions.iter().any(|d| d.to_string().contains("\"buy\"")),
        "{decisions:?}"
    );
    assert_eq!(buys(&sim), 0, "dry-run never sends liquidity.buy");
    assert!(orders(&emu).await.is_empty());
    assert!(emu.logs().iter().any(|l| l.message.contains("would buy")));
    finish(emu).await;
}

/// Seconds between an order's end and the backoff deadline magma-suggest reports.
async fn backoff_after(emu: &Emulator, id: &str) -> (u64, Value) {
    let o = order_state(emu, id).await;
    let ended = o["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("state").is_some())
        .filter_map(|e| e["at"].as_u64())
        .max()
        .unwrap();
    let s = suggest(emu).await;
    let until = s["backoff_until"].as_str().map(|t| {
        humantime::parse_rfc3339(t)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    });
    (until.map(|u| u - ended).unwrap_or(0), s)
}

async fn failed_manual_buy(sim: &Sim, emu: &Emulator) -> String {
    let placed = emu
        .call("magma-buy", json!([500]))
        .await
        .expect("magma-buy");
    let id = placed["id"].as_str().unwrap().to_string();
    for _ in 0..300 {
        let o = order_state(emu, &id).await;
        if ["FAILED", "REFUNDED"].contains(&o["state"].as_str().unwrap_or("")) {
            return id;
        }
        sim.advance(Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("order {id} did not fail: {:#}", order_state(emu, &id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_back_off_doubling_and_three_pause_until_the_mode_is_set() {
    let sim_cfg = SimConfig {
        default_seller: SellerScript::Reject,
        ..happy()
    };
    // Inbound is plentiful (min 0), so only the ledger matters in magma-suggest.
    let (sim, _server, emu, _follow) = purchase_world(sim_cfg, |c| {
        c.env("CLN_MAGMA_TEST_DEBOUNCE_MS", "30")
            .option("magma-mode", "auto")
            .option("magma-failure-backoff", 60)
            .option("magma-check-interval", 3600)
    })
    .await;
    let first = failed_manual_buy(&sim, &emu).await;
    let (wait, s) = backoff_after(&emu, &first).await;
    assert_eq!(
        (wait, s["consecutive_failures"].clone()),
        (60, json!(1)),
        "{s:#}"
    );
    let second = failed_manual_buy(&sim, &emu).await;
    let (wait, s) = backoff_after(&emu, &second).await;
    assert_eq!(
        (wait, s["consecutive_failures"].clone()),
        (120, json!(2)),
        "doubles: {s:#}"
    );
    assert!(s["paused"].is_null());
    let third = failed_manual_buy(&sim, &emu).await;
    let (wait, s) = backoff_after(&emu, &third).await;
    assert_eq!(wait, 240);
    let why = s["paused"]
        .as_str()
        .unwrap_or_else(|| panic!("paused: {s:#}"));
    assert!(why.contains("3 consecutive failed orders"), "{why}");
    assert!(reasons(&s).contains(&"paused".to_string()));
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(status["policy"]["paused"], json!(why));
    // Setting the mode resumes (the failures stay, and so does their backoff).
    emu.setconfig("magma-mode", json!("auto")).await.unwrap();
    let s = suggest(&emu).await;
    assert!(s["paused"].is_null(), "{s:#}");
    assert_eq!(s["consecutive_failures"], 3);
    finish(emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inflight_limit_holds_while_events_fire_mid_order() {
    // A manual order too small to reach the minimum (500 cents → 2,716,300 sats < 5M) is in
    // flight; automation would buy more, but magma-max-inflight is 1.
    let (sim, _server, emu, _follow) =
        purchase_world(happy(), |c| auto(c).option("magma-mode", "off")).await;
    let placed = emu
        .call("magma-buy", json!([500]))
        .await
        .expect("magma-buy");
    let id = placed["id"].as_str().unwrap().to_string();
    emu.setconfig("magma-mode", json!("auto")).await.unwrap();
    for _ in 0..5 {
        emu.node().mine_blocks(1);
        emu.notify(
            "channel_state_changed",
            json!({"channel_state_changed": {"peer_id": "02", "channel_id": "00", "short_channel_id": "1x1x1", "timestamp": "2026-11-25T00:00:00.000Z", "old_state": "CHANNELD_NORMAL", "new_state": "CHANNELD_NORMAL", "cause": "remote", "message": "test"}}),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(buys(&sim), 1, "only the manual order");
    let s = suggest(&emu).await;
    let limit = s["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == "inflight_limit")
        .unwrap_or_else(|| panic!("{s:#}"))
        .clone();
    assert_eq!(
        (limit["live_orders"].clone(), limit["max_inflight"].clone()),
        (json!(1), json!(1))
    );
    // Its pending inbound is counted once, and it is below the minimum.
    assert_eq!(s["inbound"]["pending_sat"], 2_716_300);
    drive_until(&sim, &emu, &id, "DONE").await;
    finish(emu).await;
}
