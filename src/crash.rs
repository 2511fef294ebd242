//! Crash points for the crash-safety tests: in builds with the `test-hooks` feature, the process
//! aborts at the point named by `CLN_MAGMA_CRASH_AT`, as a power cut or a SIGKILL would stop it
//! there. Release builds compile this to nothing.

/// Every point, in the order a purchase passes them.
pub const POINTS: &[&str] = &[
    "intent-stored",
    "buy-answered",
    "placed-stored",
    "paying-stored",
    "pay-started",
];

#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("CLN_MAGMA_CRASH_AT").is_ok_and(|v| v == name) {
        // stderr, not the log: the log is written by a task that would not get to run.
        eprintln!("cln-magma: crash point {name} reached; aborting (test build)");
        std::process::abort();
    }
    let _ = name;
}

/// In builds with `test-hooks`, panics at the point named by `CLN_MAGMA_TEST_PANIC_AT`: proves
/// a panic's message reaches lightningd's log before the process aborts.
#[inline]
pub fn panic_point(name: &str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var("CLN_MAGMA_TEST_PANIC_AT").is_ok_and(|v| v == name) {
        panic!("test panic at {name}");
    }
    let _ = name;
}
