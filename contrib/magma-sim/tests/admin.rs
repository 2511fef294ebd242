//! The admin HTTP API.

mod common;

use common::*;
use magma_sim::SellerScript;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn admin_drives_an_order_through_its_life() {
    let h = start(config(SellerScript::Happy)).await;
    let info = h.admin(Method::GET, "/info", None).await;
    assert_eq!(info.status, 200);
    assert_eq!(info.body["network"], "regtest");
    assert_eq!(info.body["node_pubkey"], h.sim.node_pubkey().as_str());
    assert_eq!(info.body["block_height"], 850_000);
    assert_eq!(info.body["now"], START);

    let (id, _) = ids(&h.buy().await);
    let orders = h.admin(Method::GET, "/orders", None).await;
    assert_eq!(orders.body.as_array().map(Vec::len), Some(1));
    let order = h.admin(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(order.body["status"], "WAITING_FOR_SELLER_APPROVAL");
    let hash = order.body["payment_hash"]
        .as_str()
        .expect("hash")
        .to_string();

    let r = h
        .admin(Method::POST, "/advance", Some(json!({ "seconds": 5 })))
        .await;
    assert_eq!(r.body["now"], START + 5);
    let r = h
        .admin(Method::POST, &format!("/htlc/{hash}/held"), None)
        .await;
    assert_eq!(r.body["htlc"], json!({ "state": "held" }));
    let r = h.admin(Method::GET, &format!("/htlc/{hash}"), None).await;
    assert_eq!(r.body["htlc"]["state"], "held");
    h.admin(Method::POST, "/advance", Some(json!({ "seconds": 40 })))
        .await;
    let r = h
        .admin(Method::POST, "/mine", Some(json!({ "blocks": 3 })))
        .await;
    assert_eq!(r.body["block_height"], 850_003);
    h.admin(Method::POST, "/advance", Some(json!({ "seconds": 120 })))
        .await;
    let order = h.admin(Method::GET, &format!("/orders/{id}"), None).await;
    assert_eq!(order.body["status"], "VALID_CHANNEL_OPENING");
    assert_eq!(order.body["htlc"]["state"], "settled");
    let statuses: Vec<&str> = order.body["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|t| t["status"].as_str())
        .collect();
    assert_eq!(statuses.first(), Some(&"WAITING_FOR_SELLER_APPROVAL"));
    assert_eq!(statuses.last(), Some(&"VALID_CHANNEL_OPENING"));

    let r = h
        .admin(
            Method::POST,
            &format!("/orders/{id}/status"),
            Some(json!({ "status": "ADMIN_CLOSED" })),
        )
        .await;
    assert_eq!(r.body["status"], "ADMIN_CLOSED");
    let r = h
        .admin(
            Method::POST,
            &format!("/orders/{id}/seller"),
            Some(json!({ "seller": "no-open" })),
        )
        .await;
    assert_eq!(r.body["seller"], "no-open");
}

#[tokio::test]
async fn admin_faults_price_seller_and_log() {
    let h = start(config(SellerScript::Happy)).await;
    let r = h
        .admin(
            Method::POST,
            "/faults",
            Some(json!({ "operation": "buy", "fault": "http500", "count": 1 })),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.buy_as("5000", None).await.status, 500);
    h.admin(
        Method::POST,
        "/faults",
        Some(
            json!({ "operation": "price", "fault": { "rate_limited": { "retry_after_secs": 2 } } }),
        ),
    )
    .await;
    let price = "{ market { liquidity { liquidity_per_usd { sats } } } }";
    assert_eq!(h.gql(price, json!({}), None).await.status, 429);
    h.admin(Method::DELETE, "/faults", None).await;
    assert_eq!(h.gql(price, json!({}), None).await.status, 200);

    h.admin(
        Method::POST,
        "/invoice-faults",
        Some(json!({ "fault": { "amount_above": 5 }, "count": 1 })),
    )
    .await;
    let (id, _) = ids(&h.buy().await);
    assert_eq!(h.sim.order(&id).map(|o| o.invoice_sats), Some(54_208));

    let r = h
        .admin(
            Method::POST,
            "/price",
            Some(json!({ "sats": "600000", "usd": "550" })),
        )
        .await;
    assert_eq!(r.body["price"]["sats"], "600000");
    let r = h
        .admin(Method::POST, "/seller", Some(json!({ "seller": "reject" })))
        .await;
    assert_eq!(r.body["default_seller"], "reject");

    let log = h.admin(Method::GET, "/requests", None).await;
    let ops: Vec<&str> = log
        .body
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|r| r["operation"].as_str())
        .collect();
    assert_eq!(ops, ["buy", "price", "price", "buy"]);
    assert_eq!(log.body[0]["credential"], "none");
}

#[tokio::test]
async fn admin_errors_are_json() {
    let h = start(config(SellerScript::Happy)).await;
    let cases = [
        (Method::GET, "/orders/nope", None, 404),
        (Method::GET, "/htlc/00", None, 404),
        (Method::POST, "/htlc/00/held", None, 404),
        (
            Method::POST,
            "/advance",
            Some(json!({ "seconds": -1 })),
            400,
        ),
        (Method::POST, "/advance", Some(json!({ "secs": 1 })), 400),
        (
            Method::POST,
            "/seller",
            Some(json!({ "seller": "sometimes" })),
            400,
        ),
        (
            Method::POST,
            "/price",
            Some(json!({ "sats": "x", "usd": "1" })),
            400,
        ),
        (
            Method::POST,
            "/faults",
            Some(json!({ "operation": "nope", "fault": "http500" })),
            400,
        ),
        (
            Method::POST,
            "/orders/nope/status",
            Some(json!({ "status": "X" })),
            404,
        ),
    ];
    for (method, path, body, status) in cases {
        let r = h.admin(method, path, body).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.body["error"].is_string(), "{path}: {}", r.body);
    }
    let (id, _) = ids(&h.buy().await);
    let hash = h.sim.order(&id).expect("order").payment_hash;
    let r = h
        .admin(Method::POST, &format!("/htlc/{hash}/settle"), None)
        .await;
    assert_eq!(r.status, 409);
    let r = h
        .admin(Method::POST, &format!("/htlc/{hash}/explode"), None)
        .await;
    assert_eq!(r.status, 404);
}
