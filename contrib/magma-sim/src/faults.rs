//! Fault injection: what can go wrong with a request, and queues of armed faults.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A GraphQL operation as recognised by its root field path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `query { market { liquidity { liquidity_per_usd } } }`
    Price,
    /// `mutation { liquidity { buy } }`
    Buy,
    /// `query { user { market { orders { get_order } } } }`
    GetOrder,
    /// `query { user { transactions { transaction_list } } }`
    TransactionList,
    /// `query { user { market { orders { purchases } } } }`
    Purchases,
    /// Anything else (including documents that do not parse).
    Other,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Price => "price",
            Operation::Buy => "buy",
            Operation::GetOrder => "get_order",
            Operation::TransactionList => "transaction_list",
            Operation::Purchases => "purchases",
            Operation::Other => "other",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a request hit by a fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 500 without executing.
    Http500,
    /// HTTP 429 with `Retry-After`, without executing.
    RateLimited { retry_after_secs: u64 },
    /// Executes, then waits this long (real time) before responding.
    Slow { delay_ms: u64 },
    /// An HTML maintenance page (HTTP 200, `text/html`) without executing.
    NonJson,
    /// Executes (a buy is committed), then drops the connection without a response.
    DropAfterCommit,
    /// HTTP 200 with this GraphQL error and `data: null`, without executing.
    GraphqlError { message: String, code: String },
    /// Executes and rewrites every `status` value in the response to this string.
    UnknownStatus(String),
}

impl Fault {
    /// Short name for the request log.
    pub fn label(&self) -> String {
        match self {
            Fault::Http500 => "http500".into(),
            Fault::RateLimited { retry_after_secs } => format!("rate_limited({retry_after_secs}s)"),
            Fault::Slow { delay_ms } => format!("slow({delay_ms}ms)"),
            Fault::NonJson => "non_json".into(),
            Fault::DropAfterCommit => "drop_after_commit".into(),
            Fault::GraphqlError { code, .. } => format!("graphql_error({code})"),
            Fault::UnknownStatus(s) => format!("unknown_status({s})"),
        }
    }
}

/// One armed fault: applies to the next `remaining` matching requests (`None` = until cleared).
#[derive(Clone, Debug)]
struct Armed<K, F> {
    key: K,
    fault: F,
    remaining: Option<u32>,
}

/// Faults armed per key, consumed first-in first-out.
#[derive(Clone, Debug)]
pub(crate) struct FaultQueue<K, F> {
    armed: Vec<Armed<K, F>>,
}

impl<K, F> Default for FaultQueue<K, F> {
    fn default() -> Self {
        FaultQueue { armed: Vec::new() }
    }
}

impl<K: PartialEq, F: Clone> FaultQueue<K, F> {
    /// Arms `fault` for `count` requests (`None` = until cleared; `Some(0)` arms nothing).
    pub fn push(&mut self, key: K, fault: F, count: Option<u32>) {
        if count != Some(0) {
            self.armed.push(Armed {
                key,
                fault,
                remaining: count,
            });
        }
    }

    /// Takes the fault for one request with this key, if any is armed.
    pub fn take(&mut self, key: &K) -> Option<F> {
        let idx = self.armed.iter().position(|a| &a.key == key)?;
        let armed = &mut self.armed[idx];
        let fault = armed.fault.clone();
        if let Some(n) = armed.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.armed.remove(idx);
            }
        }
        Some(fault)
    }

    pub fn clear(&mut self) {
        self.armed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out_in_order() {
        let mut q = FaultQueue::default();
        q.push(Operation::Buy, Fault::Http500, Some(1));
        q.push(Operation::Buy, Fault::NonJson, Some(2));
        q.push(Operation::Price, Fault::Http500, Some(0));
        assert_eq!(q.take(&Operation::Price), None);
        assert_eq!(q.take(&Operation::Buy), Some(Fault::Http500));
        assert_eq!(q.take(&Operation::Buy), Some(Fault::NonJson));
        assert_eq!(q.take(&Operation::Buy), Some(Fault::NonJson));
        assert_eq!(q.take(&Operation::Buy), None);
    }

    #[test]
    fn uncounted_faults_stay_until_cleared() {
        let mut q = FaultQueue::default();
        q.push(Operation::GetOrder, Fault::Http500, None);
        for _ in 0..5 {
            assert_eq!(q.take(&Operation::GetOrder), Some(Fault::Http500));
        }
        q.clear();
        assert_eq!(q.take(&Operation::GetOrder), None);
    }

    #[test]
    fn fault_json_shape() {
        let f: Fault =
            serde_json::from_str(r#"{"rate_limited":{"retry_after_secs":3}}"#).expect("parses");
        assert_eq!(
            f,
            Fault::RateLimited {
                retry_after_secs: 3
            }
        );
        let f: Fault = serde_json::from_str(r#""drop_after_commit""#).expect("parses");
        assert_eq!(f, Fault::DropAfterCommit);
        let f: Fault = serde_json::from_str(r#"{"unknown_status":"X"}"#).expect("parses");
        assert_eq!(f, Fault::UnknownStatus("X".into()));
    }
}
