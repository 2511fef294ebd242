//! The "never overpay" check end to end: real invoices issued (and tampered with) by the Magma
//! simulator, bought through `MagmaClient`, decoded by the lightningd emulator's `decode`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cln_magma::estimate::{Ask, Quote, quote};
use cln_magma::invoice::{
    Expectation, InvoiceRejection, MIN_REMAINING_SECS, Verdict, VerifiedInvoice, check,
};
use cln_magma::magma::{BuyRequest, ClientOptions, MagmaClient, Purchase};
use cln_magma::node::{Node, NodeError};
use lightningd_emulator::{Emulator, EmulatorConfig};
use magma_sim::{InvoiceFault, Sim, SimConfig, SimServer};

const BUYER: &str = "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619";
/// The default simulator price is 1,996 ppm; this cap lets it through.
const MAX_FEE_PPM: u64 = 2_000;

struct World {
    sim: Sim,
    _server: SimServer,
    client: MagmaClient,
    _emu: Emulator,
    node: Node,
}

async fn world() -> World {
    let sim = Sim::new(SimConfig::default());
    let server = sim
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("simulator starts");
    let client = MagmaClient::new(&ClientOptions {
        api_url: server.graphql_url.clone(),
        timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    })
    .expect("client builds");
    let emu = Emulator::start_node(EmulatorConfig::new("/nonexistent"))
        .await
        .expect("emulated lightningd starts");
    let node = Node::new(emu.rpc_path());
    World {
        sim,
        _server: server,
        client,
        _emu: emu,
        node,
    }
}

impl World {
    /// Magma's current quote for $50.
    async fn quote(&self) -> Quote {
        let price = self.client.price().await.expect("price");
        quote(&price, Ask::UsdCents(5000)).expect("quote")
    }

    /// Buys $50 anonymously.
    async fn buy(&self) -> Purchase {
        let request = BuyRequest {
            connection_uri: format!("{BUYER}@203.0.113.7:9735"),
            usd_cents: 5000,
            private: false,
            rails_cluster_only: false,
            asset_id: None,
            redirect_url: None,
        };
        self.client.buy(&request, None).await.expect("buy")
    }

    fn expect(&self, purchase: &Purchase, quote: &Quote) -> Expectation {
        Expectation::for_purchase("regtest", purchase, quote, MAX_FEE_PPM, self.sim.now())
    }

    async fn check(&self, purchase: &Purchase, quote: &Quote) -> Verdict {
        check(
            &self.node,
            &purchase.lightning_invoice,
            &self.expect(purchase, quote),
        )
        .await
        .expect("lightningd answers")
    }

    /// Buys with `fault` applied to the invoice and checks it.
    async fn rejection_for(&self, fault: InvoiceFault) -> (Purchase, InvoiceRejection) {
        let quote = self.quote().await;
        self.sim.inject_invoice_fault(fault, Some(1));
        let purchase = self.buy().await;
        match self.check(&purchase, &quote).await {
            Verdict::Rejected(r) => (purchase, r),
            Verdict::Payable(v) => panic!("tampered invoice verified: {v:?}"),
        }
    }
}

#[tokio::test]
async fn a_normal_invoice_verifies() {
    let w = world().await;
    let quote = w.quote().await;
    let purchase = w.buy().await;
    let order = w.sim.order(&purchase.order_id).expect("order exists");
    let promised = purchase.invoice_sats.expect("payment.amount.sats");
    assert_eq!(promised, order.invoice_sats);

    let verified = match w.check(&purchase, &quote).await {
        Verdict::Payable(v) => v,
        Verdict::Rejected(r) => panic!("rejected: {r}"),
    };
    assert_eq!(
        verified,
        VerifiedInvoice {
            payment_hash: order.payment_hash.clone(),
            amount_sat: promised,
            expires_at: verified.expires_at,
            price_ppm: quote.price_ppm,
        }
    );
    // The simulator's invoices live an hour.
    assert_eq!(verified.expires_at, w.sim.now() + 3600);
    assert!(verified.price_ppm <= MAX_FEE_PPM);

    // Without `payment.amount.sats` the quote (±1 %) is the yardstick; the same invoice passes.
    let mut expect = w.expect(&purchase, &quote);
    expect.invoice_sats = None;
    let v = check(&w.node, &purchase.lightning_invoice, &expect)
        .await
        .expect("lightningd answers")
        .into_result()
        .expect("within 1 % of the quote");
    assert_eq!(v.payment_hash, order.payment_hash);
}

#[tokio::test]
async fn an_invoice_above_the_promise_is_rejected() {
    let w = world().await;
    let (purchase, r) = w.rejection_for(InvoiceFault::AmountAbove(1000)).await;
    let promised = purchase.invoice_sats.expect("payment.amount.sats");
    assert_eq!(
        r,
        InvoiceRejection::AmountMismatch {
            invoice_sat: promised + 1000,
            promised_sat: promised,
        }
    );
    assert_eq!(r.code(), "amount_mismatch");
}

#[tokio::test]
async fn an_invoice_for_another_network_is_rejected() {
    let w = world().await;
    let (_, r) = w.rejection_for(InvoiceFault::WrongNetwork).await;
    assert_eq!(
        r,
        InvoiceRejection::WrongNetwork {
            invoice_currency: "bc".into(),
            node_network: "regtest".into(),
        }
    );
}

#[tokio::test]
async fn an_invoice_expiring_soon_is_rejected() {
    let w = world().await;
    let (_, r) = w.rejection_for(InvoiceFault::ExpiresIn(300)).await;
    let now = w.sim.now();
    assert_eq!(
        r,
        InvoiceRejection::ExpiresTooSoon {
            expires_at: now + 300,
            now,
            min_remaining_secs: MIN_REMAINING_SECS,
        }
    );
}

#[tokio::test]
async fn an_undecodable_invoice_is_rejected() {
    let w = world().await;
    let (_, r) = w.rejection_for(InvoiceFault::Undecodable).await;
    match &r {
        InvoiceRejection::Undecodable { reason } => {
            assert!(reason.contains("Bad bech32 string"), "{reason}")
        }
        other => panic!("want Undecodable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_price_above_the_cap_is_rejected() {
    let w = world().await;
    // Quoted at the usual 1,996 ppm; by the time of the buy, a dollar buys half the capacity,
    // so Magma's own (honest) `payment.amount.sats` is twice as many sats.
    let quote = w.quote().await;
    assert!(quote.price_ppm <= MAX_FEE_PPM);
    w.sim.set_price("543260", "250.545").expect("price set");
    let purchase = w.buy().await;
    let invoice_sat = purchase.invoice_sats.expect("payment.amount.sats");
    let ppm =
        (u128::from(invoice_sat) * 1_000_000).div_ceil(u128::from(quote.expected_inbound_sat));
    assert!(ppm > u128::from(MAX_FEE_PPM));
    match w.check(&purchase, &quote).await {
        Verdict::Rejected(r) => assert_eq!(
            r,
            InvoiceRejection::PriceTooHigh {
                ppm: u64::try_from(ppm).expect("fits"),
                max_ppm: MAX_FEE_PPM,
            }
        ),
        Verdict::Payable(v) => panic!("overpriced invoice verified: {v:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_node_is_not_a_rejection() {
    let w = world().await;
    let quote = w.quote().await;
    let purchase = w.buy().await;
    let gone = Node::new(PathBuf::from("/nonexistent/lightning-rpc"));
    let err = check(
        &gone,
        &purchase.lightning_invoice,
        &w.expect(&purchase, &quote),
    )
    .await
    .expect_err("no lightningd to ask");
    assert!(matches!(err, NodeError::Io { .. }), "{err}");
    // The same invoice is fine once lightningd can be asked.
    assert!(matches!(
        w.check(&purchase, &quote).await,
        Verdict::Payable(_)
    ));
}
