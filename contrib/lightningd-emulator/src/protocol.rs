//! JSON-RPC 2.0 as lightningd speaks it, on a plugin's stdin/stdout and on the RPC socket.
//!
//! Framing: lightningd writes every message followed by `"\n\n"` and reads JSON objects from a
//! byte stream without requiring any separator (it runs an incremental JSON parser over the
//! buffer, skipping whitespace). [`FrameDecoder`] does the same and additionally reports bytes
//! that are not a JSON object, so stray output on a plugin's stdout is caught.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Error codes used by lightningd (`common/jsonrpc_errors.h`).
pub mod codes {
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    /// Uncategorised lightningd error.
    pub const LIGHTNINGD: i64 = -1;
    /// The plugin died while a forwarded call was pending.
    pub const PLUGIN_TERMINATED: i64 = -4;
    pub const PAY_IN_PROGRESS: i64 = 200;
    pub const PAY_RHASH_ALREADY_USED: i64 = 201;
    pub const PAY_DESTINATION_PERM_FAIL: i64 = 203;
    pub const PAY_TRY_OTHER_ROUTE: i64 = 204;
    pub const PAY_ROUTE_NOT_FOUND: i64 = 205;
    pub const PAY_INVOICE_EXPIRED: i64 = 207;
    pub const PAY_STOPPED_RETRYING: i64 = 210;
    pub const CONNECT_ALL_ADDRESSES_FAILED: i64 = 401;
    pub const DATASTORE_DEL_DOES_NOT_EXIST: i64 = 1200;
    pub const DATASTORE_DEL_WRONG_GENERATION: i64 = 1201;
    pub const DATASTORE_UPDATE_ALREADY_EXISTS: i64 = 1202;
    pub const DATASTORE_UPDATE_DOES_NOT_EXIST: i64 = 1203;
    pub const DATASTORE_UPDATE_WRONG_GENERATION: i64 = 1204;
    pub const DATASTORE_UPDATE_HAS_CHILDREN: i64 = 1205;
    pub const DATASTORE_UPDATE_NO_CHILDREN: i64 = 1206;
}

/// A JSON-RPC error object, as returned by lightningd or relayed from a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAMS, message)
    }

    /// lightningd's `command_fail_badparam` format: `NAME: MSG: invalid token 'TOKEN'`, where
    /// TOKEN is the parameter's JSON text (a string keeps its quotes).
    pub fn bad_param(name: &str, value: &Value, msg: &str) -> Self {
        Self::invalid_params(format!("{name}: {msg}: invalid token '{value}'"))
    }

    pub fn unknown_command(method: &str) -> Self {
        Self::new(
            codes::METHOD_NOT_FOUND,
            format!("Unknown command '{method}'"),
        )
    }

    /// Reads an error object, tolerating a missing or non-integer code the way a client would.
    pub fn from_value(v: &Value) -> Self {
        RpcError {
            code: v
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(codes::LIGHTNINGD),
            message: v
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string()),
            data: v.get("data").cloned(),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RPC error {}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

/// A request (has an `id`) or notification (no `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

impl Request {
    pub fn new(id: Value, method: &str, params: Value) -> Self {
        Request {
            jsonrpc: "2.0".into(),
            id: Some(id),
            method: method.into(),
            params,
        }
    }

    pub fn notification(method: &str, params: Value) -> Self {
        Request {
            jsonrpc: "2.0".into(),
            id: None,
            method: method.into(),
            params,
        }
    }

    pub fn to_json(&self) -> Value {
        // Serialising a struct of plain JSON values cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A response: exactly one of `result` or `error`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: Value,
    pub outcome: Result<Value, RpcError>,
}

impl Response {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("jsonrpc".into(), "2.0".into());
        m.insert("id".into(), self.id.clone());
        match &self.outcome {
            Ok(r) => m.insert("result".into(), r.clone()),
            Err(e) => m.insert(
                "error".into(),
                serde_json::to_value(e).unwrap_or(Value::Null),
            ),
        };
        Value::Object(m)
    }
}

/// Anything a peer (plugin or RPC client) may send, classified as lightningd does: a message with
/// an `id` and a `method` is a request, with an `id` and no `method` a response, without `id` a
/// notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request(Request),
    Response(Response),
    Notification(Request),
}

impl Message {
    /// Classifies one JSON value. Errors say what lightningd would complain about.
    pub fn from_value(v: Value) -> Result<Message, String> {
        let Value::Object(obj) = &v else {
            return Err("JSON-RPC message is not a valid JSON object type".into());
        };
        if !obj.contains_key("jsonrpc") {
            return Err("JSON-RPC message does not contain \"jsonrpc\" field".into());
        }
        match (obj.get("id"), obj.get("method")) {
            (Some(_), Some(_)) | (None, Some(_)) => {
                let req: Request = serde_json::from_value(v.clone())
                    .map_err(|e| format!("Malformed JSON-RPC request: {e}"))?;
                if req.id.is_some() {
                    Ok(Message::Request(req))
                } else {
                    Ok(Message::Notification(req))
                }
            }
            (Some(id), None) => {
                let outcome = match (obj.get("result"), obj.get("error")) {
                    (Some(r), None) => Ok(r.clone()),
                    (None, Some(e)) => Err(RpcError::from_value(e)),
                    _ => {
                        return Err(format!(
                            "JSON-RPC response must have exactly one of \"result\" and \"error\": {v}"
                        ));
                    }
                };
                Ok(Message::Response(Response {
                    id: id.clone(),
                    outcome,
                }))
            }
            (None, None) => Err(format!(
                "Malformed JSON-RPC notification missing \"method\" or \"params\": {v}"
            )),
        }
    }
}

/// Serialises a message the way lightningd writes it: compact JSON followed by `"\n\n"`.
pub fn frame(v: &Value) -> Vec<u8> {
    let mut out = v.to_string().into_bytes();
    out.extend_from_slice(b"\n\n");
    out
}

/// The id as lightningd keys pending requests: the full JSON token text.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// One item taken out of a byte stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Json(Value),
    /// Bytes that are not a JSON object (lossy UTF-8), e.g. a stray `println!`.
    Garbage(String),
}

/// Incremental splitter of a stream into JSON values.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

/// Stray output longer than this without a newline is reported in pieces.
const MAX_GARBAGE_WITHOUT_NEWLINE: usize = 64 * 1024;

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes still buffered (an incomplete message).
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the next complete item, if any.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let start = self.buf.iter().position(|b| !b.is_ascii_whitespace());
        let Some(start) = start else {
            self.buf.clear();
            return None;
        };
        if start > 0 {
            self.buf.drain(..start);
        }
        if self.buf[0] != b'{' {
            return self.take_garbage(false);
        }
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                let used = it.byte_offset();
                self.buf.drain(..used);
                Some(Frame::Json(v))
            }
            Some(Err(e)) if e.is_eof() => None,
            Some(Err(_)) => self.take_garbage(true),
            None => None,
        }
    }

    /// Called at end of stream: whatever is left is reported as garbage.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            self.buf.clear();
            return None;
        }
        let text = String::from_utf8_lossy(&self.buf).trim().to_string();
        self.buf.clear();
        Some(Frame::Garbage(text))
    }

    fn take_garbage(&mut self, broken_json: bool) -> Option<Frame> {
        // A broken JSON object is reported up to the next blank line (the message separator),
        // anything else up to the end of its line.
        let end = if broken_json {
            find(&self.buf, b"\n\n").map(|i| i + 2)
        } else {
            self.buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
        };
        let end = match end {
            Some(e) => e,
            None if self.buf.len() > MAX_GARBAGE_WITHOUT_NEWLINE => self.buf.len(),
            None => return None,
        };
        let taken: Vec<u8> = self.buf.drain(..end).collect();
        Some(Frame::Garbage(
            String::from_utf8_lossy(&taken).trim().to_string(),
        ))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parameters given by name (object) or by position (array), resolved against a signature the
/// way lightningd's `param()` does.
pub struct Params {
    values: Vec<Option<Value>>,
    names: Vec<&'static str>,
}

impl Params {
    /// `names` lists the parameters in positional order.
    pub fn parse(params: &Value, names: &[&'static str]) -> Result<Params, RpcError> {
        let mut values = vec![None; names.len()];
        match params {
            Value::Null => {}
            Value::Array(a) => {
                if a.len() > names.len() {
                    return Err(RpcError::invalid_params(format!(
                        "too many parameters: got {}, expected {}",
                        a.len(),
                        names.len()
                    )));
                }
                for (slot, v) in values.iter_mut().zip(a) {
                    if !v.is_null() {
                        *slot = Some(v.clone());
                    }
                }
            }
            Value::Object(o) => {
                for (k, v) in o {
                    let Some(i) = names.iter().position(|n| n == k) else {
                        return Err(RpcError::invalid_params(format!(
                            "unknown parameter: {k}, this may be caused by a failure to autodetect key=value-style parameters. Please try using the -k flag and explicit key=value pairs of parameters."
                        )));
                    };
                    if !v.is_null() {
                        values[i] = Some(v.clone());
                    }
                }
            }
            other => {
                return Err(RpcError::invalid_params(format!(
                    "Expected array or object for params: {other}"
                )));
            }
        }
        Ok(Params {
            values,
            names: names.to_vec(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        let i = self.names.iter().position(|n| *n == name)?;
        self.values[i].as_ref()
    }

    pub fn required(&self, name: &str) -> Result<&Value, RpcError> {
        self.get(name)
            .ok_or_else(|| RpcError::invalid_params(format!("missing required parameter: {name}")))
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, RpcError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(RpcError::bad_param(name, v, "should be a string")),
        }
    }

    pub fn req_str(&self, name: &str) -> Result<&str, RpcError> {
        let v = self.required(name)?;
        v.as_str()
            .ok_or_else(|| RpcError::bad_param(name, v, "should be a string"))
    }

    /// An unsigned integer, given as a JSON number or a decimal string (lightningd accepts both).
    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, RpcError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .map(Some)
            .ok_or_else(|| RpcError::bad_param(name, v, "should be an unsigned 64 bit integer")),
        }
    }

    /// A millisatoshi amount: a number, or a string with an optional `msat`/`sat` suffix.
    pub fn opt_msat(&self, name: &str) -> Result<Option<u64>, RpcError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let parsed = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => {
                if let Some(x) = s.strip_suffix("msat") {
                    x.parse().ok()
                } else if let Some(x) = s.strip_suffix("sat") {
                    x.parse::<u64>().ok().and_then(|s| s.checked_mul(1000))
                } else {
                    s.parse().ok()
                }
            }
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| RpcError::bad_param(name, v, "should be a millisatoshi amount"))
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, RpcError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(RpcError::bad_param(name, v, "should be 'true' or 'false'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decoder_splits_and_reports_garbage() {
        let mut d = FrameDecoder::new();
        d.push(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\nhello world\n{\"a\":");
        assert_eq!(
            d.next_frame(),
            Some(Frame::Json(json!({"jsonrpc":"2.0","id":1,"result":{}})))
        );
        assert_eq!(d.next_frame(), Some(Frame::Garbage("hello world".into())));
        assert_eq!(d.next_frame(), None);
        d.push(b"1}\n\n");
        assert_eq!(d.next_frame(), Some(Frame::Json(json!({"a":1}))));
        assert_eq!(d.next_frame(), None);
        d.push(b"trailing");
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.finish(), Some(Frame::Garbage("trailing".into())));
    }

    #[test]
    fn decoder_reports_broken_json_up_to_separator() {
        let mut d = FrameDecoder::new();
        d.push(b"{not json}\n\n{\"b\":2}");
        assert_eq!(d.next_frame(), Some(Frame::Garbage("{not json}".into())));
        assert_eq!(d.next_frame(), Some(Frame::Json(json!({"b":2}))));
    }

    #[test]
    fn classify_messages() {
        let r =
            Message::from_value(json!({"jsonrpc":"2.0","id":"x","error":{"code":5,"message":"m"}}));
        assert_eq!(
            r,
            Ok(Message::Response(Response {
                id: json!("x"),
                outcome: Err(RpcError::new(5, "m"))
            }))
        );
        assert!(Message::from_value(json!({"id":1,"result":1})).is_err());
        assert!(matches!(
            Message::from_value(json!({"jsonrpc":"2.0","method":"log","params":{}})),
            Ok(Message::Notification(_))
        ));
    }

    #[test]
    fn params_by_name_and_position() {
        let names = ["a", "b"];
        let p = Params::parse(&json!([1, "x"]), &names).unwrap();
        assert_eq!(p.opt_u64("a").unwrap(), Some(1));
        assert_eq!(p.opt_str("b").unwrap(), Some("x"));
        let p = Params::parse(&json!({"b": "y"}), &names).unwrap();
        assert_eq!(p.get("a"), None);
        assert!(Params::parse(&json!({"c": 1}), &names).is_err());
        assert!(Params::parse(&json!([1, 2, 3]), &names).is_err());
    }
}
