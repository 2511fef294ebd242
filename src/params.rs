//! Command arguments, by name (`{"usd_cents": 1000}`) or by position (`[1000]`), as
//! `lightning-cli` sends them. Every refusal names the argument and the rule.

use serde_json::{Map, Value};

use crate::rpcerror::CommandError;

pub struct Params {
    named: Map<String, Value>,
}

impl Params {
    /// Maps `raw` onto `names` (the command's arguments in order).
    pub fn parse(raw: &Value, names: &[&str]) -> Result<Params, CommandError> {
        let mut named = Map::new();
        match raw {
            Value::Null => {}
            Value::Array(items) => {
                if items.len() > names.len() {
                    return Err(CommandError::invalid(format!(
                        "too many arguments: this command takes at most {} ({})",
                        names.len(),
                        names.join(", ")
                    )));
                }
                for (name, item) in names.iter().zip(items) {
                    if !item.is_null() {
                        named.insert(name.to_string(), item.clone());
                    }
                }
            }
            Value::Object(map) => {
                for (key, value) in map {
                    if !names.contains(&key.as_str()) {
                        return Err(CommandError::invalid(format!(
                            "unknown argument {key:?}: this command takes {}",
                            if names.is_empty() {
                                "no arguments".to_string()
                            } else {
                                names.join(", ")
                            }
                        )));
                    }
                    if !value.is_null() {
                        named.insert(key.clone(), value.clone());
                    }
                }
            }
            other => {
                return Err(CommandError::invalid(format!(
                    "arguments must be an object or an array, got {other}"
                )));
            }
        }
        Ok(Params { named })
    }

    /// A positive whole number (lightning-cli may pass numbers as strings).
    pub fn positive_u64(&self, name: &str) -> Result<Option<u64>, CommandError> {
        let Some(v) = self.named.get(name) else {
            return Ok(None);
        };
        let refuse =
            || CommandError::invalid(format!("{name} must be a positive whole number, got {v}"));
        let n = match v {
            Value::Number(n) => n.as_u64().ok_or_else(refuse)?,
            Value::String(s) => s.trim().parse::<u64>().map_err(|_| refuse())?,
            _ => return Err(refuse()),
        };
        if n == 0 {
            return Err(refuse());
        }
        Ok(Some(n))
    }

    /// A non-empty string.
    pub fn text(&self, name: &str) -> Result<Option<String>, CommandError> {
        match self.named.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(v) => Err(CommandError::invalid(format!(
                "{name} must be a non-empty string, got {v}"
            ))),
        }
    }

    pub fn flag(&self, name: &str) -> Result<Option<bool>, CommandError> {
        match self.named.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" => Ok(Some(false)),
            Some(v) => Err(CommandError::invalid(format!(
                "{name} must be true or false, got {v}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NAMES: &[&str] = &["usd_cents", "amount_sat"];

    #[test]
    fn by_name_and_by_position() {
        let p = Params::parse(&json!({"amount_sat": 5}), NAMES).unwrap();
        assert_eq!(p.positive_u64("amount_sat").unwrap(), Some(5));
        assert_eq!(p.positive_u64("usd_cents").unwrap(), None);
        let p = Params::parse(&json!([1000]), NAMES).unwrap();
        assert_eq!(p.positive_u64("usd_cents").unwrap(), Some(1000));
        let p = Params::parse(&json!([null, "7"]), NAMES).unwrap();
        assert_eq!(p.positive_u64("amount_sat").unwrap(), Some(7));
        assert!(Params::parse(&Value::Null, NAMES).is_ok());
    }

    #[test]
    fn refusals_name_the_argument() {
        let cases = [
            (
                json!({"usd_cents": -5}),
                "usd_cents must be a positive whole number",
            ),
            (
                json!({"usd_cents": 0}),
                "usd_cents must be a positive whole number",
            ),
            (
                json!({"usd_cents": 12.5}),
                "usd_cents must be a positive whole number",
            ),
            (
                json!({"usd_cents": "lots"}),
                "usd_cents must be a positive whole number",
            ),
            (
                json!({"usd_cents": true}),
                "usd_cents must be a positive whole number",
            ),
            (json!([1, 2, 3]), "too many arguments"),
            (json!({"usd": 5}), "unknown argument \"usd\""),
        ];
        for (raw, words) in cases {
            let e = Params::parse(&raw, NAMES)
                .and_then(|p| p.positive_u64("usd_cents"))
                .unwrap_err();
            assert_eq!(e.code, crate::rpcerror::INVALID_PARAMS);
            assert!(e.message.contains(words), "{raw}: {}", e.message);
        }
    }
}
