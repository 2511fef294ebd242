//! A string that must never be shown: the Amboss API key and Magma session keys.
//!
//! `Debug` and `Display` print a fixed placeholder, and serde serialisation is deliberately not
//! implemented, so a secret cannot slip into a log line, an error text, a command result or a
//! notification by accident. Code that really needs the value (the `Authorization` header, the
//! datastore record) calls [`Secret::expose`], which is easy to grep for.

use std::fmt;

/// What every rendering of a [`Secret`] shows instead of the value.
pub const REDACTED: &str = "[redacted]";

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value itself. Only for the wire (Bearer header) and for durable storage.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the secret in `text` with [`REDACTED`]. Used on text that
    /// comes from outside (server error messages) before it is logged or returned, because a
    /// broken or hostile server could echo the credential back.
    pub fn scrub(&self, text: &str) -> String {
        // Very short values would redact ordinary words; real keys are long.
        if self.0.len() < 8 {
            return text.to_string();
        }
        text.replace(&self.0, REDACTED)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings_hide_the_value() {
        let s = Secret::new("amboss_supersecret_value");
        assert_eq!(format!("{s}"), REDACTED);
        assert!(!format!("{s:?}").contains("supersecret"));
        assert_eq!(s.expose(), "amboss_supersecret_value");
    }

    #[test]
    fn scrub_removes_echoed_values() {
        let s = Secret::new("b65b867c345468a0a2e07b3b86aa3078");
        let echoed = "bad token b65b867c345468a0a2e07b3b86aa3078 rejected";
        assert_eq!(s.scrub(echoed), "bad token [redacted] rejected");
    }
}
