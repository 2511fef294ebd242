//! Inbound computation plus policy evaluation from a `listpeerchannels` result of many
//! channels, JSON parsing included — the work the plugin does on every automatic check.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cln_magma::autobuy::pending_orders_sat;
use cln_magma::config::Config;
use cln_magma::inbound::{InboundSnapshot, ListPeerChannels};
use cln_magma::magma::Price;
use cln_magma::node::Node;
use cln_magma::policy::{self, Decision, Inbound, Inputs, Ledger};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The fields of a channel the plugin reads: what its request filter keeps.
const READ_FIELDS: &[&str] = cln_magma::inbound::PEER_CHANNEL_FIELDS;

/// A `listpeerchannels` result of `n` channels, each a copy of one of the two channels of the
/// captured fixture (`listpeerchannels.normal.json`: one we opened, one the peer opened) with
/// its own ids, balances and a mix of states: 1 in 50 peers offline, 1 in 100 channels still
/// opening. Written compact, as lightningd writes to its socket.
pub fn listpeerchannels(fixtures: &Path, n: usize) -> anyhow::Result<Value> {
    let path = fixtures.join("listpeerchannels.normal.json");
    let raw = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the fixture {}", path.display()))?;
    let fixture: Value = serde_json::from_str(&raw)?;
    let templates = fixture["channels"]
        .as_array()
        .filter(|c| c.len() == 2)
        .context("the fixture should hold two channels")?;
    let mut channels = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = templates[i % 2].clone();
        let hex = |salt: u64| {
            format!(
                "{:016x}{:016x}{:016x}{:016x}",
                salt,
                i,
                i * 7919,
                salt ^ i as u64
            )
        };
        c["peer_id"] = json!(format!("02{}", hex(0x5eed)));
        c["channel_id"] = json!(hex(0xc4a2));
        c["funding_txid"] = json!(hex(0xf00d));
        c["scratch_txid"] = json!(hex(0x5c2a));
        c["short_channel_id"] = json!(format!("{}x{}x{}", 800_000 + i / 1000, i % 1000, i % 2));
        let total: u64 = 1_000_000_000 + (i as u64 % 97) * 50_000_000;
        let to_us = total / 100 * (i as u64 % 100);
        c["total_msat"] = json!(total);
        c["to_us_msat"] = json!(to_us);
        c["spendable_msat"] = json!(to_us.saturating_sub(21_282_000));
        c["receivable_msat"] = json!((total - to_us).saturating_sub(21_282_000));
        c["peer_connected"] = json!(i % 50 != 7);
        if i % 100 == 13 {
            c["state"] = json!("CHANNELD_AWAITING_LOCKIN");
            c["opener"] = json!("remote");
        }
        channels.push(c);
    }
    Ok(json!({ "channels": channels }))
}

/// The same result as lightningd would send it with a `filter` for the fields the plugin reads.
pub fn filtered(full: &Value) -> Value {
    let channels: Vec<Value> = full["channels"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    let mut o = serde_json::Map::new();
                    for f in READ_FIELDS {
                        if let Some(v) = c.get(*f) {
                            o.insert((*f).to_string(), v.clone());
                        }
                    }
                    Value::Object(o)
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "channels": channels })
}

/// What one evaluation computed, to check it did the work.
pub struct Outcome {
    pub channels: usize,
    pub snapshot: InboundSnapshot,
    pub decision: Decision,
}

fn config() -> anyhow::Result<Config> {
    let values: BTreeMap<String, Value> = [
        ("magma-mode", json!("auto")),
        // Above any inbound of the generated node, so the decision goes all the way to a buy.
        ("magma-min-inbound-sat", json!(1_000_000_000_000u64)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Config::from_values(&values).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The pure part after parsing: the inbound snapshot, pending inbound, the decision — what
/// `autobuy::evaluate` does between its RPC calls.
fn decide(list: ListPeerChannels, config: &Config, price: &Price) -> anyhow::Result<Outcome> {
    let snapshot = InboundSnapshot::from_channels(&list.channels);
    let pending = pending_orders_sat(&[], &list.channels);
    let ledger = Ledger::default();
    let decision = policy::decide(&Inputs {
        config,
        inbound: Inbound {
            usable_sat: snapshot.usable_sat,
            pending_sat: snapshot.opening_sat + pending,
        },
        ledger: &ledger,
        price: Ok(price),
        uri: Ok(()),
        now: 1_800_000_000,
    });
    Ok(Outcome {
        channels: list.channels.len(),
        snapshot,
        decision,
    })
}

pub fn price() -> anyhow::Result<Price> {
    Ok(serde_json::from_value(
        json!({"sats": "543260", "usd": "501.09"}),
    )?)
}

/// Times `reps` pure evaluations of `bytes`: the whole (parse + inbound + policy), and the
/// part after parsing alone.
pub fn time_pure(
    bytes: &[u8],
    reps: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>, Outcome)> {
    let config = config()?;
    let price = price()?;
    let mut whole = Vec::with_capacity(reps);
    let mut after_parse = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        let list: ListPeerChannels = serde_json::from_slice(bytes)?;
        let parsed = Instant::now();
        let out = decide(list, &config, &price)?;
        let end = Instant::now();
        whole.push(end - t);
        after_parse.push(end - parsed);
        last = Some(out);
    }
    let out = last.context("no repetition")?;
    if !matches!(out.decision, Decision::Buy { .. }) {
        bail!(
            "the evaluation did not reach a buy decision: {:?}",
            out.decision
        );
    }
    Ok((whole, after_parse, out))
}

/// Times the plugin's own RPC client reading the result from a unix socket, as it reads it
/// from lightningd (`cln_magma::node::Node::peer_channels`), then the same evaluation.
/// The socket server answers every connection with the prepared response at once.
pub async fn time_through_rpc_client(
    result: &[u8],
    reps: usize,
    limit: Duration,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lightning-rpc");
    let listener = tokio::net::UnixListener::bind(&path)?;
    let mut response = Vec::with_capacity(result.len() + 64);
    response
        .extend_from_slice(br#"{"jsonrpc":"2.0","id":"cln-magma:listpeerchannels#1","result":"#);
    response.extend_from_slice(result);
    response.extend_from_slice(b"}\n\n");
    let response = std::sync::Arc::new(response);
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut req = vec![0u8; 4096];
                let _ = s.read(&mut req).await;
                let _ = s.write_all(&response).await;
            });
        }
    });
    let node = Node::new(path);
    let config = config()?;
    let price = price()?;
    let mut times = Vec::new();
    let started = Instant::now();
    let mut channels = 0;
    for _ in 0..reps {
        let t = Instant::now();
        let list = node.peer_channels().await?;
        let out = decide(ListPeerChannels { channels: list }, &config, &price)?;
        times.push(t.elapsed());
        channels = out.channels;
        if started.elapsed() > limit {
            break;
        }
    }
    server.abort();
    Ok((times, channels))
}
