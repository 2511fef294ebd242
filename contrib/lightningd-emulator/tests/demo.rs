//! `magma-demo`'s refusals. The demo itself runs in CI from `.ci/run`, exactly as README.md
//! gives it.

use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

const DEMO: &str = env!("CARGO_BIN_EXE_magma-demo");

/// Tests here run one at a time: a script written by one must not be open for writing in a child
/// another one forks at that moment (exec would fail with "Text file busy").
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn demo(args: &[&str]) -> Output {
    Command::new(DEMO)
        .args(args)
        .output()
        .expect("magma-demo runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_plugin_fails_and_says_how_to_build_it() {
    let _one = serial();
    let out = demo(&["--plugin", "/nonexistent/cln-magma"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("FAILED: no plugin binary at /nonexistent/cln-magma"),
        "{err}"
    );
    assert!(
        err.contains(
            "cargo build -p cln-magma --features test-hooks --target-dir target/test-hooks"
        ),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is told before the plugin is found"
    );
}

/// An executable that exits at once, as a plugin that is not one.
fn not_a_plugin() -> tempfile::TempPath {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut f = tempfile::NamedTempFile::new().expect("a temporary file");
    f.write_all(b"#!/bin/sh\nexit 0\n").expect("written");
    let path = f.into_temp_path();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn a_program_that_is_not_a_plugin_fails_before_anything_is_bought() {
    let _one = serial();
    let fake = not_a_plugin();
    let out = demo(&["--plugin", &fake.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("could not start the plugin"), "{err}");
    assert!(err.contains("getmanifest"), "{err}");
    let told = String::from_utf8_lossy(&out.stdout);
    assert!(!told.contains("magma-buy"), "{told}");
}

#[test]
fn an_order_below_magmas_minimum_is_refused() {
    let _one = serial();
    let fake = not_a_plugin();
    let out = demo(&["--usd-cents", "100", "--plugin", &fake.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least 500"), "{}", stderr(&out));
}
