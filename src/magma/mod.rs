//! Everything cln-magma says to the Amboss Magma API.
//!
//! [`MagmaClient`] has one async method per operation; failures come back as [`MagmaError`],
//! classified so that callers can decide between retrying, reconciling and giving up.

mod client;
mod error;
mod queries;
pub mod status;
mod wire;

pub use client::{ClientOptions, DEFAULT_API_URL, MagmaClient, validate_api_url};
#[doc(hidden)]
pub use client::{Operation, Parsed, parse_response};
pub use error::{ConfigError, MagmaError};
pub use status::{OrderStatus, Outcome, PaymentStatus};
pub use wire::{BuyRequest, BuyerFee, Order, Page, Price, Purchase, Sats, Transaction, Usd};
