//! The real plugin under the lightningd emulator: its manifest, `init` with good and bad option
//! values, and `setconfig` on every dynamic option (design.md §3).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use cln_magma::config::OPTIONS;
use common::{WAIT, bare_config, config, expect_error, finish, sim, start};
use lightningd_emulator::Emulator;
use serde_json::{Value, json};

const NODE_ID: &str = "03d4869a84dcae5fc1412ebf8b14e70b06d565849883d55a299bd7eba46e2fcdf5";

/// design.md §3, written out independently of `config::OPTIONS`: name, type, manifest default
/// (`None` for "none", "2 × min" and "derived"), dynamic.
const DESIGN_TABLE: &[(&str, &str, Option<&str>, bool)] = &[
    (
        "magma-api-url",
        "string",
        Some("\"https://magma.amboss.tech/graphql\""),
        false,
    ),
    ("magma-api-key-file", "string", None, false),
    ("magma-mode", "string", Some("\"off\""), true),
    ("magma-min-inbound-sat", "int", Some("0"), true),
    ("magma-target-inbound-sat", "int", None, true),
    ("magma-order-min-usd-cents", "int", Some("500"), true),
    ("magma-order-max-usd-cents", "int", Some("5000"), true),
    ("magma-max-fee-ppm", "int", Some("5000"), true),
    ("magma-budget-usd-cents", "int", Some("5000"), true),
    ("magma-budget-days", "int", Some("30"), true),
    ("magma-max-inflight", "int", Some("1"), true),
    ("magma-check-interval", "int", Some("600"), true),
    ("magma-failure-backoff", "int", Some("3600"), true),
    // Added by the automatic-buying issue.
    ("magma-pause-after-failures", "int", Some("3"), true),
    ("magma-private", "bool", Some("false"), true),
    ("magma-rails-cluster-only", "bool", Some("false"), true),
    ("magma-connection-uri", "string", None, true),
    ("magma-pay-max-fee-ppm", "int", Some("5000"), true),
];

fn manifest_options(emu: &Emulator) -> BTreeMap<String, Value> {
    emu.manifest()["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| (o["name"].as_str().expect("name").to_string(), o.clone()))
        .collect()
}

// --- 1. manifest ---------------------------------------------------------------------------

#[tokio::test]
async fn the_manifest_declares_every_option_command_notification_and_subscription() {
    let (_sim, server) = sim().await;
    // Emulator::start applies lightningd's manifest rules and fails if it would refuse.
    let emu = start(config(&server.graphql_url)).await;
    let manifest = emu.manifest();

    let options = manifest_options(&emu);
    assert_eq!(options.len(), 18, "{options:?}");
    assert_eq!(
        manifest["options"].as_array().unwrap().len(),
        18,
        "no duplicates"
    );
    for (name, typ, default, dynamic) in DESIGN_TABLE {
        let o = options
            .get(*name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(o["type"], json!(typ), "{name}");
        let default: Option<Value> = default.map(|d| serde_json::from_str(d).unwrap());
        assert_eq!(o.get("default").cloned(), default, "{name} default");
        assert_eq!(o["dynamic"], json!(dynamic), "{name} dynamic");
        assert_eq!(o["multi"], json!(false), "{name}");
    }
    // And the table the plugin is built from says the same, description included.
    for spec in OPTIONS {
        let o = &options[spec.name];
        assert_eq!(o["type"], json!(spec.kind.manifest_type()), "{}", spec.name);
        assert_eq!(
            o.get("default").cloned(),
            spec.default.map(|d| d.to_json()),
            "{}",
            spec.name
        );
        assert_eq!(o["dynamic"], json!(spec.dynamic), "{}", spec.name);
        assert_eq!(o["description"], json!(spec.description), "{}", spec.name);
        assert!(!spec.description.is_empty());
    }

    let methods: BTreeMap<&str, &Value> = manifest["rpcmethods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m))
        .collect();
    assert_eq!(
        methods.keys().copied().collect::<Vec<_>>(),
        [
            "magma-buy",
            "magma-estimate",
            "magma-orders",
            "magma-status",
            "magma-suggest"
        ]
    );
    assert_eq!(
        methods["magma-estimate"]["usage"],
        json!("[usd_cents] [amount_sat]")
    );
    assert_eq!(
        methods["magma-buy"]["usage"],
        json!("[usd_cents] [amount_sat] [private] [rails_cluster_only] [force] [external]")
    );
    assert_eq!(methods["magma-orders"]["usage"], json!("[id]"));
    // The order notification is declared, or lightningd would drop it.
    assert_eq!(
        manifest["notifications"],
        json!([{"method": "magma_order"}, {"method": "magma_decision"}])
    );
    assert_eq!(methods["magma-status"]["usage"], json!(""));
    for m in methods.values() {
        assert!(
            m["description"].as_str().is_some_and(|d| d.len() > 20),
            "{m}"
        );
    }
    assert_eq!(manifest["nonnumericids"], json!(true));
    // `lightning-cli plugin start` works at run time, as the README says.
    assert_eq!(manifest["dynamic"], json!(true));
    let mut subscriptions: Vec<String> =
        serde_json::from_value(manifest["subscriptions"].clone()).unwrap();
    subscriptions.sort();
    assert_eq!(
        subscriptions,
        [
            "block_added",
            "channel_opened",
            "channel_state_changed",
            "shutdown"
        ]
    );

    // lightningd's `help` lists the commands with their usage.
    let help = emu.call("help", json!({})).await.unwrap();
    let text = help.to_string();
    assert!(
        text.contains("magma-estimate [usd_cents] [amount_sat]"),
        "{text}"
    );
    finish(emu).await;
}

// --- 2. init with defaults -----------------------------------------------------------------

#[tokio::test]
async fn init_with_every_default_starts_the_plugin() {
    // Not even the API URL is set: the production endpoint is the default and is not called.
    let emu = start(bare_config()).await;
    let line = emu.wait_for_log("started", WAIT).await.unwrap();
    assert_eq!(line.level, "info");
    assert!(line.message.contains("mode off"), "{}", line.message);
    assert!(
        line.message.contains("https://magma.amboss.tech/graphql"),
        "{}",
        line.message
    );
    let status = emu.call("magma-status", json!({})).await.unwrap();
    assert_eq!(status["mode"], json!("off"));
    assert_eq!(
        status["api"]["url"],
        json!("https://magma.amboss.tech/graphql")
    );
    assert_eq!(status["inbound"]["min_inbound_sat"], json!(0));
    assert_eq!(status["inbound"]["target_inbound_sat"], json!(0));
    assert!(emu.plugin_running());
    assert!(
        !emu.logs().iter().any(|l| l.level == "warn"),
        "{:?}",
        emu.logs()
    );
    finish(emu).await;
}

// --- 3. invalid values at init -------------------------------------------------------------

struct Refusal {
    options: Vec<(&'static str, Value)>,
    /// The option the reason must name.
    named: &'static str,
    /// Words of the rule.
    words: &'static [&'static str],
}

fn refusal(
    options: Vec<(&'static str, Value)>,
    named: &'static str,
    words: &'static [&'static str],
) -> Refusal {
    Refusal {
        options,
        named,
        words,
    }
}

/// Runs one case; returns a description of what went wrong, if anything.
async fn check_refusal(case: Refusal) -> Result<(), String> {
    let mut cfg = bare_config();
    for (name, value) in &case.options {
        cfg = cfg.option(name, value.clone());
    }
    let what = format!("{:?}", case.options);
    let emu = Emulator::start(cfg)
        .await
        .map_err(|e| format!("{what}: lightningd refused the plugin: {e:#}"))?;
    let reason = emu
        .disabled()
        .ok_or_else(|| format!("{what}: the plugin started"))?;
    if !reason.contains(case.named) {
        return Err(format!("{what}: {reason:?} does not name {}", case.named));
    }
    for w in case.words {
        if !reason.contains(w) {
            return Err(format!("{what}: {reason:?} lacks {w:?}"));
        }
    }
    let logs = emu.logs();
    if !logs
        .iter()
        .any(|l| l.level == "warn" && l.message.contains(&reason))
    {
        return Err(format!("{what}: no warn line with {reason:?}: {logs:?}"));
    }
    if !emu.stdout_violations().is_empty() {
        return Err(format!("{what}: stdout {:?}", emu.stdout_violations()));
    }
    Ok(())
}

#[tokio::test]
async fn every_option_refuses_an_invalid_value_at_init_by_disabling_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str, text: &str| -> Value {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        json!(p.to_str().unwrap())
    };
    let missing = json!(dir.path().join("no-such-file").to_str().unwrap());
    let empty = path("empty", " \n");
    let two_lines = path("two", "amboss_first_key\namboss_second_key\n");
    let uri = |s: &str| json!(s.replace("ID", NODE_ID));

    let cases = vec![
        // magma-api-url
        refusal(
            vec![("magma-api-url", json!("http://magma.example.com/graphql"))],
            "magma-api-url",
            &["http://", "loopback"],
        ),
        refusal(
            vec![("magma-api-url", json!("ftp://127.0.0.1/graphql"))],
            "magma-api-url",
            &["https://"],
        ),
        refusal(
            vec![("magma-api-url", json!("not a url"))],
            "magma-api-url",
            &["not a valid URL"],
        ),
        // magma-api-key-file
        refusal(
            vec![("magma-api-key-file", json!(""))],
            "magma-api-key-file",
            &["file path"],
        ),
        refusal(
            vec![("magma-api-key-file", missing)],
            "magma-api-key-file",
            &["cannot read"],
        ),
        refusal(
            vec![("magma-api-key-file", empty)],
            "magma-api-key-file",
            &["is empty"],
        ),
        refusal(
            vec![("magma-api-key-file", two_lines)],
            "magma-api-key-file",
            &["only the API key"],
        ),
        // magma-mode
        refusal(
            vec![("magma-mode", json!("sometimes"))],
            "magma-mode",
            &["off, dry-run, auto", "sometimes"],
        ),
        refusal(
            vec![("magma-mode", json!("AUTO"))],
            "magma-mode",
            &["off, dry-run, auto"],
        ),
        // magma-min-inbound-sat: negative, and more bitcoin than there will ever be
        refusal(
            vec![("magma-min-inbound-sat", json!(-1))],
            "magma-min-inbound-sat",
            &["negative"],
        ),
        refusal(
            vec![("magma-min-inbound-sat", json!(2_100_000_000_000_001i64))],
            "magma-min-inbound-sat",
            &["between 0 and 2100000000000000"],
        ),
        // magma-target-inbound-sat: below the minimum (cross-option), negative
        refusal(
            vec![
                ("magma-min-inbound-sat", json!(500_000)),
                ("magma-target-inbound-sat", json!(100_000)),
            ],
            "magma-target-inbound-sat",
            &["at least magma-min-inbound-sat (500000)", "100000"],
        ),
        refusal(
            vec![("magma-target-inbound-sat", json!(-5))],
            "magma-target-inbound-sat",
            &["negative"],
        ),
        // magma-order-min-usd-cents: under Magma's minimum
        refusal(
            vec![("magma-order-min-usd-cents", json!(499))],
            "magma-order-min-usd-cents",
            &["between 500 and 10000000", "499"],
        ),
        // magma-order-max-usd-cents: range, and below the minimum (cross-option)
        refusal(
            vec![("magma-order-max-usd-cents", json!(20_000_000))],
            "magma-order-max-usd-cents",
            &["between 500 and 10000000"],
        ),
        refusal(
            vec![
                ("magma-order-min-usd-cents", json!(3000)),
                ("magma-order-max-usd-cents", json!(2000)),
            ],
            "magma-order-max-usd-cents",
            &["at least magma-order-min-usd-cents (3000)", "2000"],
        ),
        // magma-max-fee-ppm
        refusal(
            vec![("magma-max-fee-ppm", json!(0))],
            "magma-max-fee-ppm",
            &["between 1 and 1000000"],
        ),
        refusal(
            vec![("magma-max-fee-ppm", json!(1_000_001))],
            "magma-max-fee-ppm",
            &["between 1 and 1000000"],
        ),
        // magma-budget-usd-cents
        refusal(
            vec![("magma-budget-usd-cents", json!(10_000_001))],
            "magma-budget-usd-cents",
            &["between 0 and 10000000"],
        ),
        // magma-budget-days
        refusal(
            vec![("magma-budget-days", json!(0))],
            "magma-budget-days",
            &["between 1 and 365"],
        ),
        refusal(
            vec![("magma-budget-days", json!(366))],
            "magma-budget-days",
            &["between 1 and 365"],
        ),
        // magma-max-inflight
        refusal(
            vec![("magma-max-inflight", json!(0))],
            "magma-max-inflight",
            &["between 1 and 100"],
        ),
        // magma-check-interval
        refusal(
            vec![("magma-check-interval", json!(5))],
            "magma-check-interval",
            &["between 10 and 86400"],
        ),
        // magma-failure-backoff
        refusal(
            vec![("magma-failure-backoff", json!(59))],
            "magma-failure-backoff",
            &["between 60 and 86400"],
        ),
        refusal(
            vec![("magma-failure-backoff", json!(100_000))],
            "magma-failure-backoff",
            &["between 60 and 86400"],
        ),
        // magma-pause-after-failures
        refusal(
            vec![("magma-pause-after-failures", json!(101))],
            "magma-pause-after-failures",
            &["between 0 and 100"],
        ),
        // magma-connection-uri: shape, node id, port, host
        refusal(
            vec![("magma-connection-uri", json!("nonsense"))],
            "magma-connection-uri",
            &["pubkey@host:port"],
        ),
        refusal(
            vec![("magma-connection-uri", uri("04abc@1.2.3.4:9735"))],
            "magma-connection-uri",
            &["node id", "66 hex"],
        ),
        refusal(
            vec![("magma-connection-uri", uri("ID@1.2.3.4:0"))],
            "magma-connection-uri",
            &["port"],
        ),
        refusal(
            vec![("magma-connection-uri", uri("ID@localhost:9735"))],
            "magma-connection-uri",
            &["not an IPv4"],
        ),
        // magma-pay-max-fee-ppm
        refusal(
            vec![("magma-pay-max-fee-ppm", json!(100_001))],
            "magma-pay-max-fee-ppm",
            &["between 0 and 100000"],
        ),
    ];
    // magma-private and magma-rails-cluster-only: every value lightningd lets through is a
    // valid bool; their invalid values are lightningd's to refuse (next test).
    let mut covered: Vec<&str> = cases.iter().map(|c| c.named).collect();
    covered.extend(["magma-private", "magma-rails-cluster-only"]);
    for spec in OPTIONS {
        assert!(
            covered.contains(&spec.name),
            "{} has no invalid case",
            spec.name
        );
    }

    let mut runs = tokio::task::JoinSet::new();
    for case in cases {
        runs.spawn(check_refusal(case));
    }
    let mut failures = Vec::new();
    while let Some(r) = runs.join_next().await {
        if let Err(e) = r.expect("case ran") {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Values of the wrong type never reach the plugin: lightningd refuses to start (its message:
/// `--NAME=VALUE: ...`), exactly as the emulator does.
#[tokio::test]
async fn lightningd_refuses_values_of_the_wrong_type_before_init() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "magma-min-inbound-sat",
            json!("lots"),
            "--magma-min-inbound-sat=lots: 'lots' is not a number",
        ),
        (
            "magma-budget-usd-cents",
            json!(true),
            "--magma-budget-usd-cents=true: 'true' is not a number",
        ),
        (
            "magma-check-interval",
            json!("10m"),
            "--magma-check-interval=10m: '10m' is not a number",
        ),
        (
            "magma-private",
            json!("1"),
            "--magma-private=1: boolean plugin arguments must be true or false",
        ),
        (
            "magma-rails-cluster-only",
            json!("maybe"),
            "--magma-rails-cluster-only=maybe: Invalid argument 'maybe'",
        ),
    ];
    for (name, value, words) in cases {
        let err = match Emulator::start(bare_config().option(name, value.clone())).await {
            Ok(emu) => panic!("{name}={value} accepted; disabled: {:?}", emu.disabled()),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(words), "{name}={value}: {err}");
    }
}

/// Spellings lightningd accepts are accepted by the plugin too.
#[tokio::test]
async fn other_valid_spellings_start_the_plugin() {
    let (_sim, server) = sim().await;
    let emu = start(
        config(&server.graphql_url)
            .option("magma-private", "yes")
            .option("magma-rails-cluster-only", "no")
            .option("magma-mode", "dry-run")
            .option("magma-min-inbound-sat", "1000000")
            .option(
                "magma-connection-uri",
                format!("{NODE_ID}@[2001:db8::7]:9736"),
            ),
    )
    .await;
    let status = emu.call("magma-status", json!([])).await.unwrap();
    assert_eq!(status["mode"], json!("dry-run"));
    assert_eq!(status["inbound"]["min_inbound_sat"], json!(1_000_000));
    assert_eq!(
        status["connection_uri"]["uri"],
        json!(format!("{NODE_ID}@[2001:db8::7]:9736"))
    );
    finish(emu).await;
}

// --- 4. setconfig --------------------------------------------------------------------------

async fn status(emu: &Emulator) -> Value {
    emu.call("magma-status", json!({})).await.unwrap()
}

async fn caps(emu: &Emulator) -> Value {
    emu.call("magma-estimate", json!({})).await.unwrap()["caps"].clone()
}

/// What lightningd's `listconfigs` holds for an option (it keeps a value only once the plugin
/// accepted it).
async fn listed(emu: &Emulator, name: &str) -> Value {
    let c = emu.call("listconfigs", json!({})).await.unwrap();
    let entry = &c["configs"][name];
    ["value_int", "value_str", "value_bool"]
        .iter()
        .find_map(|k| entry.get(*k).cloned())
        .unwrap_or(Value::Null)
}

fn set_lines(emu: &Emulator, name: &str) -> Vec<String> {
    emu.logs()
        .into_iter()
        .filter(|l| l.message.starts_with(&format!("{name} set to")))
        .map(|l| l.message)
        .collect()
}

/// Sets `value`, expects it accepted and logged by the plugin.
async fn set_ok(emu: &Emulator, name: &str, value: Value) {
    let before = set_lines(emu, name).len();
    let r = emu.setconfig(name, value.clone()).await;
    let r = r.unwrap_or_else(|e| panic!("{name}={value}: {e}"));
    assert_eq!(r["config"]["config"], json!(name), "{r}");
    // The plugin's log line travels on its own; wait for it (generously).
    let deadline = tokio::time::Instant::now() + WAIT;
    while set_lines(emu, name).len() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: no log line"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(set_lines(emu, name).len(), before + 1, "{name}");
}

/// Sets `value`, expects -32602 naming the option and the rule, and nothing changed.
async fn set_refused(emu: &Emulator, name: &str, value: Value, words: &[&str]) {
    let before = listed(emu, name).await;
    let lines = set_lines(emu, name).len();
    let mut all = vec![name];
    all.extend_from_slice(words);
    expect_error(emu.setconfig(name, value).await, -32602, &all);
    assert_eq!(listed(emu, name).await, before, "{name} stays");
    assert_eq!(
        set_lines(emu, name).len(),
        lines,
        "{name}: no change logged"
    );
}

#[tokio::test]
async fn setconfig_changes_thresholds_mode_and_uri_visibly_and_refuses_bad_values() {
    let (_sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;

    // magma-mode
    set_ok(&emu, "magma-mode", json!("dry-run")).await;
    assert_eq!(status(&emu).await["mode"], json!("dry-run"));
    set_refused(
        &emu,
        "magma-mode",
        json!("sometimes"),
        &["off, dry-run, auto"],
    )
    .await;
    assert_eq!(status(&emu).await["mode"], json!("dry-run"));
    set_ok(&emu, "magma-mode", json!("auto")).await;
    assert_eq!(status(&emu).await["mode"], json!("auto"));

    // magma-min-inbound-sat: the target follows at twice the minimum while it is unset.
    set_ok(&emu, "magma-min-inbound-sat", json!(1_000_000)).await;
    let inbound = status(&emu).await["inbound"].clone();
    assert_eq!(inbound["min_inbound_sat"], json!(1_000_000));
    assert_eq!(inbound["target_inbound_sat"], json!(2_000_000));
    assert_eq!(
        inbound["below_minimum"],
        json!(true),
        "no channels: 0 < 1,000,000"
    );
    set_refused(&emu, "magma-min-inbound-sat", json!(-5), &["negative"]).await;
    assert_eq!(
        status(&emu).await["inbound"]["min_inbound_sat"],
        json!(1_000_000)
    );

    // magma-target-inbound-sat, and the cross-option rule against the minimum.
    set_ok(&emu, "magma-target-inbound-sat", json!(1_500_000)).await;
    assert_eq!(
        status(&emu).await["inbound"]["target_inbound_sat"],
        json!(1_500_000)
    );
    set_refused(
        &emu,
        "magma-target-inbound-sat",
        json!(999_999),
        &["at least magma-min-inbound-sat (1000000)"],
    )
    .await;
    // A minimum above the target is refused as the target's fault, and changes nothing.
    let e = expect_error(
        emu.setconfig("magma-min-inbound-sat", json!(2_000_000))
            .await,
        -32602,
        &[
            "magma-target-inbound-sat",
            "at least magma-min-inbound-sat (2000000)",
        ],
    );
    assert!(!e.message.contains("set to"));
    let inbound = status(&emu).await["inbound"].clone();
    assert_eq!(inbound["min_inbound_sat"], json!(1_000_000));
    assert_eq!(inbound["target_inbound_sat"], json!(1_500_000));

    // magma-connection-uri overrides the announced address.
    assert_eq!(
        status(&emu).await["connection_uri"]["source"],
        json!("announced address")
    );
    let over = format!("{NODE_ID}@203.0.113.9:9999");
    set_ok(&emu, "magma-connection-uri", json!(over)).await;
    let c = status(&emu).await["connection_uri"].clone();
    assert_eq!(c, json!({"uri": over, "source": "magma-connection-uri"}));
    set_refused(
        &emu,
        "magma-connection-uri",
        json!("nonsense"),
        &["pubkey@host:port"],
    )
    .await;
    set_refused(
        &emu,
        "magma-connection-uri",
        json!(format!("{NODE_ID}@1.2.3.4:70000")),
        &["port"],
    )
    .await;
    assert_eq!(status(&emu).await["connection_uri"]["uri"], json!(over));
    finish(emu).await;
}

#[tokio::test]
async fn setconfig_changes_the_caps_magma_estimate_applies_and_refuses_bad_values() {
    let (_sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;
    let c = caps(&emu).await;
    assert_eq!(
        (
            &c["order_min_usd_cents"],
            &c["order_max_usd_cents"],
            &c["max_fee_ppm"],
            &c["budget_usd_cents"]
        ),
        (&json!(500), &json!(5000), &json!(5000), &json!(5000))
    );

    set_ok(&emu, "magma-order-min-usd-cents", json!(1000)).await;
    assert_eq!(caps(&emu).await["order_min_usd_cents"], json!(1000));
    set_refused(
        &emu,
        "magma-order-min-usd-cents",
        json!(499),
        &["between 500 and 10000000"],
    )
    .await;
    // Above the maximum: the cross-option rule names the maximum.
    expect_error(
        emu.setconfig("magma-order-min-usd-cents", json!(6000))
            .await,
        -32602,
        &[
            "magma-order-max-usd-cents",
            "at least magma-order-min-usd-cents (6000)",
        ],
    );
    assert_eq!(caps(&emu).await["order_min_usd_cents"], json!(1000));

    set_ok(&emu, "magma-order-max-usd-cents", json!(3000)).await;
    assert_eq!(caps(&emu).await["order_max_usd_cents"], json!(3000));
    set_refused(
        &emu,
        "magma-order-max-usd-cents",
        json!(900),
        &["at least magma-order-min-usd-cents (1000)"],
    )
    .await;
    assert_eq!(caps(&emu).await["order_max_usd_cents"], json!(3000));

    // The default quote (the 1000-cent minimum now) costs 1996 ppm at the simulator's price.
    set_ok(&emu, "magma-max-fee-ppm", json!(1995)).await;
    let q = emu.call("magma-estimate", json!({})).await.unwrap();
    assert_eq!(q["caps"]["max_fee_ppm"], json!(1995));
    assert_eq!(q["allowed"], json!(false), "{q}");
    set_refused(
        &emu,
        "magma-max-fee-ppm",
        json!(0),
        &["between 1 and 1000000"],
    )
    .await;
    set_ok(&emu, "magma-max-fee-ppm", json!(1996)).await;
    assert_eq!(
        emu.call("magma-estimate", json!({})).await.unwrap()["allowed"],
        json!(true)
    );

    set_ok(&emu, "magma-budget-usd-cents", json!(800)).await;
    let q = emu.call("magma-estimate", json!({})).await.unwrap();
    assert_eq!(q["caps"]["budget_usd_cents"], json!(800));
    assert_eq!(q["caps"]["within_budget"], json!(false), "1000 cents > 800");
    set_refused(
        &emu,
        "magma-budget-usd-cents",
        json!(10_000_001),
        &["between 0 and 10000000"],
    )
    .await;
    assert_eq!(caps(&emu).await["budget_usd_cents"], json!(800));
    finish(emu).await;
}

/// Options no command reports yet: the change is accepted (and logged by the plugin, and kept by
/// lightningd) or refused with -32602 naming the option and the rule, logging nothing.
#[tokio::test]
async fn setconfig_on_the_remaining_dynamic_options() {
    let (_sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;
    let cases: Vec<(&str, Value, Value, &[&str])> = vec![
        (
            "magma-budget-days",
            json!(90),
            json!(0),
            &["between 1 and 365"],
        ),
        (
            "magma-max-inflight",
            json!(3),
            json!(101),
            &["between 1 and 100"],
        ),
        (
            "magma-check-interval",
            json!(60),
            json!(5),
            &["between 10 and 86400"],
        ),
        (
            "magma-failure-backoff",
            json!(600),
            json!(59),
            &["between 60 and 86400"],
        ),
        (
            "magma-pay-max-fee-ppm",
            json!(1000),
            json!(100_001),
            &["between 0 and 100000"],
        ),
        (
            "magma-pause-after-failures",
            json!(5),
            json!(101),
            &["between 0 and 100"],
        ),
    ];
    for (name, good, bad, words) in cases {
        set_ok(&emu, name, good.clone()).await;
        assert_eq!(listed(&emu, name).await, good, "{name}");
        let line = set_lines(&emu, name).pop().unwrap();
        assert_eq!(line, format!("{name} set to {good}"));
        set_refused(&emu, name, bad, words).await;
        assert_eq!(listed(&emu, name).await, good, "{name}");
    }
    // The bools, in every spelling lightningd forwards.
    for name in ["magma-private", "magma-rails-cluster-only"] {
        for (text, value) in [
            ("true", true),
            ("no", false),
            ("yes", true),
            ("false", false),
        ] {
            set_ok(&emu, name, json!(text)).await;
            assert_eq!(
                set_lines(&emu, name).pop().unwrap(),
                format!("{name} set to {value}")
            );
            assert_eq!(listed(&emu, name).await, json!(value));
        }
        // lightningd refuses other values before the plugin sees them.
        set_refused(&emu, name, json!("1"), &["must be true or false"]).await;
        set_refused(&emu, name, json!("maybe"), &["Invalid argument 'maybe'"]).await;
        assert_eq!(listed(&emu, name).await, json!(false));
    }
    finish(emu).await;
}

#[tokio::test]
async fn static_options_cannot_be_set_at_run_time() {
    let (_sim, server) = sim().await;
    let emu = start(config(&server.graphql_url)).await;
    emu.wait_for_log("sellers will open channels", WAIT)
        .await
        .unwrap();
    let logs_before = emu.logs().len();
    // lightningd refuses: the plugin declared them non-dynamic, so it never sees the call.
    expect_error(
        emu.setconfig("magma-api-url", json!("http://127.0.0.1:1/graphql"))
            .await,
        -32602,
        &["config: Not a dynamic config option", "magma-api-url"],
    );
    expect_error(
        emu.setconfig("magma-api-key-file", json!("/tmp/key")).await,
        -32602,
        &["config: Not a dynamic config option", "magma-api-key-file"],
    );
    let s = status(&emu).await;
    assert_eq!(s["api"]["url"], json!(server.graphql_url));
    assert_eq!(
        s["api"]["credential"],
        json!("none: orders are bought anonymously with session keys")
    );
    assert_eq!(emu.logs().len(), logs_before, "{:?}", emu.logs());
    // An option the plugin does not have is lightningd's to refuse too.
    expect_error(
        emu.setconfig("magma-colour", json!("red")).await,
        -32602,
        &["Unknown config option"],
    );
    finish(emu).await;
}
