//! `magma-sim`: a schema-validating simulator of the Amboss Magma buyer GraphQL API.
//!
//! It serves `POST /graphql` with a typed schema of the buyer operations (price, `liquidity.buy`,
//! `get_order`, `purchases`, `transaction_list`), issues real signed BOLT11 hold invoices, runs
//! every order through a scripted seller lifecycle on a virtual clock, injects faults on request,
//! and records every request. Tests drive it through [`Sim`]; operators through the binary and
//! the admin API under `/admin`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use magma_sim::{SellerScript, Sim, SimConfig};
//! let sim = Sim::new(SimConfig { default_seller: SellerScript::Happy, ..SimConfig::default() });
//! let server = sim.serve("127.0.0.1:0".parse()?).await?;
//! println!("{}", server.graphql_url);
//! sim.advance(std::time::Duration::from_secs(60));
//! # Ok(()) }
//! ```

mod accounts;
mod admin;
mod apollo;
mod buy;
mod clock;
mod config;
mod error;
mod faults;
mod graphql;
mod htlc;
mod invoice;
mod model;
mod operation;
mod order;
mod pricing;
mod request_log;
mod schema;
mod seller;
mod server;
mod sim;
mod state;

pub use clock::iso8601;
pub use config::{Network, SimConfig, Timings};
pub use faults::{Fault, Operation};
pub use invoice::InvoiceFault;
pub use model::{HtlcState, KnownStatus, OrderStatus, OwnerKind, PaymentStatus, SellerScript};
pub use order::{OrderSnapshot, Transition};
pub use request_log::{CredentialKind, RequestRecord};
pub use server::SimServer;
pub use sim::Sim;
