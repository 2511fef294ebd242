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

impl Node {
    pub fn new(rpc_path: PathBuf) -> Node {
        Node { rpc_path }
    }

    /// Calls `method` and parses its result as `R`.
    pub async fn call<R: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<R, NodeError> {
        let raw = self.call_value(method, params).await?;
        serde_json::from_value(raw).map_err(|e| NodeError::Unexpected {
            method: method.to_string(),
            reason: e.to_string(),
        })
    }

    /// One JSON-RPC request on its own connection; the answer is read until it parses.
    pub async fn call_value(&self, method: &str, params: Value) -> Result<Value, NodeError> {
        let io = |reason: String| NodeError::Io {
            method: method.to_string(),
            reason,
        };
        let id = format!(
            "cln-magma:{method}#{}",
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
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
        let mut buf = Vec::with_capacity(4096);
        let response = loop {
            let mut chunk = [0u8; 64 * 1024];
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| io(format!("reading the answer: {e}")))?;
            if n == 0 {
                return Err(io(
                    "lightningd closed the connection before answering".into()
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_RESPONSE_BYTES {
                return Err(io(format!("answer larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            let mut values = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            match values.next() {
                Some(Ok(v)) => break v,
                Some(Err(e)) if e.is_eof() => continue,
                Some(Err(e)) => return Err(io(format!("unreadable answer: {e}"))),
                None => continue,
            }
        };
        if let Some(err) = response.get("error") {
            return Err(NodeError::Refused {
                method: method.to_string(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_string(),
            });
        }
        response
            .get("result")
            .cloned()
            .ok_or_else(|| NodeError::Unexpected {
                method: method.to_string(),
                reason: "neither result nor error".into(),
            })
    }

    pub async fn getinfo(&self) -> Result<GetinfoAddresses, NodeError> {
        self.call("getinfo", json!({})).await
    }

    pub async fn peer_channels(&self) -> Result<Vec<PeerChannel>, NodeError> {
        let list: ListPeerChannels = self.call("listpeerchannels", json!({})).await?;
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
