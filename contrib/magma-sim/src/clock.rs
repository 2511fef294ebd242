//! Virtual time and block height, plus ISO-8601 formatting of virtual timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The simulator's clock: milliseconds since the unix epoch and the chain tip height.
/// It only moves when the simulator advances it.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    now_ms: u64,
    height: u32,
}

impl Clock {
    /// Starts at `start_secs` (or the wall clock) and `height`.
    pub fn new(start_secs: Option<u64>, height: u32) -> Clock {
        let now_ms = match start_secs {
            Some(secs) => secs.saturating_mul(1000),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        };
        Clock { now_ms, height }
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Unix seconds.
    pub fn now(&self) -> u64 {
        self.now_ms / 1000
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Moves time forward to `ms` (never backwards).
    pub fn set_ms(&mut self, ms: u64) {
        self.now_ms = self.now_ms.max(ms);
    }

    /// Adds one block; returns the new height.
    pub fn add_block(&mut self) -> u32 {
        self.height = self.height.saturating_add(1);
        self.height
    }
}

/// Milliseconds in a duration, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Formats unix seconds as ISO-8601 UTC, e.g. `2026-06-10T18:42:00Z`.
pub fn iso8601(unix_secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_formatting() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_781_116_920), "2026-06-10T18:42:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn clock_never_goes_back() {
        let mut c = Clock::new(Some(100), 7);
        c.set_ms(50_000);
        assert_eq!(c.now(), 100);
        c.set_ms(101_500);
        assert_eq!(c.now(), 101);
        assert_eq!(c.add_block(), 8);
    }
}
