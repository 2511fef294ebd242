//! How a Magma call failed, in classes a caller can act on.
//!
//! The class decides what the plugin does next: `Transient` and `RateLimited` are retried later,
//! `Ambiguous` (a buy that may have gone through) is reconciled before any new buy, `Invalid` and
//! `Unauthorized` need the operator. Texts never contain a credential: server-provided messages
//! are scrubbed and shortened before they are stored here.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MagmaError {
    /// Missing, expired or revoked API key or session key.
    #[error("Magma refused the credential: {message}")]
    Unauthorized { message: String },
    /// The service rejected the request as malformed (validation), with its message.
    #[error("Magma rejected the request: {message}")]
    Invalid { message: String },
    /// The order does not exist or does not belong to this credential.
    #[error("Magma does not know this order for this credential: {message}")]
    NotFound { message: String },
    /// Too many requests; `retry_after` when the service said how long to wait.
    #[error("Magma is rate limiting us{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// Temporary trouble (5xx, timeout, connection failure): the request had no effect, or it
    /// is a read that is safe to repeat.
    #[error("Magma is temporarily unavailable: {reason}")]
    Transient { reason: String },
    /// A `liquidity.buy` whose outcome is unknown: it may have created an order. Never retry it
    /// blindly; reconcile through `transaction_list` first.
    #[error("the outcome of the buy is unknown (it may have created an order): {reason}")]
    Ambiguous { reason: String },
    /// The response could not be understood (not JSON, wrong shape, too large).
    #[error("Magma sent a response we cannot use: {reason}")]
    Protocol { reason: String },
}

impl MagmaError {
    /// A short name of the class, for logs and command output.
    pub fn class(&self) -> &'static str {
        match self {
            MagmaError::Unauthorized { .. } => "unauthorized",
            MagmaError::Invalid { .. } => "invalid",
            MagmaError::NotFound { .. } => "not_found",
            MagmaError::RateLimited { .. } => "rate_limited",
            MagmaError::Transient { .. } => "transient",
            MagmaError::Ambiguous { .. } => "ambiguous",
            MagmaError::Protocol { .. } => "protocol",
        }
    }

    /// Whether repeating the same call later can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            MagmaError::RateLimited { .. } | MagmaError::Transient { .. }
        )
    }
}

/// Why a client could not be built from its configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("API URL {url:?} is not a valid URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "API URL {url:?} uses plain http:// for a non-loopback host; use https:// (http:// is allowed only for 127.0.0.0/8, ::1 and localhost)"
    )]
    InsecureUrl { url: String },
    #[error("API URL {url:?} must use https:// (or http:// on a loopback host)")]
    BadScheme { url: String },
    #[error("proxy {proxy:?} is not usable: {reason}")]
    BadProxy { proxy: String, reason: String },
    #[error("cannot set up the HTTP client: {reason}")]
    Http { reason: String },
}
