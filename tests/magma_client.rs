//! The Magma client against the simulator: every operation's happy path, every error class
//! produced by the matching simulator fault, "buy is sent once", and no secret in any output.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cln_magma::magma::{
    BuyRequest, ClientOptions, MagmaClient, MagmaError, OrderStatus, Page, PaymentStatus,
};
use cln_magma::secret::Secret;
use magma_sim::{CredentialKind, Fault, Operation, Sim, SimConfig, SimServer};

const API_KEY: &str = "amboss_test_key_5f1c0e8a9b7d4c3e";
const NODE: &str = "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619";

// --- captured logs -------------------------------------------------------------------------

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(format!(
                "{} {}: {}",
                record.level(),
                record.target(),
                record.args()
            ));
        }
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        // Another test binary may not install one; within this one, only we do.
        let _ = log::set_logger(c);
        log::set_max_level(log::LevelFilter::Trace);
        c
    })
}

// --- harness -------------------------------------------------------------------------------

struct World {
    sim: Sim,
    server: SimServer,
    client: MagmaClient,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(tune: impl FnOnce(&mut ClientOptions)) -> World {
    capture();
    let sim = Sim::new(SimConfig {
        api_keys: vec![API_KEY.to_string()],
        ..SimConfig::default()
    });
    let server = sim
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator starts");
    let mut options = ClientOptions {
        api_url: server.graphql_url.clone(),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    tune(&mut options);
    let client = MagmaClient::new(&options).expect("client builds");
    World {
        sim,
        server,
        client,
    }
}

fn request(usd_cents: u64) -> BuyRequest {
    BuyRequest {
        connection_uri: format!("{NODE}@203.0.113.7:9735"),
        usd_cents,
        private: false,
        rails_cluster_only: false,
        asset_id: None,
        redirect_url: None,
    }
}

fn api_key() -> Secret {
    Secret::new(API_KEY)
}

fn buys_logged(sim: &Sim) -> usize {
    sim.request_log()
        .iter()
        .filter(|r| r.operation == Operation::Buy)
        .count()
}

// --- happy paths ---------------------------------------------------------------------------

#[tokio::test]
async fn price_returns_the_configured_rate() {
    let w = world().await;
    let price = w.client.price().await.unwrap();
    assert_eq!(price.sats.0, 543_260);
    assert_eq!(price.usd.as_str(), "501.09");
    w.sim.set_price("600000", "550.5").unwrap();
    let price = w.client.price().await.unwrap();
    assert_eq!(price.sats.0, 600_000);
    assert_eq!(price.usd.cents_floor(), 55_050);
}

#[tokio::test]
async fn anonymous_buy_returns_a_session_key_and_a_real_invoice() {
    let w = world().await;
    let purchase = w.client.buy(&request(5000), None).await.unwrap();
    let key = purchase
        .session_key
        .clone()
        .expect("anonymous buys get a session key");
    assert_eq!(purchase.usd_cents, Some(5000));
    let order = w
        .sim
        .order(&purchase.order_id)
        .expect("the simulator has the order");
    assert_eq!(purchase.lightning_invoice, order.invoice);
    assert_eq!(purchase.invoice_sats, Some(order.invoice_sats));

    // The invoice is a real, signed regtest BOLT11 for exactly payment.amount.sats.
    let invoice = lightning_invoice::Bolt11Invoice::from_str(&purchase.lightning_invoice)
        .expect("invoice decodes");
    assert_eq!(invoice.currency(), lightning_invoice::Currency::Regtest);
    assert_eq!(
        invoice.amount_milli_satoshis(),
        Some(order.invoice_sats * 1000)
    );
    assert_eq!(invoice.payment_hash().to_string(), order.payment_hash);
    assert!(invoice.check_signature().is_ok());

    // The session key reads the order back.
    let got = w.client.get_order(&purchase.order_id, &key).await.unwrap();
    assert_eq!(got.id, purchase.order_id);
    assert!(got.status.is_known());
    assert_eq!(got.payment_status, Some(PaymentStatus::PendingPayment));
    assert_eq!(got.transaction_id, None, "no funding transaction yet");
}

#[tokio::test]
async fn get_order_follows_the_lifecycle_with_the_api_key() {
    let w = world().await;
    let purchase = w
        .client
        .buy(&request(1000), Some(&api_key()))
        .await
        .unwrap();
    assert!(
        purchase.session_key.is_none(),
        "API-key buys need no session key"
    );
    let order = w.sim.order(&purchase.order_id).unwrap();
    w.sim.advance(Duration::from_secs(10));
    w.sim.htlc_held(&order.payment_hash).unwrap();
    w.sim.advance(Duration::from_secs(60));
    let got = w
        .client
        .get_order(&purchase.order_id, &api_key())
        .await
        .unwrap();
    assert_eq!(got.payment_status, Some(PaymentStatus::SuccessfulPayment));
    assert!(
        got.transaction_id.is_some(),
        "funding txid once the seller sent it"
    );
    w.sim.mine_blocks(3);
    w.sim.advance(Duration::from_secs(600));
    let got = w
        .client
        .get_order(&purchase.order_id, &api_key())
        .await
        .unwrap();
    assert_eq!(got.status, OrderStatus::ValidChannelOpening);
    assert!(got.channel_id.is_some());
    assert!(got.confirmations.unwrap_or(0) >= 3);
    assert!(got.buyer_fee.and_then(|f| f.sats).is_some());
}

#[tokio::test]
async fn transaction_list_pages_newest_first() {
    let w = world().await;
    let mut ids = Vec::new();
    for cents in [500, 600, 700] {
        ids.push(
            w.client
                .buy(&request(cents), Some(&api_key()))
                .await
                .unwrap()
                .order_id,
        );
        w.sim.advance(Duration::from_secs(1));
    }
    // Another account's order is not listed.
    w.client.buy(&request(800), None).await.unwrap();
    let first = w
        .client
        .transaction_list(
            Page {
                limit: 2,
                offset: 0,
            },
            &api_key(),
        )
        .await
        .unwrap();
    let second = w
        .client
        .transaction_list(
            Page {
                limit: 2,
                offset: 2,
            },
            &api_key(),
        )
        .await
        .unwrap();
    let listed: Vec<_> = first.iter().chain(&second).map(|t| t.id.clone()).collect();
    ids.reverse();
    assert_eq!(listed, ids);
    assert!(first.iter().all(|t| t.created_at.is_some()));
}

// --- error classes -------------------------------------------------------------------------

#[tokio::test]
async fn unauthorized_without_a_valid_bearer() {
    let w = world().await;
    let purchase = w.client.buy(&request(500), None).await.unwrap();
    let e = w
        .client
        .get_order(&purchase.order_id, &Secret::new("not-a-real-key-123456"))
        .await
        .unwrap_err();
    assert!(matches!(e, MagmaError::Unauthorized { .. }), "{e:?}");
    let e = w
        .client
        .transaction_list(Page::default(), &Secret::new("amboss_revoked_key_000"))
        .await
        .unwrap_err();
    assert!(matches!(e, MagmaError::Unauthorized { .. }), "{e:?}");
}

#[tokio::test]
async fn invalid_requests_carry_the_servers_message() {
    let w = world().await;
    let e = w.client.buy(&request(499), None).await.unwrap_err();
    assert!(
        matches!(&e, MagmaError::Invalid { message } if message.contains("Min amount violated")),
        "{e:?}"
    );
    let mut bad_uri = request(500);
    bad_uri.connection_uri = "not-a-node".into();
    let e = w.client.buy(&bad_uri, None).await.unwrap_err();
    assert!(
        matches!(&e, MagmaError::Invalid { message } if message.contains("connection_uri")),
        "{e:?}"
    );
    let e = w.client.get_order("1234", &api_key()).await.unwrap_err();
    assert!(
        matches!(&e, MagmaError::Invalid { message } if message.contains("Invalid ID")),
        "{e:?}"
    );
    assert_eq!(w.sim.orders().len(), 0, "no order was created");
}

#[tokio::test]
async fn someone_elses_order_is_not_found() {
    let w = world().await;
    let theirs = w.client.buy(&request(500), None).await.unwrap();
    let e = w
        .client
        .get_order(&theirs.order_id, &api_key())
        .await
        .unwrap_err();
    assert!(matches!(e, MagmaError::NotFound { .. }), "{e:?}");
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let w = world().await;
    w.sim.inject_fault(
        Operation::Price,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
        Some(1),
    );
    let e = w.client.price().await.unwrap_err();
    assert_eq!(
        e,
        MagmaError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(
        w.client.price().await.is_ok(),
        "recovers once the fault stops"
    );
}

#[tokio::test]
async fn reads_classify_server_trouble_as_transient() {
    let w = world_with(|o| o.timeout = Duration::from_millis(400)).await;
    let buy = w.client.buy(&request(500), Some(&api_key())).await.unwrap();

    w.sim
        .inject_fault(Operation::GetOrder, Fault::Http500, Some(1));
    let e = w
        .client
        .get_order(&buy.order_id, &api_key())
        .await
        .unwrap_err();
    assert!(matches!(e, MagmaError::Transient { .. }), "{e:?}");

    w.sim
        .inject_fault(Operation::Price, Fault::Slow { delay_ms: 1500 }, Some(1));
    let e = w.client.price().await.unwrap_err();
    assert!(
        matches!(&e, MagmaError::Transient { reason } if reason.contains("timed out")),
        "{e:?}"
    );

    w.sim.inject_fault(
        Operation::TransactionList,
        Fault::GraphqlError {
            message: "Internal server error".into(),
            code: "INTERNAL_SERVER_ERROR".into(),
        },
        Some(1),
    );
    let e = w
        .client
        .transaction_list(Page::default(), &api_key())
        .await
        .unwrap_err();
    assert!(matches!(e, MagmaError::Transient { .. }), "{e:?}");

    w.sim
        .inject_fault(Operation::GetOrder, Fault::DropAfterCommit, Some(1));
    let e = w
        .client
        .get_order(&buy.order_id, &api_key())
        .await
        .unwrap_err();
    assert!(matches!(e, MagmaError::Transient { .. }), "{e:?}");

    assert!(w.client.get_order(&buy.order_id, &api_key()).await.is_ok());
}

#[tokio::test]
async fn nothing_listening_is_transient_even_for_a_buy() {
    // Bind and drop a listener to get a port that refuses connections.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = MagmaClient::new(&ClientOptions {
        api_url: format!("http://127.0.0.1:{port}/graphql"),
        ..ClientOptions::default()
    })
    .unwrap();
    let e = client.buy(&request(500), None).await.unwrap_err();
    assert!(
        matches!(&e, MagmaError::Transient { reason } if reason.contains("could not connect")),
        "a refused connection never reached the server: {e:?}"
    );
}

#[tokio::test]
async fn broken_bodies_are_protocol_errors_for_reads() {
    let w = world().await;
    w.sim
        .inject_fault(Operation::Price, Fault::NonJson, Some(1));
    let e = w.client.price().await.unwrap_err();
    assert!(matches!(e, MagmaError::Protocol { .. }), "{e:?}");

    let small = world_with(|o| o.max_response_bytes = 64).await;
    let e = small.client.price().await.unwrap_err();
    assert!(
        matches!(&e, MagmaError::Protocol { reason } if reason.contains("larger than 64 bytes")),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_unknown_status_is_kept_not_refused() {
    let w = world().await;
    let buy = w.client.buy(&request(500), Some(&api_key())).await.unwrap();
    w.sim.inject_fault(
        Operation::GetOrder,
        Fault::UnknownStatus("SELLER_PONDERING".into()),
        Some(1),
    );
    let order = w.client.get_order(&buy.order_id, &api_key()).await.unwrap();
    assert_eq!(
        order.status,
        OrderStatus::Unknown("SELLER_PONDERING".into())
    );
}

/// Every way a buy's answer can go missing after the request may have reached the server.
#[tokio::test]
async fn a_buy_with_an_unknown_outcome_is_ambiguous_and_sent_once() {
    let cases: Vec<(Fault, bool)> = vec![
        (Fault::DropAfterCommit, true),
        (Fault::Slow { delay_ms: 1500 }, true),
        (Fault::Http500, false),
        (Fault::NonJson, false),
        (
            Fault::GraphqlError {
                message: "Internal server error".into(),
                code: "INTERNAL_SERVER_ERROR".into(),
            },
            false,
        ),
    ];
    for (fault, commits) in cases {
        let w = world_with(|o| o.timeout = Duration::from_millis(400)).await;
        let label = format!("{fault:?}");
        w.sim.inject_fault(Operation::Buy, fault, Some(1));
        let e = w
            .client
            .buy(&request(500), Some(&api_key()))
            .await
            .unwrap_err();
        assert!(matches!(e, MagmaError::Ambiguous { .. }), "{label}: {e:?}");
        assert_eq!(
            buys_logged(&w.sim),
            1,
            "{label}: buy must be sent exactly once"
        );
        assert_eq!(
            w.sim.orders().len(),
            usize::from(commits),
            "{label}: the simulator committed as the fault says"
        );
        if commits {
            // With an API key the lost order is found again through transaction_list.
            let listed = w
                .client
                .transaction_list(Page::default(), &api_key())
                .await
                .unwrap();
            assert_eq!(listed.len(), 1, "{label}");
            assert_eq!(listed[0].id, w.sim.orders()[0].id);
        }
    }
}

#[tokio::test]
async fn the_request_log_names_operation_and_credential() {
    let w = world().await;
    w.client.price().await.unwrap();
    let anon = w.client.buy(&request(500), None).await.unwrap();
    let key = anon.session_key.clone().unwrap();
    w.client.get_order(&anon.order_id, &key).await.unwrap();
    w.client
        .transaction_list(Page::default(), &api_key())
        .await
        .unwrap();
    let log: Vec<_> = w
        .sim
        .request_log()
        .into_iter()
        .map(|r| (r.operation, r.credential))
        .collect();
    assert_eq!(
        log,
        vec![
            (Operation::Price, CredentialKind::None),
            (Operation::Buy, CredentialKind::None),
            (Operation::GetOrder, CredentialKind::SessionKey),
            (Operation::TransactionList, CredentialKind::ApiKey),
        ]
    );
}

// --- secrets -------------------------------------------------------------------------------

#[tokio::test]
async fn no_secret_reaches_logs_or_error_texts() {
    let w = world_with(|o| o.timeout = Duration::from_millis(400)).await;
    let mut texts = Vec::new();
    let anon = w.client.buy(&request(500), None).await.unwrap();
    let session = anon.session_key.clone().unwrap();
    texts.push(format!("{anon:?}"));
    let keyed = w.client.buy(&request(500), Some(&api_key())).await.unwrap();
    texts.push(format!("{keyed:?}"));
    texts.push(format!(
        "{:?}",
        w.client.get_order(&anon.order_id, &session).await
    ));
    // A server that echoes the credential in its error text.
    for secret in [api_key(), session.clone()] {
        w.sim.inject_fault(
            Operation::GetOrder,
            Fault::GraphqlError {
                message: format!("token {} is not welcome", secret.expose()),
                code: "INTERNAL_SERVER_ERROR".into(),
            },
            Some(1),
        );
        let e = w
            .client
            .get_order(&anon.order_id, &secret)
            .await
            .unwrap_err();
        texts.push(format!("{e} {e:?}"));
    }
    for fault in [
        Fault::Http500,
        Fault::NonJson,
        Fault::DropAfterCommit,
        Fault::Slow { delay_ms: 1500 },
    ] {
        w.sim.inject_fault(Operation::Buy, fault, Some(1));
        let e = w
            .client
            .buy(&request(500), Some(&session))
            .await
            .unwrap_err();
        texts.push(format!("{e} {e:?}"));
    }
    let e = w
        .client
        .get_order(&anon.order_id, &Secret::new("amboss_wrong_key_abcdef01"))
        .await
        .unwrap_err();
    texts.push(format!("{e} {e:?}"));

    let logs = capture().0.lock().unwrap().clone();
    assert!(!logs.is_empty(), "the client logs its calls");
    for secret in [API_KEY, session.expose(), "amboss_wrong_key_abcdef01"] {
        for line in logs.iter().chain(&texts) {
            assert!(!line.contains(secret), "secret leaked into: {line}");
        }
    }
}

// --- proxy ---------------------------------------------------------------------------------

#[tokio::test]
async fn calls_go_through_the_socks_proxy_when_given_one() {
    let (proxy, seen) = common::socks5_proxy().await;
    let w = world_with(|o| o.socks_proxy = Some(proxy.to_string())).await;
    let price = w.client.price().await.unwrap();
    assert_eq!(price.sats.0, 543_260);
    let port = w
        .server
        .graphql_url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![format!("127.0.0.1:{port}")],
        "the proxy carried the call"
    );
}
