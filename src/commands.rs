//! The plugin's RPC commands: parse the arguments, ask the node and Magma, shape the answer.

use serde_json::{Value, json};

use crate::app::App;
use crate::config::Config;
use crate::estimate::{self, Ask};
use crate::inbound::InboundSnapshot;
use crate::params::Params;
use crate::record::OrderRecord;
use crate::rpcerror::CommandError;
use crate::uri;

/// `magma-estimate [usd_cents] [amount_sat]`: what a purchase would buy and cost, and whether
/// the configured caps allow it. No side effects.
pub async fn estimate(app: &App, raw: &Value) -> Result<Value, CommandError> {
    let params = Params::parse(raw, &["usd_cents", "amount_sat"])?;
    let usd_cents = params.positive_u64("usd_cents")?;
    let amount_sat = params.positive_u64("amount_sat")?;
    let config = app.config();
    let ask = match (usd_cents, amount_sat) {
        (Some(_), Some(_)) => {
            return Err(CommandError::invalid(
                "give usd_cents or amount_sat, not both",
            ));
        }
        (Some(c), None) => {
            if c < estimate::MAGMA_MIN_USD_CENTS {
                return Err(CommandError::invalid(format!(
                    "usd_cents must be at least {} (Magma's minimum order), got {c}",
                    estimate::MAGMA_MIN_USD_CENTS
                )));
            }
            Ask::UsdCents(c)
        }
        (None, Some(sat)) => Ask::InboundSat(sat),
        (None, None) => Ask::UsdCents(config.order_min_usd_cents),
    };
    let price = app.client.price().await?;
    let quote = estimate::quote(&price, ask)
        .map_err(|e| CommandError::new(crate::rpcerror::MAGMA_FAILED, e.to_string()))?;
    let mut refusals = Vec::new();
    let price_ok = quote.price_ppm <= config.max_fee_ppm;
    if !price_ok {
        refusals.push(format!(
            "price {} ppm is above magma-max-fee-ppm ({})",
            quote.price_ppm, config.max_fee_ppm
        ));
    }
    let size_ok =
        (config.order_min_usd_cents..=config.order_max_usd_cents).contains(&quote.usd_cents);
    if !size_ok {
        refusals.push(format!(
            "{} cents is outside magma-order-min-usd-cents..magma-order-max-usd-cents ({}..{})",
            quote.usd_cents, config.order_min_usd_cents, config.order_max_usd_cents
        ));
    }
    let budget_ok = quote.usd_cents <= config.budget_usd_cents;
    if !budget_ok {
        refusals.push(format!(
            "{} cents is more than magma-budget-usd-cents ({})",
            quote.usd_cents, config.budget_usd_cents
        ));
    }
    let mut out = serde_json::to_value(&quote).unwrap_or_else(|_| json!({}));
    out["caps"] = json!({
        "max_fee_ppm": config.max_fee_ppm,
        "price_ok": price_ok,
        "order_min_usd_cents": config.order_min_usd_cents,
        "order_max_usd_cents": config.order_max_usd_cents,
        "size_ok": size_ok,
        "budget_usd_cents": config.budget_usd_cents,
        "within_budget": budget_ok,
    });
    out["allowed"] = json!(refusals.is_empty());
    out["refusals"] = json!(refusals);
    Ok(out)
}

/// `magma-status`: mode, inbound, thresholds, the connection URI and how Magma is reached.
pub async fn status(app: &App, raw: &Value) -> Result<Value, CommandError> {
    Params::parse(raw, &[])?;
    let config = app.config();
    let channels = app.channels().await?;
    let inbound = InboundSnapshot::from_channels(&channels);
    let connection = match app.node.getinfo().await {
        Ok(info) => match uri::resolve(config.connection_uri.as_ref(), &info) {
            Ok((uri, source)) => json!({"uri": uri.to_string(), "source": source.as_str()}),
            Err(e) => json!({"uri": null, "error": e.to_string()}),
        },
        Err(e) => json!({"uri": null, "error": format!("getinfo failed: {e}")}),
    };
    let orders = app.orders().await?;
    let live: Vec<&OrderRecord> = orders
        .iter()
        .map(|v| &v.record)
        .filter(|r| !r.lifecycle.state.is_final())
        .collect();
    let records: Vec<OrderRecord> = orders.iter().map(|v| v.record.clone()).collect();
    let pending_orders_sat = crate::autobuy::pending_orders_sat(&records, &channels);
    let mut inbound_view = inbound_json(&inbound, &config);
    let total = inbound.usable_sat + inbound.opening_sat + pending_orders_sat;
    inbound_view["pending_orders_sat"] = json!(pending_orders_sat);
    inbound_view["pending_sat"] = json!(inbound.opening_sat + pending_orders_sat);
    inbound_view["total_sat"] = json!(total);
    inbound_view["below_minimum"] = json!(total < config.min_inbound_sat);
    let t = crate::purchase::now();
    let ledger = crate::ledger::derive(
        &records,
        &config,
        config.pause_after_failures,
        crate::autobuy::resumed_at(app).await,
        t,
    );
    let policy = json!({
        "last_decision": app.last_decision(),
        "next_check": app.next_check().map(crate::policy::iso),
        "budget": {
            "budget_usd_cents": config.budget_usd_cents,
            "used_usd_cents": ledger.committed_usd_cents,
            "left_usd_cents": config.budget_usd_cents.saturating_sub(ledger.committed_usd_cents),
            "window_days": config.budget_days,
            "frees_at": ledger.window_frees_at.map(crate::policy::iso),
        },
        "consecutive_failures": ledger.consecutive_failures,
        "backoff_until": ledger.backoff_until.filter(|u| *u > t).map(crate::policy::iso),
        "paused": ledger.paused,
    });
    Ok(json!({
        "mode": config.mode.as_str(),
        "policy": policy,
        "orders": {
            "live": live.iter().map(|r| json!({
                "id": r.id,
                "state": r.lifecycle.state,
                "status": r.lifecycle.status,
                "usd_cents": r.request.usd_cents,
                "expected_inbound_sat": r.request.expected_inbound_sat,
            })).collect::<Vec<_>>(),
            "total": orders.len(),
        },
        "network": app.settings.network,
        "inbound": inbound_view,
        "connection_uri": connection,
        "api": {
            "url": config.api_url.as_str(),
            "credential": app.key_source.describe(),
            "proxy": app.settings.forced_proxy,
        },
    }))
}

fn inbound_json(inbound: &InboundSnapshot, config: &Config) -> Value {
    // Orders in flight join `pending` with the manual-purchase issue.
    let pending = inbound.opening_sat;
    let total = inbound.usable_sat.saturating_add(pending);
    json!({
        "usable_sat": inbound.usable_sat,
        "offline_sat": inbound.offline_sat,
        "pending_sat": pending,
        "opening_channels_sat": inbound.opening_sat,
        "total_sat": total,
        "spendable_outbound_sat": inbound.spendable_sat,
        "normal_channels": inbound.normal_channels,
        "opening_channels": inbound.opening_channels,
        "min_inbound_sat": config.min_inbound_sat,
        "target_inbound_sat": config.target_inbound_sat(),
        "below_minimum": total < config.min_inbound_sat,
    })
}

/// `magma-orders [id]`: every order (or one) with its history; session keys redacted.
pub async fn orders(app: &App, raw: &Value) -> Result<Value, CommandError> {
    let params = Params::parse(raw, &["id"])?;
    let wanted = params.text("id")?;
    let (orders, unreadable) = app
        .store
        .load_all::<OrderRecord>()
        .await
        .map_err(|e| CommandError::node("listdatastore", e))?;
    let mut list: Vec<&OrderRecord> = orders.iter().map(|v| &v.record).collect();
    list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    if let Some(id) = wanted {
        let found = list
            .iter()
            .find(|r| r.id == id || r.placement.as_ref().is_some_and(|p| p.order_id == id));
        return match found {
            Some(r) => Ok(json!({"orders": [r.view()]})),
            None => Err(CommandError::invalid(format!("id: no order {id:?}"))),
        };
    }
    Ok(json!({
        "orders": list.iter().map(|r| r.view()).collect::<Vec<_>>(),
        "unreadable": unreadable.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    }))
}
