//! One order: its data, HTLC, status history, and the public snapshot of it.

use bitcoin::hex::DisplayHex;
use serde::Serialize;

use crate::model::{HtlcState, KnownStatus, OrderStatus, OwnerKind, PaymentStatus, SellerScript};

/// One status/payment-status change, at virtual unix seconds `at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub at: u64,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
}

/// A copy of an order's state, for tests and the admin API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderSnapshot {
    pub id: String,
    /// `order.transaction_id` of the buy response (the order id unless configured otherwise).
    pub transaction_id: String,
    pub account_id: String,
    pub owner: OwnerKind,
    pub connection_uri: String,
    /// The buyer's node (lowercase hex), from `connection_uri`.
    pub destination_pubkey: String,
    pub usd_cents: u64,
    pub channel_size_sat: u64,
    /// Buyer fee in USD (two decimals).
    pub fee_usd: String,
    /// Buyer fee in sats = `payment.amount.sats` (a tampered invoice may ask for more).
    pub invoice_sats: u64,
    pub invoice: String,
    /// Payment hash of the invoice, hex.
    pub payment_hash: String,
    pub htlc: HtlcState,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub funding_txid: Option<String>,
    /// Short channel id once the channel is valid.
    pub channel_id: Option<String>,
    pub confirmations: u32,
    pub blocks_until_can_be_closed: Option<u32>,
    pub private: bool,
    pub rails_cluster_only: bool,
    pub asset_id: Option<String>,
    pub redirect_url: Option<String>,
    /// Virtual unix seconds.
    pub created_at: u64,
    /// Deadline of the party that must act next (virtual unix seconds).
    pub timeout: Option<u64>,
    pub history: Vec<Transition>,
    pub seller: SellerScript,
}

/// An order as the simulator keeps it.
#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub view: OrderSnapshot,
    pub preimage: [u8; 32],
    /// Height of the block that confirmed the funding transaction, and its index in it.
    pub funding_block: Option<(u32, u32)>,
}

impl Order {
    pub fn new(view: OrderSnapshot, preimage: [u8; 32]) -> Order {
        let mut order = Order {
            view,
            preimage,
            funding_block: None,
        };
        order.record(order.view.created_at);
        order
    }

    pub fn status(&self) -> &OrderStatus {
        &self.view.status
    }

    pub fn is(&self, status: KnownStatus) -> bool {
        self.view.status.is(status)
    }

    /// Sets status and payment status, recording a transition if either changed.
    pub fn set(&mut self, at: u64, status: impl Into<OrderStatus>, payment: PaymentStatus) {
        let status = status.into();
        if status != self.view.status || payment != self.view.payment_status {
            self.view.status = status;
            self.view.payment_status = payment;
            self.record(at);
        }
    }

    pub fn set_status(&mut self, at: u64, status: impl Into<OrderStatus>) {
        let payment = self.view.payment_status;
        self.set(at, status, payment);
    }

    /// Moves to a failure status and cancels the invoice: a held HTLC is failed back
    /// (`HODL_INVOICE_TIMEOUT`), an unpaid invoice can no longer be paid.
    pub fn fail(&mut self, at: u64, status: KnownStatus) {
        let payment = match self.view.htlc {
            HtlcState::Held => {
                self.view.htlc = HtlcState::Cancelled;
                PaymentStatus::HodlInvoiceTimeout
            }
            HtlcState::Unpaid => {
                self.view.htlc = HtlcState::Cancelled;
                self.view.payment_status
            }
            HtlcState::Settled { .. } | HtlcState::Cancelled => self.view.payment_status,
        };
        self.view.timeout = None;
        self.set(at, status, payment);
    }

    /// Settles a held HTLC with the order's preimage; other states are left alone.
    pub fn settle_if_held(&mut self) -> bool {
        if self.view.htlc == HtlcState::Held {
            self.view.htlc = HtlcState::Settled {
                preimage: self.preimage.to_lower_hex_string(),
            };
            true
        } else {
            false
        }
    }

    fn record(&mut self, at: u64) {
        self.view.history.push(Transition {
            at,
            status: self.view.status.clone(),
            payment_status: self.view.payment_status,
        });
    }
}
