//! Shared helpers of the integration tests: a running simulator and a small GraphQL client.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use magma_sim::{SellerScript, Sim, SimConfig, SimServer};
use serde_json::{Value, json};

pub const API_KEY: &str = "amboss_test_key";
pub const OTHER_API_KEY: &str = "amboss_other_key";
pub const BUYER: &str = "02eadbd9e7557375161df8b646776a547c5cbc2e95b3071ec81553f8ec2cea3b8c";
pub const START: u64 = 1_781_116_920; // 2026-06-10T18:42:00Z

pub const BUY: &str = "mutation BuyLiquidity($input: LiquidityOrderInput!) { liquidity { buy(input: $input) { account { id session_key } order { transaction_id usd_cents } payment { lightning_invoice redirect_url amount { sats } } } } }";

pub const GET_ORDER: &str = "query GetOrder($orderId: String!) { user { market { orders { get_order(order_id: $orderId) { id status payment_status channel_id transaction_id timeout blocks_until_can_be_closed confirmations { confirmations } fees { buyer { sats usd } seller { sats usd } } created_at amount { satoshi { sats btc usd } } destination { pubkey alias } source { pubkey alias } payment { lightning { invoice pending } } options { private rails_cluster_only asset_id } } } } } }";

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A deterministic configuration: fixed start time, blocks only when mined.
pub fn config(seller: SellerScript) -> SimConfig {
    SimConfig {
        api_keys: vec![API_KEY.to_string(), OTHER_API_KEY.to_string()],
        default_seller: seller,
        block_interval_secs: 0,
        start_time: Some(START),
        ..SimConfig::default()
    }
}

pub struct Harness {
    pub sim: Sim,
    pub server: SimServer,
    pub http: reqwest::Client,
    /// Session keys received by `buy()`, by order id.
    keys: Mutex<HashMap<String, String>>,
}

/// A plain HTTP client for the tests. In a workspace build, reqwest's features are unified with
/// cln-magma's `rustls-no-provider`, and such a client panics unless a crypto provider is
/// installed for the process; installing ring here keeps the tests valid either way.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub async fn start(cfg: SimConfig) -> Harness {
    let sim = Sim::new(cfg);
    let server = sim
        .serve("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("server starts");
    Harness {
        sim,
        server,
        http: http_client(),
        keys: Mutex::default(),
    }
}

/// Result of one GraphQL call.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn data(&self) -> &Value {
        assert_eq!(self.status, 200, "HTTP status, body {}", self.body);
        assert!(self.body.get("errors").is_none(), "errors: {}", self.body);
        &self.body["data"]
    }

    /// `(message, code)` of the first error.
    pub fn error(&self) -> (String, String) {
        let e = &self.body["errors"][0];
        (
            e["message"].as_str().unwrap_or_default().to_string(),
            e["extensions"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    /// A business error: HTTP 200, `data: null`, the given message and code.
    pub fn assert_business_error(&self, message: &str, code: &str) {
        assert_eq!(self.status, 200, "body {}", self.body);
        assert_eq!(self.body["data"], Value::Null, "body {}", self.body);
        assert_eq!(self.error(), (message.to_string(), code.to_string()));
    }
}

impl Harness {
    pub async fn gql(&self, query: &str, variables: Value, bearer: Option<&str>) -> Reply {
        let mut req = self
            .http
            .post(&self.server.graphql_url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = bearer {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    pub async fn buy_as(&self, usd_cents: &str, bearer: Option<&str>) -> Reply {
        let input = json!({ "connection_uri": format!("{BUYER}@203.0.113.7:9735"), "usd_cents": usd_cents });
        self.gql(BUY, json!({ "input": input }), bearer).await
    }

    /// An anonymous buy of $50; returns the `buy` object.
    pub async fn buy(&self) -> Value {
        let buy = self.buy_as("5000", None).await.data()["liquidity"]["buy"].clone();
        let (id, key) = ids(&buy);
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(id, key);
        }
        buy
    }

    pub fn session_key(&self, order_id: &str) -> Option<String> {
        self.keys.lock().ok()?.get(order_id).cloned()
    }

    pub async fn get_order(&self, id: &str, bearer: &str) -> Reply {
        self.gql(GET_ORDER, json!({ "orderId": id }), Some(bearer))
            .await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Reply {
        let url = format!("{}{path}", self.server.admin_url);
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let body = resp.json().await.expect("admin JSON");
        Reply { status, body }
    }
}

/// Order id and session key of a `buy` object.
pub fn ids(buy: &Value) -> (String, String) {
    (
        buy["order"]["transaction_id"]
            .as_str()
            .expect("transaction_id")
            .to_string(),
        buy["account"]["session_key"]
            .as_str()
            .expect("session_key")
            .to_string(),
    )
}
