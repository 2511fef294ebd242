//! Startup recovery (design.md §5): every order left half-way by a crash resumes from what was
//! stored, never repeating a step that may have happened.
//!
//! - `PLACING` (the buy may have been sent, its answer was not stored): reconciled through
//!   `transaction_list` with an API key, else `ABANDONED`. Never bought again.
//! - `PLACED` (the answer is stored, the invoice not yet checked or paid): the invoice is checked
//!   again and paid only if the node shows no attempt for its payment hash and it is still
//!   payable.
//! - `PAYING`: the outcome is read from the node's payment record; `pay` is called only when
//!   the node shows no attempt at all for the payment hash (the plugin stopped before calling it).
//! - `PAID`: the tracker follows it as before the crash.

use crate::app::App;
use crate::estimate::{Ask, Quote};
use crate::inbound::InboundSnapshot;
use crate::magma::Purchase;
use crate::order::{LocalState, NodePayment, PayMode};
use crate::purchase::{self, BuyArgs};
use crate::record::OrderRecord;
use crate::store::Versioned;

pub async fn recover(app: &App) {
    let (orders, unreadable) = match app.store.load_all::<OrderRecord>().await {
        Ok(all) => all,
        Err(e) => {
            log::warn!("cannot read the stored orders to recover them: {e}");
            return;
        }
    };
    for bad in &unreadable {
        log::warn!("a stored order cannot be read and is left as it is: {bad}");
    }
    for v in orders {
        match v.record.lifecycle.state {
            LocalState::Placing => {
                log::info!(
                    "order {}: recovering an order whose buy answer was not stored",
                    v.id
                );
                if let Err(e) = Box::pin(continue_placing(app, v)).await {
                    log::warn!("recovery: {}", e.message);
                }
            }
            LocalState::Placed => {
                log::info!("order {}: recovering: checking its invoice again", v.id);
                if let Err(e) = Box::pin(continue_placed(app, v)).await {
                    log::warn!("recovery: {}", e.message);
                }
            }
            LocalState::Paying if v.record.lifecycle.pay_mode == Some(PayMode::Node) => {
                if let Err(e) = resume_paying(app, &v).await {
                    log::warn!("recovery: {}", e.message);
                }
            }
            _ => {}
        }
    }
    app.wake.notify_one();
}

/// Picks up a `PLACING` order: the buy may or may not have reached Magma. With an API key,
/// `transaction_list` tells: an order found is adopted; none listed means the buy never
/// arrived, so it is sent now — once. Without an API key nothing can tell, so the intent is
/// abandoned (design.md §5, invariant 2).
async fn continue_placing(
    app: &App,
    v: Versioned<OrderRecord>,
) -> Result<(), crate::rpcerror::CommandError> {
    let (quote, args) = stored_terms(&v.record);
    match purchase::find_lost_order(app, &v).await? {
        purchase::Lost::Found { order_id, invoice } => {
            let inbound = inbound(app).await?;
            purchase::adopt(app, v, &order_id, invoice, &quote, &args, &inbound).await?;
        }
        purchase::Lost::NotListed => {
            log::info!(
                "order {}: Magma never received its buy; sending it now",
                v.id
            );
            let inbound = inbound(app).await?;
            purchase::send_buy(app, v, &args, &quote, &inbound).await?;
        }
        purchase::Lost::NoApiKey => {
            purchase::abandon(
                app,
                &v,
                "the plugin stopped before Magma's answer was stored, and without an API key the order cannot be found; nothing was paid",
            )
            .await?;
        }
        purchase::Lost::Unknown => {}
    }
    Ok(())
}

async fn inbound(app: &App) -> Result<InboundSnapshot, crate::rpcerror::CommandError> {
    Ok(InboundSnapshot::from_channels(&app.channels().await?))
}

/// The quote and the arguments an order was placed with, as stored with its intent.
fn stored_terms(record: &OrderRecord) -> (Quote, BuyArgs) {
    let r = &record.request;
    let quote = Quote {
        sats_per_usd: 0,
        usd_capacity_per_usd: String::new(),
        usd_cents: r.usd_cents,
        expected_inbound_sat: r.expected_inbound_sat,
        expected_cost_sat: r.quoted_cost_sat,
        price_ppm: r.quoted_ppm,
        raised_to_minimum: false,
    };
    let args = BuyArgs {
        ask: Ask::UsdCents(r.usd_cents),
        private: r.private,
        rails_cluster_only: r.rails_cluster_only,
        force: r.force,
        external: r.external,
    };
    (quote, args)
}

/// A `PAYING` order paid from the node: if lightningd shows any attempt for the payment hash
/// (pending, complete or failed), its outcome is followed and `pay` is not called again. Only
/// when the node shows none — the plugin stopped between storing `PAYING` and calling `pay` —
/// is it paid now, if the invoice is still payable (lightningd itself refuses a second payment
/// of a hash in flight).
async fn resume_paying(
    app: &App,
    v: &Versioned<OrderRecord>,
) -> Result<(), crate::rpcerror::CommandError> {
    let (Some(inv), Some(p)) = (&v.record.invoice, &v.record.placement) else {
        return Ok(());
    };
    let attempt = purchase::node_payment(app, &inv.payment_hash).await?;
    if attempt != NodePayment::None {
        log::info!(
            "order {}: the node's payment is {attempt:?}; following it",
            v.id
        );
        return Ok(());
    }
    if inv.expires_at < purchase::now() + crate::invoice::MIN_REMAINING_SECS {
        log::warn!(
            "order {}: its invoice expires too soon to pay it now; not paid",
            v.id
        );
        return Ok(());
    }
    log::info!(
        "order {}: the plugin stopped before paying; paying now",
        v.id
    );
    purchase::spawn_pay(
        app.clone(),
        v.id.clone(),
        p.invoice.clone(),
        inv.amount_sat,
        app.config().pay_max_fee_ppm,
    );
    Ok(())
}

/// Picks up a `PLACED` order where the purchase flow left it.
async fn continue_placed(
    app: &App,
    v: Versioned<OrderRecord>,
) -> Result<(), crate::rpcerror::CommandError> {
    let Some(p) = v.record.placement.clone() else {
        return Ok(());
    };
    let purchase = Purchase {
        account_id: p.account_id.clone(),
        session_key: p.session_key.clone(),
        order_id: p.order_id.clone(),
        usd_cents: Some(v.record.request.usd_cents),
        lightning_invoice: p.invoice.clone(),
        redirect_url: None,
        invoice_sats: p.invoice_sats,
    };
    let (quote, args) = stored_terms(&v.record);
    let inbound = inbound(app).await?;
    purchase::check_and_pay(app, v, &purchase, &quote, &args, &inbound).await?;
    Ok(())
}
