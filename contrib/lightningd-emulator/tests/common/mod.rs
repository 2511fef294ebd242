//! Helpers shared by the integration tests.
#![allow(dead_code)]

use lightningd_emulator::{Emulator, EmulatorConfig};
use std::path::PathBuf;
use std::sync::OnceLock;

/// `fixtures/cln` at the repository root: captured lightningd output.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/cln")
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The `test-plugin` example binary. `cargo test` builds examples before running tests; when a
/// single test target is run it may be missing, so it is built here once.
pub fn test_plugin() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>/examples/test-plugin
        let profile_dir = exe
            .parent()
            .and_then(|p| p.parent())
            .expect("target profile dir");
        let path = profile_dir.join("examples").join("test-plugin");
        if !path.exists() {
            let status = std::process::Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--example",
                    "test-plugin",
                    "-p",
                    "lightningd-emulator",
                ])
                .status()
                .expect("running cargo build --example test-plugin");
            assert!(status.success(), "building the test plugin failed");
        }
        assert!(path.exists(), "test plugin not found at {}", path.display());
        path
    })
    .clone()
}

pub async fn start_test_plugin(cfg: impl FnOnce(EmulatorConfig) -> EmulatorConfig) -> Emulator {
    let _ = env_logger::builder().is_test(true).try_init();
    Emulator::start(cfg(EmulatorConfig::new(test_plugin())))
        .await
        .expect("emulator starts")
}
