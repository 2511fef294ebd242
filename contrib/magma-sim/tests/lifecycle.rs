//! Every seller script walks its documented status path; HTLCs follow.

mod common;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::hex::FromHex;
use common::*;
use magma_sim::{HtlcState, OrderSnapshot, PaymentStatus, SellerScript, SimConfig};
use serde_json::json;

const WFSA: &str = "WAITING_FOR_SELLER_APPROVAL";
const WFBP: &str = "WAITING_FOR_BUYER_PAYMENT";
const WFCO: &str = "WAITING_FOR_CHANNEL_OPEN";
const SST: &str = "SELLER_SENT_TRANSACTION";
const WOCC: &str = "WAITING_FOR_ON_CHAIN_CONFIRMATION";
const OCC: &str = "ON_CHAIN_CONFIRMATION";
const SOC: &str = "SELLER_OPENED_CHANNEL";
const VCO: &str = "VALID_CHANNEL_OPENING";
const CMF: &str = "CHANNEL_MONITORING_FINISHED";

const PENDING: &str = "PENDING_PAYMENT";
const PAID: &str = "SUCCESSFUL_PAYMENT";
const HODL_TIMEOUT: &str = "HODL_INVOICE_TIMEOUT";

/// `(status, payment_status, seconds since creation)` of every transition.
fn history(o: &OrderSnapshot) -> Vec<(String, String, u64)> {
    o.history
        .iter()
        .map(|t| {
            (
                t.status.as_str().to_string(),
                t.payment_status.as_str().to_string(),
                t.at - o.created_at,
            )
        })
        .collect()
}

fn path(items: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
    items
        .iter()
        .map(|(s, p, t)| (s.to_string(), p.to_string(), *t))
        .collect()
}

/// Starts a simulator with `seller` and places one anonymous order; returns the harness and
/// the order id.
async fn order_with(seller: SellerScript) -> (Harness, String) {
    let h = start(config(seller)).await;
    let (id, _) = ids(&h.buy().await);
    (h, id)
}

fn snap(h: &Harness, id: &str) -> OrderSnapshot {
    h.sim.order(id).expect("order exists")
}

#[tokio::test]
async fn happy_path_to_monitoring_finished() {
    let (h, id) = order_with(SellerScript::Happy).await;
    let hash = snap(&h, &id).payment_hash;
    let mut changes = h.sim.subscribe();

    h.sim.advance(secs(5));
    assert_eq!(snap(&h, &id).status.as_str(), WFBP);
    assert_eq!(h.sim.htlc_held(&hash).expect("known hash"), HtlcState::Held);
    assert!(changes.has_changed().expect("sender alive"));
    changes.borrow_and_update();
    let o = snap(&h, &id);
    assert_eq!(
        (o.status.as_str(), o.payment_status),
        (WFCO, PaymentStatus::SuccessfulPayment)
    );

    h.sim.advance(secs(30));
    let o = snap(&h, &id);
    assert_eq!(o.status.as_str(), SST);
    let txid = o.funding_txid.clone().expect("funding txid");
    assert_eq!(txid.len(), 64);
    h.sim.advance(secs(10));
    assert_eq!(snap(&h, &id).status.as_str(), WOCC);

    let first_block = h.sim.block_height() + 1;
    h.sim.mine_blocks(2);
    assert_eq!(snap(&h, &id).confirmations, 2);
    assert_eq!(snap(&h, &id).status.as_str(), WOCC);
    h.sim.mine_blocks(1);
    assert_eq!(snap(&h, &id).status.as_str(), OCC);
    h.sim.advance(secs(60));
    assert_eq!(snap(&h, &id).status.as_str(), SOC);
    assert!(matches!(h.sim.htlc_state(&hash), Some(HtlcState::Held)));
    h.sim.advance(secs(60));
    let o = snap(&h, &id);
    assert_eq!(o.status.as_str(), VCO);
    assert_eq!(o.blocks_until_can_be_closed, Some(4320));
    let channel_id = o.channel_id.clone().expect("channel id");
    assert!(
        channel_id.starts_with(&format!("{first_block}x")) && channel_id.ends_with("x0"),
        "{channel_id}"
    );
    match h.sim.htlc_state(&hash) {
        Some(HtlcState::Settled { preimage }) => {
            let bytes = Vec::<u8>::from_hex(&preimage).expect("hex preimage");
            assert_eq!(sha256::Hash::hash(&bytes).to_string(), hash);
        }
        other => panic!("expected settled, got {other:?}"),
    }

    // The GraphQL view agrees.
    let key = session_key(&h, &id);
    let r = h.get_order(&id, &key).await;
    let g = &r.data()["user"]["market"]["orders"]["get_order"];
    assert_eq!(g["transaction_id"], txid.as_str());
    assert_eq!(g["channel_id"], channel_id.as_str());
    assert_eq!(g["confirmations"]["confirmations"], 3);
    assert_eq!(g["payment"]["lightning"]["pending"], false);

    h.sim.mine_blocks(4319);
    let o = snap(&h, &id);
    assert_eq!(o.status.as_str(), VCO);
    assert_eq!(o.blocks_until_can_be_closed, Some(1));
    h.sim.mine_blocks(1);
    let o = snap(&h, &id);
    assert_eq!(o.status.as_str(), CMF);
    assert_eq!(
        history(&o),
        path(&[
            (WFSA, PENDING, 0),
            (WFBP, PENDING, 5),
            (WFCO, PAID, 5),
            (SST, PAID, 35),
            (WOCC, PAID, 45),
            (OCC, PAID, 45),
            (SOC, PAID, 105),
            (VCO, PAID, 165),
            (CMF, PAID, 165),
        ])
    );
}

/// The session key `buy()` received for this order (snapshots hold no secrets).
fn session_key(h: &Harness, id: &str) -> String {
    h.session_key(id).expect("session key recorded by buy()")
}

#[tokio::test]
async fn automatic_blocks_finish_the_lease() {
    let h = start(SimConfig {
        block_interval_secs: 600,
        ..config(SellerScript::Happy)
    })
    .await;
    let (id, _) = ids(&h.buy().await);
    let hash = snap(&h, &id).payment_hash;
    h.sim.advance(secs(5));
    h.sim.htlc_held(&hash).expect("held");
    let start_height = h.sim.block_height();
    h.sim.advance(secs(600 * 10));
    assert_eq!(snap(&h, &id).status.as_str(), VCO);
    h.sim.advance(secs(600 * 4400));
    assert_eq!(snap(&h, &id).status.as_str(), CMF);
    assert!(h.sim.block_height() >= start_height + 4410);
}

#[tokio::test]
async fn htlc_before_approval_is_held_until_approval() {
    let (h, id) = order_with(SellerScript::Happy).await;
    let hash = snap(&h, &id).payment_hash;
    assert_eq!(h.sim.htlc_held(&hash).expect("held"), HtlcState::Held);
    assert_eq!(snap(&h, &id).status.as_str(), WFSA);
    // A repeated notification does not change anything.
    assert_eq!(h.sim.htlc_held(&hash).expect("held"), HtlcState::Held);
    h.sim.advance(secs(5));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[(WFSA, PENDING, 0), (WFBP, PENDING, 5), (WFCO, PAID, 5)])
    );
}

#[tokio::test]
async fn reject_cancels_a_held_htlc() {
    let (h, id) = order_with(SellerScript::Reject).await;
    let hash = snap(&h, &id).payment_hash;
    h.sim.htlc_held(&hash).expect("held");
    h.sim.advance(secs(5));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[(WFSA, PENDING, 0), ("SELLER_REJECTED", HODL_TIMEOUT, 5)])
    );
    assert_eq!(h.sim.htlc_state(&hash), Some(HtlcState::Cancelled));
    h.sim.advance(secs(7200));
    assert_eq!(snap(&h, &id).history.len(), 2);
}

#[tokio::test]
async fn reject_without_payment() {
    let (h, id) = order_with(SellerScript::Reject).await;
    h.sim.advance(secs(5));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[(WFSA, PENDING, 0), ("SELLER_REJECTED", PENDING, 5)])
    );
    // The invoice can no longer be paid.
    let hash = snap(&h, &id).payment_hash;
    assert_eq!(h.sim.htlc_held(&hash).expect("known"), HtlcState::Cancelled);
}

#[tokio::test]
async fn no_react_times_out() {
    let (h, id) = order_with(SellerScript::NoReact).await;
    let hash = snap(&h, &id).payment_hash;
    h.sim.htlc_held(&hash).expect("held");
    h.sim.advance(secs(599));
    assert_eq!(snap(&h, &id).status.as_str(), WFSA);
    h.sim.advance(secs(1));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[
            (WFSA, PENDING, 0),
            ("SELLER_FAILED_TO_REACT", HODL_TIMEOUT, 600)
        ])
    );
    assert_eq!(h.sim.htlc_state(&hash), Some(HtlcState::Cancelled));
}

#[tokio::test]
async fn buyer_never_pays() {
    let (h, id) = order_with(SellerScript::BuyerNeverPays).await;
    let hash = snap(&h, &id).payment_hash;
    h.sim.advance(secs(5));
    assert_eq!(h.sim.htlc_held(&hash).expect("known"), HtlcState::Cancelled);
    assert_eq!(snap(&h, &id).payment_status, PaymentStatus::PendingPayment);
    h.sim.advance(secs(3595));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[
            (WFSA, PENDING, 0),
            (WFBP, PENDING, 5),
            ("BUYER_FAILED_TO_PAY", PENDING, 3600)
        ])
    );
}

#[tokio::test]
async fn unpaid_invoice_expires_for_any_script() {
    let (h, id) = order_with(SellerScript::Happy).await;
    h.sim.advance(secs(3599));
    assert_eq!(snap(&h, &id).status.as_str(), WFBP);
    h.sim.advance(secs(1));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[
            (WFSA, PENDING, 0),
            (WFBP, PENDING, 5),
            ("BUYER_FAILED_TO_PAY", PENDING, 3600)
        ])
    );
    let hash = snap(&h, &id).payment_hash;
    assert_eq!(h.sim.htlc_held(&hash).expect("known"), HtlcState::Cancelled);
}

/// Places an order with `seller`, pays it once approved, and returns it.
async fn paid_order(seller: SellerScript) -> (Harness, String, String) {
    let (h, id) = order_with(seller).await;
    let hash = snap(&h, &id).payment_hash;
    h.sim.advance(secs(5));
    assert_eq!(h.sim.htlc_held(&hash).expect("held"), HtlcState::Held);
    (h, id, hash)
}

#[tokio::test]
async fn no_open_fails_after_open_timeout() {
    let (h, id, hash) = paid_order(SellerScript::NoOpen).await;
    h.sim.advance(secs(1799));
    assert_eq!(snap(&h, &id).status.as_str(), WFCO);
    h.sim.advance(secs(1));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[
            (WFSA, PENDING, 0),
            (WFBP, PENDING, 5),
            (WFCO, PAID, 5),
            ("SELLER_FAILED_TO_OPEN_CHANNEL", HODL_TIMEOUT, 1805)
        ])
    );
    assert_eq!(h.sim.htlc_state(&hash), Some(HtlcState::Cancelled));
}

#[tokio::test]
async fn send_swap_fail() {
    let (h, id, hash) = paid_order(SellerScript::SendSwapFail).await;
    h.sim.advance(secs(30));
    h.sim.mine_blocks(5); // the transaction never confirms
    h.sim.advance(secs(600));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[
            (WFSA, PENDING, 0),
            (WFBP, PENDING, 5),
            (WFCO, PAID, 5),
            (SST, PAID, 35),
            ("SELLER_FAILED_TO_SEND_SWAP", HODL_TIMEOUT, 635)
        ])
    );
    assert_eq!(snap(&h, &id).confirmations, 0);
    assert_eq!(h.sim.htlc_state(&hash), Some(HtlcState::Cancelled));
}

#[tokio::test]
async fn invalid_channel() {
    let (h, id, hash) = paid_order(SellerScript::InvalidChannel).await;
    h.sim.advance(secs(40));
    h.sim.mine_blocks(3);
    h.sim.advance(secs(120));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[
            (WFSA, PENDING, 0),
            (WFBP, PENDING, 5),
            (WFCO, PAID, 5),
            (SST, PAID, 35),
            (WOCC, PAID, 45),
            (OCC, PAID, 45),
            (SOC, PAID, 105),
            ("INVALID_CHANNEL_OPENING", HODL_TIMEOUT, 165)
        ])
    );
    assert_eq!(h.sim.htlc_state(&hash), Some(HtlcState::Cancelled));
    assert_eq!(snap(&h, &id).channel_id, None);
}

#[tokio::test]
async fn admin_close() {
    let (h, id, hash) = paid_order(SellerScript::AdminClose).await;
    h.sim.advance(secs(30));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[
            (WFSA, PENDING, 0),
            (WFBP, PENDING, 5),
            (WFCO, PAID, 5),
            ("ADMIN_CLOSED", HODL_TIMEOUT, 35)
        ])
    );
    assert_eq!(h.sim.htlc_state(&hash), Some(HtlcState::Cancelled));
}

#[tokio::test]
async fn per_order_seller_and_default_seller() {
    let h = start(config(SellerScript::Happy)).await;
    let (a, _) = ids(&h.buy().await);
    h.sim.set_default_seller(SellerScript::Reject);
    let (b, _) = ids(&h.buy().await);
    h.sim
        .set_seller(&a, SellerScript::NoReact)
        .expect("known order");
    assert!(h.sim.set_seller("nope", SellerScript::Happy).is_err());
    h.sim.advance(secs(5));
    assert_eq!(snap(&h, &a).status.as_str(), WFSA);
    assert_eq!(snap(&h, &b).status.as_str(), "SELLER_REJECTED");
    assert_eq!(snap(&h, &a).seller, SellerScript::NoReact);
}

#[tokio::test]
async fn forced_htlc_actions() {
    let (h, id, hash) = paid_order(SellerScript::Happy).await;
    assert!(h.sim.htlc_held("00").is_err());
    assert!(h.sim.htlc_state("00").is_none());
    assert!(matches!(h.sim.settle(&hash), Ok(HtlcState::Settled { .. })));
    assert!(h.sim.cancel(&hash).is_err());

    let (h, id2, hash2) = paid_order(SellerScript::Happy).await;
    assert_eq!(h.sim.cancel(&hash2).expect("cancel"), HtlcState::Cancelled);
    assert!(h.sim.settle(&hash2).is_err());
    let o = snap(&h, &id2);
    assert_eq!(o.payment_status, PaymentStatus::HodlInvoiceTimeout);
    assert_eq!(o.status.as_str(), WFCO);
    let _ = id;
}

#[tokio::test]
async fn status_forcing_is_recorded() {
    let (h, id) = order_with(SellerScript::Happy).await;
    h.sim.force_status(&id, "ADMIN_CLOSED").expect("forced");
    h.sim.advance(secs(5));
    assert_eq!(
        history(&snap(&h, &id)),
        path(&[(WFSA, PENDING, 0), ("ADMIN_CLOSED", PENDING, 0)])
    );
    let r = h
        .gql(
            "{ user { transactions { transaction_list { list { status } } } } }",
            json!({}),
            Some(&session_key(&h, &id)),
        )
        .await;
    assert_eq!(
        r.data()["user"]["transactions"]["transaction_list"]["list"][0]["status"],
        "ADMIN_CLOSED"
    );
}
