//! The buying decision (design.md §6): a pure function of the node's inbound, the
//! configuration, the ledger of past orders, Magma's price and the time. It never performs I/O,
//! so every reason to buy or not is table-tested.

use serde::Serialize;

use crate::config::{Config, Mode};
use crate::estimate::{self, Ask, MAGMA_MIN_USD_CENTS};
use crate::magma::Price;

/// Inbound as the policy counts it, each sat once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Inbound {
    /// Receivable in channels that can carry payments now.
    pub usable_sat: u64,
    /// Channels still opening towards us, plus orders in flight whose channel is not visible yet.
    pub pending_sat: u64,
}

impl Inbound {
    pub fn total(&self) -> u64 {
        self.usable_sat.saturating_add(self.pending_sat)
    }
}

/// What the stored orders say (see `ledger.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    /// Σ usd_cents of orders in the budget window that may cost money (in flight at full price).
    pub committed_usd_cents: u64,
    /// Unresolved orders.
    pub live_orders: u64,
    pub consecutive_failures: u32,
    /// No automatic order before this time (unix seconds).
    pub backoff_until: Option<u64>,
    /// Why automation is paused, until the operator sets `magma-mode` again.
    pub paused: Option<String>,
    /// When the oldest order in the window leaves it (budget frees up).
    pub window_frees_at: Option<u64>,
}

/// Every reason not to buy, with the numbers behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Skip {
    ModeOff,
    InboundSufficient {
        inbound_sat: u64,
        min_inbound_sat: u64,
    },
    InflightLimit {
        live_orders: u64,
        max_inflight: u64,
    },
    Backoff {
        until: u64,
        consecutive_failures: u32,
    },
    BudgetExhausted {
        left_usd_cents: u64,
        needed_usd_cents: u64,
    },
    PriceAboveCap {
        price_ppm: u64,
        max_fee_ppm: u64,
    },
    NoConnectionUri {
        why: String,
    },
    Paused {
        why: String,
    },
    PriceUnavailable {
        why: String,
    },
}

impl Skip {
    /// One line for logs and `magma-suggest`.
    pub fn describe(&self) -> String {
        match self {
            Skip::ModeOff => "magma-mode is off: only manual purchases".into(),
            Skip::InboundSufficient {
                inbound_sat,
                min_inbound_sat,
            } => format!(
                "inbound {inbound_sat} sats (usable + pending) is not below magma-min-inbound-sat ({min_inbound_sat})"
            ),
            Skip::InflightLimit {
                live_orders,
                max_inflight,
            } => format!("{live_orders} order(s) in flight; magma-max-inflight is {max_inflight}"),
            Skip::Backoff {
                until,
                consecutive_failures,
            } => format!(
                "backing off after {consecutive_failures} failed order(s) until {}",
                iso(*until)
            ),
            Skip::BudgetExhausted {
                left_usd_cents,
                needed_usd_cents,
            } => format!(
                "budget left {left_usd_cents} cents, the order needs {needed_usd_cents} (magma-budget-usd-cents)"
            ),
            Skip::PriceAboveCap {
                price_ppm,
                max_fee_ppm,
            } => {
                format!("Magma's price {price_ppm} ppm is above magma-max-fee-ppm ({max_fee_ppm})")
            }
            Skip::NoConnectionUri { why } => format!("no connection URI: {why}"),
            Skip::Paused { why } => format!("automation paused: {why}; set magma-mode to resume"),
            Skip::PriceUnavailable { why } => format!("Magma's price is unavailable: {why}"),
        }
    }
}

pub fn iso(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Buy {
        usd_cents: u64,
        expected_inbound_sat: u64,
        price_ppm: u64,
        reason: String,
    },
    Skip {
        reasons: Vec<Skip>,
    },
}

/// Everything the decision needs, gathered by the caller.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub inbound: Inbound,
    pub ledger: &'a Ledger,
    /// Magma's quote, or why it could not be had.
    pub price: Result<&'a Price, String>,
    /// The connection URI, or why there is none.
    pub uri: Result<(), String>,
    pub now: u64,
}

/// The order size that brings inbound to the target: whole cents rounded up, clamped to the
/// order bounds (never below Magma's 500).
pub fn size_usd_cents(need_sat: u64, price: &Price, config: &Config) -> Result<u64, String> {
    let quote =
        estimate::quote(price, Ask::InboundSat(need_sat.max(1))).map_err(|e| e.to_string())?;
    let min = config.order_min_usd_cents.max(MAGMA_MIN_USD_CENTS);
    Ok(quote
        .usd_cents
        .clamp(min, config.order_max_usd_cents.max(min)))
}

/// Decides. Every applicable reason not to buy is reported, not only the first, so the
/// operator sees all there is to fix.
pub fn decide(i: &Inputs) -> Decision {
    let c = i.config;
    let mut reasons = Vec::new();
    if c.mode == Mode::Off {
        reasons.push(Skip::ModeOff);
    }
    let have = i.inbound.total();
    if c.min_inbound_sat == 0 || have >= c.min_inbound_sat {
        reasons.push(Skip::InboundSufficient {
            inbound_sat: have,
            min_inbound_sat: c.min_inbound_sat,
        });
    }
    if let Some(why) = &i.ledger.paused {
        reasons.push(Skip::Paused { why: why.clone() });
    }
    if i.ledger.live_orders >= c.max_inflight {
        reasons.push(Skip::InflightLimit {
            live_orders: i.ledger.live_orders,
            max_inflight: c.max_inflight,
        });
    }
    if let Some(until) = i.ledger.backoff_until.filter(|u| *u > i.now) {
        reasons.push(Skip::Backoff {
            until,
            consecutive_failures: i.ledger.consecutive_failures,
        });
    }
    if let Err(why) = &i.uri {
        reasons.push(Skip::NoConnectionUri { why: why.clone() });
    }
    let need = c.target_inbound_sat().saturating_sub(have);
    let mut plan = None;
    match &i.price {
        Err(why) => reasons.push(Skip::PriceUnavailable { why: why.clone() }),
        Ok(price) => match size_usd_cents(need, price, c).and_then(|cents| {
            estimate::quote(price, Ask::UsdCents(cents)).map_err(|e| e.to_string())
        }) {
            Err(why) => reasons.push(Skip::PriceUnavailable { why }),
            Ok(q) => {
                if q.price_ppm > c.max_fee_ppm {
                    reasons.push(Skip::PriceAboveCap {
                        price_ppm: q.price_ppm,
                        max_fee_ppm: c.max_fee_ppm,
                    });
                }
                let left = c
                    .budget_usd_cents
                    .saturating_sub(i.ledger.committed_usd_cents);
                if q.usd_cents > left {
                    reasons.push(Skip::BudgetExhausted {
                        left_usd_cents: left,
                        needed_usd_cents: q.usd_cents,
                    });
                }
                plan = Some(q);
            }
        },
    }
    match (reasons.is_empty(), plan) {
        (true, Some(q)) => Decision::Buy {
            usd_cents: q.usd_cents,
            expected_inbound_sat: q.expected_inbound_sat,
            price_ppm: q.price_ppm,
            reason: format!(
                "inbound {have} sats is below magma-min-inbound-sat ({}); buying {} cents for ~{} sats to reach {}",
                c.min_inbound_sat,
                q.usd_cents,
                q.expected_inbound_sat,
                c.target_inbound_sat()
            ),
        },
        _ => Decision::Skip { reasons },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn config(pairs: &[(&str, serde_json::Value)]) -> Config {
        let map: BTreeMap<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Config::from_values(&map).unwrap()
    }

    fn auto(min: u64, extra: &[(&str, serde_json::Value)]) -> Config {
        let mut pairs = vec![
            ("magma-mode", json!("auto")),
            ("magma-min-inbound-sat", json!(min)),
        ];
        pairs.extend(extra.iter().cloned());
        config(&pairs)
    }

    fn price() -> Price {
        serde_json::from_value(json!({"sats": "543260", "usd": "501.09"})).unwrap()
    }

    fn run(
        c: &Config,
        inbound: Inbound,
        ledger: &Ledger,
        price: Result<&Price, String>,
    ) -> Decision {
        decide(&Inputs {
            config: c,
            inbound,
            ledger,
            price,
            uri: Ok(()),
            now: 1_000_000,
        })
    }

    fn inbound(usable: u64, pending: u64) -> Inbound {
        Inbound {
            usable_sat: usable,
            pending_sat: pending,
        }
    }

    #[test]
    fn sizing_arithmetic() {
        let p = price();
        // (need, order min, order max, expected cents) — cents = ceil(need × 100 / 543,260)
        let cases = [
            (1, 500, 5000, 500),            // the 500-cent floor
            (2_716_300, 500, 5000, 500),    // exactly $5
            (2_716_301, 500, 5000, 501),    // rounds up to a whole cent
            (10_000_000, 500, 5000, 1841),  // ceil(1840.74)
            (100_000_000, 500, 5000, 5000), // clamped to the order maximum
            (10_000_000, 2000, 5000, 2000), // raised to the order minimum
        ];
        for (need, min, max, want) in cases {
            let c = config(&[
                ("magma-order-min-usd-cents", json!(min)),
                ("magma-order-max-usd-cents", json!(max)),
            ]);
            assert_eq!(size_usd_cents(need, &p, &c).unwrap(), want, "need {need}");
        }
    }

    #[test]
    fn buys_to_reach_the_target() {
        let c = auto(
            5_000_000,
            &[("magma-target-inbound-sat", json!(15_000_000))],
        );
        let d = run(
            &c,
            inbound(3_000_000, 1_000_000),
            &Ledger::default(),
            Ok(&price()),
        );
        // need = 15M − 4M = 11M sats → ceil(11M × 100 / 543,260) = 2025 cents.
        match d {
            Decision::Buy {
                usd_cents,
                expected_inbound_sat,
                price_ppm,
                ..
            } => {
                assert_eq!(usd_cents, 2025);
                assert_eq!(expected_inbound_sat, 11_001_015); // 2025 × 5432.6
                assert_eq!(price_ppm, 1996);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Each reason, alone, with its numbers.
    #[test]
    fn every_skip_reason() {
        let p = price();
        let base = auto(5_000_000, &[]);
        let low = inbound(1_000_000, 0);
        let ledger = Ledger::default();
        let only = |d: Decision| match d {
            Decision::Skip { reasons } => {
                assert_eq!(reasons.len(), 1, "{reasons:?}");
                reasons[0].clone()
            }
            other => panic!("expected a skip: {other:?}"),
        };

        let off = config(&[("magma-min-inbound-sat", json!(5_000_000))]);
        assert_eq!(only(run(&off, low, &ledger, Ok(&p))), Skip::ModeOff);

        assert_eq!(
            only(run(&base, inbound(4_000_000, 1_000_000), &ledger, Ok(&p))),
            Skip::InboundSufficient {
                inbound_sat: 5_000_000,
                min_inbound_sat: 5_000_000
            },
            "pending inbound counts: a purchase in flight prevents a second one"
        );
        let never = auto(0, &[]);
        assert!(matches!(
            only(run(&never, inbound(0, 0), &ledger, Ok(&p))),
            Skip::InboundSufficient { .. }
        ));

        let busy = Ledger {
            live_orders: 1,
            ..Ledger::default()
        };
        assert_eq!(
            only(run(&base, low, &busy, Ok(&p))),
            Skip::InflightLimit {
                live_orders: 1,
                max_inflight: 1
            }
        );

        let failed = Ledger {
            backoff_until: Some(1_003_600),
            consecutive_failures: 1,
            ..Ledger::default()
        };
        assert_eq!(
            only(run(&base, low, &failed, Ok(&p))),
            Skip::Backoff {
                until: 1_003_600,
                consecutive_failures: 1
            }
        );
        let over = Ledger {
            backoff_until: Some(999_999),
            consecutive_failures: 1,
            ..Ledger::default()
        };
        assert!(
            matches!(run(&base, low, &over, Ok(&p)), Decision::Buy { .. }),
            "a past backoff is over"
        );

        // need 9M → 1657 cents; 4000 of 5000 committed leaves 1000.
        let spent = Ledger {
            committed_usd_cents: 4000,
            ..Ledger::default()
        };
        assert_eq!(
            only(run(&base, low, &spent, Ok(&p))),
            Skip::BudgetExhausted {
                left_usd_cents: 1000,
                needed_usd_cents: 1657
            }
        );

        let capped = auto(5_000_000, &[("magma-max-fee-ppm", json!(1995))]);
        assert_eq!(
            only(run(&capped, low, &ledger, Ok(&p))),
            Skip::PriceAboveCap {
                price_ppm: 1996,
                max_fee_ppm: 1995
            }
        );

        let paused = Ledger {
            paused: Some("3 consecutive failed orders".into()),
            ..Ledger::default()
        };
        assert_eq!(
            only(run(&base, low, &paused, Ok(&p))),
            Skip::Paused {
                why: "3 consecutive failed orders".into()
            }
        );

        assert_eq!(
            only(run(&base, low, &ledger, Err("HTTP 503".into()))),
            Skip::PriceUnavailable {
                why: "HTTP 503".into()
            }
        );
        let zero: Price = serde_json::from_value(json!({"sats": "0", "usd": "1"})).unwrap();
        assert!(matches!(
            only(run(&base, low, &ledger, Ok(&zero))),
            Skip::PriceUnavailable { .. }
        ));

        let d = decide(&Inputs {
            config: &base,
            inbound: low,
            ledger: &ledger,
            price: Ok(&p),
            uri: Err("no public address".into()),
            now: 1_000_000,
        });
        assert_eq!(
            only(d),
            Skip::NoConnectionUri {
                why: "no public address".into()
            }
        );
    }

    #[test]
    fn all_reasons_are_reported_together() {
        let c = config(&[
            ("magma-max-fee-ppm", json!(1000)),
            ("magma-min-inbound-sat", json!(5_000_000)),
        ]);
        let ledger = Ledger {
            live_orders: 3,
            ..Ledger::default()
        };
        match run(&c, inbound(0, 0), &ledger, Ok(&price())) {
            Decision::Skip { reasons } => {
                assert!(reasons.contains(&Skip::ModeOff));
                assert!(
                    reasons
                        .iter()
                        .any(|r| matches!(r, Skip::InflightLimit { .. }))
                );
                assert!(
                    reasons
                        .iter()
                        .any(|r| matches!(r, Skip::PriceAboveCap { .. }))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reasons_read_well() {
        let s = Skip::Backoff {
            until: 1_781_116_920,
            consecutive_failures: 2,
        };
        assert_eq!(
            s.describe(),
            "backing off after 2 failed order(s) until 2026-06-10T18:42:00Z"
        );
        let s = Skip::BudgetExhausted {
            left_usd_cents: 100,
            needed_usd_cents: 500,
        };
        assert!(s.describe().contains("magma-budget-usd-cents"));
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["reason"], "budget_exhausted");
        assert_eq!(j["left_usd_cents"], 100);
    }
}
