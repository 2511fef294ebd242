//! `magma-sim`: runs the simulator as a server. The first line on stdout is the GraphQL URL;
//! logs go to stderr (`RUST_LOG`, default `info`).

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use magma_sim::{Network, SellerScript, Sim, SimConfig, Timings};

/// A schema-validating simulator of the Amboss Magma buyer GraphQL API.
#[derive(Parser, Debug)]
#[command(name = "magma-sim", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Accepted API key (repeatable). Each key is its own account.
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// Default seller script: happy, reject, no-react, no-open, send-swap-fail,
    /// invalid-channel, admin-close, buyer-never-pays.
    #[arg(long, default_value = "happy", value_parser = SellerScript::parse_lenient)]
    seller: SellerScript,
    /// Real milliseconds between clock ticks.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    step_ms: u64,
    /// Virtual seconds per real second (1 = real time; 60 = a minute per second).
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
    /// regtest, signet, testnet, mainnet (or bitcoin).
    #[arg(long, default_value = "regtest")]
    network: Network,
    /// `liquidity_per_usd.sats` (integer string).
    #[arg(long, default_value = "543260")]
    price_sats: String,
    /// `liquidity_per_usd.usd` (decimal string).
    #[arg(long, default_value = "501.09")]
    price_usd: String,
    /// Sats per USD for buyer fees (default: price-sats / price-usd).
    #[arg(long)]
    btc_sats_per_usd: Option<f64>,
    /// Virtual seconds between blocks (0 = blocks only via the admin API).
    #[arg(long, default_value_t = 600)]
    block_interval_secs: u64,
    /// Block height at start.
    #[arg(long, default_value_t = 850_000)]
    start_height: u32,
    /// Make the buy response's order.transaction_id differ from the order id.
    #[arg(long)]
    distinct_transaction_id: bool,
    /// Seed of the node key that signs invoices.
    #[arg(long, default_value = "magma-sim")]
    node_seed: String,
    #[command(flatten)]
    timings: TimingArgs,
}

/// Lifecycle timings in virtual seconds (blocks for the lease).
#[derive(clap::Args, Debug)]
struct TimingArgs {
    #[arg(long, default_value_t = 5)]
    seller_react_secs: u64,
    #[arg(long, default_value_t = 600)]
    approval_timeout_secs: u64,
    #[arg(long, default_value_t = 3600)]
    invoice_expiry_secs: u64,
    #[arg(long, default_value_t = 30)]
    open_after_secs: u64,
    #[arg(long, default_value_t = 1800)]
    open_timeout_secs: u64,
    #[arg(long, default_value_t = 10)]
    mempool_secs: u64,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    confirmations_required: u32,
    #[arg(long, default_value_t = 60)]
    validate_secs: u64,
    #[arg(long, default_value_t = 4320)]
    lease_blocks: u32,
    #[arg(long, default_value_t = 600)]
    send_swap_timeout_secs: u64,
}

impl From<TimingArgs> for Timings {
    fn from(t: TimingArgs) -> Self {
        Timings {
            seller_react_secs: t.seller_react_secs,
            approval_timeout_secs: t.approval_timeout_secs,
            invoice_expiry_secs: t.invoice_expiry_secs,
            open_after_secs: t.open_after_secs,
            open_timeout_secs: t.open_timeout_secs,
            mempool_secs: t.mempool_secs,
            confirmations_required: t.confirmations_required,
            validate_secs: t.validate_secs,
            lease_blocks: t.lease_blocks,
            send_swap_timeout_secs: t.send_swap_timeout_secs,
        }
    }
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a non-negative number")),
    }
}

impl Args {
    fn config(self) -> (SimConfig, SocketAddr, Duration, f64) {
        let cfg = SimConfig {
            network: self.network,
            price_sats: self.price_sats,
            price_usd: self.price_usd,
            btc_sats_per_usd: self.btc_sats_per_usd,
            api_keys: self.api_keys,
            default_seller: self.seller,
            timings: self.timings.into(),
            order_id_is_transaction_id: !self.distinct_transaction_id,
            block_interval_secs: self.block_interval_secs,
            start_height: self.start_height,
            node_seed: self.node_seed,
            ..SimConfig::default()
        };
        (
            cfg,
            self.listen,
            Duration::from_millis(self.step_ms),
            self.speed,
        )
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (cfg, listen, step, speed) = args.config();
    let sim = Sim::try_new(cfg).context("invalid configuration")?;
    let server = sim.serve(listen).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.graphql_url).context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
    }
    log::info!(
        "admin API on {}; node {}; network {}",
        server.admin_url,
        sim.node_pubkey(),
        sim.network()
    );
    let clock = sim.spawn_clock(step, speed);
    shutdown_signal().await?;
    log::info!("shutting down");
    clock.abort();
    if tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .is_err()
    {
        log::warn!("open connections did not finish within 5 s; exiting anyway");
    }
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot handle SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot handle Ctrl-C")?;
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("magma-sim: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("magma-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
