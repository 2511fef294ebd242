//! Connects the node model to the Magma simulator (`magma_sim`, feature `magma-sim`):
//! paying a simulator invoice holds the HTLC in the simulator until its seller settles or
//! cancels it, the sellers' funding transactions become remote-opened channels, and blocks
//! mined on the node are mined in the simulator too.

use crate::node::{BoxFuture, ChannelSource, HtlcOutcome, IncomingChannel, NodeHandle, Payee};
use magma_sim::{HtlcState, Sim};
use std::sync::Arc;
use tokio::sync::watch;

/// The simulator as the destination of `pay`.
pub struct SimPayee {
    sim: Sim,
}

impl SimPayee {
    pub fn new(sim: Sim) -> Self {
        SimPayee { sim }
    }
}

impl Payee for SimPayee {
    fn accepts(&self, payee_pubkey: &str, payment_hash: &str) -> bool {
        payee_pubkey == self.sim.node_pubkey() || self.sim.htlc_state(payment_hash).is_some()
    }

    fn htlc_held(&self, payment_hash: &str, _amount_msat: u64) {
        if let Err(e) = self.sim.htlc_held(payment_hash) {
            log::warn!("simulator refused the HTLC for {payment_hash}: {e:#}");
        }
    }

    fn wait_outcome(&self, payment_hash: &str) -> BoxFuture<HtlcOutcome> {
        let sim = self.sim.clone();
        let hash = payment_hash.to_string();
        let mut rx = sim.subscribe();
        Box::pin(async move {
            loop {
                match sim.htlc_state(&hash) {
                    Some(HtlcState::Settled { preimage }) => {
                        return HtlcOutcome::Settled { preimage };
                    }
                    Some(HtlcState::Cancelled) | None => {
                        return HtlcOutcome::Cancelled {
                            reason: "the simulator failed the HTLC".into(),
                        };
                    }
                    Some(HtlcState::Held) | Some(HtlcState::Unpaid) => {}
                }
                if rx.changed().await.is_err() {
                    return HtlcOutcome::Cancelled {
                        reason: "the simulator went away".into(),
                    };
                }
            }
        })
    }
}

/// The simulator's sellers as openers of channels to the node, sharing its chain.
pub struct SimChannels {
    sim: Sim,
}

impl SimChannels {
    pub fn new(sim: Sim) -> Self {
        SimChannels { sim }
    }
}

impl ChannelSource for SimChannels {
    fn blocks_mined(&self, n: u32) {
        self.sim.mine_blocks(n);
    }

    fn incoming_channels(&self, our_id: &str) -> Vec<IncomingChannel> {
        let seller = self.sim.node_pubkey();
        self.sim
            .orders()
            .into_iter()
            .filter(|o| o.destination_pubkey.eq_ignore_ascii_case(our_id))
            .filter_map(|o| {
                Some(IncomingChannel {
                    peer_id: seller.clone(),
                    funding_txid: o.funding_txid?,
                    short_channel_id: o.channel_id,
                    amount_sat: o.channel_size_sat,
                })
            })
            .collect()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.sim.subscribe()
    }
}

/// Wires `sim` into the node: as payee of its invoices and as a channel source. The returned
/// task follows the simulator's changes until it is aborted or the simulator is dropped.
pub fn attach(node: &NodeHandle, sim: &Sim) -> tokio::task::JoinHandle<()> {
    node.add_payee(Arc::new(SimPayee::new(sim.clone())));
    node.add_channel_source(Arc::new(SimChannels::new(sim.clone())))
}
