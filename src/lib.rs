//! cln-magma: a Core Lightning plugin that keeps a node supplied with inbound liquidity by
//! buying channels on the Amboss Magma marketplace.

pub mod app;
pub mod autobuy;
pub mod commands;
pub mod config;
pub mod crash;
pub mod credential;
pub mod estimate;
pub mod inbound;
pub mod invoice;
pub mod ledger;
pub mod magma;
pub mod node;
pub mod order;
pub mod params;
pub mod policy;
pub mod purchase;
pub mod record;
pub mod recovery;
pub mod rpcerror;
pub mod secret;
pub mod store;
pub mod tracker;
pub mod uri;
