//! The ledger the policy reads — budget committed in the window, orders in flight, consecutive
//! failures, backoff and pause — derived from the stored orders every time, never kept in
//! counters, so a restart changes nothing.

use crate::config::Config;
use crate::order::LocalState;
use crate::policy::Ledger;
use crate::record::OrderRecord;

/// The longest backoff, however many failures (design.md §3).
pub const MAX_BACKOFF_SECS: u64 = 24 * 3600;

fn is_failure(state: LocalState) -> bool {
    matches!(
        state,
        LocalState::Abandoned | LocalState::Rejected | LocalState::Refunded | LocalState::Failed
    )
}

/// Orders that may still cost money count at full price; ended ones that cost nothing do not.
pub fn counts_against_budget(state: LocalState) -> bool {
    !is_failure(state)
}

/// When an order reached its current state.
fn ended_at(r: &OrderRecord) -> u64 {
    r.lifecycle
        .history
        .iter()
        .rev()
        .find(|e| e.state.is_some())
        .map(|e| e.at)
        .unwrap_or(r.created_at)
}

/// `resumed_at`: when the operator last set `magma-mode` (failures before it no longer pause).
pub fn derive(
    orders: &[OrderRecord],
    config: &Config,
    pause_after: u32,
    resumed_at: u64,
    now: u64,
) -> Ledger {
    let window = config.budget_days.saturating_mul(86_400);
    let window_start = now.saturating_sub(window);
    let in_window: Vec<&OrderRecord> = orders
        .iter()
        .filter(|r| r.created_at >= window_start && counts_against_budget(r.lifecycle.state))
        .collect();
    let committed_usd_cents = in_window.iter().map(|r| r.request.usd_cents).sum();
    let window_frees_at = in_window.iter().map(|r| r.created_at + window).min();
    let live_orders = orders
        .iter()
        .filter(|r| !r.lifecycle.state.is_final())
        .count() as u64;

    // Newest first; orders still in flight neither break nor extend a run of failures.
    let mut ended: Vec<&OrderRecord> = orders
        .iter()
        .filter(|r| r.lifecycle.state.is_final())
        .collect();
    ended.sort_by_key(|r| std::cmp::Reverse(ended_at(r)));
    let failures: Vec<&OrderRecord> = ended
        .iter()
        .take_while(|r| is_failure(r.lifecycle.state))
        .copied()
        .collect();
    let consecutive_failures = failures.len() as u32;
    let backoff_until = failures.first().map(|latest| {
        let base = config.failure_backoff.as_secs();
        let factor = 1u64 << (consecutive_failures.saturating_sub(1)).min(20);
        ended_at(latest) + base.saturating_mul(factor).min(MAX_BACKOFF_SECS)
    });

    let since_resume: Vec<&&OrderRecord> = failures
        .iter()
        .filter(|r| ended_at(r) > resumed_at)
        .collect();
    let paused = if let Some(r) = since_resume
        .iter()
        .find(|r| r.lifecycle.follow_up.is_some_and(|f| f.pauses_automation()))
    {
        Some(format!(
            "order {} ended {}: {}",
            r.id,
            r.lifecycle.magma_failure.as_deref().unwrap_or("in failure"),
            r.lifecycle
                .follow_up
                .map(|f| f.advice())
                .unwrap_or_default()
        ))
    } else if pause_after > 0 && since_resume.len() as u32 >= pause_after {
        Some(format!(
            "{} consecutive failed orders (magma-pause-after-failures is {pause_after})",
            since_resume.len()
        ))
    } else {
        None
    };
    Ledger {
        committed_usd_cents,
        live_orders,
        consecutive_failures,
        backoff_until,
        paused,
        window_frees_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::magma::OrderStatus;
    use crate::order::{Lifecycle, PayMode};
    use crate::record::{Request, Trigger};
    use serde_json::json;
    use std::collections::BTreeMap;

    const DAY: u64 = 86_400;

    fn config() -> Config {
        let map: BTreeMap<String, serde_json::Value> = [
            ("magma-budget-days".to_string(), json!(30)),
            ("magma-failure-backoff".to_string(), json!(3600)),
        ]
        .into_iter()
        .collect();
        Config::from_values(&map).unwrap()
    }

    /// An order created at `at` that ended in `state` one minute later (`None`: still live).
    fn order(id: &str, at: u64, cents: u64, end: Option<&str>) -> OrderRecord {
        let mut l = Lifecycle::new(at);
        l.placed(at);
        match end {
            None => {}
            Some("DONE") => {
                l.paying(PayMode::Node, at);
                l.on_magma(&OrderStatus::parse("VALID_CHANNEL_OPENING"), None, at + 60);
                l.state = LocalState::Paid;
                l.on_channel_seen(at + 60, "1x1x1");
            }
            Some(status) => {
                l.on_magma(&OrderStatus::parse(status), None, at + 60);
            }
        }
        OrderRecord {
            version: 1,
            id: id.into(),
            created_at: at,
            trigger: Trigger::Auto,
            request: Request {
                usd_cents: cents,
                connection_uri: String::new(),
                private: false,
                rails_cluster_only: false,
                expected_inbound_sat: 0,
                quoted_cost_sat: 0,
                quoted_ppm: 0,
                external: false,
                force: false,
            },
            placement: None,
            invoice: None,
            funding_txid: None,
            magma_channel_id: None,
            delivery: None,
            lifecycle: l,
        }
    }

    #[test]
    fn budget_counts_the_window_and_orders_in_flight() {
        let now = 100 * DAY;
        let orders = [
            order("old", now - 31 * DAY, 4000, Some("DONE")), // outside the window
            order("done", now - 10 * DAY, 1000, Some("DONE")),
            order("live", now - DAY, 2000, None), // in flight: full price
            order("failed", now - DAY, 3000, Some("SELLER_REJECTED")), // cost nothing
        ];
        let l = derive(&orders, &config(), 3, 0, now);
        assert_eq!(l.committed_usd_cents, 3000);
        assert_eq!(l.live_orders, 1);
        assert_eq!(l.window_frees_at, Some(now - 10 * DAY + 30 * DAY));
    }

    #[test]
    fn backoff_doubles_per_consecutive_failure_and_is_capped() {
        let now = 100 * DAY;
        let one = [order("a", now - 600, 500, Some("SELLER_REJECTED"))];
        let l = derive(&one, &config(), 0, 0, now);
        assert_eq!(
            (l.consecutive_failures, l.backoff_until),
            (1, Some(now - 540 + 3600))
        );

        let two = [
            order("a", now - 9000, 500, Some("SELLER_REJECTED")),
            order("b", now - 600, 500, Some("SELLER_FAILED_TO_REACT")),
        ];
        let l = derive(&two, &config(), 0, 0, now);
        assert_eq!(
            (l.consecutive_failures, l.backoff_until),
            (2, Some(now - 540 + 7200))
        );

        let many: Vec<_> = (0..8)
            .map(|i| {
                order(
                    &format!("o{i}"),
                    now - 10_000 + i * 100,
                    500,
                    Some("SELLER_REJECTED"),
                )
            })
            .collect();
        let l = derive(&many, &config(), 0, 0, now);
        let last_end = now - 10_000 + 700 + 60;
        assert_eq!(
            l.backoff_until,
            Some(last_end + MAX_BACKOFF_SECS),
            "capped at 24 h"
        );

        // A success ends the run.
        let healed = [
            order("a", now - 9000, 500, Some("SELLER_REJECTED")),
            order("b", now - 600, 500, Some("DONE")),
        ];
        let l = derive(&healed, &config(), 3, 0, now);
        assert_eq!((l.consecutive_failures, l.backoff_until), (0, None));
    }

    #[test]
    fn pauses_after_n_failures_and_on_breach_until_resumed() {
        let now = 100 * DAY;
        let three: Vec<_> = (0..3)
            .map(|i| {
                order(
                    &format!("o{i}"),
                    now - 5000 + i * 1000,
                    500,
                    Some("SELLER_REJECTED"),
                )
            })
            .collect();
        let l = derive(&three, &config(), 3, 0, now);
        assert!(
            l.paused
                .as_deref()
                .unwrap()
                .contains("3 consecutive failed orders")
        );
        assert_eq!(derive(&three[..2], &config(), 3, 0, now).paused, None);
        // The operator set magma-mode after the third failure: resumed.
        assert_eq!(derive(&three, &config(), 3, now - 100, now).paused, None);

        for breach in ["INVALID_CHANNEL_OPENING", "ADMIN_CLOSED"] {
            let one = [order("x", now - 600, 500, Some(breach))];
            let l = derive(&one, &config(), 3, 0, now);
            let why = l.paused.unwrap_or_default();
            assert!(why.contains(breach), "{why}");
            assert_eq!(derive(&one, &config(), 3, now, now).paused, None, "resumed");
        }
    }
}
