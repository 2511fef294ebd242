//! Manual purchases that go wrong, through the real plugin binary under the lightningd emulator
//! and the Magma simulator: every scripted seller failure, every invoice that must not be paid,
//! a lost buy answer, and the limits of `magma-buy`. Every test ends by checking that no session
//! key or API key showed up in logs, notifications, stderr or command output.

mod common;

use std::time::Duration;

use common::*;
use lightningd_emulator::{Emulator, EmulatorConfig, Opener, PayStatus, RpcError};
use magma_sim::{
    Fault, HtlcState, InvoiceFault, Operation, PaymentStatus, SellerScript, Sim, SimConfig,
    SimServer,
};
use serde_json::{Value, json};

/// The API key of the tests that use one; it must never appear anywhere the operator can see.
const API_KEY: &str = "amboss_key_do_not_leak_5f3c9a1e77d04b2c";

/// `magma-buy` refusals that need the operator (in-flight, budget, price).
const NOT_READY: i64 = 1603;

/// The plugin, the simulator, and everything the plugin said back, for the secrets check.
struct World {
    sim: Sim,
    _server: SimServer,
    emu: Emulator,
    _follow: tokio::task::JoinHandle<()>,
    api_key: Option<&'static str>,
    outputs: Vec<String>,
}

impl World {
    async fn new(seller: SellerScript) -> World {
        World::with(seller, None, |sim| sim, |cfg| cfg).await
    }

    async fn with(
        seller: SellerScript,
        api_key: Option<&'static str>,
        sim_tweak: impl FnOnce(SimConfig) -> SimConfig,
        emu_tweak: impl FnOnce(EmulatorConfig) -> EmulatorConfig,
    ) -> World {
        let sim_cfg = sim_tweak(SimConfig {
            default_seller: seller,
            block_interval_secs: 0,
            api_keys: api_key.iter().map(|k| k.to_string()).collect(),
            ..SimConfig::default()
        });
        let (sim, server, emu, follow) = purchase_world(sim_cfg, |cfg| {
            let cfg = match api_key {
                Some(k) => cfg.env("AMBOSS_API_KEY", k),
                None => cfg,
            };
            emu_tweak(cfg)
        })
        .await;
        World {
            sim,
            _server: server,
            emu,
            _follow: follow,
            api_key,
            outputs: Vec::new(),
        }
    }

    /// A command through the socket; its answer (or error) is kept for the secrets check.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        let r = self.emu.call(method, params).await;
        self.outputs.push(match &r {
            Ok(v) => v.to_string(),
            Err(e) => format!("{} {} {:?}", e.code, e.message, e.data),
        });
        r
    }

    /// A `magma-buy` that must succeed: its answer, and the Magma order it placed (if any).
    async fn buy(&mut self, params: Value) -> (Value, Option<magma_sim::OrderSnapshot>) {
        let placed = self.call("magma-buy", params).await.expect("magma-buy");
        let sim_order = placed["magma"]["order_id"]
            .as_str()
            .map(|oid| self.sim.order(oid).expect("the simulator has the order"));
        (placed, sim_order)
    }

    async fn order(&mut self, id: &str) -> Value {
        let o = order_state(&self.emu, id).await;
        self.outputs.push(o.to_string());
        o
    }

    async fn drive_until(&mut self, id: &str, state: &str) -> Value {
        let o = drive_until(&self.sim, &self.emu, id, state).await;
        self.outputs.push(o.to_string());
        o
    }

    fn buys(&self) -> usize {
        self.sim
            .request_log()
            .iter()
            .filter(|r| r.operation == Operation::Buy)
            .count()
    }

    /// `pay` calls of any kind the plugin made.
    fn pay_calls(&self) -> usize {
        self.emu
            .plugin_rpc_calls()
            .iter()
            .filter(|(m, _)| m == "pay")
            .count()
    }

    /// How often the plugin asked the node about payments to `hash`.
    fn node_payment_reads(&self, hash: &str) -> usize {
        self.emu
            .plugin_rpc_calls()
            .iter()
            .filter(|(m, p)| (m == "listsendpays" || m == "listpays") && p["payment_hash"] == hash)
            .count()
    }

    async fn wait_node_payment_reads(&self, hash: &str, n: usize) {
        for _ in 0..1000 {
            if self.node_payment_reads(hash) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the plugin never read the payment record for {hash} {n} times");
    }

    /// Lets the seller approve (10 s of the seller's clock, short of any later step) and waits
    /// until the plugin has seen the payment held: PAID.
    async fn until_paid(&mut self, id: &str) -> Value {
        self.sim.advance(Duration::from_secs(10));
        let o = wait_order(&self.emu, id, "PAID", |o| o["state"] == "PAID").await;
        self.outputs.push(o.to_string());
        o
    }

    /// Waits (without moving the simulator's clock) until the simulator holds the HTLC.
    async fn wait_held(&self, hash: &str) {
        let mut rx = self.sim.subscribe();
        let held = async {
            while self.sim.htlc_state(hash) != Some(HtlcState::Held) {
                rx.changed().await.expect("the simulator runs");
            }
        };
        tokio::time::timeout(WAIT, held)
            .await
            .unwrap_or_else(|_| panic!("the HTLC for {hash} was never held"));
    }

    /// The node's own record shows the payment to `hash` failed, made by exactly one `pay`, and
    /// the outbound it used is back: nothing was spent.
    fn assert_refund_observed(&self, hash: &str) {
        let node = self.emu.node();
        assert_eq!(node.pay_calls_for(hash), 1, "paid exactly once");
        let parts: Vec<_> = node
            .payments()
            .into_iter()
            .filter(|p| p.payment_hash == hash)
            .collect();
        assert!(!parts.is_empty(), "the node has a payment for {hash}");
        for p in &parts {
            assert_eq!(p.status, PayStatus::Failed, "{p:?}");
        }
        assert_nothing_spent(&self.emu);
    }

    /// The order ended where the seller left it: the state, the Magma status, the guide's
    /// follow-up, and no channel claimed.
    fn assert_ended(&self, o: &Value, state: &str, status: &str, follow_up: &str) {
        assert_eq!(o["state"], state, "{o:#}");
        assert_eq!(o["status"], status, "{o:#}");
        assert_eq!(o["follow_up"]["what"], follow_up, "{o:#}");
        assert!(
            o["follow_up"]["advice"]
                .as_str()
                .is_some_and(|a| !a.is_empty()),
            "{o:#}"
        );
        assert!(o["channel"].is_null(), "no channel is claimed: {o:#}");
        assert!(
            o["reason"].as_str().is_some_and(|r| r.contains(status)),
            "{o:#}"
        );
        assert_eq!(self.buys(), 1, "exactly one liquidity.buy");
    }

    /// A failure that came while the order was still PAYING (the HTLC held before the seller
    /// approved): the seller's side ended it as scripted, the payment came back, and the order
    /// is REFUNDED from the node's record — with Magma's failure status and the guide's
    /// follow-up, which the tracker reads before ending the order — with no channel and no
    /// second pay.
    fn assert_refunded_while_paying(
        &self,
        o: &Value,
        order_id: &str,
        status: &str,
        follow_up: &str,
    ) {
        let sim_order = self.sim.order(order_id).unwrap();
        assert_eq!(
            sim_order.status.as_str(),
            status,
            "the seller failed as scripted"
        );
        assert_eq!(sim_order.payment_status, PaymentStatus::HodlInvoiceTimeout);
        assert_eq!(sim_order.htlc, HtlcState::Cancelled);
        assert_eq!(o["state"], "REFUNDED", "{o:#}");
        assert_eq!(states(o), ["PLACING", "PLACED", "PAYING", "REFUNDED"]);
        assert!(o["channel"].is_null(), "no channel is claimed: {o:#}");
        assert_eq!(o["status"], status, "{o:#}");
        assert_eq!(o["follow_up"]["what"], follow_up, "{o:#}");
        assert_eq!(self.buys(), 1, "exactly one liquidity.buy");
        self.assert_refund_observed(&sim_order.payment_hash);
    }

    /// Shuts the plugin down and checks that no secret was ever shown: the stored session keys
    /// of every order and the API key, against logs, notifications, stderr and command output.
    async fn end(mut self) {
        let all = self.call("magma-orders", json!({})).await.expect("orders");
        self.call("magma-status", json!({})).await.expect("status");
        let mut secrets: Vec<String> = all["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| stored_session_key(&self.emu, o["id"].as_str().unwrap()))
            .collect();
        for s in &secrets {
            assert!(s.len() >= 16, "a real session key was stored: {s:?}");
        }
        secrets.extend(self.api_key.map(str::to_string));
        assert!(
            !secrets.is_empty(),
            "every test has a secret to keep: a session key or the API key"
        );
        let emu = finish(self.emu).await;
        let notes: Vec<String> = emu
            .notifications()
            .iter()
            .map(|(topic, n)| format!("{topic} {n}"))
            .collect();
        let logs: Vec<String> = emu.logs().into_iter().map(|l| l.message).collect();
        for secret in &secrets {
            for (what, texts) in [
                ("log", &logs),
                ("notification", &notes),
                ("stderr", &emu.stderr()),
                ("lightningd log", &emu.emulator_log()),
                ("command output", &self.outputs),
            ] {
                for t in texts {
                    assert!(!t.contains(secret.as_str()), "a secret in a {what}: {t}");
                }
            }
        }
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an order id").to_string()
}

/// The hub channel has all its outbound again and no HTLC in flight.
fn assert_nothing_spent(emu: &Emulator) {
    let hub = emu
        .node()
        .channels()
        .into_iter()
        .find(|c| c.opener == Opener::Local)
        .expect("the hub channel");
    assert_eq!(hub.to_us_msat, HUB_MSAT, "nothing was spent");
    assert!(hub.htlcs_out.is_empty(), "{:?}", hub.htlcs_out);
}

fn states(o: &Value) -> Vec<String> {
    o["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["state"].as_str().map(str::to_string))
        .collect()
}

// ---- 1. Scripted seller failures ----

/// The plugin pays at once, so the HTLC is held while the seller still decides; the rejection
/// fails it back, and the order is REFUNDED once the node's own record says failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_rejection_after_the_htlc_is_held_ends_refunded() {
    let mut w = World::new(SellerScript::Reject).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let sim_order = sim_order.unwrap();
    let id = id_of(&placed);
    assert_eq!(placed["state"], "PAYING", "{placed:#}");
    assert_eq!(placed["pay_mode"], "node");
    // Money moved before the seller said no.
    w.wait_held(&sim_order.payment_hash).await;
    let o = w.drive_until(&id, "REFUNDED").await;
    w.assert_refunded_while_paying(&o, &sim_order.id, "SELLER_REJECTED", "reorder");
    w.end().await;
}

/// Nothing paid (the invoice was handed to another wallet that never paid): the rejection
/// simply ends the order FAILED, with no payment anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_rejection_before_any_payment_ends_failed() {
    let mut w = World::new(SellerScript::Reject).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000, "external": true})).await;
    let sim_order = sim_order.unwrap();
    let id = id_of(&placed);
    assert_eq!(placed["pay_mode"], "external");
    let o = w.drive_until(&id, "FAILED").await;
    w.assert_ended(&o, "FAILED", "SELLER_REJECTED", "reorder");
    assert_eq!(w.emu.node().pay_calls_for(&sim_order.payment_hash), 0);
    assert_eq!(w.pay_calls(), 0, "no pay call at all");
    assert!(w.emu.node().payments().is_empty());
    assert_nothing_spent(&w.emu);
    w.end().await;
}

/// As with a rejection: the HTLC is held while the seller lets the deadline pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_that_never_reacts_ends_refunded() {
    let mut w = World::new(SellerScript::NoReact).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let sim_order = sim_order.unwrap();
    let id = id_of(&placed);
    w.wait_held(&sim_order.payment_hash).await;
    let o = w.drive_until(&id, "REFUNDED").await;
    w.assert_refunded_while_paying(&o, &sim_order.id, "SELLER_FAILED_TO_REACT", "reorder");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_that_never_opens_ends_refunded_with_rails_only_advice() {
    let mut w = World::new(SellerScript::NoOpen).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let hash = sim_order.unwrap().payment_hash;
    let id = id_of(&placed);
    w.until_paid(&id).await;
    let o = w.drive_until(&id, "REFUNDED").await;
    w.assert_ended(
        &o,
        "REFUNDED",
        "SELLER_FAILED_TO_OPEN_CHANNEL",
        "reorder_rails_only",
    );
    // The HTLC was held (PAID) before it came back.
    assert_eq!(
        states(&o),
        ["PLACING", "PLACED", "PAYING", "PAID", "REFUNDED"]
    );
    w.assert_refund_observed(&hash);
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funding_transaction_that_never_comes_ends_refunded_with_rails_only_advice() {
    let mut w = World::new(SellerScript::SendSwapFail).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let hash = sim_order.unwrap().payment_hash;
    let id = id_of(&placed);
    w.until_paid(&id).await;
    let o = w.drive_until(&id, "REFUNDED").await;
    w.assert_ended(
        &o,
        "REFUNDED",
        "SELLER_FAILED_TO_SEND_SWAP",
        "reorder_rails_only",
    );
    w.assert_refund_observed(&hash);
    w.end().await;
}

/// The seller opened a channel that fails Magma's check: it is on the node, yet the order does
/// not claim it; the payment comes back and the guide says to open a ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_channel_is_not_claimed_and_asks_for_a_support_ticket() {
    let mut w = World::new(SellerScript::InvalidChannel).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let hash = sim_order.unwrap().payment_hash;
    let id = id_of(&placed);
    w.until_paid(&id).await;
    let o = w.drive_until(&id, "REFUNDED").await;
    w.assert_ended(&o, "REFUNDED", "INVALID_CHANNEL_OPENING", "support_ticket");
    assert!(
        w.emu
            .node()
            .channels()
            .iter()
            .any(|c| c.opener == Opener::Remote && c.peer_id == w.sim.node_pubkey()),
        "the seller's channel exists on the node"
    );
    assert!(!o["funding_txid"].is_null(), "{o:#}");
    w.assert_refund_observed(&hash);
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_closed_by_amboss_ends_refunded_and_asks_to_contact_support() {
    let mut w = World::new(SellerScript::AdminClose).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let hash = sim_order.unwrap().payment_hash;
    let id = id_of(&placed);
    w.until_paid(&id).await;
    let o = w.drive_until(&id, "REFUNDED").await;
    w.assert_ended(&o, "REFUNDED", "ADMIN_CLOSED", "contact_support");
    w.assert_refund_observed(&hash);
    w.end().await;
}

/// The seller's side fails every HTLC back at once: the plugin's one `pay` fails, the node's
/// record says so, nothing is spent, and the plugin does not pay again while Magma waits for
/// the invoice to expire (BUYER_FAILED_TO_PAY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_the_seller_fails_back_ends_the_order_without_paying_again() {
    let mut w = World::new(SellerScript::BuyerNeverPays).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let sim_order = sim_order.unwrap();
    let id = id_of(&placed);
    let o = w.drive_until(&id, "REFUNDED").await;
    assert_eq!(states(&o), ["PLACING", "PLACED", "PAYING", "REFUNDED"]);
    assert!(
        o["reason"]
            .as_str()
            .is_some_and(|r| r.contains("payment failed")),
        "{o:#}"
    );
    assert!(o["channel"].is_null());
    w.assert_refund_observed(&sim_order.payment_hash);
    // Magma gives up on the invoice; the plugin has not paid it again.
    w.sim.advance(Duration::from_secs(3700));
    let ended = w.sim.order(&sim_order.id).unwrap();
    assert_eq!(ended.status.as_str(), "BUYER_FAILED_TO_PAY");
    assert_eq!(ended.payment_status, PaymentStatus::PendingPayment);
    let o = w.order(&id).await;
    assert_eq!(o["state"], "REFUNDED");
    assert_eq!(w.emu.node().pay_calls_for(&sim_order.payment_hash), 1);
    assert_eq!(w.buys(), 1);
    w.end().await;
}

/// Invariant 6 on its own: Magma's failure status while the node still holds the HTLC keeps
/// the order live (PAID, the follow-up already recorded); it is REFUNDED only once the node's
/// payment record says failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_status_is_not_a_refund_until_the_node_says_so() {
    let mut w = World::new(SellerScript::Happy).await;
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let sim_order = sim_order.unwrap();
    let hash = sim_order.payment_hash.clone();
    let id = id_of(&placed);
    w.until_paid(&id).await;
    // Magma says the seller failed, but (forced) the HTLC stays held.
    w.sim
        .force_status(&sim_order.id, "SELLER_FAILED_TO_OPEN_CHANNEL")
        .unwrap();
    let o = wait_order(&w.emu, &id, "the failure status", |o| {
        o["status"] == "SELLER_FAILED_TO_OPEN_CHANNEL"
    })
    .await;
    // Two more reads of the node's payment record after that (a full tracker pass at least):
    // the order is still live.
    let seen = w.node_payment_reads(&hash);
    w.wait_node_payment_reads(&hash, seen + 2).await;
    let o2 = w.order(&id).await;
    for o in [&o, &o2] {
        assert_eq!(o["state"], "PAID", "Magma's word alone is no refund: {o:#}");
        assert_eq!(o["follow_up"]["what"], "reorder_rails_only");
    }
    let parts: Vec<_> = w
        .emu
        .node()
        .payments()
        .into_iter()
        .filter(|p| p.payment_hash == hash)
        .collect();
    assert!(
        parts.iter().all(|p| p.status == PayStatus::Pending),
        "{parts:?}"
    );
    let live = w.call("magma-status", json!({})).await.unwrap();
    assert_eq!(live["orders"]["live"][0]["id"], id.as_str(), "{live:#}");
    // The HTLC comes back: now it is a refund.
    w.sim.cancel(&hash).unwrap();
    let o = wait_order(&w.emu, &id, "REFUNDED", |o| o["state"] == "REFUNDED").await;
    w.outputs.push(o.to_string());
    w.assert_ended(
        &o,
        "REFUNDED",
        "SELLER_FAILED_TO_OPEN_CHANNEL",
        "reorder_rails_only",
    );
    w.assert_refund_observed(&hash);
    w.end().await;
}

// ---- 2. Invoices that must not be paid ----

/// Buys once with `fault` on the invoice and checks the order ended REJECTED, unpaid, with a
/// reason holding every one of `words`.
async fn rejected_invoice(w: &mut World, fault: Option<InvoiceFault>, words: &[&str]) -> Value {
    if let Some(f) = fault {
        w.sim.inject_invoice_fault(f, Some(1));
    }
    let (placed, sim_order) = w.buy(json!({"usd_cents": 1000})).await;
    let sim_order = sim_order.unwrap();
    assert_eq!(placed["state"], "REJECTED", "{placed:#}");
    assert_eq!(states(&placed), ["PLACING", "PLACED", "REJECTED"]);
    let reason = placed["reason"].as_str().expect("a reason");
    for word in words {
        assert!(reason.contains(word), "{reason:?} lacks {word:?}");
    }
    assert!(reason.ends_with("not paid"), "{reason:?}");
    assert!(placed["invoice"].is_null(), "no invoice was accepted");
    let id = id_of(&placed);
    let o = w.order(&id).await;
    assert_eq!(o["state"], "REJECTED");
    assert_eq!(o["reason"], placed["reason"]);
    assert_eq!(w.emu.node().pay_calls_for(&sim_order.payment_hash), 0);
    assert_eq!(w.pay_calls(), 0, "no pay call at all");
    assert_eq!(
        w.sim.htlc_state(&sim_order.payment_hash),
        Some(HtlcState::Unpaid)
    );
    assert_eq!(w.buys(), 1);
    assert_nothing_spent(&w.emu);
    placed
}

/// The invoice asks more than `payment.amount.sats` — so much more that its price would also
/// break magma-max-fee-ppm: refused, naming both amounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_above_the_promised_amount_is_not_paid() {
    let mut w = World::new(SellerScript::Happy).await;
    let extra = 50_000;
    let placed = rejected_invoice(
        &mut w,
        Some(InvoiceFault::AmountAbove(extra)),
        &["but Magma promised"],
    )
    .await;
    let promised = placed["magma"]["invoice_sats"].as_u64().unwrap();
    let inbound = placed["request"]["expected_inbound_sat"].as_u64().unwrap();
    let asked = promised + extra;
    assert!(
        asked * 1_000_000 / inbound > 5000,
        "the tampered invoice is also above the default price cap"
    );
    let reason = placed["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "invoice asks {} sats but Magma promised {}",
            cln_magma::invoice::grouped(asked),
            cln_magma::invoice::grouped(promised)
        )),
        "{reason:?}"
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_for_another_network_is_not_paid() {
    let mut w = World::new(SellerScript::Happy).await;
    rejected_invoice(
        &mut w,
        Some(InvoiceFault::WrongNetwork),
        &["invoice is for the 'bc' network", "regtest"],
    )
    .await;
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_expiring_within_ten_minutes_is_not_paid() {
    let mut w = World::new(SellerScript::Happy).await;
    rejected_invoice(
        &mut w,
        Some(InvoiceFault::ExpiresIn(300)),
        &["invoice expires in", "less than the 600 s"],
    )
    .await;
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_invoice_is_not_paid() {
    let mut w = World::new(SellerScript::Happy).await;
    rejected_invoice(
        &mut w,
        Some(InvoiceFault::Undecodable),
        &["cannot decode the invoice"],
    )
    .await;
    w.end().await;
}

/// The quote passes the price cap, but the invoice (exactly `payment.amount.sats`, at a worse
/// exchange rate) does not: the cap is checked again on the invoice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_priced_above_the_cap_is_not_paid_though_the_quote_passed() {
    let mut w = World::with(
        SellerScript::Happy,
        None,
        |sim| SimConfig {
            // Three times the quote's sats per USD: ~5,990 ppm on the invoice, ~1,996 quoted.
            btc_sats_per_usd: Some(543_260.0 / 501.09 * 3.0),
            ..sim
        },
        |cfg| cfg,
    )
    .await;
    let placed = rejected_invoice(&mut w, None, &["above magma-max-fee-ppm 5,000"]).await;
    let quoted = placed["request"]["quoted_ppm"].as_u64().unwrap();
    assert!(quoted <= 5000, "the quote passed the cap: {quoted}");
    w.end().await;
}

/// A quote above magma-max-fee-ppm refuses the buy before anything is stored or sent, and
/// force does not lift the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_above_the_price_cap_refuses_the_buy_even_with_force() {
    let mut w = World::new(SellerScript::Happy).await;
    w.emu
        .setconfig("magma-max-fee-ppm", json!(1000))
        .await
        .expect("setconfig");
    for args in [
        json!({"usd_cents": 1000}),
        json!({"usd_cents": 1000, "force": true}),
    ] {
        expect_error(
            w.call("magma-buy", args).await,
            NOT_READY,
            &["magma-max-fee-ppm (1000)", "nothing bought"],
        );
    }
    let all = w.call("magma-orders", json!({})).await.unwrap();
    assert_eq!(all["orders"].as_array().unwrap().len(), 0, "nothing stored");
    assert_eq!(w.buys(), 0, "nothing sent");
    assert!(w.sim.orders().is_empty());
    assert_eq!(w.pay_calls(), 0);
    // The same buy passes once the cap allows the price (and gives the test a secret to keep).
    w.emu
        .setconfig("magma-max-fee-ppm", json!(5000))
        .await
        .expect("setconfig");
    let (placed, _) = w.buy(json!({"usd_cents": 1000})).await;
    assert_eq!(placed["state"], "PAYING");
    w.end().await;
}

// ---- 3. A lost answer to the buy ----

/// The buy committed but its answer was lost: with an API key the order is found through
/// transaction_list and adopted — never bought again. Its invoice is read back from Magma and
/// checked like any other (against the quote, Magma's promised amount having been lost), then
/// paid once. A second lost buy adopts its own order, not the first one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_buy_answer_with_an_api_key_is_adopted_and_paid_once() {
    let mut w = World::with(
        SellerScript::Happy,
        Some(API_KEY),
        |s| s,
        |c| c.option("magma-max-inflight", 2),
    )
    .await;
    w.sim
        .inject_fault(Operation::Buy, Fault::DropAfterCommit, Some(2));
    let mut adopted = Vec::new();
    for n in 1..=2 {
        let placed = w
            .call("magma-buy", json!({"usd_cents": 1000}))
            .await
            .expect("magma-buy");
        assert_eq!(w.buys(), n, "one liquidity.buy per command");
        let committed = w.sim.orders();
        assert_eq!(committed.len(), n, "the simulator committed each buy");
        let id = id_of(&placed);
        let o = w.order(&id).await;
        assert_eq!(o["magma"]["adopted"], true, "{o:#}");
        assert_eq!(o["magma"]["credential"], "api_key");
        let order_id = o["magma"]["order_id"].as_str().unwrap().to_string();
        let sim_order = committed
            .iter()
            .find(|c| c.id == order_id)
            .unwrap_or_else(|| panic!("{order_id} is one of the simulator's orders"));
        assert!(!adopted.contains(&order_id), "adopted twice: {order_id}");
        assert_eq!(o["state"], "PAYING", "{o:#}");
        assert_eq!(
            o["magma"]["invoice"], sim_order.invoice,
            "the invoice was recovered"
        );
        assert_eq!(o["invoice"]["payment_hash"], sim_order.payment_hash);
        adopted.push(order_id);
    }
    let log = w.sim.request_log();
    assert!(
        log.iter()
            .filter(|r| r.operation == Operation::TransactionList)
            .count()
            >= 2,
        "reconciled through transaction_list"
    );
    for c in w.sim.orders() {
        assert_eq!(
            w.emu.node().pay_calls_for(&c.payment_hash),
            1,
            "each adopted order is paid exactly once"
        );
    }
    w.end().await;
}

/// Adopted, but Magma does not give the invoice back (the field is not part of the documented
/// API): nothing can be checked, so nothing is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_order_whose_invoice_cannot_be_read_is_never_paid() {
    let mut w = World::with(SellerScript::Happy, Some(API_KEY), |s| s, |c| c).await;
    w.sim
        .inject_fault(Operation::Buy, Fault::DropAfterCommit, Some(1));
    w.sim.inject_fault(
        Operation::GetOrder,
        Fault::GraphqlError {
            message: "Cannot query field \"payment\" on type \"MarketOrder\".".into(),
            code: "GRAPHQL_VALIDATION_FAILED".into(),
        },
        Some(1),
    );
    let placed = w
        .call("magma-buy", json!({"usd_cents": 1000}))
        .await
        .expect("magma-buy");
    let o = w.order(&id_of(&placed)).await;
    assert_eq!(o["magma"]["adopted"], true, "{o:#}");
    assert_eq!(o["state"], "REJECTED", "{o:#}");
    assert!(
        o["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invoice is unknown")),
        "{o:#}"
    );
    assert_eq!(w.buys(), 1);
    assert_eq!(w.pay_calls(), 0, "never paid");
    w.end().await;
}

/// Without an API key a lost answer loses the order with it: ABANDONED with the reason, one
/// buy, and the committed order's invoice is never paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_buy_answer_without_an_api_key_is_abandoned() {
    let mut w = World::new(SellerScript::Happy).await;
    w.sim
        .inject_fault(Operation::Buy, Fault::DropAfterCommit, Some(1));
    let placed = w
        .call("magma-buy", json!({"usd_cents": 1000}))
        .await
        .expect("magma-buy");
    let id = id_of(&placed);
    let o = w.order(&id).await;
    assert_eq!(o["state"], "ABANDONED", "{o:#}");
    assert!(o["magma"].is_null(), "{o:#}");
    assert!(
        o["reason"]
            .as_str()
            .is_some_and(|r| r.contains("answer was lost") && r.contains("without an API key")),
        "{o:#}"
    );
    assert_eq!(w.buys(), 1);
    let log = w.sim.request_log();
    assert_eq!(
        log.iter()
            .filter(|r| r.operation == Operation::TransactionList)
            .count(),
        0
    );
    let committed = w.sim.orders();
    assert_eq!(committed.len(), 1, "the buy did commit");
    assert_eq!(w.pay_calls(), 0);
    assert_eq!(w.emu.node().pay_calls_for(&committed[0].payment_hash), 0);
    // An abandoned intent holds nothing: a new buy goes ahead (and gives a session key to keep).
    let (next, _) = w.buy(json!({"usd_cents": 1000})).await;
    assert_eq!(next["state"], "PAYING");
    assert_eq!(w.buys(), 2);
    w.end().await;
}

/// A 500 to the buy is ambiguous too: with an API key the plugin looks, finds no new order
/// (the one it already knows is not a candidate), and abandons the intent — without a second
/// buy and without taking over the known order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_buy_with_no_order_listed_is_abandoned_without_buying_again() {
    let mut w = World::with(
        SellerScript::Happy,
        Some(API_KEY),
        |s| s,
        |c| c.option("magma-max-inflight", 2),
    )
    .await;
    let (known, known_order) = w.buy(json!({"usd_cents": 1000})).await;
    assert_eq!(known["state"], "PAYING", "{known:#}");
    let known_order = known_order.unwrap();
    w.sim.inject_fault(Operation::Buy, Fault::Http500, Some(1));
    let placed = w
        .call("magma-buy", json!({"usd_cents": 1000}))
        .await
        .expect("magma-buy");
    let o = w.order(&id_of(&placed)).await;
    assert_eq!(o["state"], "ABANDONED", "{o:#}");
    assert!(
        o["magma"].is_null(),
        "the known order was not adopted: {o:#}"
    );
    assert!(
        o["reason"]
            .as_str()
            .is_some_and(|r| r.contains("lists no new order")),
        "{o:#}"
    );
    assert_eq!(w.buys(), 2, "one liquidity.buy per command");
    assert_eq!(w.sim.orders().len(), 1, "the 500 created nothing");
    assert!(
        w.sim
            .request_log()
            .iter()
            .any(|r| r.operation == Operation::TransactionList),
        "reconciled through transaction_list"
    );
    // Only the first order is paid, once.
    w.wait_held(&known_order.payment_hash).await;
    assert_eq!(w.emu.node().pay_calls_for(&known_order.payment_hash), 1);
    assert_eq!(w.pay_calls(), 1);
    w.end().await;
}

// ---- 4. Limits ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_buy_while_one_is_live_is_refused_unless_forced() {
    let mut w = World::new(SellerScript::Happy).await;
    let (first, _) = w.buy(json!({"usd_cents": 1000})).await;
    assert_eq!(first["state"], "PAYING");
    expect_error(
        w.call("magma-buy", json!({"usd_cents": 1000})).await,
        NOT_READY,
        &["magma-max-inflight is 1", "force=true"],
    );
    let all = w.call("magma-orders", json!({})).await.unwrap();
    assert_eq!(all["orders"].as_array().unwrap().len(), 1, "nothing stored");
    assert_eq!(w.buys(), 1, "nothing sent");
    let (second, sim_order) = w.buy(json!({"usd_cents": 1000, "force": true})).await;
    assert_eq!(second["state"], "PAYING", "{second:#}");
    assert_eq!(second["request"]["force"], true);
    assert_ne!(second["id"], first["id"]);
    assert_eq!(w.buys(), 2);
    // The forced order is paid like any other.
    let hash = sim_order.unwrap().payment_hash;
    w.wait_held(&hash).await;
    assert_eq!(w.emu.node().pay_calls_for(&hash), 1);
    w.end().await;
}

/// Orders in flight count at full price against magma-budget-usd-cents, forced ones included;
/// force passes the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_beyond_the_budget_is_refused_unless_forced() {
    let mut w = World::with(
        SellerScript::Happy,
        None,
        |s| s,
        |c| {
            c.option("magma-max-inflight", 10)
                .option("magma-budget-usd-cents", 3000)
        },
    )
    .await;
    w.buy(json!({"usd_cents": 2000})).await;
    expect_error(
        w.call("magma-buy", json!({"usd_cents": 1500})).await,
        NOT_READY,
        &[
            "1500 cents would exceed magma-budget-usd-cents",
            "2000 of 3000",
            "force=true",
        ],
    );
    assert_eq!(w.buys(), 1, "nothing sent");
    let all = w.call("magma-orders", json!({})).await.unwrap();
    assert_eq!(all["orders"].as_array().unwrap().len(), 1, "nothing stored");
    let (forced, _) = w.buy(json!({"usd_cents": 1500, "force": true})).await;
    assert_eq!(forced["state"], "PAYING");
    assert_eq!(w.buys(), 2);
    // The forced order counts too: even the smallest order no longer fits.
    expect_error(
        w.call("magma-buy", json!({"usd_cents": 500})).await,
        NOT_READY,
        &["magma-budget-usd-cents", "3500 of 3000"],
    );
    assert_eq!(w.buys(), 2);
    w.end().await;
}
