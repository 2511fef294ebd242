//! lightningd's datastore (lightningd/datastore.c): hierarchical keys, a key holds either data or
//! children, every update bumps a generation that callers can compare-and-swap on.

use crate::hex;
use crate::protocol::{RpcError, codes};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub data: Vec<u8>,
    pub generation: u64,
}

/// Write modes of the `datastore` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    MustCreate,
    MustReplace,
    CreateOrReplace,
    MustAppend,
    CreateOrAppend,
}

impl Mode {
    pub fn parse(v: &Value) -> Result<Mode, RpcError> {
        match v.as_str() {
            Some("must-create") => Ok(Mode::MustCreate),
            Some("must-replace") => Ok(Mode::MustReplace),
            Some("create-or-replace") => Ok(Mode::CreateOrReplace),
            Some("must-append") => Ok(Mode::MustAppend),
            Some("create-or-append") => Ok(Mode::CreateOrAppend),
            _ => Err(RpcError::bad_param(
                "mode",
                v,
                "should be 'must-create', 'must-replace', 'create-or-replace', 'must-append', or 'create-or-append'",
            )),
        }
    }

    fn must_exist(self) -> bool {
        matches!(self, Mode::MustReplace | Mode::MustAppend)
    }

    fn must_not_exist(self) -> bool {
        self == Mode::MustCreate
    }

    fn append(self) -> bool {
        matches!(self, Mode::MustAppend | Mode::CreateOrAppend)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Datastore {
    entries: BTreeMap<Vec<String>, Entry>,
}

/// A key parameter: an array of strings, or one string (a one-element key).
pub fn parse_key(v: &Value) -> Result<Vec<String>, RpcError> {
    match v {
        Value::Array(a) if a.is_empty() => {
            Err(RpcError::bad_param("key", v, "should not be empty"))
        }
        Value::Array(a) => a
            .iter()
            .map(|t| match t {
                Value::String(s) => Ok(s.clone()),
                Value::Number(_) | Value::Bool(_) => Ok(t.to_string()),
                _ => Err(RpcError::bad_param("key", t, "should be string")),
            })
            .collect(),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Number(_) | Value::Bool(_) => Ok(vec![v.to_string()]),
        _ => Err(RpcError::bad_param("key", v, "should be string or array")),
    }
}

fn key_fmt(key: &[String]) -> String {
    format!("[{}]", key.join(","))
}

/// The JSON of one entry, as `json_add_datastore` writes it (`string` only for valid UTF-8).
pub fn entry_json(key: &[String], entry: Option<&Entry>) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), json!(key));
    if let Some(e) = entry {
        m.insert("generation".into(), json!(e.generation));
        m.insert("hex".into(), json!(hex::encode(&e.data)));
        if let Ok(s) = std::str::from_utf8(&e.data) {
            m.insert("string".into(), json!(s));
        }
    }
    Value::Object(m)
}

impl Datastore {
    pub fn get(&self, key: &[String]) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// The `datastore` command.
    pub fn put(
        &mut self,
        key: Vec<String>,
        data: Vec<u8>,
        mode: Mode,
        generation: Option<u64>,
    ) -> Result<Value, RpcError> {
        if generation.is_some() && !mode.must_exist() {
            return Err(RpcError::invalid_params(
                "generation only valid with must-replace or must-append",
            ));
        }
        let prev = self.entries.get(&key).cloned();
        if prev.is_none() {
            if self
                .entries
                .keys()
                .any(|k| k.len() > key.len() && k.starts_with(&key))
            {
                return Err(RpcError::new(
                    codes::DATASTORE_UPDATE_HAS_CHILDREN,
                    "Key has children already",
                ));
            }
            for i in 1..key.len() {
                if self.entries.contains_key(&key[..i]) {
                    return Err(RpcError::new(
                        codes::DATASTORE_UPDATE_NO_CHILDREN,
                        format!("Parent key {} exists", key_fmt(&key[..i])),
                    ));
                }
            }
        }
        if mode.must_not_exist() && prev.is_some() {
            return Err(RpcError::new(
                codes::DATASTORE_UPDATE_ALREADY_EXISTS,
                "Key already exists",
            ));
        }
        if mode.must_exist() && prev.is_none() {
            return Err(RpcError::new(
                codes::DATASTORE_UPDATE_DOES_NOT_EXIST,
                "Key does not exist",
            ));
        }
        if let (Some(g), Some(p)) = (generation, &prev)
            && p.generation != g
        {
            return Err(RpcError::new(
                codes::DATASTORE_UPDATE_WRONG_GENERATION,
                "generation is different",
            ));
        }
        let entry = match prev {
            Some(p) => Entry {
                data: if mode.append() {
                    [p.data, data].concat()
                } else {
                    data
                },
                generation: p.generation + 1,
            },
            None => Entry {
                data,
                generation: 0,
            },
        };
        let out = entry_json(&key, Some(&entry));
        self.entries.insert(key, entry);
        Ok(out)
    }

    /// The `deldatastore` command.
    pub fn delete(&mut self, key: &[String], generation: Option<u64>) -> Result<Value, RpcError> {
        let Some(e) = self.entries.get(key) else {
            return Err(RpcError::new(
                codes::DATASTORE_DEL_DOES_NOT_EXIST,
                "Key does not exist",
            ));
        };
        if let Some(g) = generation
            && e.generation != g
        {
            return Err(RpcError::new(
                codes::DATASTORE_DEL_WRONG_GENERATION,
                "generation is different",
            ));
        }
        let out = entry_json(key, Some(e));
        self.entries.remove(key);
        Ok(out)
    }

    /// The `listdatastore` command: entries at `key` and its direct children; deeper descendants
    /// appear once each as a key-only summary.
    pub fn list(&self, key: Option<&[String]>) -> Value {
        let prefix: &[String] = key.unwrap_or(&[]);
        let mut out = vec![];
        let mut last_summary: Option<Vec<String>> = None;
        for (k, e) in self.entries.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if k.len() > prefix.len() + 1 {
                let summary = k[..prefix.len() + 1].to_vec();
                if last_summary.as_ref() != Some(&summary) {
                    out.push(entry_json(&summary, None));
                    last_summary = Some(summary);
                }
            } else {
                out.push(entry_json(k, Some(e)));
            }
        }
        json!({ "datastore": out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn list_summarises_grandchildren() {
        let mut d = Datastore::default();
        d.put(k(&["a", "b", "c"]), b"1".to_vec(), Mode::MustCreate, None)
            .unwrap();
        d.put(k(&["a", "x"]), b"2".to_vec(), Mode::MustCreate, None)
            .unwrap();
        let l = d.list(Some(&k(&["a"])));
        assert_eq!(
            l,
            json!({"datastore": [{"key": ["a", "b"]}, {"key": ["a", "x"], "generation": 0, "hex": "32", "string": "2"}]})
        );
    }
}
