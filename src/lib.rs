//! cln-magma: a Core Lightning plugin that keeps a node supplied with inbound liquidity by
//! buying channels on the Amboss Magma marketplace.

pub mod config;
pub mod estimate;
pub mod inbound;
pub mod magma;
pub mod secret;
pub mod uri;
