//! Magma API faults and hostile answers through the real plugin, while it buys and tracks
//! orders: every fault the simulator can inject on `get_order` (while an order is followed), on
//! `transaction_list` (while several orders are followed with an API key) and on the buy (the
//! cases `tests/purchase_failures.rs` does not already cover), an unknown status, and answers
//! that are oversized, mistyped, incomplete or cut — the last through a small proxy in front of
//! the simulator that spoils the answers it is told to.
//!
//! What must hold: no order is bought twice or paid twice; the plugin logs a clear warning and
//! keeps the order live while the fault lasts; it reads the order no faster than the floor (half
//! the polling period) and, after a 429, no sooner than `Retry-After`; and once the fault stops
//! the order completes. Times are the simulator's request-log wall times (milliseconds of
//! arrival), compared with a small allowance for the request's own transit.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lightningd_emulator::{Emulator, EmulatorConfig, LogLine};
use magma_sim::{
    Fault, HtlcState, Operation, RequestRecord, SellerScript, Sim, SimConfig, SimServer,
};
use serde_json::{Value, json};

const API_KEY: &str = "amboss_fault_test_key_5e2b7c91d04a";

/// The guide's floor (never two reads of one order within half the period), at the tests'
/// polling period.
const FLOOR_MS: u64 = POLL_MS / 2;

/// Transit allowance when comparing arrival times at the simulator: the plugin schedules from
/// the moment it sends, the simulator stamps the moment it receives.
const SLACK_MS: u64 = 25;

/// The client timeout the timeout cases run with (the plugin's test switch), and a delay well
/// past it.
const TIMEOUT_MS: u64 = 400;
const SLOW_MS: u64 = 1500;

struct World {
    sim: Sim,
    _server: SimServer,
    emu: Emulator,
    _follow: tokio::task::JoinHandle<()>,
}

fn sim_config(api_key: bool) -> SimConfig {
    SimConfig {
        default_seller: SellerScript::Happy,
        block_interval_secs: 0,
        api_keys: if api_key {
            vec![API_KEY.to_string()]
        } else {
            vec![]
        },
        ..SimConfig::default()
    }
}

fn with_key(api_key: bool, c: EmulatorConfig) -> EmulatorConfig {
    if api_key {
        c.env("AMBOSS_API_KEY", API_KEY)
    } else {
        c
    }
}

/// The plugin against the simulator, with the fast cadence and, for the timeout cases, the
/// short client timeout.
async fn world(api_key: bool, tweak: impl FnOnce(EmulatorConfig) -> EmulatorConfig) -> World {
    let (sim, server, emu, follow) = purchase_world(sim_config(api_key), |c| {
        tweak(with_key(api_key, c).env("CLN_MAGMA_TEST_HTTP_TIMEOUT_MS", &TIMEOUT_MS.to_string()))
    })
    .await;
    World {
        sim,
        _server: server,
        emu,
        _follow: follow,
    }
}

impl World {
    /// A `magma-buy` that must be paid from the node: its local id, Magma order id and payment
    /// hash, once the HTLC is held at the seller.
    async fn buy_held(&self, params: Value) -> (String, String, String) {
        let placed = self.emu.call("magma-buy", params).await.expect("magma-buy");
        assert_eq!(placed["state"], "PAYING", "{placed:#}");
        let id = placed["id"].as_str().unwrap().to_string();
        let order_id = placed["magma"]["order_id"].as_str().unwrap().to_string();
        let hash = self.sim.order(&order_id).unwrap().payment_hash;
        wait_held(&self.sim, &hash).await;
        (id, order_id, hash)
    }

    fn log(&self) -> Vec<RequestRecord> {
        self.sim.request_log()
    }

    fn buys(&self) -> usize {
        count(&self.log(), |r| r.operation == Operation::Buy)
    }

    fn pay_calls(&self) -> usize {
        self.emu
            .plugin_rpc_calls()
            .iter()
            .filter(|(m, _)| m == "pay")
            .count()
    }

    fn warnings(&self, words: &[&str]) -> Vec<LogLine> {
        self.emu
            .logs()
            .into_iter()
            .filter(|l| l.level == "warn" && words.iter().all(|w| l.message.contains(w)))
            .collect()
    }

    /// Waits until at least `n` warnings hold all of `words` (a log line reaches lightningd on
    /// its own path, not with the command answers), then returns them all.
    async fn wait_warnings(&self, words: &[&str], n: usize) -> Vec<LogLine> {
        for _ in 0..1000 {
            let found = self.warnings(words);
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {n} warnings with {words:?}: {:#?}", self.emu.logs());
    }

    /// Waits until the request log has a record after `after` (a sequence number) that
    /// satisfies `what`; returns it.
    async fn wait_request(
        &self,
        after: u64,
        label: &str,
        what: impl Fn(&RequestRecord) -> bool,
    ) -> RequestRecord {
        for _ in 0..1000 {
            if let Some(r) = self.log().into_iter().find(|r| r.seq > after && what(r)) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {label} in the request log: {:#?}", self.log());
    }

    /// Waits until `n` requests of `op` (for `order_id`, when given) carried an injected fault.
    async fn wait_faulted(&self, op: Operation, order_id: Option<&str>, n: usize) -> u64 {
        for _ in 0..1000 {
            let hits: Vec<_> = self
                .log()
                .into_iter()
                .filter(|r| {
                    r.operation == op
                        && r.fault.is_some()
                        && order_id.is_none_or(|o| r.order_id.as_deref() == Some(o))
                })
                .collect();
            if hits.len() >= n {
                return hits[n - 1].seq;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} faulted {op} requests never came: {:#?}", self.log());
    }

    fn last_seq(&self) -> u64 {
        self.log().last().map_or(0, |r| r.seq)
    }
}

fn count(log: &[RequestRecord], what: impl Fn(&RequestRecord) -> bool) -> usize {
    log.iter().filter(|r| what(r)).count()
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

fn get_orders_of<'a>(log: &'a [RequestRecord], order_id: &str) -> Vec<&'a RequestRecord> {
    log.iter()
        .filter(|r| r.operation == Operation::GetOrder && r.order_id.as_deref() == Some(order_id))
        .collect()
}

/// The cadence invariants over the whole request log: never two `get_order` of one order
/// within the floor, and never a request of the same kind (the order's `get_order`, or any
/// `transaction_list`) sooner than `Retry-After` after a 429.
fn assert_cadence(log: &[RequestRecord], order_ids: &[&str]) {
    let mut series: Vec<(String, Vec<&RequestRecord>)> = order_ids
        .iter()
        .map(|o| (format!("get_order {o}"), get_orders_of(log, o)))
        .collect();
    series.push((
        "transaction_list".into(),
        log.iter()
            .filter(|r| r.operation == Operation::TransactionList)
            .collect(),
    ));
    for (what, reads) in &series {
        for pair in reads.windows(2) {
            let gap = pair[1].wall_time - pair[0].wall_time;
            if pair[0].operation == Operation::GetOrder {
                assert!(
                    gap + SLACK_MS >= FLOOR_MS,
                    "{what}: reads {} and {} only {gap} ms apart (floor {FLOOR_MS} ms)",
                    pair[0].seq,
                    pair[1].seq
                );
            }
            if let Some(secs) = pair[0].fault.as_deref().and_then(retry_after_secs) {
                assert!(
                    gap + SLACK_MS >= secs * 1000,
                    "{what}: read {} came {gap} ms after the 429 of read {} (Retry-After: {secs} s)",
                    pair[1].seq,
                    pair[0].seq
                );
            }
        }
    }
}

/// Exponential backoff, as the tracker documents it: after the n-th failed read of an order in
/// a row (a 429 aside, which waits for its Retry-After), the next read comes no sooner than
/// half of `period × 2ⁿ` — and never sooner than the period.
fn assert_backoff(log: &[RequestRecord], order_id: &str) {
    let reads = get_orders_of(log, order_id);
    let mut failures = 0u32;
    for pair in reads.windows(2) {
        let failed = pair[0]
            .fault
            .as_deref()
            .is_some_and(|f| !f.starts_with("unknown_status"));
        failures = if failed { failures + 1 } else { 0 };
        if !failed
            || pair[0]
                .fault
                .as_deref()
                .and_then(retry_after_secs)
                .is_some()
        {
            continue;
        }
        let least = (POLL_MS << failures) / 2;
        let gap = pair[1].wall_time - pair[0].wall_time;
        assert!(
            gap + SLACK_MS >= least.max(POLL_MS),
            "read {} came {gap} ms after failure {failures} in a row (read {}); at least {least} ms expected",
            pair[1].seq,
            pair[0].seq
        );
    }
}

/// `rate_limited(3s)` → 3.
fn retry_after_secs(label: &str) -> Option<u64> {
    label
        .strip_prefix("rate_limited(")?
        .strip_suffix("s)")?
        .parse()
        .ok()
}

/// Nothing bought twice, nothing paid twice: one `liquidity.buy` per Magma order, one `pay`
/// per payment hash.
fn assert_once_each(w: &World, orders: usize) {
    assert_eq!(w.buys(), orders, "one liquidity.buy per order");
    assert_eq!(w.sim.orders().len(), orders, "no duplicate Magma order");
    for o in w.sim.orders() {
        assert_eq!(
            w.emu.node().pay_calls_for(&o.payment_hash),
            1,
            "{} paid exactly once",
            o.id
        );
    }
    assert_eq!(w.pay_calls(), orders, "one pay call per order in all");
}

// ---- get_order faults while an order is followed ----------------------------------------------

/// `count` faulted reads of a followed order: each is logged as a warning, the order stays
/// live (nothing about it changed), the tracker backs off and reads again — never faster than
/// the floor, never before Retry-After — and once the fault stops it follows the order to DONE.
async fn get_order_fault(fault: Fault, count: usize) {
    let label = fault.label();
    let w = world(false, |c| c).await;
    let (id, order_id, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    // The tracker follows the order: it has stored Magma's status.
    let before = wait_order(&w.emu, &id, "a Magma status", |o| !o["status"].is_null()).await;
    w.sim
        .inject_fault(Operation::GetOrder, fault, Some(count as u32));
    let last = w
        .wait_faulted(Operation::GetOrder, Some(&order_id), count)
        .await;
    // The first clean read after the fault: the tracker recovered by itself.
    let clean = w
        .wait_request(last, "get_order after the fault", |r| {
            r.operation == Operation::GetOrder && r.fault.is_none() && r.http_status == Some(200)
        })
        .await;
    assert_eq!(clean.order_id.as_deref(), Some(order_id.as_str()));
    let during = order_state(&w.emu, &id).await;
    assert_eq!(during["state"], "PAYING", "{label}: still live: {during:#}");
    assert_eq!(during["status"], before["status"], "{label}: {during:#}");
    // A warning per failed read.
    let warned = w
        .wait_warnings(&[&id, "cannot read it from Magma"], count)
        .await;
    assert!(
        warned.iter().all(|l| !l.message.contains(API_KEY)),
        "{warned:?}"
    );

    let done = drive_until(&w.sim, &w.emu, &id, "DONE").await;
    assert_eq!(done["status"], "VALID_CHANNEL_OPENING", "{label}: {done:#}");
    assert_once_each(&w, 1);
    assert_cadence(&w.log(), &[&order_id]);
    assert_backoff(&w.log(), &order_id);
    finish(w.emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_order_http_500_is_retried_until_the_order_completes() {
    get_order_fault(Fault::Http500, 3).await;
}

/// Retry-After is obeyed: the read after each 429 comes no sooner (request-log wall times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_order_rate_limit_waits_for_retry_after() {
    get_order_fault(
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        2,
    )
    .await;
}

/// A read that outlives the client timeout (the plugin's test switch, 400 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_order_timeout_is_retried_until_the_order_completes() {
    get_order_fault(Fault::Slow { delay_ms: SLOW_MS }, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_order_non_json_body_is_retried_until_the_order_completes() {
    get_order_fault(Fault::NonJson, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_order_dropped_connection_is_retried_until_the_order_completes() {
    get_order_fault(Fault::DropAfterCommit, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_order_graphql_error_with_http_200_is_retried_until_the_order_completes() {
    get_order_fault(
        Fault::GraphqlError {
            message: "Internal server error".into(),
            code: "INTERNAL_SERVER_ERROR".into(),
        },
        3,
    )
    .await;
}

// ---- transaction_list faults while several orders are followed --------------------------------

/// Two orders followed with the API key (one `transaction_list` read per period stands in for
/// the per-order reads). While `transaction_list` fails, the orders are read one by one; once
/// it works again, the bulk read is back; both orders complete, each bought and paid once.
async fn transaction_list_fault(fault: Fault, count: usize) {
    let label = fault.label();
    let w = world(true, |c| c.option("magma-max-inflight", 2)).await;
    let (a, a_order, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    let (b, b_order, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    let placed = w.last_seq();
    // The tracker reads both orders in bulk.
    w.wait_request(placed, "bulk read", |r| {
        r.operation == Operation::TransactionList && r.fault.is_none()
    })
    .await;
    w.sim
        .inject_fault(Operation::TransactionList, fault, Some(count as u32));
    let first = w.wait_faulted(Operation::TransactionList, None, 1).await;
    let last = w
        .wait_faulted(Operation::TransactionList, None, count)
        .await;
    let back = w
        .wait_request(last, "bulk read after the fault", |r| {
            r.operation == Operation::TransactionList
                && r.fault.is_none()
                && r.http_status == Some(200)
        })
        .await;
    // Meanwhile each order was read on its own.
    let log = w.log();
    for o in [&a_order, &b_order] {
        assert!(
            get_orders_of(&log, o)
                .iter()
                .any(|r| r.seq > first && r.seq < back.seq),
            "{label}: {o} was read one by one while transaction_list failed: {log:#?}"
        );
    }
    for id in [&a, &b] {
        let o = order_state(&w.emu, id).await;
        assert_eq!(o["state"], "PAYING", "{label}: {o:#}");
    }

    for id in [&a, &b] {
        drive_until(&w.sim, &w.emu, id, "DONE").await;
    }
    assert_once_each(&w, 2);
    assert_cadence(&w.log(), &[&a_order, &b_order]);
    finish(w.emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_list_http_500_falls_back_to_reading_each_order() {
    transaction_list_fault(Fault::Http500, 3).await;
}

/// A 429 on the bulk read is Magma telling the account to wait: neither the next bulk read nor
/// single reads of the orders come before Retry-After; then both orders complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_list_rate_limit_waits_for_retry_after() {
    let w = world(true, |c| c.option("magma-max-inflight", 2)).await;
    let (a, a_order, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    let (b, b_order, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    let placed = w.last_seq();
    w.wait_request(placed, "bulk read", |r| {
        r.operation == Operation::TransactionList && r.fault.is_none()
    })
    .await;
    w.sim.inject_fault(
        Operation::TransactionList,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        Some(1),
    );
    let limited_seq = w.wait_faulted(Operation::TransactionList, None, 1).await;
    let limited = w
        .log()
        .into_iter()
        .find(|r| r.seq == limited_seq)
        .expect("the limited request is logged");
    let next = w
        .wait_request(limited.seq, "the next bulk read", |r| {
            r.operation == Operation::TransactionList
        })
        .await;
    assert!(
        next.wall_time >= limited.wall_time + 1000,
        "the next transaction_list came {} ms after a 429 with Retry-After: 1",
        next.wall_time - limited.wall_time
    );
    let log = w.log();
    for o in [&a_order, &b_order] {
        assert!(
            !get_orders_of(&log, o)
                .iter()
                .any(|r| r.seq > limited.seq && r.seq < next.seq),
            "{o} was read while the account was told to wait: {log:#?}"
        );
    }
    for id in [&a, &b] {
        drive_until(&w.sim, &w.emu, id, "DONE").await;
    }
    assert_once_each(&w, 2);
    assert_cadence(&w.log(), &[&a_order, &b_order]);
    finish(w.emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_list_timeout_falls_back_to_reading_each_order() {
    transaction_list_fault(Fault::Slow { delay_ms: SLOW_MS }, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_list_non_json_body_falls_back_to_reading_each_order() {
    transaction_list_fault(Fault::NonJson, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_list_dropped_connection_falls_back_to_reading_each_order() {
    transaction_list_fault(Fault::DropAfterCommit, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_list_graphql_error_with_http_200_falls_back_to_reading_each_order() {
    transaction_list_fault(
        Fault::GraphqlError {
            message: "Internal server error".into(),
            code: "INTERNAL_SERVER_ERROR".into(),
        },
        3,
    )
    .await;
}

/// With the API key and two orders, a `get_order` is sent when the bulk read shows an order
/// changed. A 429 on that read holds the order's next read back until Retry-After, although
/// every bulk read in between still shows the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_read_of_a_changed_order_waits_for_retry_after() {
    let w = world(true, |c| c.option("magma-max-inflight", 2)).await;
    let (a, a_order, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    let (b, b_order, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    let placed = w.last_seq();
    w.wait_request(placed, "bulk read", |r| {
        r.operation == Operation::TransactionList && r.fault.is_none()
    })
    .await;
    w.sim.inject_fault(
        Operation::GetOrder,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        Some(2),
    );
    // The seller approves both: the next bulk read shows both changed.
    w.sim.advance(Duration::from_secs(10));
    let last = w.wait_faulted(Operation::GetOrder, None, 2).await;
    for id in [&a, &b] {
        wait_order(&w.emu, id, "PAID", |o| o["state"] == "PAID").await;
    }
    assert!(w.last_seq() > last);
    for id in [&a, &b] {
        drive_until(&w.sim, &w.emu, id, "DONE").await;
    }
    assert_once_each(&w, 2);
    assert_cadence(&w.log(), &[&a_order, &b_order]);
    finish(w.emu).await;
}

// ---- buy faults not covered by tests/purchase_failures.rs -------------------------------------

/// One faulted buy, then a clean one. The faulted buy creates no second order: it is
/// abandoned (or, when the simulator did commit it and an API key can find it, adopted and
/// paid once); the committed order of an abandoned buy is never paid; and the next buy works.
async fn buy_fault(fault: Fault, api_key: bool) {
    let label = format!("{} api_key={api_key}", fault.label());
    let commits = matches!(fault, Fault::Slow { .. });
    let refused = matches!(fault, Fault::RateLimited { .. });
    let w = world(api_key, |c| c.option("magma-max-inflight", 2)).await;
    w.sim.inject_fault(Operation::Buy, fault, Some(1));
    let answer = w.emu.call("magma-buy", json!({"usd_cents": 1000})).await;
    assert_eq!(w.buys(), 1, "{label}: the buy was sent once");
    assert_eq!(
        w.sim.orders().len(),
        usize::from(commits),
        "{label}: the simulator committed as the fault says"
    );
    let all = w.emu.call("magma-orders", json!({})).await.unwrap();
    let stored = all["orders"].as_array().unwrap();
    assert_eq!(stored.len(), 1, "{label}: one intent stored: {all:#}");
    let first = &stored[0];
    if refused {
        // Magma said no before doing anything: the command fails and says why.
        let e = answer.expect_err("a rate-limited buy fails");
        assert!(e.message.contains("rate limiting"), "{label}: {e:?}");
    } else {
        answer.expect("an ambiguous buy answers with the stored order");
    }
    let adopted = commits && api_key;
    if adopted {
        assert_eq!(first["magma"]["adopted"], true, "{label}: {first:#}");
        assert_eq!(first["state"], "PAYING", "{label}: {first:#}");
    } else {
        assert_eq!(first["state"], "ABANDONED", "{label}: {first:#}");
        assert!(first["magma"].is_null(), "{label}: {first:#}");
        assert!(
            first["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{label}: {first:#}"
        );
    }
    if api_key && !refused {
        assert!(
            w.log()
                .iter()
                .any(|r| r.operation == Operation::TransactionList),
            "{label}: reconciled through transaction_list before anything else"
        );
    }
    assert_eq!(w.pay_calls(), usize::from(adopted), "{label}");
    for o in w.sim.orders() {
        let hash = &o.payment_hash;
        if adopted {
            wait_held(&w.sim, hash).await;
        }
        assert_eq!(
            w.emu.node().pay_calls_for(hash),
            usize::from(adopted),
            "{label}: an order the plugin does not hold is never paid"
        );
    }

    // The fault is over: the next buy goes ahead like any other.
    let (_, order_id, hash) = w.buy_held(json!({"usd_cents": 1000})).await;
    assert_eq!(w.buys(), 2, "{label}");
    assert_eq!(w.sim.orders().len(), usize::from(commits) + 1, "{label}");
    assert!(w.sim.order(&order_id).is_some());
    assert_eq!(w.emu.node().pay_calls_for(&hash), 1, "{label}");
    assert_eq!(w.pay_calls(), usize::from(adopted) + 1, "{label}");
    finish(w.emu).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_answered_with_a_maintenance_page_is_never_repeated() {
    buy_fault(Fault::NonJson, false).await;
    buy_fault(Fault::NonJson, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_answered_with_a_graphql_error_and_http_200_is_never_repeated() {
    let fault = || Fault::GraphqlError {
        message: "Internal server error".into(),
        code: "INTERNAL_SERVER_ERROR".into(),
    };
    buy_fault(fault(), false).await;
    buy_fault(fault(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_buy_fails_cleanly_and_the_next_one_works() {
    buy_fault(
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        false,
    )
    .await;
}

/// The buy is committed but its answer comes after the client gave up: with the API key the
/// order is found and paid once; without, it is abandoned and its invoice never paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_that_times_out_is_reconciled_not_repeated() {
    buy_fault(Fault::Slow { delay_ms: SLOW_MS }, true).await;
    buy_fault(Fault::Slow { delay_ms: SLOW_MS }, false).await;
}

// ---- an unknown status ------------------------------------------------------------------------

/// A status this build does not know (design.md §5, invariant 7): stored and shown, the order
/// kept in flight, one warning for the operator (not one per read); when Magma moves on, the
/// order completes as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_status_keeps_the_order_live_with_a_warning() {
    let w = world(false, |c| c).await;
    let (id, order_id, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    w.sim.inject_fault(
        Operation::GetOrder,
        Fault::UnknownStatus("SELLER_PONDERING".into()),
        Some(3),
    );
    w.wait_faulted(Operation::GetOrder, Some(&order_id), 3)
        .await;
    let o = wait_order(&w.emu, &id, "the unknown status", |o| {
        o["status"] == "SELLER_PONDERING"
    })
    .await;
    assert_eq!(o["state"], "PAYING", "in flight: {o:#}");
    let live = w.emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(live["orders"]["live"][0]["id"], id.as_str(), "{live:#}");
    w.wait_warnings(&[&id, "SELLER_PONDERING", "does not know"], 1)
        .await;

    let done = drive_until(&w.sim, &w.emu, &id, "DONE").await;
    assert_eq!(done["status"], "VALID_CHANNEL_OPENING", "{done:#}");
    // Known statuses are logged at info, as before; the unknown one was warned about once, not
    // once per read that showed it.
    let line = w
        .emu
        .wait_for_log("→ VALID_CHANNEL_OPENING", WAIT)
        .await
        .unwrap();
    assert_eq!(line.level, "info", "{line:?}");
    assert_eq!(
        w.warnings(&[&id, "Magma status"]).len(),
        1,
        "{:#?}",
        w.emu.logs()
    );
    assert_once_each(&w, 1);
    finish(w.emu).await;
}

// ---- hostile answers through a spoiling proxy -------------------------------------------------

/// How the proxy spoils one answer.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    /// A body of this many bytes instead of the answer.
    Oversized(usize),
    /// The answer's JSON, edited.
    Edit(fn(&mut Value)),
    /// The answer cut in half.
    Truncated,
}

/// A proxy in front of the simulator: every request goes through to it (a buy is committed
/// as usual), and the answers of the operations armed are spoiled on the way back.
struct Proxy {
    url: String,
    armed: Arc<Mutex<VecDeque<(&'static str, Spoil)>>>,
    spoiled: Arc<Mutex<usize>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/graphql", listener.local_addr().unwrap());
        let armed: Arc<Mutex<VecDeque<(&'static str, Spoil)>>> = Arc::default();
        let spoiled = Arc::new(Mutex::new(0));
        let (a, s) = (armed.clone(), spoiled.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (a, s) = (a.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, upstream, a, s).await;
                });
            }
        });
        Proxy {
            url,
            armed,
            spoiled,
        }
    }

    /// Spoils the next answer to `operation` (the GraphQL operation name the plugin sends).
    fn arm(&self, operation: &'static str, spoil: Spoil) {
        self.armed.lock().unwrap().push_back((operation, spoil));
    }

    fn spoiled(&self) -> usize {
        *self.spoiled.lock().unwrap()
    }

    async fn wait_spoiled(&self, n: usize) {
        for _ in 0..1000 {
            if self.spoiled() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {} answers spoiled, not {n}", self.spoiled());
    }
}

/// One client connection: HTTP/1.1 requests in turn (keep-alive), each passed to the
/// simulator on a connection of its own.
async fn serve(
    conn: tokio::net::TcpStream,
    upstream: SocketAddr,
    armed: Arc<Mutex<VecDeque<(&'static str, Spoil)>>>,
    spoiled: Arc<Mutex<usize>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut conn = BufReader::new(conn);
    loop {
        let mut length = 0usize;
        let mut auth = None;
        let mut line = String::new();
        if conn.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => auth = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await?;

        let mut up = tokio::net::TcpStream::connect(upstream).await?;
        let mut head = format!(
            "POST /graphql HTTP/1.1\r\nhost: {upstream}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n"
        );
        if let Some(a) = auth {
            head.push_str(&format!("authorization: {a}\r\n"));
        }
        head.push_str("\r\n");
        up.write_all(head.as_bytes()).await?;
        up.write_all(&body).await?;
        let mut raw = Vec::new();
        up.read_to_end(&mut raw).await?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let answer_head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status: u16 = answer_head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        let mut answer = raw[split + 4..].to_vec();
        if answer_head.contains("transfer-encoding: chunked") {
            answer = unchunk(&answer);
        }

        let request = String::from_utf8_lossy(&body);
        let spoil = {
            let mut armed = armed.lock().unwrap();
            let at = armed.iter().position(|(op, _)| {
                request.contains(&format!("query {op}("))
                    || request.contains(&format!("mutation {op}("))
            });
            at.and_then(|i| armed.remove(i)).map(|(_, s)| s)
        };
        if let Some(spoil) = spoil {
            answer = match spoil {
                Spoil::Oversized(n) => {
                    let mut big = b"{\"data\":\"".to_vec();
                    big.resize(n, b'x');
                    big
                }
                Spoil::Edit(edit) => {
                    let mut v: Value = serde_json::from_slice(&answer).expect("JSON answer");
                    edit(&mut v);
                    serde_json::to_vec(&v).unwrap()
                }
                Spoil::Truncated => answer[..answer.len() / 2].to_vec(),
            };
            *spoiled.lock().unwrap() += 1;
        }
        let out = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        let stream = conn.get_mut();
        stream.write_all(out.as_bytes()).await?;
        stream.write_all(&answer).await?;
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// The plugin behind the spoiling proxy.
async fn proxied_world(api_key: bool) -> (World, Proxy) {
    use lightningd_emulator::{ChannelSpec, ChannelState, magma, peer_id};
    let (sim, server) = sim_with(sim_config(api_key)).await;
    let proxy = Proxy::start(server.addr).await;
    let cfg = with_key(
        api_key,
        config(&proxy.url).env("CLN_MAGMA_TEST_POLL_MS", &POLL_MS.to_string()),
    );
    let emu = start(cfg).await;
    emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), HUB_MSAT).state(ChannelState::Normal),
    );
    let follow = magma::attach(emu.node(), &sim);
    (
        World {
            sim,
            _server: server,
            emu,
            _follow: follow,
        },
        proxy,
    )
}

fn get_order(v: &mut Value) -> &mut Value {
    &mut v["data"]["user"]["market"]["orders"]["get_order"]
}

/// Oversized, mistyped, incomplete and cut answers to `get_order`: each is one clear warning
/// naming what was wrong, the order stays live, and once the answers are sound again it
/// completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_get_order_answers_are_warned_about_and_survived() {
    let (w, proxy) = proxied_world(false).await;
    let (id, order_id, _) = w.buy_held(json!({"usd_cents": 1000})).await;
    let cases: Vec<(Spoil, &str)> = vec![
        (Spoil::Oversized(2 << 20), "larger than 1048576 bytes"),
        (
            Spoil::Edit(|v| get_order(v)["status"] = json!(42)),
            "invalid type: integer `42`",
        ),
        (
            Spoil::Edit(|v| {
                get_order(v).as_object_mut().unwrap().remove("id");
            }),
            "missing field `id`",
        ),
        (
            Spoil::Edit(|v| get_order(v)["fees"]["buyer"]["sats"] = json!("-5")),
            "is not a whole number",
        ),
        (Spoil::Truncated, "not GraphQL JSON"),
    ];
    for (n, (spoil, _)) in cases.iter().enumerate() {
        proxy.arm("GetOrder", *spoil);
        proxy.wait_spoiled(n + 1).await;
        // The next (sound) read of the order comes after the tracker backed off.
        let after = w.last_seq();
        w.wait_request(after, "a sound read", |r| {
            r.operation == Operation::GetOrder && r.order_id.as_deref() == Some(&order_id)
        })
        .await;
        let o = order_state(&w.emu, &id).await;
        assert_eq!(o["state"], "PAYING", "{spoil:?}: still live: {o:#}");
    }
    for (spoil, words) in &cases {
        let warned = w
            .wait_warnings(&[&id, "Magma sent a response we cannot use", words], 1)
            .await;
        assert_eq!(warned.len(), 1, "{spoil:?}: {:#?}", w.emu.logs());
    }
    drive_until(&w.sim, &w.emu, &id, "DONE").await;
    assert_once_each(&w, 1);
    assert_cadence(&w.log(), &[&order_id]);
    finish(w.emu).await;
}

/// A committed buy whose answer is spoiled (mistyped, incomplete): the outcome is unknown, so
/// with the API key the order is found through transaction_list and paid once — never bought
/// again; without one it is abandoned and its invoice never paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_buy_with_a_hostile_answer_is_reconciled_not_repeated() {
    let spoils: [(Spoil, &str); 2] = [
        (
            Spoil::Edit(|v| {
                v["data"]["liquidity"]["buy"]["payment"]
                    .as_object_mut()
                    .unwrap()
                    .remove("lightning_invoice");
            }),
            "no payment.lightning_invoice",
        ),
        (
            Spoil::Edit(|v| v["data"]["liquidity"]["buy"]["order"]["transaction_id"] = json!(7)),
            "unexpected shape",
        ),
    ];
    for api_key in [true, false] {
        for (spoil, words) in spoils {
            let (w, proxy) = proxied_world(api_key).await;
            proxy.arm("BuyLiquidity", spoil);
            let placed = w
                .emu
                .call("magma-buy", json!({"usd_cents": 1000}))
                .await
                .expect("magma-buy answers with the stored order");
            assert_eq!(proxy.spoiled(), 1);
            assert_eq!(w.buys(), 1, "sent once");
            let committed = w.sim.orders();
            assert_eq!(committed.len(), 1, "the simulator committed the buy");
            let hash = committed[0].payment_hash.clone();
            let warned = w
                .wait_warnings(&["outcome of the buy is unknown", words], 1)
                .await;
            assert_eq!(warned.len(), 1, "{spoil:?}: {:#?}", w.emu.logs());
            let id = placed["id"].as_str().unwrap().to_string();
            if api_key {
                let o = order_state(&w.emu, &id).await;
                assert_eq!(o["magma"]["adopted"], true, "{o:#}");
                assert_eq!(o["magma"]["order_id"], committed[0].id.as_str());
                drive_until(&w.sim, &w.emu, &id, "DONE").await;
                assert_once_each(&w, 1);
            } else {
                assert_eq!(placed["state"], "ABANDONED", "{placed:#}");
                assert_eq!(w.emu.node().pay_calls_for(&hash), 0);
                assert_eq!(w.pay_calls(), 0);
            }
            finish(w.emu).await;
        }
    }
}
