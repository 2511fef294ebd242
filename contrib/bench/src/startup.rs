//! Startup: process start to the `getmanifest` reply and to the `init` reply, plugin and floor
//! alternately, under the emulator's node (its lightning dir and RPC socket).

use std::path::Path;
use std::time::Duration;

use lightningd_emulator::commands::Settings;
use lightningd_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::host::{Handshake, Hosted};
use crate::report::{Figure, median_p90, ms};

/// Discarded runs of each binary first (page cache, dynamic loader caches).
const WARMUP: usize = 2;
/// lightningd waits for every plugin; the goal for each reply, from the issue.
const GOAL: Duration = Duration::from_millis(20);

pub struct Startup {
    pub figures: Vec<Figure>,
}

pub async fn run(
    plugin: &Path,
    floor: &Path,
    api_url: &str,
    runs: usize,
) -> anyhow::Result<Startup> {
    let emu = Emulator::start_node(EmulatorConfig::new(plugin)).await?;
    let settings = Settings {
        network: "regtest".into(),
        lightning_dir: emu.lightning_dir().to_path_buf(),
        rpc_file: "lightning-rpc".into(),
        plugin_path: plugin.to_path_buf(),
        proxy: None,
        always_use_proxy: false,
    };
    let options: Vec<(String, Value)> = vec![("magma-api-url".into(), json!(api_url))];
    let mut p: Vec<Handshake> = Vec::new();
    let mut f: Vec<Handshake> = Vec::new();
    for i in 0..WARMUP + runs {
        let h = once(plugin, &settings, &options, false).await?;
        let g = once(floor, &settings, &[], true).await?;
        if i >= WARMUP {
            p.push(h);
            f.push(g);
        }
    }
    let mut figures = Vec::new();
    for (what, pick) in [
        (
            "manifest",
            (|h: &Handshake| h.manifest) as fn(&Handshake) -> Duration,
        ),
        ("init", |h: &Handshake| h.init),
    ] {
        let (pm, p90) = median_p90(&p.iter().map(pick).collect::<Vec<_>>());
        let (fm, f90) = median_p90(&f.iter().map(pick).collect::<Vec<_>>());
        figures.push(
            Figure::new(
                &format!("startup.to_{what}_reply.median"),
                ms(pm),
                "< 20 ms",
                Some(pm < GOAL),
            )
            .floor(ms(fm), ratio(pm, fm)),
        );
        figures.push(
            Figure::info(&format!("startup.to_{what}_reply.p90"), ms(p90))
                .floor(ms(f90), ratio(p90, f90)),
        );
    }
    let init_only: Vec<Duration> = p.iter().map(|h| h.init - h.manifest).collect();
    let floor_init_only: Vec<Duration> = f.iter().map(|h| h.init - h.manifest).collect();
    let (im, _) = median_p90(&init_only);
    let (fim, _) = median_p90(&floor_init_only);
    figures
        .push(Figure::info("startup.init_handling.median", ms(im)).floor(ms(fim), ratio(im, fim)));
    figures.push(Figure::info("startup.runs", format!("{} each", p.len())));
    Ok(Startup { figures })
}

async fn once(
    exe: &Path,
    settings: &Settings,
    options: &[(String, Value)],
    plain: bool,
) -> anyhow::Result<Handshake> {
    let mut h = Hosted::spawn(exe, &settings.lightning_dir, &[("AMBOSS_API_KEY", "")])?;
    let r = h.handshake(settings, options, plain).await;
    h.kill().await;
    r
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        f64::NAN
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}
