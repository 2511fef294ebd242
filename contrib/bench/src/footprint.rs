//! Resident memory and CPU: the plugin under the emulator at its release cadence (10 s polls),
//! idle after init, then while tracking live orders; the floor beside it over the same window.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lightningd_emulator::commands::Settings;
use lightningd_emulator::{ChannelSpec, ChannelState, Emulator, EmulatorConfig, magma, peer_id};
use magma_sim::{SellerScript, Sim, SimConfig};
use serde_json::json;

use crate::host::Hosted;
use crate::procfs::{self, Cpu};
use crate::report::{Figure, mib};

pub const API_KEY: &str = "amboss_bench_0123456789abcdef";
/// Outbound to pay from: 1 BTC on one channel to a hub.
pub const HUB_MSAT: u64 = 100_000_000_000;

pub struct Plan {
    /// Wait after `init` before the idle figures (the first automatic check runs 2 s in).
    pub settle: Duration,
    /// Window of the idle CPU figure.
    pub idle_window: Duration,
    /// Live orders to hold.
    pub orders: usize,
    /// Window of tracking before the memory figure with live orders.
    pub track_window: Duration,
    /// Extra environment for the plugin (`--plugin-env`), for experiments.
    pub plugin_env: Vec<(String, String)>,
}

pub async fn run(plugin: &Path, floor: &Path, plan: &Plan) -> anyhow::Result<Vec<Figure>> {
    let sim = Sim::new(SimConfig {
        api_keys: vec![API_KEY.to_string()],
        default_seller: SellerScript::Happy,
        block_interval_secs: 0,
        ..SimConfig::default()
    });
    let server = sim.serve(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let mut cfg = EmulatorConfig::new(plugin)
        .option("magma-api-url", server.graphql_url.as_str())
        .option("magma-max-inflight", plan.orders.max(1) as i64)
        .env("AMBOSS_API_KEY", API_KEY);
    for (k, v) in &plan.plugin_env {
        cfg = cfg.env(k, v);
    }
    let mut emu = Emulator::start(cfg).await?;
    if let Some(why) = emu.disabled() {
        bail!("the plugin disabled itself: {why}");
    }
    emu.wait_for_log("started", Duration::from_secs(10)).await?;
    emu.node().add_channel(
        ChannelSpec::local_opened(&peer_id("hub"), HUB_MSAT).state(ChannelState::Normal),
    );
    let _follow = magma::attach(emu.node(), &sim);
    let pid = procfs::child_running(plugin)?;

    let settings = Settings {
        network: "regtest".into(),
        lightning_dir: emu.lightning_dir().to_path_buf(),
        rpc_file: "lightning-rpc".into(),
        plugin_path: floor.to_path_buf(),
        proxy: None,
        always_use_proxy: false,
    };
    let mut fl = Hosted::spawn(floor, emu.lightning_dir(), &[])?;
    fl.handshake(&settings, &[], true).await?;

    tokio::time::sleep(plan.settle).await;
    let idle = procfs::memory(pid)?;
    let floor_idle = procfs::memory(fl.pid)?;
    let mut figures = vec![
        Figure::new(
            "rss.idle_after_init",
            mib(idle.rss_kib),
            "< 10 MiB",
            Some(idle.rss_kib < 10 * 1024),
        )
        .floor(
            mib(floor_idle.rss_kib),
            idle.rss_kib as f64 / floor_idle.rss_kib as f64,
        ),
    ];

    let (c0, f0, t0) = (procfs::cpu(pid)?, procfs::cpu(fl.pid)?, Instant::now());
    tokio::time::sleep(plan.idle_window).await;
    let (c1, f1, window) = (procfs::cpu(pid)?, procfs::cpu(fl.pid)?, t0.elapsed());
    let p = Rates::between(&c0, &c1, window);
    let f = Rates::between(&f0, &f1, window);
    figures.push(
        Figure::new(
            &format!("cpu.idle_{}s", window.as_secs()),
            format!("{:.1} ms/min", p.ms_per_min),
            "~0: no busy poll",
            // The kernel accounts CPU in 10 ms ticks: up to 2 ticks a minute is noise.
            Some(p.ms_per_min <= 20.0),
        )
        .floor(format!("{:.1} ms/min", f.ms_per_min), f64::NAN),
    );
    figures.push(
        Figure::info(
            "cpu.idle.on_cpu_ns_precision",
            format!("{:.2} ms/min", p.sched_ms_per_min),
        )
        .floor(format!("{:.2} ms/min", f.sched_ms_per_min), f64::NAN),
    );
    figures.push(
        Figure::info("cpu.idle.wakeups", format!("{:.1} /min", p.wakeups_per_min))
            .floor(format!("{:.1} /min", f.wakeups_per_min), f64::NAN),
    );
    fl.kill().await;

    // Live orders: bought through the plugin (`magma-buy force=true`, the real path: priced,
    // placed at the simulator, invoice checked, paid by the node whose `pay` then waits on the
    // held HTLC), the seller's clock held still so none of them moves on.
    let n = plan.orders;
    let bought = Instant::now();
    for i in 0..n {
        let placed = emu
            .call("magma-buy", json!({"usd_cents": 500, "force": true}))
            .await
            .with_context(|| format!("magma-buy #{}", i + 1))?;
        if placed["state"] != "PAYING" {
            bail!("order #{} is {} instead of PAYING", i + 1, placed["state"]);
        }
    }
    let buying = bought.elapsed();
    let live = live_orders(&emu).await?;
    if live != n {
        bail!("{live} live orders instead of {n}");
    }
    let calls0 = emu.node().calls().len();
    let magma0 = sim.request_log().len();
    let (c0, t0) = (procfs::cpu(pid)?, Instant::now());
    tokio::time::sleep(plan.track_window).await;
    let (c1, window) = (procfs::cpu(pid)?, t0.elapsed());
    let tracking = procfs::memory(pid)?;
    let per_min = 60.0 / window.as_secs_f64();
    let mut rpc: BTreeMap<String, usize> = BTreeMap::new();
    for c in emu.node().calls()[calls0..]
        .iter()
        .filter(|c| c.from_plugin)
    {
        *rpc.entry(c.method.clone()).or_default() += 1;
    }
    let mut api: BTreeMap<String, usize> = BTreeMap::new();
    for r in &sim.request_log()[magma0..] {
        *api.entry(format!("{:?}", r.operation)).or_default() += 1;
    }
    let t = Rates::between(&c0, &c1, window);
    let more = tracking.rss_kib as i64 - idle.rss_kib as i64;
    figures.push(Figure::info(
        &format!("rss.tracking_{n}_orders"),
        mib(tracking.rss_kib),
    ));
    figures.push(Figure::new(
        &format!("rss.tracking_{n}_orders.more_than_idle"),
        format!("{:+.2} MiB", more as f64 / 1024.0),
        "< 2 MiB",
        Some(more < 2 * 1024),
    ));
    figures.push(Figure::info(
        &format!("rss.tracking_{n}_orders.peak"),
        mib(tracking.hwm_kib),
    ));
    figures.push(Figure::info(
        &format!("cpu.tracking_{n}_orders_{}s", window.as_secs()),
        format!(
            "{:.0} ms/min, {:.0} wakeups/min",
            t.sched_ms_per_min, t.wakeups_per_min
        ),
    ));
    figures.push(Figure::info(
        &format!("rpc.tracking_{n}_orders"),
        per_minute(&rpc, per_min),
    ));
    figures.push(Figure::info(
        &format!("magma.tracking_{n}_orders"),
        per_minute(&api, per_min),
    ));
    figures.push(Figure::info(
        &format!("orders.magma-buy_x{n}"),
        format!(
            "{:.1} ms each",
            buying.as_secs_f64() * 1000.0 / n.max(1) as f64
        ),
    ));
    emu.shutdown().await?;
    drop(server);
    Ok(figures)
}

fn per_minute(m: &BTreeMap<String, usize>, per_min: f64) -> String {
    if m.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k} {:.0}", *v as f64 * per_min))
        .collect();
    format!("{}/min", parts.join(", "))
}

/// CPU between two samples, per minute.
struct Rates {
    /// Kernel accounting (utime + stime), in 10 ms ticks: what the issue asks for.
    ms_per_min: f64,
    /// Scheduler accounting, nanosecond precision.
    sched_ms_per_min: f64,
    wakeups_per_min: f64,
}

impl Rates {
    fn between(a: &Cpu, b: &Cpu, window: Duration) -> Rates {
        let per_min = 60.0 / window.as_secs_f64();
        let tick_ms = 1000.0 / procfs::clock_ticks_per_sec() as f64;
        let (ns, wakeups) = b.since(a);
        Rates {
            ms_per_min: b.ticks.saturating_sub(a.ticks) as f64 * tick_ms * per_min,
            sched_ms_per_min: ns as f64 / 1e6 * per_min,
            wakeups_per_min: wakeups as f64 * per_min,
        }
    }
}

/// Orders the plugin reports in flight (`magma-status`).
pub async fn live_orders(emu: &Emulator) -> anyhow::Result<usize> {
    let status = emu.call("magma-status", json!({})).await?;
    status["orders"]["live"]
        .as_array()
        .map(Vec::len)
        .context("magma-status has no orders.live")
}
