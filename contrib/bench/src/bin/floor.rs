//! The floor: the least a Rust plugin with this stack can cost. A tokio runtime configured as
//! cln-magma's (multi-thread, two workers, 8 MiB stacks, all drivers), a rustls client
//! configuration with the ring provider and the bundled web PKI roots, built on `init` as
//! cln-magma builds its Magma client there. It reads stdin like a plugin, answers `getmanifest`
//! and `init`, then idles until stdin closes. No cln-plugin, no HTTP client, no application.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(8 * 1024 * 1024)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
    std::process::exit(0);
}

async fn run() {
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut buf: Vec<u8> = Vec::new();
    // Kept for the life of the process, as a plugin keeps its HTTP client.
    let mut tls: Option<rustls::ClientConfig> = None;
    loop {
        let mut chunk = [0u8; 4096];
        let n = match stdin.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            let msg = match stream.next() {
                Some(Ok(v)) => v,
                _ => break,
            };
            let used = stream.byte_offset();
            buf.drain(..used);
            let Some(id) = msg.get("id").cloned() else {
                continue; // a notification
            };
            let result = match msg["method"].as_str() {
                Some("getmanifest") => json!({
                    "options": [], "rpcmethods": [], "subscriptions": [], "hooks": [],
                    "notifications": [], "featurebits": {}, "dynamic": true,
                    "nonnumericids": true
                }),
                Some("init") => {
                    tls = Some(tls_config());
                    json!({})
                }
                _ => json!({}),
            };
            let mut out =
                serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
                    .expect("JSON");
            out.extend_from_slice(b"\n\n");
            if stdout.write_all(&out).await.is_err() || stdout.flush().await.is_err() {
                return;
            }
        }
    }
    drop(tls);
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
