//! Follows every live order to its end: polls Magma at the guide's cadence, reads the node's
//! own payment record, looks for the delivered channel, and stores each transition (with
//! compare-and-swap) before logging and announcing it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::inbound::PeerChannel;
use crate::magma::{MagmaError, Order};
use crate::order::{Change, LocalState, NodePayment, PayMode};
use crate::purchase::{node_payment, now};
use crate::record::{Credential, Delivery, OrderRecord};
use crate::store::Versioned;

/// The guide's cadence (magma-api.md §9): never faster than 5 s per order.
pub const POLL: Duration = Duration::from_secs(10);
pub const POLL_ON_CHAIN: Duration = Duration::from_secs(45);
/// Transient errors back off exponentially up to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the loop looks at the node when no order is due at Magma.
const IDLE: Duration = Duration::from_secs(60);

/// The polling cadence: the guide's, except in test builds that ask for a faster one (the
/// integration tests cannot wait minutes per order). Release builds have no such switch.
fn cadence() -> (Duration, Duration) {
    #[cfg(feature = "test-hooks")]
    if let Some(ms) = std::env::var("CLN_MAGMA_TEST_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return (Duration::from_millis(ms), Duration::from_millis(ms * 9 / 2));
    }
    (POLL, POLL_ON_CHAIN)
}

#[derive(Default)]
struct Schedule {
    /// When each order may be polled at Magma again.
    next_poll: HashMap<String, Instant>,
    /// When each order was last read with `get_order`.
    last_read: HashMap<String, Instant>,
    failures: HashMap<String, u32>,
    /// When the next `transaction_list` read is due, while one is in use.
    next_bulk: Option<Instant>,
    /// When the node's payment was first seen failed for an order whose Magma side was not
    /// known yet.
    payment_failed_at: HashMap<String, Instant>,
}

/// Runs until the plugin stops.
pub async fn run(app: App) {
    let mut schedule = Schedule::default();
    loop {
        let wait = match tick(&app, &mut schedule).await {
            Ok(wait) => wait,
            Err(e) => {
                log::warn!("order tracking: {e}; trying again in 30 s");
                Duration::from_secs(30)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = app.wake.notified() => {}
        }
    }
}

/// What was learnt about one order in one pass.
#[derive(Default)]
struct Observed {
    magma: Option<Order>,
    node_payment: Option<NodePayment>,
}

async fn tick(app: &App, schedule: &mut Schedule) -> anyhow::Result<Duration> {
    let (orders, _) = app.store.load_all::<OrderRecord>().await?;
    let live: Vec<_> = orders
        .into_iter()
        .filter(|o| !o.record.lifecycle.state.is_final())
        .collect();
    let mut channels: Option<Vec<PeerChannel>> = None;
    let mut soonest = IDLE;
    let (poll, poll_on_chain) = cadence();
    // The guide's floor: never two reads of one order within 5 s (half the normal period).
    let floor = poll / 2;
    let listed = bulk_statuses(app, schedule, &live, poll).await;
    if let Some(at) = schedule.next_bulk {
        soonest = soonest.min(
            at.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        );
    }
    for v in live {
        let Some(placement) = v.record.placement.clone() else {
            continue; // Placing: recovery's business.
        };
        let t = Instant::now();
        let mut seen = Observed::default();
        let keyed = placement.credential == Credential::ApiKey;
        let stored_status = v.record.lifecycle.status.as_ref();
        let read = match (&listed, keyed) {
            // The bulk read covers this order: read it alone only if it changed.
            (Some(map), true) => match map.get(&placement.order_id) {
                Some(s) if Some(s) == stored_status => false,
                // A read that failed backs off (Retry-After included) as without the bulk read.
                _ if schedule.failures.contains_key(&v.id) => {
                    schedule.next_poll.get(&v.id).is_none_or(|at| *at <= t)
                }
                _ => schedule
                    .last_read
                    .get(&v.id)
                    .is_none_or(|at| t.saturating_duration_since(*at) >= floor),
            },
            _ => schedule.next_poll.get(&v.id).is_none_or(|at| *at <= t),
        };
        if read {
            seen.magma =
                read_order(app, schedule, &v.id, &placement, t, (poll, poll_on_chain)).await;
        }
        // An order the bulk read covers waits for the next bulk read, not for its own poll
        // time (which would otherwise lapse and spin the loop); one backing off waits for its
        // own time.
        let covered = listed.is_some() && keyed && !schedule.failures.contains_key(&v.id);
        if let (false, Some(at)) = (covered, schedule.next_poll.get(&v.id)) {
            soonest = soonest.min(
                at.saturating_duration_since(t)
                    .max(Duration::from_millis(10)),
            );
        }
        let l = &v.record.lifecycle;
        let failure_known = l.magma_failure.is_some()
            || seen
                .magma
                .as_ref()
                .is_some_and(|o| o.status.outcome() == crate::magma::Outcome::Failure);
        let watch_payment = l.state.money_in_flight()
            && (failure_known
                || l.pay_mode == Some(PayMode::Node) && l.state == LocalState::Paying);
        if let (true, Some(inv)) = (watch_payment, &v.record.invoice) {
            match node_payment(app, &inv.payment_hash).await {
                Ok(p) => seen.node_payment = Some(p),
                Err(e) => log::warn!("order {}: {e}", v.id),
            }
        }
        // The payment came back before Magma's side is known: ask Magma again — after the
        // failure was seen, since a read earlier in this pass may predate it — so the order ends
        // with Magma's status and the guide's follow-up (a refund ends tracking for good).
        let failure_after_read = seen
            .magma
            .as_ref()
            .is_some_and(|o| o.status.outcome() == crate::magma::Outcome::Failure);
        if seen.node_payment == Some(NodePayment::Failed) && !failure_known && !failure_after_read {
            let seen_at = *schedule.payment_failed_at.entry(v.id.clone()).or_insert(t);
            let read_since = schedule
                .last_read
                .get(&v.id)
                .is_some_and(|at| *at > seen_at);
            let rested = schedule
                .last_read
                .get(&v.id)
                .is_none_or(|at| t.saturating_duration_since(*at) >= floor);
            if !read_since && rested {
                seen.magma =
                    read_order(app, schedule, &v.id, &placement, t, (poll, poll_on_chain)).await;
            } else if !read_since {
                // Decide on a later pass, once the floor allows the read.
                seen.node_payment = None;
                if let Some(at) = schedule.last_read.get(&v.id) {
                    let next = *at + floor;
                    schedule.next_poll.insert(v.id.clone(), next);
                    soonest = soonest.min(
                        next.saturating_duration_since(t)
                            .max(Duration::from_millis(10)),
                    );
                }
            }
        }
        let success = l.magma_success
            || seen
                .magma
                .as_ref()
                .is_some_and(|o| o.status.outcome() == crate::magma::Outcome::Success);
        if success && channels.is_none() {
            channels = app.node.peer_channels().await.ok();
        }
        apply(app, v, seen, channels.as_deref()).await;
    }
    Ok(soonest)
}

/// Each live order's last known status, standing for "unchanged" between bulk reads.
fn stored_statuses(live: &[Versioned<OrderRecord>]) -> HashMap<String, String> {
    live.iter()
        .filter_map(|v| {
            let p = v.record.placement.as_ref()?;
            Some((p.order_id.clone(), v.record.lifecycle.status.clone()?))
        })
        .collect()
}

/// One `get_order` for `id`, with the cadence bookkeeping; `None` when it failed.
async fn read_order(
    app: &App,
    schedule: &mut Schedule,
    id: &str,
    placement: &crate::record::Placement,
    t: Instant,
    (poll, poll_on_chain): (Duration, Duration),
) -> Option<Order> {
    let key = match placement.credential {
        Credential::ApiKey => app.api_key.clone(),
        Credential::SessionKey => placement.session_key.clone(),
    };
    let Some(key) = key else {
        log::warn!("order {id}: no credential to read it with");
        schedule.next_poll.insert(id.to_string(), t + MAX_BACKOFF);
        return None;
    };
    schedule.last_read.insert(id.to_string(), t);
    let (delay, order) = match app.client.get_order(&placement.order_id, &key).await {
        Ok(order) => {
            schedule.failures.remove(id);
            let d = if order.status.is_on_chain() {
                poll_on_chain
            } else {
                poll
            };
            (d, Some(order))
        }
        Err(e) => (backoff(schedule, id, &e, poll), None),
    };
    schedule.next_poll.insert(id.to_string(), t + delay);
    order
}

/// With an API key and several live orders, one `transaction_list` read per period tells which
/// of them changed (magma-api.md §9: spread bulk reads across transaction_list); only those are
/// then read one by one. `None` when there is nothing to batch or the read failed.
async fn bulk_statuses(
    app: &App,
    schedule: &mut Schedule,
    live: &[Versioned<OrderRecord>],
    poll: Duration,
) -> Option<HashMap<String, String>> {
    let keyed = live
        .iter()
        .filter(|v| {
            v.record.lifecycle.status.is_some()
                && v.record
                    .placement
                    .as_ref()
                    .is_some_and(|p| p.credential == Credential::ApiKey)
        })
        .count();
    let key = app.api_key.as_ref().filter(|_| keyed >= 2);
    let Some(key) = key else {
        schedule.next_bulk = None;
        return None;
    };
    let t = Instant::now();
    if schedule.next_bulk.is_some_and(|at| at > t) {
        // Between bulk reads, nothing is known to have changed.
        return Some(stored_statuses(live));
    }
    schedule.next_bulk = Some(t + poll);
    match app
        .client
        .transaction_list(
            crate::magma::Page {
                limit: 100,
                offset: 0,
            },
            key,
        )
        .await
    {
        Ok(list) => Some(
            list.into_iter()
                .map(|t| (t.id, t.status.as_str().to_string()))
                .collect(),
        ),
        Err(MagmaError::RateLimited {
            retry_after: Some(after),
        }) => {
            // Magma asked the account to wait: no bulk read, and no fan-out of single reads
            // either, until then.
            schedule.next_bulk = Some(t + after.max(poll));
            log::debug!(
                "transaction_list rate limited; waiting {} s",
                after.as_secs()
            );
            Some(stored_statuses(live))
        }
        Err(e) => {
            log::debug!("transaction_list failed ({e}); reading orders one by one");
            None
        }
    }
}

fn backoff(schedule: &mut Schedule, id: &str, e: &MagmaError, poll: Duration) -> Duration {
    let n = schedule.failures.entry(id.to_string()).or_insert(0);
    *n = n.saturating_add(1);
    let d = retry_delay(*n, e, poll, unit_random());
    log::warn!(
        "order {id}: cannot read it from Magma ({e}); next try in {} s",
        d.as_secs()
    );
    d
}

/// The wait before reading an order again after its `failures`-th error in a row: exponential
/// from the polling period, capped at [`MAX_BACKOFF`], spread by `jitter` (0..1) over its upper
/// half so that many plugins (or orders) do not retry in step; a `Retry-After` is honoured as
/// given, never shortened.
pub fn retry_delay(failures: u32, e: &MagmaError, poll: Duration, jitter: f64) -> Duration {
    match e {
        MagmaError::RateLimited {
            retry_after: Some(after),
        } => (*after).max(poll),
        _ => {
            let exp = poll
                .saturating_mul(2u32.saturating_pow(failures.min(8)))
                .min(MAX_BACKOFF);
            exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)).max(poll)
        }
    }
}

/// A number in 0..1 that differs between calls and processes; jitter needs no more.
fn unit_random() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The remote-opened channel that delivers this order: Magma's channel id, else its funding
/// transaction, and at least the inbound bought (1 % slack for rounding).
fn find_delivery(r: &OrderRecord, channels: &[PeerChannel]) -> Option<Delivery> {
    let expected = r.request.expected_inbound_sat;
    channels
        .iter()
        .filter(|c| c.opener.as_deref() == Some("remote") && c.state == "CHANNELD_NORMAL")
        .find(|c| {
            let by_scid = r.magma_channel_id.is_some() && c.short_channel_id == r.magma_channel_id;
            let by_txid = r.funding_txid.is_some() && c.funding_txid == r.funding_txid;
            let big_enough = c.total_msat.unwrap_or(0) / 1000 >= expected - expected / 100;
            (by_scid || by_txid) && big_enough
        })
        .map(|c| Delivery {
            peer_id: c.peer_id.clone(),
            channel_id: c.channel_id.clone(),
            short_channel_id: c.short_channel_id.clone(),
            capacity_sat: c.total_msat.unwrap_or(0) / 1000,
            inbound_sat: c.receivable_msat.unwrap_or(0) / 1000,
        })
}

/// Applies what was seen to the stored record; logs and announces each transition.
async fn apply(
    app: &App,
    v: Versioned<OrderRecord>,
    seen: Observed,
    channels: Option<&[PeerChannel]>,
) {
    let at = now();
    let mut changes: Vec<Change> = Vec::new();
    let result = app
        .store
        .update(&v, |r: &mut OrderRecord| {
            changes.clear();
            let before = (r.funding_txid.clone(), r.magma_channel_id.clone());
            if let Some(o) = &seen.magma {
                changes.extend(
                    r.lifecycle
                        .on_magma(&o.status, o.payment_status.as_ref(), at),
                );
                if o.transaction_id.is_some() {
                    r.funding_txid = o.transaction_id.clone();
                }
                if o.channel_id.is_some() {
                    r.magma_channel_id = o.channel_id.clone();
                }
            }
            if let Some(p) = seen.node_payment {
                changes.extend(r.lifecycle.on_node_payment(p, at));
            }
            let delivered = (r.lifecycle.magma_success && r.delivery.is_none())
                .then(|| channels.and_then(|c| find_delivery(r, c)))
                .flatten();
            if let Some(d) = delivered {
                let name = d.short_channel_id.clone().unwrap_or_default();
                r.delivery = Some(d);
                changes.extend(r.lifecycle.on_channel_seen(at, &name));
            }
            let facts_changed = before != (r.funding_txid.clone(), r.magma_channel_id.clone());
            Ok::<bool, std::convert::Infallible>(!changes.is_empty() || facts_changed)
        })
        .await;
    match result {
        Ok(stored) => {
            for change in &changes {
                if is_unknown_status(change) {
                    // Invariant 7: kept in flight, but the operator should hear of it.
                    log::warn!(
                        "order {}: {} — a status this version does not know; the order is treated as still in flight",
                        stored.id,
                        describe(change)
                    );
                } else {
                    log::info!("order {}: {}", stored.id, describe(change));
                }
            }
            if !changes.is_empty() {
                app.notify_order(&stored.record, "transition");
            }
        }
        Err(e) => log::warn!("order {}: cannot store what was observed: {e}", v.id),
    }
}

/// A Magma status or payment status this build has never seen (design.md §5, invariant 7).
fn is_unknown_status(c: &Change) -> bool {
    match c {
        Change::Status { to, .. } => !crate::magma::OrderStatus::parse(to).is_known(),
        Change::PaymentStatus { to, .. } => !crate::magma::PaymentStatus::parse(to).is_known(),
        Change::State { .. } => false,
    }
}

fn describe(c: &Change) -> String {
    match c {
        Change::State { from, to } => format!("{from:?} → {to:?}"),
        Change::Status { from, to } => {
            format!(
                "Magma status {} → {to}",
                from.as_deref().unwrap_or("(none)")
            )
        }
        Change::PaymentStatus { from, to } => {
            format!(
                "Magma payment status {} → {to}",
                from.as_deref().unwrap_or("(none)")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_with_jitter_and_honour_retry_after() {
        let poll = POLL;
        let transient = MagmaError::Transient { reason: "x".into() };
        // Without jitter the upper half's bottom, with full jitter its top.
        assert_eq!(
            retry_delay(1, &transient, poll, 0.0),
            Duration::from_secs(10)
        );
        assert_eq!(
            retry_delay(1, &transient, poll, 1.0),
            Duration::from_secs(20)
        );
        assert_eq!(
            retry_delay(2, &transient, poll, 1.0),
            Duration::from_secs(40)
        );
        assert_eq!(
            retry_delay(3, &transient, poll, 0.5),
            Duration::from_secs(60)
        );
        // Capped at five minutes, never below the polling period.
        assert_eq!(retry_delay(30, &transient, poll, 1.0), MAX_BACKOFF);
        assert!(retry_delay(30, &transient, poll, 0.0) >= MAX_BACKOFF / 2);
        // Retry-After as given (not below the period), jitter or not.
        let limited = MagmaError::RateLimited {
            retry_after: Some(Duration::from_secs(37)),
        };
        assert_eq!(retry_delay(1, &limited, poll, 0.0), Duration::from_secs(37));
        assert_eq!(retry_delay(5, &limited, poll, 1.0), Duration::from_secs(37));
        let soon = MagmaError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(retry_delay(1, &soon, poll, 0.3), poll);
        // The random source stays in range.
        for _ in 0..100 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
