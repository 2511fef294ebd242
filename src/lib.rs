//! cln-magma: a Core Lightning plugin that keeps a node supplied with inbound liquidity by
//! buying channels on the Amboss Magma marketplace.

pub mod magma;
pub mod secret;
