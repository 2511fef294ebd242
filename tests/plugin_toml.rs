//! `plugin.toml` says what the built plugin says: its options (names, order, types, defaults,
//! dynamic flags, descriptions) equal the live manifest, its version and metadata the crate's.

mod common;

use common::{bare_config, finish, start};
use std::collections::BTreeSet;

use cln_magma::config::OPTIONS;
use serde_json::{Map, Value};

fn plugin_toml() -> toml::Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.toml");
    let text = std::fs::read_to_string(path).expect("plugin.toml exists");
    text.parse().expect("plugin.toml is valid TOML")
}

/// A TOML value as JSON, for comparing with the manifest.
fn to_json(v: &toml::Value) -> Value {
    serde_json::to_value(v).expect("plain TOML values convert")
}

#[test]
fn the_metadata_matches_the_crate() {
    let t = plugin_toml();
    let s = |k: &str| {
        t.get(k)
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert_eq!(s("name"), env!("CARGO_PKG_NAME"));
    assert_eq!(s("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(s("description"), env!("CARGO_PKG_DESCRIPTION"));
    assert_eq!(s("license"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(s("repository"), env!("CARGO_PKG_REPOSITORY"));
    assert_eq!(s("build"), "cargo build --release");
    // The binary `cargo build --release` produces.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_cln-magma"));
    assert_eq!(
        s("entrypoint"),
        format!(
            "target/release/{}",
            bin.file_name().unwrap().to_str().unwrap()
        )
    );
    // What cargo leaves at that path, also under `cargo test --release`, carries no test
    // switch: the test-hooks build lives in target/test-hooks/.
    let bytes = std::fs::read(bin).unwrap();
    for switch in [
        "CLN_MAGMA_TEST_POLL_MS",
        "CLN_MAGMA_CRASH_AT",
        "CLN_MAGMA_TEST_PANIC_AT",
    ] {
        assert!(
            !bytes.windows(switch.len()).any(|w| w == switch.as_bytes()),
            "{} holds the test switch {switch}",
            bin.display()
        );
    }
    let v = s("min_cln_version");
    assert!(
        v.starts_with('v') && v[1..].split('.').all(|p| p.parse::<u32>().is_ok()),
        "{v}"
    );
}

#[tokio::test]
async fn the_options_equal_the_live_manifest() {
    let emu = start(bare_config()).await;
    let manifest = emu.manifest();
    let live: Vec<&Value> = manifest["options"].as_array().unwrap().iter().collect();

    let t = plugin_toml();
    let declared = t
        .get("options")
        .and_then(toml::Value::as_array)
        .expect("[[options]] entries");
    let keys = ["name", "type", "default", "dynamic", "description"];
    let declared: Vec<Map<String, Value>> = declared
        .iter()
        .map(|o| {
            let table = o.as_table().expect("an [[options]] table");
            for k in table.keys() {
                assert!(
                    keys.contains(&k.as_str()),
                    "unexpected key {k} in {table:?}"
                );
            }
            table.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
        })
        .collect();

    // The manifest lists options in the order cln-plugin keeps them; plugin.toml in the order
    // operators read them (config::OPTIONS). Same set, no duplicates.
    let set = |names: Vec<String>| -> BTreeSet<String> {
        let n = names.len();
        let set: BTreeSet<String> = names.into_iter().collect();
        assert_eq!(set.len(), n, "duplicate option names");
        set
    };
    let name_of = |v: &Value| v.as_str().expect("a name").to_string();
    assert_eq!(
        set(declared.iter().map(|o| name_of(&o["name"])).collect()),
        set(live.iter().map(|o| name_of(&o["name"])).collect()),
        "the same options"
    );
    assert_eq!(
        declared
            .iter()
            .map(|o| name_of(&o["name"]))
            .collect::<Vec<_>>(),
        OPTIONS
            .iter()
            .map(|o| o.name.to_string())
            .collect::<Vec<_>>(),
        "in the order of config::OPTIONS"
    );
    for o in &declared {
        let name = &o["name"];
        let m = live
            .iter()
            .find(|l| &l["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the manifest"));
        for k in ["type", "dynamic", "description"] {
            assert_eq!(o.get(k), m.get(k), "{name}: {k}");
        }
        // Absent in both, or equal.
        assert_eq!(o.get("default"), m.get("default"), "{name}: default");
    }
    assert_eq!(declared.len(), live.len());
    assert_eq!(declared.len(), 18);
    assert!(declared.iter().all(|o| o["dynamic"].is_boolean()));
    finish(emu).await;
}
