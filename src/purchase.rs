//! `magma-buy`: one purchase, in the order design.md §5 demands — checks, quote, the intent
//! stored, `liquidity.buy` sent once, its answer stored, the invoice checked, and only then the
//! payment started (or handed to another wallet).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::app::App;
use crate::crash;
use crate::estimate::{self, Ask, MAGMA_MIN_USD_CENTS};
use crate::inbound::InboundSnapshot;
use crate::invoice::{self, Expectation, Verdict};
use crate::ledger::counts_against_budget;
use crate::magma::{BuyRequest, MagmaError, Page};
use crate::order::{Lifecycle, NodePayment, PayMode};
use crate::params::Params;
use crate::record::{CheckedInvoice, Credential, OrderRecord, Placement, Request, Trigger};
use crate::rpcerror::{CommandError, NODE_FAILED, NOT_READY};
use crate::store::{StoreError, UpdateError, Versioned};
use crate::uri;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuyArgs {
    pub ask: Ask,
    pub private: bool,
    pub rails_cluster_only: bool,
    pub force: bool,
    pub external: bool,
}

pub fn parse_args(raw: &Value, app: &App) -> Result<BuyArgs, CommandError> {
    let p = Params::parse(
        raw,
        &[
            "usd_cents",
            "amount_sat",
            "private",
            "rails_cluster_only",
            "force",
            "external",
        ],
    )?;
    let usd_cents = p.positive_u64("usd_cents")?;
    let amount_sat = p.positive_u64("amount_sat")?;
    let ask = match (usd_cents, amount_sat) {
        (Some(_), Some(_)) => {
            return Err(CommandError::invalid(
                "give usd_cents or amount_sat, not both",
            ));
        }
        (None, None) => {
            return Err(CommandError::invalid(
                "give usd_cents (what to spend) or amount_sat (inbound wanted)",
            ));
        }
        (Some(c), None) if c < MAGMA_MIN_USD_CENTS => {
            return Err(CommandError::invalid(format!(
                "usd_cents must be at least {MAGMA_MIN_USD_CENTS} (Magma's minimum order), got {c}"
            )));
        }
        (Some(c), None) => Ask::UsdCents(c),
        (None, Some(s)) => Ask::InboundSat(s),
    };
    let config = app.config();
    Ok(BuyArgs {
        ask,
        private: p.flag("private")?.unwrap_or(config.private),
        rails_cluster_only: p
            .flag("rails_cluster_only")?
            .unwrap_or(config.rails_cluster_only),
        force: p.flag("force")?.unwrap_or(false),
        external: p.flag("external")?.unwrap_or(false),
    })
}

fn store_failed(e: impl std::fmt::Display) -> CommandError {
    CommandError::new(
        NODE_FAILED,
        format!("cannot store the order in the datastore: {e}"),
    )
}

/// A new local id: time-ordered, so `magma-orders` lists oldest first by id.
fn new_id(at_ms: u128, attempt: u32) -> String {
    format!("o{at_ms}-{attempt}")
}

/// `magma-buy`: one manual purchase.
pub async fn buy(app: &App, raw: &Value) -> Result<Value, CommandError> {
    let args = parse_args(raw, app)?;
    let stored = place(app, &args, Trigger::Manual).await?;
    Ok(result(&stored.record))
}

/// One purchase, manual or automatic. An automatic one must be payable from the node's own
/// outbound: nobody is there to pay an invoice handed out.
pub async fn place(
    app: &App,
    args: &BuyArgs,
    trigger: Trigger,
) -> Result<Versioned<OrderRecord>, CommandError> {
    let args = args.clone();
    let config = app.config();
    let started = now();
    // Until this purchase's intent is stored, no other purchase may check the limits.
    let limits = app.purchase_lock.lock().await;

    // Limits first: in-flight and budget, from the stored orders (force bypasses both).
    let orders = app.orders().await?;
    let live = orders
        .iter()
        .filter(|o| !o.record.lifecycle.state.is_final())
        .count() as u64;
    if !args.force && live >= config.max_inflight {
        return Err(CommandError::new(
            NOT_READY,
            format!(
                "{live} order(s) still in flight and magma-max-inflight is {}; wait, or pass force=true",
                config.max_inflight
            ),
        ));
    }

    let channels = app.channels().await?;
    let inbound = InboundSnapshot::from_channels(&channels);
    let info = app
        .node
        .getinfo()
        .await
        .map_err(|e| CommandError::node("getinfo", e))?;
    let (connection_uri, _) = uri::resolve(config.connection_uri.as_ref(), &info)
        .map_err(|e| CommandError::new(NOT_READY, e.to_string()))?;

    let price = app.client.price().await?;
    let quote = estimate::quote(&price, args.ask)
        .map_err(|e| CommandError::new(crate::rpcerror::MAGMA_FAILED, e.to_string()))?;
    // The price cap holds even with force (design.md §4).
    if quote.price_ppm > config.max_fee_ppm {
        return Err(CommandError::new(
            NOT_READY,
            format!(
                "Magma's price is {} ppm, above magma-max-fee-ppm ({}); nothing bought",
                quote.price_ppm, config.max_fee_ppm
            ),
        ));
    }
    if !args.force {
        let window_start = started.saturating_sub(config.budget_days * 86_400);
        let committed: u64 = orders
            .iter()
            .map(|o| &o.record)
            .filter(|r| r.created_at >= window_start && counts_against_budget(r.lifecycle.state))
            .map(|r| r.request.usd_cents)
            .sum();
        if committed + quote.usd_cents > config.budget_usd_cents {
            return Err(CommandError::new(
                NOT_READY,
                format!(
                    "{} cents would exceed magma-budget-usd-cents: {committed} of {} already committed in the last {} days; pass force=true to buy anyway",
                    quote.usd_cents, config.budget_usd_cents, config.budget_days
                ),
            ));
        }
    }

    if trigger == Trigger::Auto {
        let fee_cap = quote
            .expected_cost_sat
            .saturating_mul(config.pay_max_fee_ppm)
            .div_ceil(1_000_000);
        let needed = quote.expected_cost_sat.saturating_add(fee_cap);
        if inbound.spendable_sat < needed {
            return Err(CommandError::new(
                NOT_READY,
                format!(
                    "an automatic order must be paid from this node: {needed} sats needed, {} spendable",
                    inbound.spendable_sat
                ),
            ));
        }
    }

    // Invariant 1: the intent is stored before anything is sent.
    let request = Request {
        usd_cents: quote.usd_cents,
        connection_uri: connection_uri.to_string(),
        private: args.private,
        rails_cluster_only: args.rails_cluster_only,
        expected_inbound_sat: quote.expected_inbound_sat,
        quoted_cost_sat: quote.expected_cost_sat,
        quoted_ppm: quote.price_ppm,
        external: args.external,
        force: args.force,
    };
    let mut record = OrderRecord {
        version: crate::record::RECORD_VERSION,
        id: String::new(),
        created_at: started,
        trigger,
        request,
        placement: None,
        invoice: None,
        funding_txid: None,
        magma_channel_id: None,
        delivery: None,
        lifecycle: Lifecycle::new(started),
    };
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut stored = None;
    for attempt in 0..5 {
        record.id = new_id(at_ms, attempt);
        match app.store.insert(&record.id, &record).await {
            Ok(v) => {
                stored = Some(v);
                break;
            }
            Err(StoreError::Exists) => continue,
            Err(e) => return Err(store_failed(e)),
        }
    }
    let stored = stored.ok_or_else(|| store_failed("no free order id"))?;
    drop(limits);
    crash::point("intent-stored");
    log::info!(
        "order {}: buying {} cents of inbound (~{} sats at {} ppm) for {}",
        record.id,
        quote.usd_cents,
        quote.expected_inbound_sat,
        quote.price_ppm,
        record.request.connection_uri
    );
    app.notify_order(&stored.record, "placing");

    send_buy(app, stored, &args, &quote, &inbound).await
}

/// Sends `liquidity.buy` for a stored intent — exactly once — stores the answer, then checks
/// and pays the invoice.
pub(crate) async fn send_buy(
    app: &App,
    stored: Versioned<OrderRecord>,
    args: &BuyArgs,
    quote: &estimate::Quote,
    inbound: &InboundSnapshot,
) -> Result<Versioned<OrderRecord>, CommandError> {
    let buy = BuyRequest {
        connection_uri: stored.record.request.connection_uri.clone(),
        usd_cents: quote.usd_cents,
        private: args.private,
        rails_cluster_only: args.rails_cluster_only,
        asset_id: None,
        redirect_url: None,
    };
    // Sent exactly once; the client never retries a buy.
    let answer = app.client.buy(&buy, app.api_key.as_ref()).await;
    if answer.is_ok() {
        crash::point("buy-answered");
    }
    let stored = match answer {
        Ok(purchase) => {
            let placement = Placement {
                order_id: purchase.order_id.clone(),
                account_id: purchase.account_id.clone(),
                credential: if app.api_key.is_some() {
                    Credential::ApiKey
                } else {
                    Credential::SessionKey
                },
                session_key: purchase.session_key.clone(),
                invoice: purchase.lightning_invoice.clone(),
                invoice_sats: purchase.invoice_sats,
                adopted: false,
            };
            // Invariant 1: the answer is stored before the invoice is looked at.
            let at = now();
            let v = update(app, &stored, |r| {
                if r.placement.is_some() {
                    return Ok(false);
                }
                r.placement = Some(placement.clone());
                Ok(!r.lifecycle.placed(at).is_empty())
            })
            .await?;
            log::info!(
                "order {}: placed as Magma order {}",
                v.id,
                purchase.order_id
            );
            app.notify_order(&v.record, "placed");
            crash::point("placed-stored");
            Box::pin(check_and_pay(app, v, &purchase, quote, args, inbound)).await?
        }
        Err(e @ MagmaError::Ambiguous { .. }) => {
            log::warn!("order {}: {e}", stored.id);
            match Box::pin(find_lost_order(app, &stored)).await? {
                Lost::Found { order_id, invoice } => {
                    Box::pin(adopt(app, stored, &order_id, invoice, quote, args, inbound)).await?
                }
                Lost::NotListed | Lost::NoApiKey => {
                    let why = format!(
                        "the buy's answer was lost ({e}) and the order cannot be found{}",
                        if app.api_key.is_some() {
                            ": Magma lists no new order"
                        } else {
                            " without an API key; its invoice will expire unpaid"
                        }
                    );
                    abandon(app, &stored, &why).await?
                }
                // Stays PLACING: recovery reconciles it later; never bought again meanwhile.
                Lost::Unknown => stored,
            }
        }
        Err(e) => {
            // Magma said no, or the request never left: no order exists.
            abandon(app, &stored, &format!("Magma did not take the order: {e}")).await?;
            return Err(e.into());
        }
    };
    app.wake.notify_one();
    Ok(stored)
}

pub(crate) async fn abandon(
    app: &App,
    stored: &Versioned<OrderRecord>,
    why: &str,
) -> Result<Versioned<OrderRecord>, CommandError> {
    let at = now();
    let v = update(app, stored, |r| {
        Ok(!r.lifecycle.abandoned(at, why).is_empty())
    })
    .await?;
    app.notify_order(&v.record, "abandoned");
    Ok(v)
}

async fn update<F>(
    app: &App,
    v: &Versioned<OrderRecord>,
    change: F,
) -> Result<Versioned<OrderRecord>, CommandError>
where
    F: FnMut(&mut OrderRecord) -> Result<bool, CommandError>,
{
    app.store.update(v, change).await.map_err(|e| match e {
        UpdateError::Aborted(e) => e,
        other => store_failed(other),
    })
}

/// What reconciliation found for an intent whose buy answer is missing.
pub(crate) enum Lost {
    /// A new order of ours, listed since the intent; its invoice when Magma gives it.
    Found {
        order_id: String,
        invoice: Option<String>,
    },
    /// Magma lists no new order: the buy did not create one.
    NotListed,
    /// Without an API key nothing can be looked up.
    NoApiKey,
    /// The lookup failed; try again later.
    Unknown,
}

/// Looks for the order a lost buy may have created (the guide: list `transaction_list` and
/// reconcile before ever buying again). Orders known locally are not candidates; the newest
/// unknown one created since the intent (with a minute of clock slack) is ours.
pub(crate) async fn find_lost_order(
    app: &App,
    stored: &Versioned<OrderRecord>,
) -> Result<Lost, CommandError> {
    let Some(key) = app.api_key.as_ref() else {
        return Ok(Lost::NoApiKey);
    };
    let known: Vec<String> = app
        .orders()
        .await?
        .into_iter()
        .filter_map(|o| o.record.placement.map(|p| p.order_id))
        .collect();
    let page = Page {
        limit: 20,
        offset: 0,
    };
    let listed = match app.client.transaction_list(page, key).await {
        Ok(list) => list,
        Err(e) => {
            log::warn!("order {}: cannot reconcile yet: {e}", stored.id);
            return Ok(Lost::Unknown);
        }
    };
    let since = stored.record.created_at.saturating_sub(60);
    let found = listed.into_iter().find(|t| {
        !known.contains(&t.id)
            && t.created_at
                .as_deref()
                .and_then(parse_time)
                .is_some_and(|c| c >= since)
    });
    let Some(t) = found else {
        return Ok(Lost::NotListed);
    };
    let invoice = match app.client.order_invoice(&t.id, key).await {
        Ok(invoice) => invoice,
        Err(e) => {
            log::warn!(
                "order {}: Magma does not give the invoice of {} ({e})",
                stored.id,
                t.id
            );
            None
        }
    };
    Ok(Lost::Found {
        order_id: t.id,
        invoice,
    })
}

/// Takes over the order a lost answer created: with its invoice recovered, the purchase goes
/// on (the invoice is checked like any other, against the quote since Magma's promised amount
/// was in the lost answer); without it, nothing can be paid.
pub(crate) async fn adopt(
    app: &App,
    stored: Versioned<OrderRecord>,
    order_id: &str,
    invoice: Option<String>,
    quote: &estimate::Quote,
    args: &BuyArgs,
    inbound: &InboundSnapshot,
) -> Result<Versioned<OrderRecord>, CommandError> {
    log::info!(
        "order {}: adopted Magma order {order_id} found after the lost answer",
        stored.id
    );
    let placement = Placement {
        order_id: order_id.to_string(),
        account_id: String::new(),
        credential: Credential::ApiKey,
        session_key: None,
        invoice: invoice.clone().unwrap_or_default(),
        invoice_sats: None,
        adopted: true,
    };
    let at = now();
    let v = update(app, &stored, |r| {
        if r.placement.is_some() {
            return Ok(false);
        }
        r.placement = Some(placement.clone());
        r.lifecycle.placed(at);
        if invoice.is_none() {
            r.lifecycle.rejected(
                at,
                "adopted after a lost answer: the invoice is unknown, so it is not paid",
            );
        }
        Ok(true)
    })
    .await?;
    app.notify_order(&v.record, "adopted");
    let Some(bolt11) = invoice else {
        return Ok(v);
    };
    let purchase = crate::magma::Purchase {
        account_id: String::new(),
        session_key: None,
        order_id: order_id.to_string(),
        usd_cents: Some(v.record.request.usd_cents),
        lightning_invoice: bolt11,
        redirect_url: None,
        invoice_sats: None,
    };
    Box::pin(check_and_pay(app, v, &purchase, quote, args, inbound)).await
}

/// RFC 3339 to unix seconds.
pub fn parse_time(s: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(s)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

pub(crate) async fn check_and_pay(
    app: &App,
    v: Versioned<OrderRecord>,
    purchase: &crate::magma::Purchase,
    quote: &estimate::Quote,
    args: &BuyArgs,
    inbound: &InboundSnapshot,
) -> Result<Versioned<OrderRecord>, CommandError> {
    let config = app.config();
    let expect = Expectation::for_purchase(
        &app.settings.network,
        purchase,
        quote,
        config.max_fee_ppm,
        now(),
    );
    let verified = match invoice::check(&app.node, &purchase.lightning_invoice, &expect).await {
        Ok(Verdict::Payable(ok)) => ok,
        Ok(Verdict::Rejected(why)) => {
            // Invariant 4: never paid.
            let text = why.to_string();
            log::warn!("order {}: invoice rejected: {text}", v.id);
            let at = now();
            let v = update(app, &v, |r| Ok(!r.lifecycle.rejected(at, &text).is_empty())).await?;
            app.notify_order(&v.record, "rejected");
            return Ok(v);
        }
        Err(e) => {
            // Not a rejection: the order stays Placed, stored, for a later check.
            return Err(CommandError::node(
                "decode (the order is stored and can be checked again)",
                e,
            ));
        }
    };
    let fee_cap_sat = verified
        .amount_sat
        .saturating_mul(config.pay_max_fee_ppm)
        .div_ceil(1_000_000);
    let can_pay = inbound.spendable_sat >= verified.amount_sat.saturating_add(fee_cap_sat);
    let mode = if args.external || !can_pay {
        PayMode::External
    } else {
        PayMode::Node
    };

    // Invariant 3: nothing pending or complete for this hash before paying.
    let existing = node_payment(app, &verified.payment_hash).await?;
    let checked = CheckedInvoice {
        payment_hash: verified.payment_hash.clone(),
        amount_sat: verified.amount_sat,
        expires_at: verified.expires_at,
        price_ppm: verified.price_ppm,
    };
    let at = now();
    let v = update(app, &v, |r| {
        // The checked invoice is new information whether or not the state moves.
        r.invoice = Some(checked.clone());
        r.lifecycle.paying(mode, at);
        Ok(true)
    })
    .await?;
    app.notify_order(&v.record, "paying");
    crash::point("paying-stored");
    match (mode, existing) {
        (PayMode::External, _) => {
            log::info!(
                "order {}: invoice for {} sats handed out for payment from another wallet{}",
                v.id,
                verified.amount_sat,
                if args.external {
                    ""
                } else {
                    " (not enough outbound to pay it from this node)"
                }
            );
        }
        // Only when the node shows no attempt at all: never a second payment for one hash.
        (PayMode::Node, NodePayment::None) => {
            spawn_pay(
                app.clone(),
                v.id.clone(),
                purchase.lightning_invoice.clone(),
                verified.amount_sat,
                config.pay_max_fee_ppm,
            );
        }
        (PayMode::Node, state) => {
            log::warn!(
                "order {}: a payment for this invoice already exists ({state:?}); not paying again",
                v.id
            );
        }
    }
    Ok(v)
}

/// The node's own record of payments to `payment_hash` (design.md §5: read the parts;
/// `listsendpays` is authoritative right after a failure, when `listpays` may lag).
pub async fn node_payment(app: &App, payment_hash: &str) -> Result<NodePayment, CommandError> {
    let parts: Value = app
        .node
        .call_value("listsendpays", json!({"payment_hash": payment_hash}))
        .await
        .map_err(|e| CommandError::node("listsendpays", e))?;
    let statuses: Vec<&str> = parts["payments"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["status"].as_str()).collect())
        .unwrap_or_default();
    Ok(summarize(&statuses))
}

/// Parts of one payment → its state: complete if any part completed, pending if any is in
/// flight, failed only when every part failed.
pub fn summarize(statuses: &[&str]) -> NodePayment {
    if statuses.is_empty() {
        NodePayment::None
    } else if statuses.contains(&"complete") {
        NodePayment::Complete
    } else if statuses.contains(&"pending") {
        NodePayment::Pending
    } else {
        NodePayment::Failed
    }
}

/// `pay` on its own connection and task: a hold invoice keeps it open until the seller
/// settles or cancels, possibly for hours.
pub(crate) fn spawn_pay(app: App, id: String, bolt11: String, amount_sat: u64, fee_ppm: u64) {
    tokio::spawn(async move {
        let maxfee_msat = amount_sat.saturating_mul(1000).saturating_mul(fee_ppm) / 1_000_000;
        log::info!("order {id}: paying {amount_sat} sats (routing fee at most {maxfee_msat} msat)");
        // The crash point "pay-started" lets the payment get under way, then stops the plugin.
        #[cfg(feature = "test-hooks")]
        tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            crash::point("pay-started");
        });
        let outcome = app
            .node
            .call_value("pay", json!({"bolt11": bolt11, "maxfee": maxfee_msat}))
            .await;
        match outcome {
            Ok(_) => log::info!("order {id}: payment settled"),
            Err(e) => log::warn!("order {id}: payment ended without settling: {e}"),
        }
        // Whatever pay said, the node's payment record decides; the tracker reads it now.
        app.wake.notify_one();
    });
}

/// The answer of `magma-buy`.
pub fn result(r: &OrderRecord) -> Value {
    let mut out = r.view();
    if let (Some(PayMode::External), Some(p)) = (r.lifecycle.pay_mode, &r.placement) {
        out["pay_externally"] = json!({
            "invoice": p.invoice,
            "uri": format!("lightning:{}", p.invoice),
            "amount_sat": r.invoice.as_ref().map(|i| i.amount_sat),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_parts_summarize_like_lightningd() {
        assert_eq!(summarize(&[]), NodePayment::None);
        assert_eq!(summarize(&["failed"]), NodePayment::Failed);
        assert_eq!(summarize(&["failed", "pending"]), NodePayment::Pending);
        assert_eq!(summarize(&["failed", "complete"]), NodePayment::Complete);
        assert_eq!(summarize(&["pending"]), NodePayment::Pending);
    }

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_time("2026-06-10T18:42:00.123Z"), Some(1_781_116_920));
        assert_eq!(parse_time("yesterday"), None);
    }
}
