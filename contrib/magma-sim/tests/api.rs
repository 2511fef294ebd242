//! The GraphQL surface: schema validation, errors, auth, amounts, invoices, paging, request log.

mod common;

use std::str::FromStr;

use common::*;
use lightning_invoice::{Bolt11Invoice, Currency};
use magma_sim::{CredentialKind, Network, Operation, SellerScript, SimConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn price_is_public_and_string_typed() {
    let h = start(config(SellerScript::Happy)).await;
    let r = h
        .gql(
            "{ market { liquidity { liquidity_per_usd { sats usd } } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        r.data()["market"]["liquidity"]["liquidity_per_usd"],
        json!({ "sats": "543260", "usd": "501.09" })
    );
    h.sim.set_price("600000", "550.5").expect("valid price");
    let r = h
        .gql(
            "{ market { liquidity { liquidity_per_usd { sats usd } } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        r.data()["market"]["liquidity"]["liquidity_per_usd"]["sats"],
        "600000"
    );
    assert!(h.sim.set_price("1.5", "1").is_err());
}

#[tokio::test]
async fn unknown_field_fails_validation_with_400() {
    let h = start(config(SellerScript::Happy)).await;
    let (id, key) = ids(&h.buy().await);
    let r = h
        .gql(
            "query G($id: String!) { user { market { orders { get_order(order_id: $id) { id foo } } } } }",
            json!({ "id": id }),
            Some(&key),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        (
            r#"Cannot query field "foo" on type "MarketOrder"."#.to_string(),
            "GRAPHQL_VALIDATION_FAILED".to_string()
        )
    );
    assert!(r.body.get("data").is_none());

    // List items are SimpleMarketOrder: no transaction_id.
    let r = h
        .gql(
            "{ user { market { orders { purchases { list { id transaction_id } } } } } }",
            json!({}),
            Some(&key),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error().0,
        r#"Cannot query field "transaction_id" on type "SimpleMarketOrder"."#
    );
}

#[tokio::test]
async fn request_errors_are_400() {
    let h = start(config(SellerScript::Happy)).await;
    // Missing required variable.
    let r = h.gql(BUY, json!({}), None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error(),
        (
            r#"Variable "$input" of required type "LiquidityOrderInput!" was not provided."#
                .to_string(),
            "BAD_USER_INPUT".to_string()
        )
    );
    // usd_cents as a number does not fit String!.
    let input = json!({ "connection_uri": format!("{BUYER}@h:1"), "usd_cents": 5000 });
    let r = h.gql(BUY, json!({ "input": input }), None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1, "BAD_USER_INPUT");
    // Syntax error.
    let r = h.gql("{ market { ", json!({}), None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().1, "GRAPHQL_PARSE_FAILED");
    assert!(h.sim.orders().is_empty());
}

#[tokio::test]
async fn buy_input_errors() {
    let h = start(config(SellerScript::Happy)).await;
    h.buy_as("499", None)
        .await
        .assert_business_error("Min amount violated", "BAD_USER_INPUT");
    for bad in ["12.5", "abc", "", "5e3"] {
        h.buy_as(bad, None)
            .await
            .assert_business_error("usd_cents must be an integer string", "BAD_USER_INPUT");
    }
    for uri in [
        BUYER.to_string(),
        format!("{BUYER}@host"),
        format!("{BUYER}@host:70000"),
        "02abc@host:9735".to_string(),
    ] {
        let input = json!({ "connection_uri": uri, "usd_cents": "5000" });
        h.gql(BUY, json!({ "input": input }), None)
            .await
            .assert_business_error(
                "connection_uri must be in <pubkey>@<host>:<port> format",
                "BAD_USER_INPUT",
            );
    }
    h.buy_as("5000", Some("not-a-known-key"))
        .await
        .assert_business_error("Unauthorized token", "UNAUTHORIZED");
    assert!(h.sim.orders().is_empty());
}

#[tokio::test]
async fn buy_response_and_order_shape() {
    let h = start(config(SellerScript::Happy)).await;
    let buy = h.buy().await;
    let (id, key) = ids(&buy);
    assert!(uuid_v4(&id), "{id}");
    assert_eq!(key.len(), 32);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(buy["order"]["usd_cents"], "5000");
    assert_eq!(buy["payment"]["redirect_url"], Value::Null);
    // $50 at 543260/501.09 sats per USD.
    assert_eq!(buy["payment"]["amount"]["sats"], "54208");

    let order =
        h.get_order(&id, &key).await.data()["user"]["market"]["orders"]["get_order"].clone();
    assert_eq!(order["id"], id.as_str());
    assert_eq!(order["status"], "WAITING_FOR_SELLER_APPROVAL");
    assert_eq!(order["payment_status"], "PENDING_PAYMENT");
    assert_eq!(order["transaction_id"], Value::Null);
    assert_eq!(order["channel_id"], Value::Null);
    assert_eq!(order["confirmations"]["confirmations"], 0);
    assert_eq!(order["blocks_until_can_be_closed"], 4320);
    assert_eq!(
        order["fees"]["buyer"],
        json!({ "sats": "54208", "usd": "50.00" })
    );
    assert_eq!(order["amount"]["satoshi"]["sats"], "27163000");
    assert_eq!(order["amount"]["satoshi"]["btc"], "0.27163");
    assert!(order["amount"]["satoshi"]["usd"].is_string());
    assert_eq!(order["created_at"], "2026-06-10T18:42:00Z");
    assert_eq!(order["timeout"], "2026-06-10T18:52:00Z");
    assert_eq!(order["destination"]["pubkey"], BUYER);
    assert_eq!(order["source"]["pubkey"], h.sim.node_pubkey().as_str());
    assert_eq!(
        order["payment"]["lightning"],
        json!({ "invoice": buy["payment"]["lightning_invoice"], "pending": true })
    );
    assert_eq!(
        order["options"],
        json!({ "private": false, "rails_cluster_only": false, "asset_id": null })
    );
}

fn uuid_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && parts[2].starts_with('4')
        && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

#[tokio::test]
async fn options_are_stored() {
    let h = start(config(SellerScript::Happy)).await;
    let input = json!({
        "connection_uri": format!("{BUYER}@[2001:db8::1]:9735"),
        "usd_cents": "1000",
        "redirect_url": "https://example.com/done",
        "options": { "private": true, "rails_cluster_only": true, "asset_id": "asset-1" }
    });
    let buy = h.gql(BUY, json!({ "input": input }), None).await.data()["liquidity"]["buy"].clone();
    let (id, _) = ids(&buy);
    let order = h.sim.order(&id).expect("order");
    assert!(order.private && order.rails_cluster_only);
    assert_eq!(order.asset_id.as_deref(), Some("asset-1"));
    assert_eq!(
        order.redirect_url.as_deref(),
        Some("https://example.com/done")
    );
    assert_eq!(order.connection_uri, format!("{BUYER}@[2001:db8::1]:9735"));
}

#[tokio::test]
async fn invoice_matches_the_promise() {
    let h = start(config(SellerScript::Happy)).await;
    let buy = h.buy().await;
    let (id, _) = ids(&buy);
    let bolt11 = buy["payment"]["lightning_invoice"]
        .as_str()
        .expect("invoice");
    let invoice = Bolt11Invoice::from_str(bolt11).expect("decodes");
    let sats: u64 = buy["payment"]["amount"]["sats"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sats string");
    assert_eq!(invoice.amount_milli_satoshis(), Some(sats * 1000));
    assert_eq!(invoice.currency(), Currency::Regtest);
    let order = h.sim.order(&id).expect("order");
    assert_eq!(invoice.payment_hash().to_string(), order.payment_hash);
    assert_eq!(invoice.expiry_time().as_secs(), 3600);
    assert_eq!(invoice.min_final_cltv_expiry_delta(), 80);
    assert_eq!(invoice.duration_since_epoch().as_secs(), START);
    assert_eq!(
        invoice.recover_payee_pub_key().to_string(),
        h.sim.node_pubkey()
    );

    let h = start(SimConfig {
        network: Network::Signet,
        ..config(SellerScript::Happy)
    })
    .await;
    let buy = h.buy().await;
    let bolt11 = buy["payment"]["lightning_invoice"]
        .as_str()
        .expect("invoice");
    assert!(bolt11.starts_with("lntbs"));
    let invoice = Bolt11Invoice::from_str(bolt11).expect("decodes");
    assert_eq!(invoice.currency(), Currency::Signet);
}

#[tokio::test]
async fn auth_errors() {
    let h = start(config(SellerScript::Happy)).await;
    for bearer in [None, Some("bogus")] {
        let r = h.gql("{ user { id email } }", json!({}), bearer).await;
        r.assert_business_error("Unauthorized token", "UNAUTHORIZED");
    }
    let r = h
        .gql("{ user { id email } }", json!({}), Some(API_KEY))
        .await;
    assert!(r.data()["user"]["id"].is_string());

    let (id, key) = ids(&h.buy().await);
    let (other_id, other_key) = ids(&h.buy().await);
    h.get_order("not-a-uuid", &key)
        .await
        .assert_business_error("Invalid ID", "BAD_USER_INPUT");
    h.get_order(&other_id, &key)
        .await
        .assert_business_error("Forbidden", "FORBIDDEN");
    h.get_order(&id, &other_key)
        .await
        .assert_business_error("Forbidden", "FORBIDDEN");
    h.get_order("8f0c6b1e-5a7d-4c2b-9e3f-1a2b3c4d5e6f", &key)
        .await
        .assert_business_error("Forbidden", "FORBIDDEN");
    h.get_order(&id, API_KEY)
        .await
        .assert_business_error("Forbidden", "FORBIDDEN");
    h.get_order(&id, &key).await.data();
}

#[tokio::test]
async fn api_key_and_session_key_buys() {
    let h = start(config(SellerScript::Happy)).await;
    let buy = h.buy_as("5000", Some(API_KEY)).await.data()["liquidity"]["buy"].clone();
    assert_eq!(buy["account"]["session_key"], Value::Null);
    let user = h.gql("{ user { id } }", json!({}), Some(API_KEY)).await;
    assert_eq!(buy["account"]["id"], user.data()["user"]["id"]);
    let id = buy["order"]["transaction_id"].as_str().expect("id");
    h.get_order(id, API_KEY).await.data();
    h.get_order(id, OTHER_API_KEY)
        .await
        .assert_business_error("Forbidden", "FORBIDDEN");

    // A session key reuses its session account.
    let first = h.buy().await;
    let (_, key) = ids(&first);
    let second = h.buy_as("600", Some(&key)).await.data()["liquidity"]["buy"].clone();
    assert_eq!(second["account"]["id"], first["account"]["id"]);
    let r = h
        .gql(
            "{ user { transactions { transaction_list { total } } } }",
            json!({}),
            Some(&key),
        )
        .await;
    assert_eq!(
        r.data()["user"]["transactions"]["transaction_list"]["total"],
        2
    );
}

#[tokio::test]
async fn distinct_transaction_id_switch() {
    let h = start(SimConfig {
        order_id_is_transaction_id: false,
        ..config(SellerScript::Happy)
    })
    .await;
    let (tx_id, key) = ids(&h.buy().await);
    let order = h.sim.orders().remove(0);
    assert_eq!(order.transaction_id, tx_id);
    assert_ne!(order.id, tx_id);
    h.get_order(&tx_id, &key)
        .await
        .assert_business_error("Forbidden", "FORBIDDEN");
    let r = h.get_order(&order.id, &key).await;
    assert_eq!(
        r.data()["user"]["market"]["orders"]["get_order"]["id"],
        order.id.as_str()
    );
}

#[tokio::test]
async fn lists_are_paged_newest_first() {
    let h = start(config(SellerScript::Happy)).await;
    let mut ids_in_order = Vec::new();
    for _ in 0..3 {
        let buy = h.buy_as("5000", Some(API_KEY)).await.data()["liquidity"]["buy"].clone();
        ids_in_order.push(buy["order"]["transaction_id"].clone());
        h.sim.advance(secs(1));
    }
    h.buy().await; // someone else's order
    let newest_first: Vec<Value> = ids_in_order.iter().rev().cloned().collect();

    let purchases = "query P($page: PageInput) { user { market { orders { purchases(page: $page) { total pagination { limit offset } list { id created_at status payment_status timeout channel_id source { pubkey alias } destination { pubkey alias } amount { satoshi { sats } } fees { seller { sats } buyer { sats } } } } } } } }";
    let r = h
        .gql(
            purchases,
            json!({ "page": { "limit": 2, "offset": 0 } }),
            Some(API_KEY),
        )
        .await;
    let p = &r.data()["user"]["market"]["orders"]["purchases"];
    assert_eq!(p["total"], 3);
    assert_eq!(p["pagination"], json!({ "limit": 2, "offset": 0 }));
    let got: Vec<Value> = p["list"]
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(got, newest_first[..2]);
    assert_eq!(p["list"][0]["amount"]["satoshi"]["sats"], "27163000");
    assert_eq!(p["list"][0]["fees"]["buyer"]["sats"], "54208");
    assert_eq!(p["list"][0]["created_at"], "2026-06-10T18:42:02Z");

    let r = h
        .gql(
            purchases,
            json!({ "page": { "limit": 2, "offset": 2 } }),
            Some(API_KEY),
        )
        .await;
    let p = &r.data()["user"]["market"]["orders"]["purchases"];
    assert_eq!(p["list"].as_array().map(Vec::len), Some(1));
    assert_eq!(p["list"][0]["id"], newest_first[2]);

    let r = h
        .gql(
            purchases,
            json!({ "page": { "limit": 1000 } }),
            Some(API_KEY),
        )
        .await;
    assert_eq!(
        r.data()["user"]["market"]["orders"]["purchases"]["pagination"],
        json!({ "limit": 100, "offset": 0 })
    );

    let r = h
        .gql(
            "{ user { transactions { transaction_list(page: { limit: 10, offset: 0 }) { total pagination { limit offset } list { id status created_at } } } } }",
            json!({}),
            Some(API_KEY),
        )
        .await;
    let t = &r.data()["user"]["transactions"]["transaction_list"];
    assert_eq!(t["total"], 3);
    let got: Vec<Value> = t["list"]
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(got, newest_first);
    assert_eq!(t["list"][0]["status"], "WAITING_FOR_SELLER_APPROVAL");

    let filtered = "{ user { market { orders { purchases(input: { status: [BUYER_FAILED_TO_PAY] }) { total } } } } }";
    let r = h.gql(filtered, json!({}), Some(API_KEY)).await;
    assert_eq!(
        r.data()["user"]["market"]["orders"]["purchases"]["total"],
        0
    );
}

#[tokio::test]
async fn request_log_records_operation_and_credential() {
    let h = start(config(SellerScript::Happy)).await;
    h.gql(
        "{ market { liquidity { liquidity_per_usd { sats } } } }",
        json!({}),
        None,
    )
    .await;
    let (id, key) = ids(&h.buy().await);
    h.get_order(&id, &key).await;
    h.gql(
        "{ user { transactions { transaction_list { total } } } }",
        json!({}),
        Some(API_KEY),
    )
    .await;
    h.gql(
        "{ user { market { orders { purchases { total } } } } }",
        json!({}),
        Some("wrong"),
    )
    .await;
    h.gql("{ user { id } }", json!({}), Some(API_KEY)).await;

    let log = h.sim.request_log();
    let summary: Vec<(u64, Operation, CredentialKind, Option<u16>)> = log
        .iter()
        .map(|r| (r.seq, r.operation, r.credential, r.http_status))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, Operation::Price, CredentialKind::None, Some(200)),
            (2, Operation::Buy, CredentialKind::None, Some(200)),
            (
                3,
                Operation::GetOrder,
                CredentialKind::SessionKey,
                Some(200)
            ),
            (
                4,
                Operation::TransactionList,
                CredentialKind::ApiKey,
                Some(200)
            ),
            (5, Operation::Purchases, CredentialKind::Invalid, Some(200)),
            (6, Operation::Other, CredentialKind::ApiKey, Some(200)),
        ]
    );
    assert_eq!(log[2].order_id.as_deref(), Some(id.as_str()));
    assert!(
        log.iter()
            .all(|r| r.virtual_time == START && r.fault.is_none())
    );
    // No secret appears in the records.
    let text = serde_json::to_string(&log).expect("json");
    assert!(!text.contains(&key) && !text.contains(API_KEY));
}

#[tokio::test]
async fn forced_unknown_status_reaches_the_wire() {
    let h = start(config(SellerScript::Happy)).await;
    let (id, key) = ids(&h.buy().await);
    h.sim.force_status(&id, "SOMETHING_NEW").expect("forced");
    let r = h.get_order(&id, &key).await;
    assert_eq!(
        r.data()["user"]["market"]["orders"]["get_order"]["status"],
        "SOMETHING_NEW"
    );
    assert!(h.sim.force_status("nope", "X").is_err());
}
