//! Everything the plugin asks lightningd, through its JSON-RPC socket.
//!
//! A fresh connection per call: calls come from concurrent tasks, and `pay` may hold its
//! connection for hours. The client is ours rather than cln-rpc's because cln-rpc traces every
//! request's params, and some of ours (datastore writes) carry a session key.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::inbound::{ListPeerChannels, PeerChannel};
use crate::uri::GetinfoAddresses;

/// No answer of lightningd we read comes near this; `listpeerchannels` of a 10,000-channel
/// node is about 40 MB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// A failed call. `code` is lightningd's error code when it answered with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("lightningd refused {method}: {message} (code {code})")]
    Refused {
        method: String,
        code: i64,
        message: String,
    },
    #[error("talking to lightningd ({method}) failed: {reason}")]
    Io { method: String, reason: String },
    #[error("lightningd's answer to {method} is not what we expect: {reason}")]
    Unexpected { method: String, reason: String },
}

impl NodeError {
    /// lightningd's error code, when it refused the call.
    pub fn code(&self) -> Option<i64> {
        match self {
            NodeError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    rpc_path: PathBuf,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn refused(method: &str, err: &Value) -> NodeError {
    NodeError::Refused {
        method: method.to_string(),
        code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)")
            .to_string(),
    }
}

impl Node {
    pub fn new(rpc_path: PathBuf) -> Node {
        Node { rpc_path }
    }

    /// Calls `method` and parses its result as `R`, straight from the answer's bytes.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<R, NodeError> {
        self.call_filtered(method, params, None).await
    }

    /// Like [`Node::call`], asking lightningd to return only the fields in `filter`
    /// (lightningd-rpc(7), field filtering; a server that does not filter sends everything).
    pub async fn call_filtered<R: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
        filter: Option<Value>,
    ) -> Result<R, NodeError> {
        #[derive(serde::Deserialize)]
        struct Answer<R> {
            result: Option<R>,
            error: Option<Value>,
        }
        let bytes = self.round_trip(method, params, filter).await?;
        let unexpected = |reason: String| NodeError::Unexpected {
            method: method.to_string(),
            reason,
        };
        // A refusal may not fit `R`: look at it as a plain value first when it is one.
        match serde_json::from_slice::<Answer<R>>(&bytes) {
            Ok(Answer { error: Some(e), .. }) => Err(refused(method, &e)),
            Ok(Answer {
                result: Some(r), ..
            }) => Ok(r),
            Ok(_) => Err(unexpected("neither result nor error".into())),
            Err(e) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) if v.get("error").is_some() => Err(refused(method, &v["error"])),
                _ => Err(unexpected(e.to_string())),
            },
        }
    }

    /// One JSON-RPC request on its own connection; the `result` as a JSON value.
    pub async fn call_value(&self, method: &str, params: Value) -> Result<Value, NodeError> {
        let bytes = self.round_trip(method, params, None).await?;
        let mut response: Value = serde_json::from_slice(&bytes).map_err(|e| NodeError::Io {
            method: method.to_string(),
            reason: format!("unreadable answer: {e}"),
        })?;
        if let Some(err) = response.get("error") {
            return Err(refused(method, err));
        }
        response
            .as_object_mut()
            .and_then(|o| o.remove("result"))
            .ok_or_else(|| NodeError::Unexpected {
                method: method.to_string(),
                reason: "neither result nor error".into(),
            })
    }

    /// Sends the request and returns the bytes of one answer. lightningd ends each answer with
    /// a blank line (lightningd-rpc(7)), so the bytes are parsed once, when it has arrived —
    /// not after every read, which costs the square of the answer's size.
    async fn round_trip(
        &self,
        method: &str,
        params: Value,
        filter: Option<Value>,
    ) -> Result<Vec<u8>, NodeError> {
        let io = |reason: String| NodeError::Io {
            method: method.to_string(),
            reason,
        };
        let id = format!(
            "cln-magma:{method}#{}",
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if let Some(f) = filter {
            request["filter"] = f;
        }
        let mut stream = UnixStream::connect(&self.rpc_path).await.map_err(|e| {
            io(format!(
                "cannot connect to {}: {e}",
                self.rpc_path.display()
            ))
        })?;
        let mut bytes = serde_json::to_vec(&request).map_err(|e| io(e.to_string()))?;
        bytes.extend_from_slice(b"\n\n");
        stream
            .write_all(&bytes)
            .await
            .map_err(|e| io(format!("sending the request: {e}")))?;
        // Small to start: a `pay` may sit here for hours waiting on a held HTLC.
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut scanned: usize = 0;
        loop {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(buf.len().max(4096));
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| io(format!("reading the answer: {e}")))?;
            if buf.len() > MAX_RESPONSE_BYTES {
                return Err(io(format!("answer larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            let from = scanned.saturating_sub(1);
            if let Some(pos) = buf[from..].windows(2).position(|w| w == b"\n\n") {
                buf.truncate(from + pos);
                return Ok(buf);
            }
            scanned = buf.len();
            if n == 0 {
                // No terminator: whatever came is the answer, if it is whole.
                if serde_json::from_slice::<serde::de::IgnoredAny>(&buf).is_err() {
                    return Err(io(
                        "lightningd closed the connection before answering".into()
                    ));
                }
                return Ok(buf);
            }
        }
    }

    pub async fn getinfo(&self) -> Result<GetinfoAddresses, NodeError> {
        self.call("getinfo", json!({})).await
    }

    pub async fn peer_channels(&self) -> Result<Vec<PeerChannel>, NodeError> {
        // Only the fields the plugin reads: a large node's full answer is tens of megabytes.
        let fields: serde_json::Map<String, Value> = crate::inbound::PEER_CHANNEL_FIELDS
            .iter()
            .map(|f| (f.to_string(), Value::Bool(true)))
            .collect();
        let filter = json!({"channels": [fields]});
        let list: ListPeerChannels = self
            .call_filtered("listpeerchannels", json!({}), Some(filter))
            .await?;
        Ok(list.channels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// A one-shot fake lightningd that answers with `reply`, in pieces, `\n\n`-terminated.
    async fn serve_once(reply: &'static [u8]) -> (tempfile::TempDir, Node) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightning-rpc");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let _ = s.read(&mut req).await;
            for piece in reply.chunks(7) {
                s.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        (dir, Node::new(path))
    }

    #[tokio::test]
    async fn results_errors_and_broken_answers() {
        let (_d, node) =
            serve_once(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"a\":[1,2,3]}}\n\n").await;
        let v = node.call_value("x", json!({})).await.unwrap();
        assert_eq!(v["a"][2], 3);

        let (_d, node) = serve_once(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1202,\"message\":\"Key already exists\"}}\n\n").await;
        let e = node.call_value("datastore", json!({})).await.unwrap_err();
        assert_eq!(e.code(), Some(1202));
        assert!(e.to_string().contains("Key already exists"));

        let (_d, node) = serve_once(b"{\"jsonrpc\":\"2.0\",\"res").await;
        let e = node.call_value("x", json!({})).await.unwrap_err();
        assert!(e.to_string().contains("closed the connection"), "{e}");

        let (_d, node) = serve_once(b"<html>\n\n").await;
        assert!(node.call_value("x", json!({})).await.is_err());

        let (_d, node) = serve_once(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"channels\":[{\"state\":7}]}}\n\n",
        )
        .await;
        let e = node.peer_channels().await.unwrap_err();
        assert!(matches!(e, NodeError::Unexpected { .. }), "{e}");
    }
}
