//! API economy: Magma requests the plugin sends, counted by operation in the simulator's
//! request log, in compressed time. The plugin runs with its test cadence
//! (`CLN_MAGMA_TEST_POLL_MS` = P ms standing for its real 10 s, 4.5 P for the 45 s on-chain
//! period), and the simulator's clock (seller, blocks every 600 virtual seconds) runs
//! 10 s / P faster than real time, so one virtual hour lasts 3.6 s × P / 10 ms of real time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lightningd_emulator::{
    ChannelSpec, ChannelState, Emulator, EmulatorConfig, NodeHandle, magma, peer_id,
};
use magma_sim::{Operation, RequestRecord, SellerScript, Sim, SimConfig, SimServer, Timings};
use serde_json::{Value, json};

use crate::footprint::{API_KEY, HUB_MSAT};
use crate::report::Figure;

/// Virtual seconds between blocks (Bitcoin's).
const BLOCK_SECS: u64 = 600;
/// Confirmations the seller waits for: with 600-s blocks, the open takes about an hour.
const CONFIRMATIONS: u32 = 6;

struct World {
    sim: Sim,
    _server: SimServer,
    emu: Emulator,
    _follow: tokio::task::JoinHandle<()>,
}

async fn world(plugin: &Path, poll_ms: u64, keyed: bool) -> anyhow::Result<World> {
    let sim = Sim::new(SimConfig {
        api_keys: if keyed {
            vec![API_KEY.to_string()]
        } else {
            vec![]
        },
        default_seller: SellerScript::Happy,
        // Blocks come from the clock driver below, mined on the node (which mines the
        // simulator too), so the node sees the funding transactions confirm.
        block_interval_secs: 0,
        timings: Timings {
            confirmations_required: CONFIRMATIONS,
            ..Timings::default()
        },
        ..SimConfig::default()
    });
    let server = sim.serve(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let emu = Emulator::start(
        EmulatorConfig::new(plugin)
            .option("magma-api-url", server.graphql_url.as_str())
            .env("AMBOSS_API_KEY", if keyed { API_KEY } else { "" })
            .env("CLN_MAGMA_TEST_POLL_MS", &poll_ms.to_string()),
    )
    .await?;
    if let Some(why) = emu.disabled() {
        bail!("the plugin disabled itself: {why}");
    }
    emu.wait_for_log("started", Duration::from_secs(10)).await?;
    emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), HUB_MSAT).state(ChannelState::Normal),
    );
    let follow = magma::attach(emu.node(), &sim);
    Ok(World {
        sim,
        _server: server,
        emu,
        _follow: follow,
    })
}

impl World {
    /// `n` orders through `magma-buy` (`force`: the in-flight and budget limits are not what is
    /// measured), each paid by the node.
    async fn buy(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let placed = self
                .emu
                .call("magma-buy", json!({"usd_cents": 1000, "force": true}))
                .await
                .with_context(|| format!("magma-buy #{}", i + 1))?;
            if placed["state"] != "PAYING" {
                bail!("order #{} is {} instead of PAYING", i + 1, placed["state"]);
            }
            ids.push(placed["id"].as_str().context("no order id")?.to_string());
        }
        Ok(ids)
    }

    async fn orders(&self) -> anyhow::Result<Vec<Value>> {
        let r = self.emu.call("magma-orders", json!({})).await?;
        Ok(r["orders"].as_array().cloned().unwrap_or_default())
    }

    async fn shutdown(mut self) -> anyhow::Result<()> {
        self.emu.shutdown().await?;
        Ok(())
    }
}

/// Turns the simulator's clock `scale` times faster than real time and mines a block on the
/// node at every 600 virtual seconds.
fn drive_clock(sim: Sim, node: NodeHandle, scale: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut done_ms: u64 = 0;
        let mut ticker = tokio::time::interval(Duration::from_millis(2));
        loop {
            ticker.tick().await;
            let target = start.elapsed().as_millis() as u64 * scale;
            while done_ms < target {
                let next_block = (done_ms / (BLOCK_SECS * 1000) + 1) * BLOCK_SECS * 1000;
                let to = target.min(next_block);
                sim.advance(Duration::from_millis(to - done_ms));
                done_ms = to;
                if done_ms == next_block {
                    node.mine_blocks(1);
                }
            }
        }
    })
}

fn count(log: &[RequestRecord]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in log {
        let op = match r.operation {
            Operation::Price => "price",
            Operation::Buy => "buy",
            Operation::GetOrder => "get_order",
            Operation::TransactionList => "transaction_list",
            Operation::Purchases => "purchases",
            Operation::Other => "other",
        };
        *m.entry(op).or_default() += 1;
    }
    m
}

fn breakdown(m: &BTreeMap<&str, usize>, per: f64) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {:.1}", *v as f64 / per))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(plugin: &Path, poll_ms: u64, quick: bool) -> anyhow::Result<Vec<Figure>> {
    if poll_ms == 0 || 10_000 % poll_ms != 0 {
        bail!("--poll-ms must divide 10,000 (the real 10 s period)");
    }
    let scale = 10_000 / poll_ms;
    let hour = Duration::from_millis(3_600_000 / scale);
    let mut figures = vec![Figure::info(
        "economy.time_scale",
        format!(
            "poll {poll_ms} ms = 10 s; 1 h = {:.1} s",
            hour.as_secs_f64()
        ),
    )];

    // One order, opened over about an hour of virtual time.
    let single = open(plugin, poll_ms, scale, 1).await?;
    // The guide's cadence for this order's history, plus its price and buy.
    let allowed = single.bound + 2;
    figures.push(Figure::new(
        "economy.requests_per_order.1h_open",
        format!("{}", single.total),
        &format!("<= {allowed} (guide)"),
        Some(single.total <= allowed),
    ));
    figures.push(Figure::info(
        "economy.requests_per_order.1h_open.ops",
        format!(
            "{} over {} min",
            breakdown(&single.ops, 1.0),
            single.minutes
        ),
    ));
    if !quick {
        let many = open(plugin, poll_ms, scale, 20).await?;
        let per = many.total as f64 / 20.0;
        figures.push(Figure::new(
            "economy.requests_per_order.20_open_together",
            format!("{per:.1}"),
            &format!("<= {} (1 order)", single.total),
            Some(per <= single.total as f64),
        ));
        figures.push(Figure::info(
            "economy.requests_per_order.20_open.ops",
            format!("{} over {} min", breakdown(&many.ops, 20.0), many.minutes),
        ));
    }

    // Live orders whose status does not change during the hour (the seller's clock is held
    // still): the steady cost of following them.
    let one = quiet_hour(plugin, poll_ms, hour, 1, true).await?;
    let twenty = quiet_hour(plugin, poll_ms, hour, 20, true).await?;
    let anon = quiet_hour(plugin, poll_ms, hour, 20, false).await?;
    figures.push(Figure::info(
        "economy.requests_per_hour.1_live_order",
        format!("{:.0} ({})", one.0, one.1),
    ));
    figures.push(Figure::new(
        "economy.requests_per_hour.20_live_orders",
        format!("{:.0} ({})", twenty.0, twenty.1),
        &format!("flat: <= 1.5x {:.0}", one.0),
        Some(twenty.0 <= one.0 * 1.5),
    ));
    figures.push(Figure::info(
        "economy.requests_per_hour.20_live.no_api_key",
        format!("{:.0} ({})", anon.0, anon.1),
    ));
    Ok(figures)
}

struct Open {
    /// Magma requests from the first price to the last order's DONE.
    total: usize,
    /// What the guide's cadence allows for the single order's history (`get_order` reads).
    bound: usize,
    ops: BTreeMap<&'static str, usize>,
    minutes: u64,
}

async fn open(plugin: &Path, poll_ms: u64, scale: u64, n: usize) -> anyhow::Result<Open> {
    let w = world(plugin, poll_ms, true).await?;
    let ids = w.buy(n).await?;
    let clock = drive_clock(w.sim.clone(), w.emu.node().clone(), scale);
    // Three virtual hours at most.
    let deadline =
        Instant::now() + Duration::from_millis(3 * 3_600_000 / scale) + Duration::from_secs(5);
    loop {
        let orders = w.orders().await?;
        let done = orders.iter().filter(|o| o["state"] == "DONE").count();
        if let Some(o) = orders.iter().find(|o| {
            o["state"]
                .as_str()
                .is_some_and(|s| s != "DONE" && is_final(s))
        }) {
            bail!("an order ended {}: {}", o["state"], o["reason"]);
        }
        if done == ids.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("{done} of {n} orders DONE after three virtual hours");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clock.abort();
    let log = w.sim.request_log();
    let ops = count(&log);
    let orders = w.sim.orders();
    let first = orders.first().context("no order in the simulator")?;
    let (bound, minutes) = guide_bound(first);
    w.shutdown().await?;
    Ok(Open {
        total: log.len(),
        bound,
        ops,
        minutes,
    })
}

fn is_final(state: &str) -> bool {
    matches!(state, "ABANDONED" | "REJECTED" | "FAILED" | "REFUNDED")
}

/// The `get_order` reads the guide's cadence allows for this order's history — one per 10 s,
/// one per 45 s while the funding transaction is on chain, plus the read that sees the last
/// status — and the minutes from creation to the channel's validation.
fn guide_bound(o: &magma_sim::OrderSnapshot) -> (usize, u64) {
    let h = &o.history;
    let mut reads = 0u64;
    for pair in h.windows(2) {
        let d = pair[1].at.saturating_sub(pair[0].at);
        let on_chain = matches!(
            pair[0].status.as_str(),
            "SELLER_SENT_TRANSACTION" | "WAITING_FOR_ON_CHAIN_CONFIRMATION"
        );
        let period = if on_chain { 45 } else { 10 };
        reads += d.div_ceil(period);
    }
    let span = h.last().map_or(0, |l| l.at.saturating_sub(o.created_at));
    ((reads + 1) as usize, span / 60)
}

/// Requests per virtual hour with `n` live orders that do not change.
async fn quiet_hour(
    plugin: &Path,
    poll_ms: u64,
    hour: Duration,
    n: usize,
    keyed: bool,
) -> anyhow::Result<(f64, String)> {
    let w = world(plugin, poll_ms, keyed).await?;
    w.buy(n).await?;
    // Until the plugin has read every order once, then two periods for those reads to pass.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let orders = w.orders().await?;
        if orders.len() == n && orders.iter().all(|o| o["status"].is_string()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the plugin did not read all {n} orders from Magma");
        }
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
    }
    tokio::time::sleep(Duration::from_millis(2 * poll_ms)).await;
    let before = w.sim.request_log().len();
    let t = Instant::now();
    tokio::time::sleep(hour).await;
    let log = w.sim.request_log();
    let hours = t.elapsed().as_secs_f64() / hour.as_secs_f64();
    let window: Vec<RequestRecord> = log[before..].to_vec();
    let ops = count(&window);
    w.shutdown().await?;
    Ok((window.len() as f64 / hours, breakdown(&ops, hours)))
}
