//! A stand-in for Core Lightning's `lightningd` (v26.06) that runs a real plugin binary.
//!
//! It speaks the plugin protocol on the plugin's stdin/stdout exactly as lightningd does
//! (`getmanifest`, `init`, forwarded RPC calls with chained string ids, `setconfig`,
//! notifications, `shutdown`), applies lightningd's manifest rules, serves the JSON-RPC unix
//! socket from a scriptable node model, and records the plugin's logs, custom notifications,
//! RPC calls and any stray stdout output. See README.md.

pub mod bolt11;
pub mod channel;
pub mod commands;
pub mod datastore;
pub mod emulator;
pub mod invoice;
pub mod magma;
pub mod manifest;
pub mod node;
pub mod pay;
pub mod plugin_host;
pub mod protocol;
pub mod rpc_server;
pub mod test_plugin;
pub mod util;

pub(crate) use util::hex;

pub use channel::{Channel, ChannelSpec, ChannelState, Opener};
pub use emulator::{Emulator, EmulatorConfig};
pub use manifest::{Manifest, ManifestError};
pub use node::{
    AddrType, ChannelSource, HtlcOutcome, IncomingChannel, NetAddress, NodeConfig, NodeHandle,
    Payee, peer_id,
};
pub use pay::{ManualPayee, PayStatus, Payment};
pub use plugin_host::LogLine;
pub use protocol::RpcError;
