//! The plugin's options: one table that drives the manifest, `plugin.toml`, validation at `init`
//! and `setconfig`, so the four can never disagree.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::magma::{DEFAULT_API_URL, validate_api_url};
use crate::uri::ConnectionUri;

/// The type lightningd knows an option by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    Int,
    Str,
    Bool,
}

impl OptionKind {
    pub fn manifest_type(self) -> &'static str {
        match self {
            OptionKind::Int => "int",
            OptionKind::Str => "string",
            OptionKind::Bool => "bool",
        }
    }
}

/// A default as the manifest declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionDefault {
    Int(i64),
    Str(&'static str),
    Bool(bool),
}

impl OptionDefault {
    pub fn to_json(self) -> Value {
        match self {
            OptionDefault::Int(i) => i.into(),
            OptionDefault::Str(s) => s.into(),
            OptionDefault::Bool(b) => b.into(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: OptionKind,
    /// `None`: no default in the manifest (the value is derived, or the feature is off).
    pub default: Option<OptionDefault>,
    pub dynamic: bool,
    pub description: &'static str,
}

pub const API_URL: &str = "magma-api-url";
pub const API_KEY_FILE: &str = "magma-api-key-file";
pub const MODE: &str = "magma-mode";
pub const MIN_INBOUND: &str = "magma-min-inbound-sat";
pub const TARGET_INBOUND: &str = "magma-target-inbound-sat";
pub const ORDER_MIN: &str = "magma-order-min-usd-cents";
pub const ORDER_MAX: &str = "magma-order-max-usd-cents";
pub const MAX_FEE_PPM: &str = "magma-max-fee-ppm";
pub const BUDGET: &str = "magma-budget-usd-cents";
pub const BUDGET_DAYS: &str = "magma-budget-days";
pub const MAX_INFLIGHT: &str = "magma-max-inflight";
pub const CHECK_INTERVAL: &str = "magma-check-interval";
pub const FAILURE_BACKOFF: &str = "magma-failure-backoff";
pub const PRIVATE: &str = "magma-private";
pub const RAILS_ONLY: &str = "magma-rails-cluster-only";
pub const CONNECTION_URI: &str = "magma-connection-uri";
pub const PAY_MAX_FEE_PPM: &str = "magma-pay-max-fee-ppm";
pub const PAUSE_AFTER: &str = "magma-pause-after-failures";

use OptionDefault as D;
use OptionKind as K;

/// Every option of design.md §3, in the order operators read them.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        name: API_URL,
        kind: K::Str,
        default: Some(D::Str(DEFAULT_API_URL)),
        dynamic: false,
        description: "Magma GraphQL endpoint; http:// only for loopback hosts",
    },
    OptionSpec {
        name: API_KEY_FILE,
        kind: K::Str,
        default: None,
        dynamic: false,
        description: "File holding an Amboss API key (env AMBOSS_API_KEY is the fallback); without one, orders are bought anonymously",
    },
    OptionSpec {
        name: MODE,
        kind: K::Str,
        default: Some(D::Str("off")),
        dynamic: true,
        description: "off (manual buys only), dry-run (decide and report, never buy) or auto",
    },
    OptionSpec {
        name: MIN_INBOUND,
        kind: K::Int,
        default: Some(D::Int(0)),
        dynamic: true,
        description: "Buy when usable plus pending inbound falls below this many sats (0 = never)",
    },
    OptionSpec {
        name: TARGET_INBOUND,
        kind: K::Int,
        default: None,
        dynamic: true,
        description: "Size purchases to reach this much inbound, in sats (default: twice magma-min-inbound-sat)",
    },
    OptionSpec {
        name: ORDER_MIN,
        kind: K::Int,
        default: Some(D::Int(500)),
        dynamic: true,
        description: "Smallest order in US cents (Magma's minimum is 500)",
    },
    OptionSpec {
        name: ORDER_MAX,
        kind: K::Int,
        default: Some(D::Int(5000)),
        dynamic: true,
        description: "Largest single order in US cents",
    },
    OptionSpec {
        name: MAX_FEE_PPM,
        kind: K::Int,
        default: Some(D::Int(5000)),
        dynamic: true,
        description: "Highest price accepted: invoice sats per inbound sat, in parts per million; checked on the quote and on the invoice",
    },
    OptionSpec {
        name: BUDGET,
        kind: K::Int,
        default: Some(D::Int(5000)),
        dynamic: true,
        description: "Spending cap in US cents per budget window (orders in flight count at full price)",
    },
    OptionSpec {
        name: BUDGET_DAYS,
        kind: K::Int,
        default: Some(D::Int(30)),
        dynamic: true,
        description: "Length of the rolling budget window in days",
    },
    OptionSpec {
        name: MAX_INFLIGHT,
        kind: K::Int,
        default: Some(D::Int(1)),
        dynamic: true,
        description: "Unresolved orders allowed at once, manual buys included",
    },
    OptionSpec {
        name: CHECK_INTERVAL,
        kind: K::Int,
        default: Some(D::Int(600)),
        dynamic: true,
        description: "Seconds between policy checks; channel events also trigger one",
    },
    OptionSpec {
        name: FAILURE_BACKOFF,
        kind: K::Int,
        default: Some(D::Int(3600)),
        dynamic: true,
        description: "Seconds to wait after a failed order, doubling per consecutive failure, at most 24 h",
    },
    OptionSpec {
        name: PAUSE_AFTER,
        kind: K::Int,
        default: Some(D::Int(3)),
        dynamic: true,
        description: "Pause automatic buying after this many consecutive failed orders, until magma-mode is set again (0 = never)",
    },
    OptionSpec {
        name: PRIVATE,
        kind: K::Bool,
        default: Some(D::Bool(false)),
        dynamic: true,
        description: "Ask sellers for unannounced channels",
    },
    OptionSpec {
        name: RAILS_ONLY,
        kind: K::Bool,
        default: Some(D::Bool(false)),
        dynamic: true,
        description: "Buy only from Amboss Rails-cluster sellers",
    },
    OptionSpec {
        name: CONNECTION_URI,
        kind: K::Str,
        default: None,
        dynamic: true,
        description: "pubkey@host:port sellers connect to; by default derived from getinfo's announced addresses",
    },
    OptionSpec {
        name: PAY_MAX_FEE_PPM,
        kind: K::Int,
        default: Some(D::Int(5000)),
        dynamic: true,
        description: "Routing-fee cap for paying an order's invoice, in parts per million of the amount",
    },
];

pub fn spec(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|s| s.name == name)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    DryRun,
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::DryRun => "dry-run",
            Mode::Auto => "auto",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The validated configuration. Built only through [`Config::from_values`], so every instance
/// satisfies every rule, single-option and cross-option alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub api_url: Url,
    pub api_key_file: Option<PathBuf>,
    pub mode: Mode,
    pub min_inbound_sat: u64,
    /// As set; `None` means twice the minimum (see [`Config::target_inbound_sat`]).
    pub target_inbound_set: Option<u64>,
    pub order_min_usd_cents: u64,
    pub order_max_usd_cents: u64,
    pub max_fee_ppm: u64,
    pub budget_usd_cents: u64,
    pub budget_days: u64,
    pub max_inflight: u64,
    pub check_interval: Duration,
    pub failure_backoff: Duration,
    pub pause_after_failures: u32,
    pub private: bool,
    pub rails_cluster_only: bool,
    pub connection_uri: Option<ConnectionUri>,
    pub pay_max_fee_ppm: u64,
    /// Every value as lightningd would show it, for `setconfig` to update one at a time.
    values: BTreeMap<&'static str, Value>,
}

/// An option value that breaks a rule. Its text names the option and the rule, for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {rule}")]
pub struct OptionError {
    pub option: String,
    pub rule: String,
}

fn err(option: &str, rule: impl Into<String>) -> OptionError {
    OptionError {
        option: option.to_string(),
        rule: rule.into(),
    }
}

/// The most bitcoin there will ever be, in sats: a bound no sane threshold exceeds.
const MAX_SATS: u64 = 21_000_000 * 100_000_000;

impl Config {
    /// Validates option values as lightningd passes them (numbers, booleans, strings; numbers
    /// and booleans also accepted as strings, since `setconfig` may send them that way).
    /// Missing names take their defaults.
    pub fn from_values(given: &BTreeMap<String, Value>) -> Result<Config, OptionError> {
        if let Some(unknown) = given.keys().find(|k| spec(k).is_none()) {
            return Err(err(unknown, "is not an option of this plugin"));
        }
        let mut values = BTreeMap::new();
        for spec in OPTIONS {
            let value = match given.get(spec.name) {
                Some(Value::Null) | None => spec.default.map(OptionDefault::to_json),
                Some(v) => Some(normalize(spec, v)?),
            };
            if let Some(v) = value {
                values.insert(spec.name, v);
            }
        }
        Config::build(values)
    }

    /// This configuration with one option changed, re-validated as a whole (for `setconfig`).
    /// The current configuration is untouched when the new value is refused.
    pub fn with(&self, name: &str, value: &Value) -> Result<Config, OptionError> {
        let spec = spec(name).ok_or_else(|| err(name, "is not an option of this plugin"))?;
        if !spec.dynamic {
            return Err(err(
                name,
                "cannot be changed while the plugin runs; set it in the config file and restart",
            ));
        }
        let mut values = self.values.clone();
        values.insert(spec.name, normalize(spec, value)?);
        Config::build(values)
    }

    /// The value of an option in its manifest type, `None` when unset.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// The inbound level purchases aim for.
    pub fn target_inbound_sat(&self) -> u64 {
        self.target_inbound_set
            .unwrap_or(self.min_inbound_sat.saturating_mul(2))
    }

    fn build(values: BTreeMap<&'static str, Value>) -> Result<Config, OptionError> {
        let int = |name: &'static str, min: u64, max: u64| -> Result<Option<u64>, OptionError> {
            let Some(v) = values.get(name) else {
                return Ok(None);
            };
            let n = v
                .as_u64()
                .ok_or_else(|| err(name, format!("must be a whole number, got {v}")))?;
            if n < min || n > max {
                return Err(err(
                    name,
                    format!("must be between {min} and {max}, got {n}"),
                ));
            }
            Ok(Some(n))
        };
        let req = |name: &'static str, min: u64, max: u64| -> Result<u64, OptionError> {
            int(name, min, max)?.ok_or_else(|| err(name, "has no value"))
        };
        let flag = |name: &'static str| values.get(name).and_then(Value::as_bool).unwrap_or(false);
        let text = |name: &'static str| values.get(name).and_then(Value::as_str);

        let api_url = validate_api_url(text(API_URL).unwrap_or(DEFAULT_API_URL))
            .map_err(|e| err(API_URL, e.to_string()))?;
        let api_key_file = match text(API_KEY_FILE) {
            Some("") => {
                return Err(err(
                    API_KEY_FILE,
                    "must be a file path, got an empty string",
                ));
            }
            Some(p) => Some(PathBuf::from(p)),
            None => None,
        };
        let mode = match text(MODE).unwrap_or("off") {
            "off" => Mode::Off,
            "dry-run" => Mode::DryRun,
            "auto" => Mode::Auto,
            other => {
                return Err(err(
                    MODE,
                    format!("must be one of off, dry-run, auto; got {other:?}"),
                ));
            }
        };
        let min_inbound_sat = req(MIN_INBOUND, 0, MAX_SATS)?;
        let target_inbound_set = int(TARGET_INBOUND, 0, MAX_SATS)?;
        if let Some(target) = target_inbound_set
            && target < min_inbound_sat
        {
            return Err(err(
                TARGET_INBOUND,
                format!("must be at least {MIN_INBOUND} ({min_inbound_sat}), got {target}"),
            ));
        }
        let order_min_usd_cents = req(ORDER_MIN, 500, 10_000_000)?;
        let order_max_usd_cents = req(ORDER_MAX, 500, 10_000_000)?;
        if order_max_usd_cents < order_min_usd_cents {
            return Err(err(
                ORDER_MAX,
                format!(
                    "must be at least {ORDER_MIN} ({order_min_usd_cents}), got {order_max_usd_cents}"
                ),
            ));
        }
        let connection_uri = match text(CONNECTION_URI) {
            Some(raw) => {
                Some(ConnectionUri::parse(raw).map_err(|e| err(CONNECTION_URI, e.to_string()))?)
            }
            None => None,
        };
        Ok(Config {
            api_url,
            api_key_file,
            mode,
            min_inbound_sat,
            target_inbound_set,
            order_min_usd_cents,
            order_max_usd_cents,
            max_fee_ppm: req(MAX_FEE_PPM, 1, 1_000_000)?,
            budget_usd_cents: req(BUDGET, 0, 10_000_000)?,
            budget_days: req(BUDGET_DAYS, 1, 365)?,
            max_inflight: req(MAX_INFLIGHT, 1, 100)?,
            check_interval: Duration::from_secs(req(CHECK_INTERVAL, 10, 86_400)?),
            failure_backoff: Duration::from_secs(req(FAILURE_BACKOFF, 60, 86_400)?),
            pause_after_failures: u32::try_from(req(PAUSE_AFTER, 0, 100)?).unwrap_or(100),
            private: flag(PRIVATE),
            rails_cluster_only: flag(RAILS_ONLY),
            connection_uri,
            pay_max_fee_ppm: req(PAY_MAX_FEE_PPM, 0, 100_000)?,
            values,
        })
    }
}

/// Brings a value into its option's manifest type, accepting the string forms too.
fn normalize(spec: &OptionSpec, v: &Value) -> Result<Value, OptionError> {
    let wrong = || {
        err(
            spec.name,
            format!("must be of type {}, got {v}", spec.kind.manifest_type()),
        )
    };
    Ok(match (spec.kind, v) {
        (K::Int, Value::Number(n)) => {
            let n = n.as_i64().ok_or_else(wrong)?;
            if n < 0 {
                return Err(err(spec.name, format!("must not be negative, got {n}")));
            }
            n.into()
        }
        (K::Int, Value::String(s)) => {
            let n: i64 = s.trim().parse().map_err(|_| wrong())?;
            if n < 0 {
                return Err(err(spec.name, format!("must not be negative, got {n}")));
            }
            n.into()
        }
        (K::Bool, Value::Bool(b)) => (*b).into(),
        // lightningd accepts yes/no as well as true/false (ccan's `opt_set_bool_arg`, any
        // case) and forwards the operator's text unchanged through `setconfig`.
        (K::Bool, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" => true.into(),
            "false" | "no" => false.into(),
            _ => return Err(wrong()),
        },
        (K::Str, Value::String(s)) => s.clone().into(),
        _ => return Err(wrong()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with(pairs: &[(&str, Value)]) -> Result<Config, OptionError> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Config::from_values(&map)
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::from_values(&BTreeMap::new()).unwrap();
        assert_eq!(c.api_url.as_str(), DEFAULT_API_URL);
        assert_eq!(c.mode, Mode::Off);
        assert_eq!(c.min_inbound_sat, 0);
        assert_eq!(c.target_inbound_sat(), 0);
        assert_eq!((c.order_min_usd_cents, c.order_max_usd_cents), (500, 5000));
        assert_eq!(c.max_fee_ppm, 5000);
        assert_eq!((c.budget_usd_cents, c.budget_days), (5000, 30));
        assert_eq!(c.max_inflight, 1);
        assert_eq!(c.check_interval, Duration::from_secs(600));
        assert_eq!(c.failure_backoff, Duration::from_secs(3600));
        assert_eq!(c.pause_after_failures, 3);
        assert!(!c.private && !c.rails_cluster_only);
        assert_eq!(c.connection_uri, None);
        assert_eq!(c.pay_max_fee_ppm, 5000);
    }

    #[test]
    fn target_defaults_to_twice_the_minimum() {
        let c = with(&[(MIN_INBOUND, json!(1_000_000))]).unwrap();
        assert_eq!(c.target_inbound_sat(), 2_000_000);
        let c = with(&[
            (MIN_INBOUND, json!(1_000_000)),
            (TARGET_INBOUND, json!(1_500_000)),
        ])
        .unwrap();
        assert_eq!(c.target_inbound_sat(), 1_500_000);
    }

    /// Each refused value, with words its message must contain.
    #[test]
    fn invalid_values_name_the_option_and_the_rule() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                API_URL,
                json!("http://magma.example.com/graphql"),
                "loopback",
            ),
            (API_URL, json!("not a url"), "not a valid URL"),
            (API_KEY_FILE, json!(""), "file path"),
            (MODE, json!("sometimes"), "off, dry-run, auto"),
            (MIN_INBOUND, json!(-1), "negative"),
            (MIN_INBOUND, json!("lots"), "type int"),
            (ORDER_MIN, json!(499), "between 500"),
            (ORDER_MAX, json!(20_000_000), "between 500 and 10000000"),
            (MAX_FEE_PPM, json!(0), "between 1"),
            (MAX_FEE_PPM, json!(1_000_001), "between 1 and 1000000"),
            (BUDGET, json!(true), "type int"),
            (BUDGET_DAYS, json!(0), "between 1 and 365"),
            (MAX_INFLIGHT, json!(0), "between 1 and 100"),
            (CHECK_INTERVAL, json!(5), "between 10"),
            (FAILURE_BACKOFF, json!(100_000), "between 60 and 86400"),
            (PRIVATE, json!("maybe"), "type bool"),
            (RAILS_ONLY, json!(1), "type bool"),
            (CONNECTION_URI, json!("nonsense"), "pubkey@host:port"),
            (PAY_MAX_FEE_PPM, json!(200_000), "between 0 and 100000"),
            (PAUSE_AFTER, json!(101), "between 0 and 100"),
            ("magma-colour", json!(1), "not an option"),
        ];
        for (name, value, words) in cases {
            let e = with(&[(name, value.clone())]).unwrap_err();
            assert_eq!(e.option, name, "{value}");
            let text = e.to_string();
            assert!(text.starts_with(name), "{text}");
            assert!(
                text.contains(words),
                "{name}={value}: {text:?} lacks {words:?}"
            );
        }
    }

    #[test]
    fn cross_option_rules() {
        let e = with(&[(ORDER_MIN, json!(3000)), (ORDER_MAX, json!(2000))]).unwrap_err();
        assert_eq!(e.option, ORDER_MAX);
        let e = with(&[(MIN_INBOUND, json!(500)), (TARGET_INBOUND, json!(100))]).unwrap_err();
        assert_eq!(e.option, TARGET_INBOUND);
    }

    #[test]
    fn setconfig_changes_one_value_and_keeps_the_rest() {
        let base = with(&[(MIN_INBOUND, json!(1000))]).unwrap();
        let next = base.with(MODE, &json!("auto")).unwrap();
        assert_eq!(next.mode, Mode::Auto);
        assert_eq!(next.min_inbound_sat, 1000);
        // String forms, as setconfig may send them.
        let next = next.with(BUDGET, &json!("9000")).unwrap();
        assert_eq!(next.budget_usd_cents, 9000);
        let next = next.with(PRIVATE, &json!("true")).unwrap();
        assert!(next.private);
        // lightningd's other spellings of a bool, forwarded as typed.
        assert!(!next.with(PRIVATE, &json!("no")).unwrap().private);
        assert!(
            next.with(RAILS_ONLY, &json!("yes"))
                .unwrap()
                .rails_cluster_only
        );
        // A refused value leaves the old configuration as it was.
        assert!(next.with(BUDGET_DAYS, &json!(0)).is_err());
        assert_eq!(next.budget_days, 30);
        // A cross-option conflict introduced by one change is refused too.
        assert_eq!(
            next.with(TARGET_INBOUND, &json!(10)).unwrap_err().option,
            TARGET_INBOUND
        );
        // Static options cannot change at run time.
        let e = next
            .with(API_URL, &json!("http://127.0.0.1:1/graphql"))
            .unwrap_err();
        assert!(e.rule.contains("restart"));
    }

    #[test]
    fn every_option_is_prefixed_and_unique() {
        let mut names: Vec<_> = OPTIONS.iter().map(|o| o.name).collect();
        assert!(names.iter().all(|n| n.starts_with("magma-")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), OPTIONS.len());
        assert_eq!(OPTIONS.len(), 18);
    }
}
