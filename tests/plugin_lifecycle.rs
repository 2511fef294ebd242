//! The plugin's credential handling (the key never shows), its network path through the node's
//! proxy, and how it exits (design.md §3, §5 invariant 8, §8).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{
    WAIT, bare_config, config, expect_error, finish, sim, sim_authority, socks5_proxy, start,
};
use lightningd_emulator::Emulator;
use magma_sim::{Fault, Operation};
use serde_json::{Value, json};

const FILE_KEY: &str = "amboss_filekey_9c3b1e7f2a6d4e8b0a1c";
const ENV_KEY: &str = "amboss_envkey_4d2f8a6c1e3b5d7f9a0b";

fn write_key(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// Runs every command the plugin has, good and bad, and returns all it answered as text.
async fn exercise(emu: &Emulator, sim: &magma_sim::Sim) -> Vec<String> {
    let mut out = Vec::new();
    let mut record = |r: Result<Value, lightningd_emulator::RpcError>| {
        out.push(match r {
            Ok(v) => v.to_string(),
            Err(e) => format!("{} {} {:?}", e.code, e.message, e.data),
        })
    };
    record(emu.call("magma-status", json!({})).await);
    record(emu.call("magma-estimate", json!({"usd_cents": 5000})).await);
    record(emu.call("magma-estimate", json!({"usd_cents": -1})).await);
    sim.inject_fault(Operation::Price, Fault::Http500, Some(1));
    record(emu.call("magma-estimate", json!({})).await);
    record(emu.setconfig("magma-mode", json!("dry-run")).await);
    record(emu.setconfig("magma-mode", json!("never")).await);
    record(emu.call("listconfigs", json!({})).await);
    out
}

/// Everything the emulator captured from the plugin, plus `extra`, holds no `secret`.
fn assert_never_shown(emu: &Emulator, secret: &str, extra: &[String]) {
    let mut places: Vec<(&str, String)> = Vec::new();
    for l in emu.logs() {
        places.push(("log", format!("{} {}", l.level, l.message)));
    }
    for (topic, params) in emu.notifications() {
        places.push(("notification", format!("{topic} {params}")));
    }
    for line in emu.stderr() {
        places.push(("stderr", line));
    }
    for line in emu.stdout_violations() {
        places.push(("stdout", line));
    }
    for line in emu.emulator_log() {
        places.push(("lightningd log", line));
    }
    for (method, params) in emu.plugin_rpc_calls() {
        places.push(("plugin rpc call", format!("{method} {params}")));
    }
    places.push(("manifest", emu.manifest().to_string()));
    for o in extra {
        places.push(("command output", o.clone()));
    }
    assert!(
        places.iter().any(|(k, _)| *k == "log"),
        "nothing was captured"
    );
    for (kind, text) in places {
        assert!(!text.contains(secret), "the key leaked into {kind}: {text}");
    }
}

// --- 7. API key ----------------------------------------------------------------------------

#[tokio::test]
async fn a_readable_key_file_warns_and_the_key_never_shows() {
    let (sim, server) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_key(dir.path(), "magma.key", &format!("{FILE_KEY}\n"), 0o644);
    let emu =
        start(config(&server.graphql_url).option("magma-api-key-file", path.to_str().unwrap()))
            .await;
    let warning = emu.wait_for_log("chmod 600", WAIT).await.unwrap();
    assert_eq!(warning.level, "warn");
    assert!(
        warning.message.contains("magma-api-key-file"),
        "{warning:?}"
    );
    assert!(
        warning.message.contains(path.to_str().unwrap()),
        "{warning:?}"
    );
    assert!(warning.message.contains("644"), "{warning:?}");

    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(
        status["api"]["credential"],
        json!(format!("API key from {}", path.display()))
    );
    let outputs = exercise(&emu, &sim).await;
    let emu = finish(emu).await;
    assert_never_shown(&emu, FILE_KEY, &outputs);
}

#[tokio::test]
async fn a_private_key_file_relative_to_the_lightning_dir_gives_no_warning() {
    let (_sim, server) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_key(dir.path(), "magma.key", FILE_KEY, 0o600);
    let mut cfg = config(&server.graphql_url)
        .option("magma-api-key-file", "magma.key")
        // The file wins over the environment.
        .env("AMBOSS_API_KEY", ENV_KEY);
    cfg.lightning_dir = Some(dir.path().to_path_buf());
    let emu = start(cfg).await;
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(
        status["api"]["credential"],
        json!(format!("API key from {}", path.display()))
    );
    // Warnings are logged before the start line, which `start` waited for.
    assert!(
        !emu.logs().iter().any(|l| l.level == "warn"),
        "{:?}",
        emu.logs()
    );
    let emu = finish(emu).await;
    assert_never_shown(&emu, FILE_KEY, &[status.to_string()]);
    assert_never_shown(&emu, ENV_KEY, &[status.to_string()]);
}

#[tokio::test]
async fn the_key_from_the_environment_never_shows() {
    let (sim, server) = sim().await;
    let emu = start(config(&server.graphql_url).env("AMBOSS_API_KEY", ENV_KEY)).await;
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(
        status["api"]["credential"],
        json!("API key from AMBOSS_API_KEY")
    );
    let outputs = exercise(&emu, &sim).await;
    let emu = finish(emu).await;
    assert_never_shown(&emu, ENV_KEY, &outputs);
}

#[tokio::test]
async fn without_a_key_orders_are_anonymous() {
    let (_sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(
        status["api"]["credential"],
        json!("none: orders are bought anonymously with session keys")
    );
    let line = emu.wait_for_log("started", WAIT).await.unwrap();
    assert!(line.message.contains("credential: none"), "{line:?}");
    finish(emu).await;
}

// --- 8. proxy ------------------------------------------------------------------------------

#[tokio::test]
async fn with_always_use_proxy_magma_is_reached_through_the_nodes_proxy() {
    let (sim, server) = sim().await;
    let (proxy, seen) = socks5_proxy().await;
    let mut cfg = config(&server.graphql_url);
    cfg.always_use_proxy = true;
    cfg.proxy = Some(proxy);
    let emu = start(cfg).await;
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(status["api"]["proxy"], json!(proxy.to_string()));

    let q = emu
        .call("magma-estimate", json!({"usd_cents": 5000}))
        .await
        .unwrap();
    assert_eq!(q["expected_inbound_sat"], json!(27_163_000));
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![sim_authority(&server)],
        "the proxy carried the call"
    );
    assert_eq!(sim.request_log().len(), 1);
    finish(emu).await;
}

#[tokio::test]
async fn a_proxy_without_always_use_proxy_is_not_used() {
    let (sim, server) = sim().await;
    let (proxy, seen) = socks5_proxy().await;
    let mut cfg = config(&server.graphql_url);
    cfg.proxy = Some(proxy);
    let emu = start(cfg).await;
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(status["api"]["proxy"], Value::Null);
    let q = emu.call("magma-estimate", json!({})).await.unwrap();
    assert_eq!(q["expected_inbound_sat"], json!(2_716_300));
    assert_eq!(sim.request_log().len(), 1);
    assert_eq!(seen.lock().unwrap().clone(), Vec::<String>::new());
    finish(emu).await;
}

#[tokio::test]
async fn with_always_use_proxy_a_dead_proxy_is_never_bypassed() {
    let (sim, server) = sim().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = config(&server.graphql_url);
    cfg.always_use_proxy = true;
    cfg.proxy = Some(dead);
    let emu = start(cfg).await;
    expect_error(
        emu.call("magma-estimate", json!({})).await,
        1601,
        &["Magma is temporarily unavailable"],
    );
    assert_eq!(sim.request_log(), vec![], "nothing reached Magma directly");
    finish(emu).await;
}

// --- 9. exit -------------------------------------------------------------------------------

#[tokio::test]
async fn the_plugin_exits_cleanly_on_the_shutdown_notification() {
    let (_sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;
    assert!(emu.plugin_running());
    // `finish` sends `shutdown` and requires exit status 0 and a clean stdout.
    let emu = finish(emu).await;
    assert!(!emu.plugin_running());
    assert!(
        emu.emulator_log().iter().any(|l| l.contains("exited")),
        "{:?}",
        emu.emulator_log()
    );
}

/// lightningd may shut down the moment the plugin has started. Many plugins at once, each told
/// to stop as soon as it logs its start: every one exits by itself with status 0 (a missed
/// `shutdown` would leave it running until the emulator kills it after the grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_right_after_start_is_never_missed() {
    let (_sim, server) = sim().await;
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let mut cfg = config(&server.graphql_url);
        cfg.shutdown_grace = std::time::Duration::from_secs(10);
        runs.spawn(async move {
            let mut emu = start(cfg).await;
            let status = emu.shutdown().await.unwrap();
            (status.code(), emu.logs(), emu.stdout_violations())
        });
    }
    while let Some(r) = runs.join_next().await {
        let (code, logs, violations) = r.unwrap();
        assert_eq!(code, Some(0), "{logs:?}");
        assert_eq!(violations, Vec::<String>::new());
    }
}

#[tokio::test]
async fn the_plugin_exits_cleanly_when_lightningd_closes_its_stdin() {
    let (_sim, server) = sim().await;
    let mut emu = start(config(&server.graphql_url)).await;
    emu.call("magma-status", json!({})).await.unwrap();
    let status = emu.close_stdin().await.unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {:?}", emu.stderr());
    assert!(!emu.plugin_running());
    assert_eq!(emu.stdout_violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_disabled_plugin_is_stopped_with_a_clean_stdout() {
    // The plugin answers `disable` and lightningd kills it; nothing but JSON-RPC on stdout.
    let emu = Emulator::start(bare_config().option("magma-mode", "sometimes"))
        .await
        .unwrap();
    assert!(emu.disabled().is_some());
    assert!(!emu.plugin_running());
    assert_eq!(emu.stdout_violations(), Vec::<String>::new());
    assert!(
        emu.emulator_log()
            .iter()
            .any(|l| l.contains("disabled itself at init")),
        "{:?}",
        emu.emulator_log()
    );
}

#[tokio::test]
async fn the_plugin_can_be_started_while_lightningd_runs() {
    let (_sim, server) = sim().await;
    // `lightning-cli plugin start`: init comes with `startup: false`, which lightningd allows
    // only for plugins that declare themselves dynamic.
    let mut emu = Emulator::start_node(config(&server.graphql_url))
        .await
        .unwrap();
    emu.restart_plugin_with(false).await.unwrap();
    assert_eq!(emu.disabled(), None);
    emu.wait_for_log("started", WAIT).await.unwrap();
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(status["mode"], json!("off"));
    finish(emu).await;
}

#[tokio::test]
async fn a_test_hooks_build_refuses_any_network_but_regtest() {
    let (_sim, server) = sim().await;
    for network in ["bitcoin", "signet", "testnet"] {
        let mut cfg = config(&server.graphql_url);
        cfg.network = network.into();
        let emu = Emulator::start(cfg).await.unwrap();
        let reason = emu.disabled().unwrap_or_default();
        assert!(
            reason.contains("test-hooks") && reason.contains(network),
            "{network}: {reason:?}"
        );
        let said = emu
            .logs()
            .iter()
            .any(|l| l.level == "warn" && l.message.contains("runs only on regtest"));
        assert!(said, "a log line says why: {:?}", emu.logs());
        assert!(!emu.plugin_running());
    }
    // The build a user loads carries no such switch.
    let mut cfg = config(&server.graphql_url);
    cfg.plugin = common::RELEASE_LIKE_PLUGIN.into();
    cfg.network = "bitcoin".into();
    finish(start(cfg).await).await;
}

#[tokio::test]
async fn a_panic_reaches_stderr_before_the_process_aborts() {
    let (_sim, server) = sim().await;
    let emu =
        Emulator::start(config(&server.graphql_url).env("CLN_MAGMA_TEST_PANIC_AT", "started"))
            .await
            .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while emu.plugin_running() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!emu.plugin_running(), "the panic ends the process");
    let stderr = emu.stderr().join("\n");
    assert!(
        stderr.contains("cln-magma panicked") && stderr.contains("test panic at started"),
        "{stderr}"
    );
}

/// `reckless install` and a curious operator run the binary alone, not under lightningd.
#[test]
fn run_alone_it_says_what_it_is_and_succeeds() {
    use std::process::{Command, Stdio};
    let run = |args: &[&str]| {
        Command::new(common::RELEASE_LIKE_PLUGIN)
            .args(args)
            .env_remove("LIGHTNINGD_PLUGIN")
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs")
    };
    let version = env!("CARGO_PKG_VERSION");
    for args in [&[][..], &["--help"][..]] {
        let out = run(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {text}");
        assert!(text.contains(&format!("cln-magma {version}")), "{text}");
        assert!(text.contains("plugin=/path/to/cln-magma"), "{text}");
        assert!(text.contains("lightning-cli plugin start"), "{text}");
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("cln-magma {version}\n")
    );
    let out = run(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument \"--frobnicate\""));
}
