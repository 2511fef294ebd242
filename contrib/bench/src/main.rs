//! `magma-bench`: the performance suite of cln-magma (issue #6). It measures the real plugin
//! binary under the lightningd emulator wired to the Magma simulator, and prints each figure
//! beside its goal and, where it applies, beside the floor (a minimal tokio + rustls binary).
//!
//! ```text
//! cargo build --release -p cln-magma-bench && cargo run --release -p cln-magma-bench -- [--quick]
//! ```
//!
//! It exits 0 when every measurement was taken, whether or not each goal was met (it is a
//! measurement, not a test), and non-zero when a measurement could not be taken.

mod compute;
mod economy;
mod footprint;
mod host;
mod procfs;
mod report;
mod startup;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use lightningd_emulator::test_plugin;

use report::{Figure, Verdict};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Performance and footprint of the real cln-magma plugin binary"
)]
struct Args {
    /// Short windows and few repetitions: proves the suite works (CI), figures are rough.
    #[arg(long)]
    quick: bool,
    /// The plugin binary, built with `--features test-hooks` (default: the bench builds it into
    /// target/test-hooks/, in this program's profile).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// The floor binary (default: `floor` beside this program).
    #[arg(long)]
    floor: Option<PathBuf>,
    /// The plugin's Magma polling period in the API-economy runs (`CLN_MAGMA_TEST_POLL_MS`),
    /// standing for its real 10 s: the simulator's clock runs 10 s / this faster than real
    /// time. Default 100 (1 virtual hour = 36 s), 10 with --quick (3.6 s, rougher: the
    /// plugin's own work per pass is no longer small beside the period).
    #[arg(long)]
    poll_ms: Option<u64>,
    /// Extra environment for the plugin in the footprint runs, `KEY=VALUE`, repeatable (for
    /// experiments such as `MALLOC_ARENA_MAX=1`).
    #[arg(long, value_parser = parse_env)]
    plugin_env: Vec<(String, String)>,
    /// Channels in the listpeerchannels computation.
    #[arg(long, default_value_t = 10_000)]
    channels: usize,
    /// Only these sections (startup, footprint, compute, economy); repeatable. Default: all.
    #[arg(long)]
    only: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("magma-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The test-hooks plugin unless given: built now, in this program's own profile, into
/// target/test-hooks/ (never the target/release/cln-magma a node loads).
fn locate_plugin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let profile = if cfg!(debug_assertions) {
        test_plugin::Profile::Debug
    } else {
        test_plugin::Profile::Release
    };
    match given {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => bail!(
            "{} not found; leave out --plugin to build it, or build it with `{}`",
            p.display(),
            test_plugin::build_command(profile)
        ),
        None => test_plugin::path(profile),
    }
}

/// The floor binary beside this executable unless given.
fn locate_floor(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("this program has no directory")?
            .join("floor"),
    };
    if !path.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p cln-magma-bench",
            path.display()
        );
    }
    Ok(path)
}

/// Whether the plugin honours `CLN_MAGMA_TEST_POLL_MS` (built with `test-hooks`): the name
/// is in the binary only then.
fn has_test_hooks(plugin: &Path) -> anyhow::Result<bool> {
    let bytes = std::fs::read(plugin)?;
    let needle = b"CLN_MAGMA_TEST_POLL_MS";
    Ok(bytes.windows(needle.len()).any(|w| w == needle))
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "? GiB".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPU ({model}), {mem} RAM, Linux {}", kernel.trim())
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let plugin = locate_plugin(args.plugin.clone())?;
    let floor = locate_floor(args.floor.clone())?;
    let hooks = has_test_hooks(&plugin)?;
    let quick = args.quick;
    let want = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let fixtures = fixtures_dir()?;
    let started = Instant::now();

    println!(
        "cln-magma performance suite{}",
        if quick {
            " (quick mode: rough figures)"
        } else {
            ""
        }
    );
    println!("machine: {}", machine());
    println!(
        "plugin:  {} (test-hooks: {})",
        plugin.display(),
        if hooks { "yes" } else { "no" }
    );
    println!("floor:   {}", floor.display());
    println!();

    let mut figures: Vec<Figure> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut section =
        |name: &str, r: anyhow::Result<Vec<Figure>>, figures: &mut Vec<Figure>| match r {
            Ok(f) => {
                for x in &f {
                    report::print(x);
                }
                figures.extend(f);
            }
            Err(e) => {
                println!("{name:<44} ERROR: {e:#}");
                failed.push(name.to_string());
            }
        };
    report::print_header();

    if want("startup") {
        let sim = magma_sim::Sim::new(magma_sim::SimConfig::default());
        let server = sim.serve("127.0.0.1:0".parse()?).await?;
        let runs = if quick { 5 } else { 30 };
        let r = startup::run(&plugin, &floor, &server.graphql_url, runs)
            .await
            .map(|s| s.figures);
        section("startup", r, &mut figures);
    }
    if want("footprint") {
        let plan = if quick {
            footprint::Plan {
                settle: Duration::from_secs(3),
                idle_window: Duration::from_secs(3),
                orders: 100,
                track_window: Duration::from_secs(3),
                plugin_env: args.plugin_env.clone(),
            }
        } else {
            footprint::Plan {
                settle: Duration::from_secs(5),
                idle_window: Duration::from_secs(60),
                orders: 100,
                track_window: Duration::from_secs(30),
                plugin_env: args.plugin_env.clone(),
            }
        };
        let r = footprint::run(&plugin, &floor, &plan).await;
        section("footprint", r, &mut figures);
    }
    if want("compute") {
        let r = compute_section(&fixtures, args.channels, quick).await;
        section("compute", r, &mut figures);
    }
    if want("economy") {
        let r = if hooks {
            let poll_ms = args.poll_ms.unwrap_or(if quick { 10 } else { 100 });
            economy::run(&plugin, poll_ms, quick).await
        } else {
            Err(anyhow::anyhow!(
                "the plugin was built without --features test-hooks, so it cannot poll faster than every 10 s; rebuild it with `{}`",
                test_plugin::build_command(test_plugin::Profile::Release)
            ))
        };
        section("economy", r, &mut figures);
    }

    let misses: Vec<&str> = figures
        .iter()
        .filter(|f| f.verdict == Verdict::Miss)
        .map(|f| f.name.as_str())
        .collect();
    let passes = figures
        .iter()
        .filter(|f| f.verdict == Verdict::Pass)
        .count();
    println!();
    println!(
        "{passes} goals met, {} missed{}; {} measurement(s) failed; {:.0} s",
        misses.len(),
        if misses.is_empty() {
            String::new()
        } else {
            format!(" ({})", misses.join(", "))
        },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(failed.is_empty())
}

/// `fixtures/cln` at the repository root (captured lightningd output).
fn fixtures_dir() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("fixtures/cln");
    if dir.is_dir() {
        return Ok(dir);
    }
    bail!("fixtures not found at {}", dir.display())
}

async fn compute_section(fixtures: &Path, n: usize, quick: bool) -> anyhow::Result<Vec<Figure>> {
    let full = compute::listpeerchannels(fixtures, n)?;
    let bytes = serde_json::to_vec(&full)?;
    let filtered = serde_json::to_vec(&compute::filtered(&full))?;
    drop(full);
    let reps = if quick { 3 } else { 30 };
    let (times, after_parse, out) = compute::time_pure(&bytes, reps)?;
    let (median, p90) = report::median_p90(&times);
    let (decide_median, _) = report::median_p90(&after_parse);
    let mb = |b: &[u8]| format!("{:.1} MB", b.len() as f64 / 1e6);
    let mut figures = vec![
        Figure::new(
            &format!("compute.{n}_channels.parse_inbound_policy"),
            report::ms(median),
            "< 20 ms",
            Some(median < Duration::from_millis(20)),
        ),
        Figure::info(&format!("compute.{n}_channels.p90"), report::ms(p90)),
        Figure::info(
            &format!("compute.{n}_channels.inbound_policy_only"),
            report::ms(decide_median),
        ),
        Figure::info(&format!("compute.{n}_channels.json_size"), mb(&bytes)),
    ];
    if out.channels != n || out.snapshot.normal_channels == 0 {
        bail!("the evaluation saw {} channels", out.channels);
    }
    let (ftimes, _, _) = compute::time_pure(&filtered, reps)?;
    let (fm, _) = report::median_p90(&ftimes);
    figures.push(Figure::info(
        &format!("compute.{n}_channels.filtered_fields"),
        format!("{} ({})", report::ms(fm), mb(&filtered)),
    ));
    // The plugin's own RPC client reading the same answer from a socket. Its time grows with
    // the square of the answer's size (see README), so quick mode reads a smaller node.
    let sizes: Vec<usize> = if quick {
        vec![n.min(1_000)]
    } else {
        let mut v: Vec<usize> = [1_000, 2_500].into_iter().filter(|s| *s < n).collect();
        v.push(n);
        v
    };
    for size in sizes {
        let result = if size == n {
            bytes.clone()
        } else {
            serde_json::to_vec(&compute::listpeerchannels(fixtures, size)?)?
        };
        let (rpc, seen) = compute::time_through_rpc_client(
            &result,
            if quick || size == n { 1 } else { 3 },
            Duration::from_secs(120),
        )
        .await?;
        if seen != size {
            bail!("the plugin's RPC client read {seen} of {size} channels");
        }
        let (rm, _) = report::median_p90(&rpc);
        let name = format!("compute.{size}_channels.via_plugin_rpc_client");
        figures.push(if size == n {
            Figure::new(
                &name,
                report::ms(rm),
                "< 20 ms",
                Some(rm < Duration::from_millis(20)),
            )
        } else {
            Figure::info(&name, format!("{} ({})", report::ms(rm), mb(&result)))
        });
    }
    // What the same read would cost if the plugin asked lightningd for only the fields it
    // reads (a `filter` on the request; lightningd then sends the smaller answer).
    let (frpc, seen) =
        compute::time_through_rpc_client(&filtered, 1, Duration::from_secs(120)).await?;
    if seen != n {
        bail!("the plugin's RPC client read {seen} of {n} filtered channels");
    }
    let (fm, _) = report::median_p90(&frpc);
    figures.push(Figure::info(
        &format!("compute.{n}_channels.via_plugin_rpc_client.filtered"),
        report::ms(fm),
    ));
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        let (m, p) = report::median_p90(&ms(&[5, 1, 3, 2, 4]));
        assert_eq!((m, p), (Duration::from_millis(3), Duration::from_millis(5)));
        let (m, p) = report::median_p90(&ms(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
        assert_eq!((m.as_micros(), p), (5500, Duration::from_millis(9)));
    }

    /// The generated node is what the figure claims: n channels, the fixture's shape, every
    /// field the plugin reads, a buy decision at the end.
    #[test]
    fn the_generated_node_is_evaluated_in_full() {
        let full = compute::listpeerchannels(&fixtures_dir().unwrap(), 200).unwrap();
        let bytes = serde_json::to_vec(&full).unwrap();
        let (_, _, out) = compute::time_pure(&bytes, 1).unwrap();
        assert_eq!(out.channels, 200);
        assert_eq!(out.snapshot.opening_channels, 2, "1 in 100 still opening");
        assert_eq!(out.snapshot.normal_channels, 198);
        assert!(out.snapshot.offline_sat > 0, "some peers offline");
        let small = serde_json::to_vec(&compute::filtered(&full)).unwrap();
        let (_, _, same) = compute::time_pure(&small, 1).unwrap();
        assert_eq!(
            same.snapshot, out.snapshot,
            "the filter keeps every field read"
        );
        assert!(small.len() * 4 < bytes.len());
    }
}
