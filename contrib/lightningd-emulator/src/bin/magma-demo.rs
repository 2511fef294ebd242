//! `magma-demo`: the real cln-magma plugin under the lightningd emulator buys inbound liquidity
//! from the Magma simulator, and the story is printed as it happens.
//!
//! The demo only sets the scene and turns the world's clocks: it gives the node a channel with
//! outbound, asks the plugin for a price and to buy, advances the seller's clock and mines
//! blocks. Everything the plugin does — placing the order, checking and paying the invoice,
//! following Magma's statuses, finding the channel — is the plugin's own work, reported from its
//! command answers and its `magma_order` notifications as they arrive.
//!
//! ```text
//! cargo run -p lightningd-emulator --bin magma-demo
//! ```
//!
//! The plugin must be built with the `test-hooks` feature: only then does it accept
//! `CLN_MAGMA_TEST_POLL_MS`, without which it polls Magma every 10 s (45 s on chain). The demo
//! builds that plugin itself, into `target/test-hooks/` (see `test_plugin`), never into the
//! `target/release/cln-magma` a node loads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use lightningd_emulator::{
    ChannelSpec, ChannelState, Emulator, EmulatorConfig, Opener, magma, peer_id, test_plugin,
};
use magma_sim::{HtlcState, KnownStatus, SellerScript, Sim, SimConfig};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Demo: the real cln-magma plugin under the lightningd emulator buys inbound liquidity from the Magma simulator"
)]
struct Args {
    /// The cln-magma plugin binary, built with `--features test-hooks`. Default: the demo builds
    /// it into `target/test-hooks/debug/cln-magma`.
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// What to spend, in US cents (Magma's minimum is 500).
    #[arg(long, default_value_t = 2000)]
    usd_cents: u64,
    /// Fail if the order is not DONE within this many seconds.
    #[arg(long, default_value_t = 50)]
    timeout_secs: u64,
    /// The plugin's Magma polling period in milliseconds (`CLN_MAGMA_TEST_POLL_MS`; on-chain
    /// statuses are polled 4.5 times slower).
    #[arg(long, default_value_t = 200)]
    poll_ms: u64,
    /// Real milliseconds the demo waits between its own steps, so the story can be followed.
    #[arg(long, default_value_t = 1000)]
    pace_ms: u64,
    /// Also print every line the plugin logs.
    #[arg(long)]
    verbose: bool,
}

/// Outbound the node starts with, to pay the seller from.
const OUTBOUND_SAT: u64 = 10_000_000;
/// Virtual seconds the seller's clock moves per step (below the shortest gap between two
/// scripted events, so no status is skipped).
const CLOCK_STEP_SECS: u64 = 5;
/// Virtual seconds the demo waits at most for the seller's next move.
const CLOCK_LIMIT_SECS: u64 = 4 * 3600;

#[tokio::main]
async fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("magma-demo: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The plugin binary: `--plugin`, else the test-hooks build, made now if needed.
fn locate_plugin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let Some(path) = given else {
        return test_plugin::path(test_plugin::Profile::Debug);
    };
    if !path.is_file() {
        bail!(
            "no plugin binary at {}: build it with `{}` (from the repository root), or leave out --plugin",
            path.display(),
            test_plugin::build_command(test_plugin::Profile::Debug)
        );
    }
    Ok(path)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.usd_cents < 500 {
        bail!(
            "--usd-cents must be at least 500 (Magma's minimum order), got {}",
            args.usd_cents
        );
    }
    if args.poll_ms == 0 {
        bail!("--poll-ms must be positive");
    }
    let plugin = locate_plugin(args.plugin.clone())?;
    let story = Story::new(args.verbose);
    println!(
        "cln-magma demo: the real plugin ({}) under the lightningd emulator, buying inbound liquidity from the Magma simulator",
        plugin.display()
    );

    let sim = Sim::try_new(SimConfig {
        default_seller: SellerScript::Happy,
        // Blocks only when the demo mines them.
        block_interval_secs: 0,
        ..SimConfig::default()
    })
    .context("configuring the Magma simulator")?;
    let server = sim
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("starting the Magma simulator")?;
    story.say(
        "demo",
        format!(
            "Magma simulator at {} (a seller that approves and opens; blocks only when mined)",
            server.graphql_url
        ),
    );

    let mut cfg = EmulatorConfig::new(&plugin)
        .option("magma-api-url", server.graphql_url.as_str())
        // Anonymous session: no API key from the environment leaks in.
        .env("AMBOSS_API_KEY", "")
        .env("CLN_MAGMA_TEST_POLL_MS", &args.poll_ms.to_string());
    cfg.shutdown_grace = Duration::from_secs(10);
    let mut emu = Emulator::start(cfg)
        .await
        .context("lightningd (emulated) could not start the plugin")?;

    let outcome = tokio::select! {
        r = tokio::time::timeout(
            Duration::from_secs(args.timeout_secs),
            tell(&emu, &sim, &args, &story),
        ) => match r {
            Ok(r) => r,
            Err(_) => Err(anyhow!("the order did not reach DONE within {} s", args.timeout_secs)),
        },
        () = interrupted() => Err(anyhow!("interrupted")),
    };
    if outcome.is_err() {
        diagnose(&emu).await;
    }

    // Clean up whatever happened: lightningd's shutdown for the plugin, then the simulator.
    let stopped = if emu.plugin_running() {
        match emu.shutdown().await {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(anyhow!(
                "the plugin exited with {status}; stderr: {:?}",
                emu.stderr()
            )),
            Err(e) => Err(e.context("shutting the plugin down")),
        }
    } else {
        Err(anyhow!("the plugin was not running at the end"))
    };
    server.shutdown().await;
    if let (Err(_), Err(e)) = (&outcome, &stopped) {
        eprintln!("magma-demo: also: {e:#}");
    }
    outcome?;
    stopped?;
    let violations = emu.stdout_violations();
    if !violations.is_empty() {
        bail!("the plugin wrote non-JSON-RPC output on stdout: {violations:?}");
    }
    story.say(
        "demo",
        "plugin shut down cleanly (shutdown notification, exit 0)",
    );
    println!(
        "demo complete in {:.1} s",
        story.start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Resolves on Ctrl-C; never if signals cannot be watched.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The story itself; returns once the plugin reports the order DONE.
async fn tell(emu: &Emulator, sim: &Sim, args: &Args, story: &Story) -> anyhow::Result<()> {
    let mut watch = Watch::default();
    if let Some(reason) = emu.disabled() {
        bail!("the plugin disabled itself: {reason}");
    }
    emu.wait_for_log("started", Duration::from_secs(10))
        .await
        .context("the plugin did not log its start")?;
    story.say(
        "demo",
        format!(
            "lightningd emulator: node {} runs cln-magma (Magma polled every {} ms)",
            short(&emu.node().id()),
            args.poll_ms
        ),
    );

    // The scene: outbound to pay from, and the simulator wired in as payee and channel opener.
    emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), OUTBOUND_SAT * 1000).state(ChannelState::Normal),
    );
    let follow = magma::attach(emu.node(), sim);
    story.say(
        "node",
        format!(
            "channel to a hub, {} sat, all on our side (outbound to pay with)",
            sats(OUTBOUND_SAT)
        ),
    );
    let result = buy_and_follow(emu, sim, args, story, &mut watch).await;
    watch.pump(emu, story);
    follow.abort();
    result
}

async fn buy_and_follow(
    emu: &Emulator,
    sim: &Sim,
    args: &Args,
    story: &Story,
    watch: &mut Watch,
) -> anyhow::Result<()> {
    let pace = Duration::from_millis(args.pace_ms);
    let step_wait = Duration::from_millis(args.poll_ms * 25).max(Duration::from_secs(5));

    // 1. The price.
    let est = call(emu, "magma-estimate", json!({"usd_cents": args.usd_cents})).await?;
    story.say(
        "plugin",
        format!(
            "magma-estimate: Magma sells {} sat of inbound per USD; {} buys {} sat for {} sat = {} ppm (cap {} ppm: {})",
            sats(num(&est["sats_per_usd"])?),
            usd(num(&est["usd_cents"])?),
            sats(num(&est["expected_inbound_sat"])?),
            sats(num(&est["expected_cost_sat"])?),
            num(&est["price_ppm"])?,
            num(&est["caps"]["max_fee_ppm"])?,
            if est["allowed"] == json!(true) { "allowed" } else { "refused" },
        ),
    );
    if est["allowed"] != json!(true) {
        bail!(
            "the plugin would not buy at this price: {}",
            est["refusals"]
        );
    }

    // 2. Inbound before.
    let before = call(emu, "magma-status", json!({})).await?;
    let inbound_before = num(&before["inbound"]["usable_sat"])?;
    story.say(
        "plugin",
        format!(
            "magma-status: inbound before {} sat usable; {} sat spendable outbound",
            sats(inbound_before),
            sats(num(&before["inbound"]["spendable_outbound_sat"])?)
        ),
    );
    tokio::time::sleep(pace).await;

    // 3. The purchase.
    story.say(
        "demo",
        format!("lightning-cli magma-buy usd_cents={}", args.usd_cents),
    );
    let placed = call(emu, "magma-buy", json!({"usd_cents": args.usd_cents})).await?;
    // Let the plugin's notifications about the purchase arrive before its answer is told.
    let answered = text(&placed["state"])?.to_string();
    wait(emu, story, watch, step_wait, |latest| {
        latest.state.as_deref() == Some(answered.as_str())
    })
    .await?;
    let id = text(&placed["id"])?.to_string();
    let order_id = text(&placed["magma"]["order_id"])?.to_string();
    story.say(
        "plugin",
        format!(
            "magma-buy: order {id} placed as Magma order {order_id}; state {}, paying from the {}",
            text(&placed["state"])?,
            text(&placed["pay_mode"])?
        ),
    );
    let invoice = &placed["invoice"];
    if !invoice.is_object() {
        bail!(
            "the plugin did not accept the invoice: {}",
            placed["reason"]
        );
    }
    let hash = text(&invoice["payment_hash"])?.to_string();
    story.say(
        "plugin",
        format!(
            "invoice checked: {} sat for {} sat of inbound = {} ppm (quoted {} ppm), hash {}",
            sats(num(&invoice["amount_sat"])?),
            sats(num(&placed["request"]["expected_inbound_sat"])?),
            num(&invoice["price_ppm"])?,
            num(&placed["request"]["quoted_ppm"])?,
            short(&hash)
        ),
    );

    // 4. Paid through the node, held at the seller (the seller settles only once the channel is
    //    valid, so the node's `pay` stays pending until then).
    let held = wait(emu, story, watch, step_wait, |_| {
        sim.htlc_state(&hash) == Some(HtlcState::Held)
    })
    .await?;
    if !held {
        bail!(
            "the seller never saw the HTLC (state {:?})",
            sim.htlc_state(&hash)
        );
    }
    let pays = call(emu, "listpays", json!({"payment_hash": hash})).await?;
    let pay = pays["pays"]
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| anyhow!("the node has no payment for {hash}"))?;
    story.say(
        "node",
        format!(
            "listpays: payment to the seller {} ({} sat in flight)",
            text(&pay["status"])?,
            sats(num(&pay["amount_msat"])? / 1000)
        ),
    );
    story.say(
        "seller",
        "HTLC held on the hold invoice (settled only when the channel is valid)",
    );

    // 5. Follow the order: turn the seller's clock or mine, and wait each time until the plugin
    //    reports what the seller now shows.
    let mut funding_told = false;
    let mut channel_told = false;
    loop {
        let o = sim
            .order(&order_id)
            .ok_or_else(|| anyhow!("the simulator lost order {order_id}"))?;
        let status = o.status.as_str().to_string();
        let payment = o.payment_status.as_str().to_string();
        let reported = wait(emu, story, watch, step_wait, |latest| {
            latest.status.as_deref() == Some(status.as_str())
                && latest.payment_status.as_deref() == Some(payment.as_str())
        })
        .await?;
        if !reported {
            bail!(
                "the plugin did not report Magma status {status} / {payment} within {} s; is it built with `--features test-hooks`? (without it, it polls every 10 s)",
                step_wait.as_secs()
            );
        }
        if !funding_told && o.funding_txid.is_some() {
            let rec = call(emu, "magma-orders", json!({"id": id})).await?;
            if let Some(txid) = rec["orders"][0]["funding_txid"].as_str() {
                story.say("plugin", format!("magma-orders: funding tx {txid}"));
                funding_told = true;
            }
        }
        if !channel_told && let Some(c) = seller_channel(emu, sim) {
            story.say(
                "node",
                format!(
                    "channel from the seller {}: {}, {} sat, {}/{} confirmations",
                    short(&c.peer_id),
                    c.state.as_str(),
                    sats(c.total_msat / 1000),
                    c.confirmations,
                    c.confirmations_required
                ),
            );
            channel_told = true;
        }
        if watch.latest.state.as_deref() == Some("DONE") {
            break;
        }
        if let Some(s) = watch.latest.state.as_deref()
            && ["ABANDONED", "REJECTED", "REFUNDED", "FAILED"].contains(&s)
        {
            bail!("the order ended {s}: {}", watch.latest.reason);
        }
        tokio::time::sleep(pace).await;
        let waiting_for_blocks = o.status.is(KnownStatus::WaitingForOnChainConfirmation)
            || o.status.is(KnownStatus::ValidChannelOpening)
            || o.status.is(KnownStatus::ChannelMonitoringFinished);
        if waiting_for_blocks {
            mine_one(emu, sim, &order_id, story);
        } else {
            advance_until_change(sim, &order_id, story)?;
        }
    }

    // 6. The channel and inbound after.
    let rec = call(emu, "magma-orders", json!({"id": id})).await?;
    let done = &rec["orders"][0];
    let ch = &done["channel"];
    story.say(
        "plugin",
        format!(
            "magma-orders: DONE — channel {} from {} open, capacity {} sat, inbound {} sat",
            text(&ch["short_channel_id"]).unwrap_or("?"),
            short(text(&ch["peer_id"])?),
            sats(num(&ch["capacity_sat"])?),
            sats(num(&ch["inbound_sat"])?)
        ),
    );
    let states: Vec<&str> = done["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|e| e["state"].as_str()).collect())
        .unwrap_or_default();
    story.say("plugin", format!("order history: {}", states.join(" → ")));
    if let Some(htlc) = sim.htlc_state(&hash) {
        let pays = call(emu, "listpays", json!({"payment_hash": hash})).await?;
        let status = pays["pays"][0]["status"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        story.say(
            "seller",
            format!(
                "HTLC {}; node's payment {status}",
                match htlc {
                    HtlcState::Settled { .. } => "settled (preimage released)",
                    HtlcState::Held => "still held",
                    HtlcState::Unpaid => "unpaid",
                    HtlcState::Cancelled => "cancelled",
                }
            ),
        );
    }
    let after = call(emu, "magma-status", json!({})).await?;
    let inbound_after = num(&after["inbound"]["usable_sat"])?;
    story.say(
        "plugin",
        format!(
            "magma-status: inbound after {} sat usable (before {} sat: +{} sat); live orders: {}",
            sats(inbound_after),
            sats(inbound_before),
            sats(inbound_after.saturating_sub(inbound_before)),
            after["orders"]["live"].as_array().map_or(0, Vec::len)
        ),
    );
    if inbound_after <= inbound_before {
        bail!("inbound did not grow ({inbound_before} → {inbound_after} sat)");
    }
    Ok(())
}

/// Moves the seller's clock in small steps until the order's status or payment status changes.
fn advance_until_change(sim: &Sim, order_id: &str, story: &Story) -> anyhow::Result<()> {
    let key = |sim: &Sim| {
        sim.order(order_id)
            .map(|o| (o.status.as_str().to_string(), o.payment_status))
    };
    let start = key(sim);
    let mut moved = 0;
    while moved < CLOCK_LIMIT_SECS {
        sim.advance(Duration::from_secs(CLOCK_STEP_SECS));
        moved += CLOCK_STEP_SECS;
        if key(sim) != start {
            story.say("demo", format!("seller's clock +{moved} s"));
            return Ok(());
        }
    }
    bail!("the seller did nothing in {CLOCK_LIMIT_SECS} virtual seconds")
}

/// Mines a block on the node (and so in the simulator) and tells what each side sees.
fn mine_one(emu: &Emulator, sim: &Sim, order_id: &str, story: &Story) {
    emu.node().mine_blocks(1);
    let magma_conf = sim.order(order_id).map_or(0, |o| o.confirmations);
    let node_side = match seller_channel(emu, sim) {
        Some(c) if c.state == ChannelState::Normal => {
            format!("node: channel locked in, {}", c.state.as_str())
        }
        Some(c) => format!(
            "node: {}/{} confirmations, {}",
            c.confirmations,
            c.confirmations_required,
            c.state.as_str()
        ),
        None => "node: no channel from the seller yet".to_string(),
    };
    story.say(
        "chain",
        format!(
            "mined block {}: Magma counts {magma_conf} confirmation(s); {node_side}",
            emu.node().blockheight()
        ),
    );
}

/// The channel the seller opened to the node, if any.
fn seller_channel(emu: &Emulator, sim: &Sim) -> Option<lightningd_emulator::Channel> {
    let seller = sim.node_pubkey();
    emu.node()
        .channels()
        .into_iter()
        .find(|c| c.opener == Opener::Remote && c.peer_id == seller)
}

/// Waits until `done()` holds, printing what the plugin reports meanwhile. `Ok(false)` on
/// timeout.
async fn wait(
    emu: &Emulator,
    story: &Story,
    watch: &mut Watch,
    timeout: Duration,
    mut done: impl FnMut(&Reported) -> bool,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        watch.pump(emu, story);
        if done(&watch.latest) {
            return Ok(true);
        }
        if !emu.plugin_running() {
            bail!("the plugin stopped; stderr: {:?}", emu.stderr());
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the plugin last said about the order in its `magma_order` notifications.
#[derive(Default, Clone, PartialEq)]
struct Reported {
    state: Option<String>,
    status: Option<String>,
    payment_status: Option<String>,
    reason: Value,
}

/// Follows the plugin's notifications and logs, printing each new one once.
#[derive(Default)]
struct Watch {
    notes_seen: usize,
    logs_seen: usize,
    latest: Reported,
}

impl Watch {
    fn pump(&mut self, emu: &Emulator, story: &Story) {
        let logs = emu.logs();
        for l in logs.iter().skip(self.logs_seen) {
            let loud = matches!(l.level.as_str(), "warn" | "error" | "broken");
            if story.verbose || loud {
                story.say("log", format!("{}: {}", l.level, l.message));
            }
        }
        self.logs_seen = logs.len();
        let notes = emu.notifications();
        for (topic, params) in notes.iter().skip(self.notes_seen) {
            if topic != "magma_order" {
                continue;
            }
            // lightningd wraps a custom notification's payload in an object of its topic.
            let n = if params["magma_order"].is_object() {
                &params["magma_order"]
            } else {
                params
            };
            let next = Reported {
                state: n["state"].as_str().map(str::to_string),
                status: n["status"].as_str().map(str::to_string),
                payment_status: n["payment_status"].as_str().map(str::to_string),
                reason: n["reason"].clone(),
            };
            let mut parts = Vec::new();
            if next.state != self.latest.state {
                parts.push(match &self.latest.state {
                    Some(from) => format!("{from} → {}", opt(&next.state)),
                    None => opt(&next.state).to_string(),
                });
            }
            if next.status != self.latest.status {
                parts.push(format!("Magma status {}", opt(&next.status)));
            }
            if next.payment_status != self.latest.payment_status {
                parts.push(format!("payment {}", opt(&next.payment_status)));
            }
            if let Some(reason) = n["reason"]
                .as_str()
                .filter(|_| next.reason != self.latest.reason)
            {
                parts.push(format!("({reason})"));
            }
            let event = n["event"].as_str().unwrap_or("?");
            match event {
                "placing" => parts.push(format!(
                    "{} for ~{} sat of inbound",
                    n["usd_cents"].as_u64().map_or_else(|| "?".into(), usd),
                    n["expected_inbound_sat"]
                        .as_u64()
                        .map_or_else(|| "?".into(), sats)
                )),
                "placed" => parts.push(format!(
                    "Magma order {}",
                    n["order_id"].as_str().unwrap_or("?")
                )),
                "paying" => parts.push(format!(
                    "invoice of {} sat passed the checks",
                    n["invoice_sat"].as_u64().map_or_else(|| "?".into(), sats)
                )),
                _ => {}
            }
            story.say(
                "plugin",
                format!("magma_order [{event}] {}", parts.join(", ")),
            );
            self.latest = next;
        }
        self.notes_seen = notes.len();
    }
}

/// Prints the plugin's view and its last words, for a failure.
async fn diagnose(emu: &Emulator) {
    match emu.call("magma-orders", json!({})).await {
        Ok(v) => eprintln!(
            "magma-demo: the plugin's orders:\n{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ),
        Err(e) => eprintln!("magma-demo: magma-orders failed: {e:?}"),
    }
    let logs = emu.logs();
    eprintln!("magma-demo: the plugin's last log lines:");
    for l in logs.iter().skip(logs.len().saturating_sub(25)) {
        eprintln!("  {}: {}", l.level, l.message);
    }
    for line in emu.emulator_log() {
        eprintln!("  lightningd: {line}");
    }
    for line in emu.stderr() {
        eprintln!("  plugin stderr: {line}");
    }
}

/// The printer: one line per step, with the time since the start.
struct Story {
    start: Instant,
    verbose: bool,
}

impl Story {
    fn new(verbose: bool) -> Story {
        Story {
            start: Instant::now(),
            verbose,
        }
    }

    fn say(&self, who: &str, what: impl AsRef<str>) {
        println!(
            "[{:>5.1}s] {who:<6} {}",
            self.start.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

/// Calls a method on the node's RPC socket, like lightning-cli.
async fn call(emu: &Emulator, method: &str, params: Value) -> anyhow::Result<Value> {
    emu.call(method, params)
        .await
        .map_err(|e| anyhow!("{method} failed: {} (code {})", e.message, e.code))
}

fn num(v: &Value) -> anyhow::Result<u64> {
    v.as_u64()
        .ok_or_else(|| anyhow!("expected a number, got {v}"))
}

fn text(v: &Value) -> anyhow::Result<&str> {
    v.as_str()
        .ok_or_else(|| anyhow!("expected a string, got {v}"))
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(none)")
}

/// `10865200` → `10,865,200`.
fn sats(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn usd(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// The start of a long hex id, enough to recognise it.
fn short(id: &str) -> String {
    match id.get(..16) {
        Some(head) if id.len() > 16 => format!("{head}…"),
        _ => id.to_string(),
    }
}
