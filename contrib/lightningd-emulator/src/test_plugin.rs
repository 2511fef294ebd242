//! The cln-magma plugin built with its `test-hooks` switches (fast polling, crash points), for
//! the integration tests, the demo and the bench.
//!
//! It is built into a target directory of its own, `target/test-hooks/`, never into
//! `target/debug` or `target/release`: README's Install section tells lightningd to load
//! `target/release/cln-magma`, and that path must only ever hold a release build. (A
//! self-referencing dev-dependency with the feature would, through Cargo's feature unification,
//! turn the switches on in the very binary `cargo test --release` leaves there.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, bail};

/// The repository root, where the plugin's Cargo.toml is (this crate is `contrib/lightningd-emulator`).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where test-hooks builds go: beside, never inside, the profile directories users load from.
pub fn target_dir() -> PathBuf {
    repository_root().join("target").join("test-hooks")
}

/// Cargo's profile for the build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// The command that builds the test-hooks plugin, for messages telling a person what to run.
pub fn build_command(profile: Profile) -> String {
    format!(
        "cargo build -p cln-magma --features test-hooks --target-dir target/test-hooks --config 'profile.dev.panic=\"abort\"'{}",
        if profile == Profile::Release {
            " --release"
        } else {
            ""
        }
    )
}

/// Builds (or finds up to date) the test-hooks plugin and returns its path. Cargo's own lock
/// serialises concurrent builds; within one process the build runs once per profile.
pub fn path(profile: Profile) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<Vec<(Profile, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, p)) = built.iter().find(|(q, _)| *q == profile) {
        return Ok(p.clone());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(repository_root())
        .args(["build", "--quiet", "-p", "cln-magma", "--bin", "cln-magma"])
        .args(["--features", "test-hooks", "--target-dir"])
        .arg(target_dir())
        // Crashes and panics as in a release build (`panic = "abort"`), in every profile.
        .args(["--config", "profile.dev.panic=\"abort\""]);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    // The outer cargo's settings for *its* build (e.g. `cargo test --release`'s profile
    // variables) must not leak into this one.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CARGO_PROFILE_") {
            cmd.env_remove(k);
        }
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", Path::new(&cargo).display()))?;
    if !status.success() {
        bail!(
            "building the test-hooks plugin failed ({status}); run `{}` from {} to see why",
            build_command(profile),
            repository_root().display()
        );
    }
    let bin = target_dir()
        .join(profile.dir())
        .join(format!("cln-magma{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!(
            "cargo built the test-hooks plugin but {} is missing",
            bin.display()
        );
    }
    built.push((profile, bin.clone()));
    Ok(bin)
}
