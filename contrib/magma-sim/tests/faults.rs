//! Fault injection per operation, and invoice tampering.

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use common::*;
use lightning_invoice::{Bolt11Invoice, Currency};
use magma_sim::{Fault, InvoiceFault, Operation, SellerScript};
use serde_json::{Value, json};

const PRICE: &str = "{ market { liquidity { liquidity_per_usd { sats usd } } } }";

#[tokio::test]
async fn http500_refuses_without_committing() {
    let h = start(config(SellerScript::Happy)).await;
    h.sim.inject_fault(Operation::Buy, Fault::Http500, Some(1));
    let r = h.buy_as("5000", None).await;
    assert_eq!(r.status, 500);
    assert!(h.sim.orders().is_empty());
    // Other operations are unaffected; the fault is used up.
    assert_eq!(h.gql(PRICE, json!({}), None).await.status, 200);
    h.buy().await;
    assert_eq!(h.sim.orders().len(), 1);
    let log = h.sim.request_log();
    assert_eq!(log[0].fault.as_deref(), Some("http500"));
    assert_eq!(log[0].http_status, Some(500));
    assert_eq!(log[2].fault, None);
}

#[tokio::test]
async fn rate_limited_has_retry_after() {
    let h = start(config(SellerScript::Happy)).await;
    h.sim.inject_fault(
        Operation::Price,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
        Some(1),
    );
    let resp = h
        .http
        .post(&h.server.graphql_url)
        .json(&json!({ "query": PRICE }))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
}

#[tokio::test]
async fn slow_executes_then_delays() {
    let h = start(config(SellerScript::Happy)).await;
    h.sim
        .inject_fault(Operation::Buy, Fault::Slow { delay_ms: 300 }, Some(1));
    let started = Instant::now();
    h.buy().await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(h.sim.orders().len(), 1);
}

#[tokio::test]
async fn non_json_maintenance_page() {
    let h = start(config(SellerScript::Happy)).await;
    h.sim.inject_fault(Operation::Buy, Fault::NonJson, Some(1));
    let input = json!({ "connection_uri": format!("{BUYER}@h:9735"), "usd_cents": "5000" });
    let resp = h
        .http
        .post(&h.server.graphql_url)
        .json(&json!({ "query": BUY, "variables": { "input": input } }))
        .send()
        .await
        .expect("response");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
    );
    let text = resp.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert!(h.sim.orders().is_empty());
}

#[tokio::test]
async fn drop_after_commit_commits_then_drops() {
    let h = start(config(SellerScript::Happy)).await;
    h.sim
        .inject_fault(Operation::Buy, Fault::DropAfterCommit, Some(1));
    let input = json!({ "connection_uri": format!("{BUYER}@h:9735"), "usd_cents": "5000" });
    let result = h
        .http
        .post(&h.server.graphql_url)
        .json(&json!({ "query": BUY, "variables": { "input": input } }))
        .send()
        .await;
    let err = result.expect_err("the connection is dropped");
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    assert_eq!(h.sim.orders().len(), 1, "the buy was committed");
    let log = h.sim.request_log();
    assert_eq!(log[0].http_status, None);
    assert_eq!(log[0].fault.as_deref(), Some("drop_after_commit"));
    // The next request is served normally.
    h.buy().await;
}

#[tokio::test]
async fn graphql_error_refuses_without_committing() {
    let h = start(config(SellerScript::Happy)).await;
    h.sim.inject_fault(
        Operation::Buy,
        Fault::GraphqlError {
            message: "Something broke".into(),
            code: "INTERNAL_SERVER_ERROR".into(),
        },
        Some(1),
    );
    h.buy_as("5000", None)
        .await
        .assert_business_error("Something broke", "INTERNAL_SERVER_ERROR");
    assert!(h.sim.orders().is_empty());
}

#[tokio::test]
async fn unknown_status_rewrites_every_status() {
    let h = start(config(SellerScript::Happy)).await;
    let (id, key) = ids(&h.buy().await);
    h.sim.inject_fault(
        Operation::GetOrder,
        Fault::UnknownStatus("BRAND_NEW".into()),
        Some(1),
    );
    let r = h.get_order(&id, &key).await;
    let order = &r.data()["user"]["market"]["orders"]["get_order"];
    assert_eq!(order["status"], "BRAND_NEW");
    assert_eq!(order["payment_status"], "PENDING_PAYMENT");
    let r = h.get_order(&id, &key).await;
    assert_eq!(
        r.data()["user"]["market"]["orders"]["get_order"]["status"],
        "WAITING_FOR_SELLER_APPROVAL"
    );

    h.sim.inject_fault(
        Operation::TransactionList,
        Fault::UnknownStatus("X".into()),
        None,
    );
    let q = "{ user { transactions { transaction_list { list { status } } } } }";
    for _ in 0..2 {
        let r = h.gql(q, json!({}), Some(&key)).await;
        assert_eq!(
            r.data()["user"]["transactions"]["transaction_list"]["list"][0]["status"],
            "X"
        );
    }
    h.sim.clear_faults();
    let r = h.gql(q, json!({}), Some(&key)).await;
    assert_eq!(
        r.data()["user"]["transactions"]["transaction_list"]["list"][0]["status"],
        "WAITING_FOR_SELLER_APPROVAL"
    );
}

#[tokio::test]
async fn uncounted_fault_lasts_until_cleared() {
    let h = start(config(SellerScript::Happy)).await;
    h.sim.inject_fault(Operation::Price, Fault::Http500, None);
    for _ in 0..3 {
        assert_eq!(h.gql(PRICE, json!({}), None).await.status, 500);
    }
    h.sim.clear_faults();
    assert_eq!(h.gql(PRICE, json!({}), None).await.status, 200);
}

fn decode(buy: &Value) -> Result<Bolt11Invoice, String> {
    let bolt11 = buy["payment"]["lightning_invoice"]
        .as_str()
        .ok_or("no invoice")?;
    Bolt11Invoice::from_str(bolt11).map_err(|e| e.to_string())
}

fn promised_msat(buy: &Value) -> u64 {
    buy["payment"]["amount"]["sats"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .expect("sats")
        * 1000
}

#[tokio::test]
async fn invoice_faults_tamper_with_the_next_buys() {
    let h = start(config(SellerScript::Happy)).await;

    h.sim
        .inject_invoice_fault(InvoiceFault::AmountAbove(1000), Some(1));
    let buy = h.buy().await;
    let inv = decode(&buy).expect("decodes");
    assert_eq!(
        inv.amount_milli_satoshis(),
        Some(promised_msat(&buy) + 1_000_000)
    );
    let buy = h.buy().await;
    assert_eq!(
        decode(&buy).expect("decodes").amount_milli_satoshis(),
        Some(promised_msat(&buy))
    );

    h.sim
        .inject_invoice_fault(InvoiceFault::WrongNetwork, Some(1));
    let buy = h.buy().await;
    assert_eq!(decode(&buy).expect("decodes").currency(), Currency::Bitcoin);

    h.sim
        .inject_invoice_fault(InvoiceFault::ExpiresIn(60), Some(1));
    let buy = h.buy().await;
    assert_eq!(decode(&buy).expect("decodes").expiry_time().as_secs(), 60);

    h.sim.inject_invoice_fault(InvoiceFault::Undecodable, None);
    for _ in 0..2 {
        let buy = h.buy().await;
        let bolt11 = buy["payment"]["lightning_invoice"]
            .as_str()
            .expect("string");
        assert!(bolt11.starts_with("lnbcrt"));
        assert!(decode(&buy).is_err());
    }
    h.sim.clear_faults();
    assert!(decode(&h.buy().await).is_ok());
}
