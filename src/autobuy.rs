//! Automatic buying: gathers the policy's inputs, decides, reports the decision, and in `auto`
//! mode places the order. Triggered by a timer (`magma-check-interval`), by channel events and
//! by policy option changes, debounced.

use std::time::Duration;

use serde_json::{Value, json};

use crate::app::App;
use crate::config::{Config, Mode};
use crate::estimate::Ask;
use crate::inbound::InboundSnapshot;
use crate::ledger;
use crate::order::FollowUp;
use crate::policy::{self, Decision, Inbound, Inputs, Ledger};
use crate::purchase::{self, BuyArgs, now};
use crate::record::{OrderRecord, Trigger};
use crate::rpcerror::CommandError;
use crate::uri;

/// Where the operator's last `magma-mode` setting is remembered, so a pause survives restarts
/// and ends when the operator sets the mode again.
const RESUMED_KEY: [&str; 2] = ["magma", "resumed-at"];

/// Channel events arrive in bursts (a block, several channel updates): wait this long for the
/// burst to end before deciding.
fn debounce() -> Duration {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("CLN_MAGMA_TEST_DEBOUNCE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_millis(ms);
    }
    Duration::from_secs(2)
}

/// One evaluation: the decision and what it was based on.
pub struct Evaluation {
    pub decision: Decision,
    pub inbound: Inbound,
    pub snapshot: InboundSnapshot,
    pub ledger: Ledger,
    pub config: Config,
    /// The next order should go to Rails-cluster sellers (the guide's advice after a seller
    /// failed to open).
    pub rails_next: bool,
}

impl Evaluation {
    pub fn to_json(&self) -> Value {
        let c = &self.config;
        let used = self.ledger.committed_usd_cents;
        let mut out = json!({
            "mode": c.mode.as_str(),
            "inbound": {
                "usable_sat": self.inbound.usable_sat,
                "pending_sat": self.inbound.pending_sat,
                "total_sat": self.inbound.total(),
                "min_inbound_sat": c.min_inbound_sat,
                "target_inbound_sat": c.target_inbound_sat(),
            },
            "budget": {
                "budget_usd_cents": c.budget_usd_cents,
                "used_usd_cents": used,
                "left_usd_cents": c.budget_usd_cents.saturating_sub(used),
                "window_days": c.budget_days,
                "frees_at": self.ledger.window_frees_at.map(policy::iso),
            },
            "orders_in_flight": self.ledger.live_orders,
            "consecutive_failures": self.ledger.consecutive_failures,
            "backoff_until": self.ledger.backoff_until.filter(|u| *u > now()).map(policy::iso),
            "paused": self.ledger.paused,
        });
        match &self.decision {
            Decision::Buy {
                usd_cents,
                expected_inbound_sat,
                price_ppm,
                reason,
            } => {
                out["decision"] = json!("buy");
                out["buy"] = json!({
                    "usd_cents": usd_cents,
                    "expected_inbound_sat": expected_inbound_sat,
                    "price_ppm": price_ppm,
                    "rails_cluster_only": c.rails_cluster_only || self.rails_next,
                });
                out["reason"] = json!(reason);
                out["reasons"] = json!([]);
            }
            Decision::Skip { reasons } => {
                out["decision"] = json!("skip");
                out["reasons"] = json!(
                    reasons
                        .iter()
                        .map(|r| {
                            let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
                            v["text"] = json!(r.describe());
                            v
                        })
                        .collect::<Vec<_>>()
                );
            }
        }
        out
    }
}

/// When the operator last set `magma-mode` (0 if never).
pub async fn resumed_at(app: &App) -> u64 {
    let listed = app
        .node
        .call_value("listdatastore", json!({"key": RESUMED_KEY}))
        .await;
    listed
        .ok()
        .and_then(|v| {
            v["datastore"]
                .as_array()?
                .first()?
                .get("string")?
                .as_str()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Remembers that the operator set `magma-mode` now: failures before this no longer pause.
pub async fn mark_resumed(app: &App) {
    let r = app
        .node
        .call_value(
            "datastore",
            json!({"key": RESUMED_KEY, "string": now().to_string(), "mode": "create-or-replace"}),
        )
        .await;
    if let Err(e) = r {
        log::warn!("cannot remember the magma-mode change: {e}");
    }
}

/// Inbound of the orders in flight, counted once: an order whose channel already shows in
/// `listpeerchannels` (opening or open) is counted by the channel, not again by the order.
pub fn pending_orders_sat(
    records: &[OrderRecord],
    channels: &[crate::inbound::PeerChannel],
) -> u64 {
    let visible: Vec<&str> = channels
        .iter()
        .filter_map(|c| c.funding_txid.as_deref())
        .collect();
    records
        .iter()
        .filter(|r| !r.lifecycle.state.is_final())
        .filter(|r| {
            r.funding_txid
                .as_deref()
                .is_none_or(|t| !visible.contains(&t))
        })
        .map(|r| r.request.expected_inbound_sat)
        .sum()
}

/// Gathers the inputs and decides. `fetch_price`: ask Magma for the price even in `off` mode
/// (the operator asked, through `magma-suggest`); the periodic check in `off` mode stays
/// silent towards Magma.
pub async fn evaluate(app: &App, fetch_price: bool) -> Result<Evaluation, CommandError> {
    let config = app.config();
    let channels = app.channels().await?;
    let snapshot = InboundSnapshot::from_channels(&channels);
    let records: Vec<OrderRecord> = app.orders().await?.into_iter().map(|v| v.record).collect();
    let orders_pending = pending_orders_sat(&records, &channels);
    let inbound = Inbound {
        usable_sat: snapshot.usable_sat,
        pending_sat: snapshot.opening_sat.saturating_add(orders_pending),
    };
    let t = now();
    let ledger = ledger::derive(
        &records,
        &config,
        config.pause_after_failures,
        resumed_at(app).await,
        t,
    );
    let rails_next = records
        .iter()
        .filter(|r| r.lifecycle.state.is_final())
        .max_by_key(|r| r.created_at)
        .is_some_and(|r| r.lifecycle.follow_up == Some(FollowUp::ReorderRailsOnly));
    let uri = match app.node.getinfo().await {
        Ok(info) => uri::resolve(config.connection_uri.as_ref(), &info)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("getinfo failed: {e}")),
    };
    let price = if config.mode != Mode::Off || fetch_price {
        app.client.price().await.map_err(|e| e.to_string())
    } else {
        Err("not asked while magma-mode is off".to_string())
    };
    let decision = policy::decide(&Inputs {
        config: &config,
        inbound,
        ledger: &ledger,
        price: price.as_ref().map_err(|e| e.clone()),
        uri,
        now: t,
    });
    Ok(Evaluation {
        decision,
        inbound,
        snapshot,
        ledger,
        config,
        rails_next,
    })
}

/// `magma-suggest`: the decision the policy would take now, and every reason.
pub async fn suggest(app: &App, raw: &Value) -> Result<Value, CommandError> {
    crate::params::Params::parse(raw, &[])?;
    let e = evaluate(app, true).await?;
    Ok(e.to_json())
}

/// Runs until the plugin stops: a first check shortly after start, then one per
/// `magma-check-interval`, and one after every burst of events or option changes.
pub async fn run(app: App) {
    tokio::time::sleep(debounce()).await;
    loop {
        if let Err(e) = check(&app).await {
            log::warn!("automatic check failed: {e}");
        }
        let interval = app.config().check_interval;
        app.set_next_check(now() + interval.as_secs());
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = app.policy_wake.notified() => {
                // Let a burst of events settle, then take them all as one.
                tokio::time::sleep(debounce()).await;
            }
        }
    }
}

async fn check(app: &App) -> Result<(), CommandError> {
    let mode = app.config().mode;
    if mode == Mode::Off {
        return Ok(());
    }
    let e = evaluate(app, false).await?;
    let report = e.to_json();
    app.set_last_decision(report.clone());
    app.notify_decision(report);
    match (&e.decision, mode) {
        (Decision::Skip { reasons }, _) => {
            let text: Vec<String> = reasons.iter().map(|r| r.describe()).collect();
            log::info!("automatic check ({mode}): not buying: {}", text.join("; "));
        }
        (Decision::Buy { reason, .. }, Mode::DryRun) => {
            log::info!("automatic check (dry-run): would buy: {reason}");
        }
        (
            Decision::Buy {
                usd_cents, reason, ..
            },
            _,
        ) => {
            log::info!("automatic check: {reason}");
            let args = BuyArgs {
                ask: Ask::UsdCents(*usd_cents),
                private: e.config.private,
                rails_cluster_only: e.config.rails_cluster_only || e.rails_next,
                force: false,
                external: false,
            };
            match purchase::place(app, &args, Trigger::Auto).await {
                Ok(v) => log::info!("automatic order {} placed", v.id),
                Err(err) => log::warn!("automatic order not placed: {}", err.message),
            }
        }
    }
    Ok(())
}
