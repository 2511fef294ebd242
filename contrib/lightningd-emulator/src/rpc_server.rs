//! lightningd's JSON-RPC unix socket: JSON objects in, responses followed by `"\n\n"` out.
//! Requests on one connection are handled concurrently (a blocking `pay` does not hold up a
//! `listpays`), and a client may use one connection per call.

use crate::commands::{Context, dispatch};
use crate::protocol::{self, Frame, FrameDecoder, Response, RpcError, codes};
use anyhow::Context as _;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Binds the socket (replacing a stale one) and serves until the task is aborted.
pub fn serve(path: &Path, ctx: Arc<Context>) -> anyhow::Result<JoinHandle<()>> {
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding RPC socket {}", path.display()))?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle_connection(stream, ctx.clone()));
                }
                Err(e) => {
                    log::warn!("RPC accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }))
}

async fn handle_connection(stream: UnixStream, ctx: Arc<Context>) {
    let from_plugin = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|pid| u32::try_from(pid).ok())
        .is_some_and(|pid| ctx.slot.is_plugin_pid(pid));
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        dec.push(&buf[..n]);
        while let Some(frame) = dec.next_frame() {
            match frame {
                Frame::Garbage(g) => {
                    let resp = Response {
                        id: Value::Null,
                        outcome: Err(RpcError::new(
                            codes::INVALID_REQUEST,
                            format!("Invalid request: {g}"),
                        )),
                    };
                    let _ = tx.send(protocol::frame(&resp.to_json()));
                    break 'conn;
                }
                Frame::Json(v) => {
                    let tx = tx.clone();
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        if let Some(resp) = handle_request(&ctx, v, from_plugin).await {
                            let _ = tx.send(protocol::frame(&resp.to_json()));
                        }
                    });
                }
            }
        }
    }
    drop(tx);
    // Let in-flight requests finish writing; the writer ends when all senders are gone.
    let _ = writer.await;
}

async fn handle_request(ctx: &Context, v: Value, from_plugin: bool) -> Option<Response> {
    let id = v.get("id").cloned();
    let method = v.get("method").and_then(Value::as_str);
    let (Some(id), Some(method)) = (id.clone(), method) else {
        return Some(Response {
            id: id.unwrap_or(Value::Null),
            outcome: Err(RpcError::new(
                codes::INVALID_REQUEST,
                "Expected 'id' and 'method' in request",
            )),
        });
    };
    if !(id.is_string() || id.is_number()) {
        return Some(Response {
            id,
            outcome: Err(RpcError::new(
                codes::INVALID_REQUEST,
                "Expected string/primitive for id",
            )),
        });
    }
    let params = v.get("params").cloned().unwrap_or(json!({}));
    let outcome = dispatch(ctx, method, params, &id, from_plugin).await;
    Some(Response { id, outcome })
}

/// Calls a method over the socket the way lightning-cli does (one connection per call).
pub async fn call(path: &Path, id: Value, method: &str, params: Value) -> Result<Value, RpcError> {
    let io = |e: std::io::Error| RpcError::new(codes::LIGHTNINGD, format!("RPC socket: {e}"));
    let mut stream = UnixStream::connect(path).await.map_err(io)?;
    let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    stream.write_all(&protocol::frame(&req)).await.map_err(io)?;
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(RpcError::new(
                codes::LIGHTNINGD,
                "RPC socket closed before a response arrived",
            ));
        }
        dec.push(&buf[..n]);
        if let Some(frame) = dec.next_frame() {
            let Frame::Json(v) = frame else {
                return Err(RpcError::new(codes::LIGHTNINGD, "malformed RPC response"));
            };
            if let Some(e) = v.get("error") {
                return Err(RpcError::from_value(e));
            }
            return v.get("result").cloned().ok_or_else(|| {
                RpcError::new(codes::LIGHTNINGD, format!("response without result: {v}"))
            });
        }
    }
}
