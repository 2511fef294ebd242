//! The `magma-sim` binary: URL first on stdout, serves requests, rejects bad flags.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn prints_its_url_first_and_serves() {
    let child = Command::new(env!("CARGO_BIN_EXE_magma-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "amboss_k",
            "--seller",
            "no-open",
            "--speed",
            "10",
            "--step-ms",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut running = Running(child);
    let stdout = running.0.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("first line");
    let url = first.trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/graphql"),
        "{url}"
    );

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let body: Value = http
        .post(&url)
        .json(&json!({ "query": "{ market { liquidity { liquidity_per_usd { sats usd } } } }" }))
        .send()
        .await
        .expect("response")
        .json()
        .await
        .expect("json");
    assert_eq!(
        body["data"]["market"]["liquidity"]["liquidity_per_usd"]["sats"],
        "543260"
    );
    let user: Value = http
        .post(&url)
        .bearer_auth("amboss_k")
        .json(&json!({ "query": "{ user { id } }" }))
        .send()
        .await
        .expect("response")
        .json()
        .await
        .expect("json");
    assert!(user["data"]["user"]["id"].is_string(), "{user}");

    let info_url = url.replace("/graphql", "/admin/info");
    let info: Value = http
        .get(&info_url)
        .send()
        .await
        .expect("response")
        .json()
        .await
        .expect("json");
    assert_eq!(info["default_seller"], "no-open");
}

#[test]
fn bad_flags_fail_clearly() {
    for args in [
        vec!["--seller", "sometimes"],
        vec!["--network", "moon"],
        vec!["--listen", "nowhere"],
        vec!["--speed", "-1"],
        vec!["--price-usd", "0"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_magma-sim"))
            .args(&args)
            .output()
            .expect("binary runs");
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?}: no error message");
    }
}
