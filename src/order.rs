//! An order as the plugin keeps it: the local state machine of design.md §5, the Magma status
//! history beside it, and the facts each transition needs. Pure: every function here takes the
//! record and an observation and returns what changed, so the money rules are table-tested
//! without lightningd or Magma.

use serde::{Deserialize, Serialize};

use crate::magma::{OrderStatus, Outcome, PaymentStatus};

/// Where the plugin stands with an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LocalState {
    /// The intent is stored; `liquidity.buy` is being sent or its answer was lost.
    Placing,
    /// Magma's answer (order id, session key, invoice) is stored; the invoice is not checked yet.
    Placed,
    /// The invoice passed every check and its payment has started (node) or was handed out
    /// (external wallet).
    Paying,
    /// The buyer's HTLC is held by the seller: money is committed until the order ends.
    Paid,
    /// Magma reported success and the channel is in `listpeerchannels`.
    Done,
    /// No order is known for the intent (a lost buy answer that could not be reconciled).
    /// Nothing can be paid.
    Abandoned,
    /// The invoice failed a check; it was never paid.
    Rejected,
    /// A payment was made and came back: the node's own payment record says failed.
    Refunded,
    /// Magma ended the order before any payment left the node.
    Failed,
}

impl LocalState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            LocalState::Done
                | LocalState::Abandoned
                | LocalState::Rejected
                | LocalState::Refunded
                | LocalState::Failed
        )
    }

    /// Whether money may be on its way or held: such an order must be followed to its end.
    pub fn money_in_flight(self) -> bool {
        matches!(self, LocalState::Paying | LocalState::Paid)
    }
}

/// How the invoice is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayMode {
    /// Through the node's own `pay`.
    Node,
    /// By another wallet; the plugin only watches.
    External,
}

/// What the node's payment record says about the invoice's payment hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodePayment {
    /// No attempt for this hash.
    None,
    Pending,
    Complete,
    Failed,
}

/// One entry of an order's history: a local state or a Magma status seen, with its time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state: Option<LocalState>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payment_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}

/// What the guide says to do after a terminal failure (magma-api.md §12b).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUp {
    /// Seller declined or did not react: place a new order.
    Reorder,
    /// The invoice expired unpaid: a fresh order is needed.
    ReorderFresh,
    /// The seller failed to open or send: refund is automatic; retry with Rails-cluster sellers.
    ReorderRailsOnly,
    /// The seller breached the terms: open a support ticket; automation pauses.
    SupportTicket,
    /// Amboss closed the order: contact support; automation pauses.
    ContactSupport,
}

impl FollowUp {
    pub fn for_status(status: &OrderStatus) -> Option<FollowUp> {
        use OrderStatus as S;
        Some(match status {
            S::SellerRejected | S::SellerFailedToReact | S::BuyerRejected => FollowUp::Reorder,
            S::BuyerFailedToPay => FollowUp::ReorderFresh,
            S::SellerFailedToOpenChannel | S::SellerFailedToSendSwap => FollowUp::ReorderRailsOnly,
            S::InvalidChannelOpening => FollowUp::SupportTicket,
            S::AdminClosed => FollowUp::ContactSupport,
            _ => return None,
        })
    }

    /// What the operator is told, in the guide's words.
    pub fn advice(self) -> &'static str {
        match self {
            FollowUp::Reorder => "seller declined; a new order can be placed",
            FollowUp::ReorderFresh => "payment didn't go through in time; a fresh order is needed",
            FollowUp::ReorderRailsOnly => {
                "channel couldn't open; refund is automatic; retry with rails_cluster_only"
            }
            FollowUp::SupportTicket => "seller breached agreed terms; open a support ticket",
            FollowUp::ContactSupport => "order cancelled by Amboss; contact support",
        }
    }

    /// Failures after which automatic buying stops until the operator looks (design.md §5).
    pub fn pauses_automation(self) -> bool {
        matches!(self, FollowUp::SupportTicket | FollowUp::ContactSupport)
    }
}

/// The part of an order record the state machine reads and writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub state: LocalState,
    #[serde(default)]
    pub pay_mode: Option<PayMode>,
    /// The last Magma status and payment status seen.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_status: Option<String>,
    /// Set once Magma reports a success status; `Done` also needs the channel.
    #[serde(default)]
    pub magma_success: bool,
    /// Set once Magma reports a failure status.
    #[serde(default)]
    pub magma_failure: Option<String>,
    #[serde(default)]
    pub follow_up: Option<FollowUp>,
    /// Why the order ended where it did, in words.
    #[serde(default)]
    pub reason: Option<String>,
    pub history: Vec<Event>,
}

/// What a transition did, for logs and notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    State { from: LocalState, to: LocalState },
    Status { from: Option<String>, to: String },
    PaymentStatus { from: Option<String>, to: String },
}

impl Lifecycle {
    pub fn new(at: u64) -> Lifecycle {
        Lifecycle {
            state: LocalState::Placing,
            pay_mode: None,
            status: None,
            payment_status: None,
            magma_success: false,
            magma_failure: None,
            follow_up: None,
            reason: None,
            history: vec![Event {
                at,
                state: Some(LocalState::Placing),
                status: None,
                payment_status: None,
                note: None,
            }],
        }
    }

    fn move_to(
        &mut self,
        to: LocalState,
        at: u64,
        note: Option<String>,
        changes: &mut Vec<Change>,
    ) {
        if self.state == to || self.state.is_final() {
            return;
        }
        changes.push(Change::State {
            from: self.state,
            to,
        });
        self.state = to;
        self.history.push(Event {
            at,
            state: Some(to),
            status: None,
            payment_status: None,
            note,
        });
    }

    /// Magma's answer to the buy was stored.
    pub fn placed(&mut self, at: u64) -> Vec<Change> {
        let mut c = Vec::new();
        if self.state == LocalState::Placing {
            self.move_to(LocalState::Placed, at, None, &mut c);
        }
        c
    }

    /// No order could be found for the intent.
    pub fn abandoned(&mut self, at: u64, why: &str) -> Vec<Change> {
        let mut c = Vec::new();
        if self.state == LocalState::Placing {
            self.reason = Some(why.to_string());
            self.move_to(LocalState::Abandoned, at, Some(why.to_string()), &mut c);
        }
        c
    }

    /// The invoice failed a check: the order ends unpaid.
    pub fn rejected(&mut self, at: u64, why: &str) -> Vec<Change> {
        let mut c = Vec::new();
        if self.state == LocalState::Placed {
            self.reason = Some(why.to_string());
            self.move_to(LocalState::Rejected, at, Some(why.to_string()), &mut c);
        }
        c
    }

    /// The invoice passed its checks and its payment starts (or is handed out).
    pub fn paying(&mut self, mode: PayMode, at: u64) -> Vec<Change> {
        let mut c = Vec::new();
        if self.state == LocalState::Placed {
            self.pay_mode = Some(mode);
            self.move_to(LocalState::Paying, at, None, &mut c);
        }
        c
    }

    /// Applies what Magma reports for the order.
    pub fn on_magma(
        &mut self,
        status: &OrderStatus,
        payment: Option<&PaymentStatus>,
        at: u64,
    ) -> Vec<Change> {
        let mut c = Vec::new();
        let status_text = status.as_str().to_string();
        let payment_text = payment.map(|p| p.as_str().to_string());
        let status_changed = self.status.as_deref() != Some(status_text.as_str());
        let payment_changed = payment_text.is_some() && self.payment_status != payment_text;
        if status_changed {
            c.push(Change::Status {
                from: self.status.clone(),
                to: status_text.clone(),
            });
            self.status = Some(status_text.clone());
        }
        if payment_changed {
            if let Some(p) = &payment_text {
                c.push(Change::PaymentStatus {
                    from: self.payment_status.clone(),
                    to: p.clone(),
                });
            }
            self.payment_status = payment_text.clone();
        }
        if status_changed || payment_changed {
            self.history.push(Event {
                at,
                state: None,
                status: status_changed.then(|| status_text.clone()),
                payment_status: if payment_changed { payment_text } else { None },
                note: None,
            });
        }
        if payment == Some(&PaymentStatus::SuccessfulPayment) && self.state == LocalState::Paying {
            self.move_to(LocalState::Paid, at, None, &mut c);
        }
        match status.outcome() {
            Outcome::Success => self.magma_success = true,
            Outcome::Failure if self.magma_failure.is_none() => {
                self.magma_failure = Some(status_text.clone());
                self.follow_up = FollowUp::for_status(status);
                if matches!(self.state, LocalState::Placed) {
                    // Nothing was paid: the order simply ends.
                    self.reason = Some(format!("Magma ended the order: {status_text}"));
                    self.move_to(LocalState::Failed, at, self.reason.clone(), &mut c);
                }
                // Paying/Paid: the money's fate is decided by the node's payment record
                // (invariant 6), not by Magma's word.
            }
            _ => {}
        }
        c
    }

    /// Applies what the node's own payment record says about the invoice.
    pub fn on_node_payment(&mut self, payment: NodePayment, at: u64) -> Vec<Change> {
        let mut c = Vec::new();
        match (self.state, payment) {
            (LocalState::Paying | LocalState::Paid, NodePayment::Failed) => {
                self.reason = Some(match &self.magma_failure {
                    Some(s) => format!("Magma ended the order ({s}); the payment came back"),
                    None => "the payment failed; nothing was spent".to_string(),
                });
                self.move_to(LocalState::Refunded, at, self.reason.clone(), &mut c);
            }
            // Paid from another wallet: this node has no record of it, so Magma's word that the
            // hold invoice was cancelled is all there is; the operator is told where to look.
            (LocalState::Paid, NodePayment::None)
                if self.pay_mode == Some(PayMode::External) && self.magma_failure.is_some() =>
            {
                self.reason = Some(format!(
                    "Magma ended the order ({}) after the external payment arrived; the hold invoice is cancelled, so the paying wallet gets the payment back — check it there",
                    self.magma_failure.clone().unwrap_or_default()
                ));
                self.move_to(LocalState::Refunded, at, self.reason.clone(), &mut c);
            }
            // Magma ended the order and the node has no payment for it: nothing left this node
            // (an external payment never arrived, or — after a crash — `pay` was never called,
            // and it is never called again for an order already PAYING).
            (LocalState::Paying, NodePayment::None) if self.magma_failure.is_some() => {
                self.reason = Some(format!(
                    "Magma ended the order ({}) before any payment was made",
                    self.magma_failure.clone().unwrap_or_default()
                ));
                self.move_to(LocalState::Failed, at, self.reason.clone(), &mut c);
            }
            _ => {}
        }
        c
    }

    /// The channel is in `listpeerchannels`: with Magma's success, the order is done.
    pub fn on_channel_seen(&mut self, at: u64, channel: &str) -> Vec<Change> {
        let mut c = Vec::new();
        if self.magma_success && matches!(self.state, LocalState::Paid | LocalState::Paying) {
            self.move_to(
                LocalState::Done,
                at,
                Some(format!("channel {channel} is open")),
                &mut c,
            );
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LocalState::*;

    fn st(s: &str) -> OrderStatus {
        OrderStatus::parse(s)
    }

    fn paid_order() -> Lifecycle {
        let mut l = Lifecycle::new(0);
        l.placed(1);
        l.paying(PayMode::Node, 2);
        l.on_magma(
            &st("WAITING_FOR_CHANNEL_OPEN"),
            Some(&PaymentStatus::SuccessfulPayment),
            3,
        );
        l
    }

    #[test]
    fn happy_path() {
        let mut l = paid_order();
        assert_eq!(l.state, Paid);
        // Success alone is not enough: the channel must be seen (invariant 5).
        l.on_magma(
            &st("VALID_CHANNEL_OPENING"),
            Some(&PaymentStatus::SuccessfulPayment),
            4,
        );
        assert_eq!(l.state, Paid);
        let changes = l.on_channel_seen(5, "850000x1x0");
        assert_eq!(
            changes,
            vec![Change::State {
                from: Paid,
                to: Done
            }]
        );
        let states: Vec<_> = l.history.iter().filter_map(|e| e.state).collect();
        assert_eq!(states, vec![Placing, Placed, Paying, Paid, Done]);
        // Later reports change nothing final.
        l.on_magma(&st("CHANNEL_MONITORING_FINISHED"), None, 6);
        assert_eq!(l.state, Done);
        assert_eq!(l.status.as_deref(), Some("CHANNEL_MONITORING_FINISHED"));
    }

    #[test]
    fn a_channel_without_magma_success_is_not_done() {
        let mut l = paid_order();
        assert!(l.on_channel_seen(5, "1x1x0").is_empty());
        assert_eq!(l.state, Paid);
    }

    /// Invariant 6: a failure after payment is a refund only once the node says so.
    #[test]
    fn refunds_are_observed_not_assumed() {
        let mut l = paid_order();
        l.on_magma(
            &st("SELLER_FAILED_TO_OPEN_CHANNEL"),
            Some(&PaymentStatus::HodlInvoiceTimeout),
            4,
        );
        assert_eq!(
            l.state, Paid,
            "still live until the node's record says failed"
        );
        assert_eq!(l.follow_up, Some(FollowUp::ReorderRailsOnly));
        l.on_node_payment(NodePayment::Pending, 5);
        assert_eq!(l.state, Paid);
        l.on_node_payment(NodePayment::Failed, 6);
        assert_eq!(l.state, Refunded);
        assert!(
            l.reason
                .as_deref()
                .unwrap_or("")
                .contains("SELLER_FAILED_TO_OPEN_CHANNEL")
        );
    }

    #[test]
    fn follow_ups_match_the_guide() {
        let table = [
            ("SELLER_REJECTED", FollowUp::Reorder, false),
            ("SELLER_FAILED_TO_REACT", FollowUp::Reorder, false),
            ("BUYER_FAILED_TO_PAY", FollowUp::ReorderFresh, false),
            (
                "SELLER_FAILED_TO_OPEN_CHANNEL",
                FollowUp::ReorderRailsOnly,
                false,
            ),
            (
                "SELLER_FAILED_TO_SEND_SWAP",
                FollowUp::ReorderRailsOnly,
                false,
            ),
            ("INVALID_CHANNEL_OPENING", FollowUp::SupportTicket, true),
            ("ADMIN_CLOSED", FollowUp::ContactSupport, true),
        ];
        for (status, follow, pauses) in table {
            let f = FollowUp::for_status(&st(status)).unwrap();
            assert_eq!((f, f.pauses_automation()), (follow, pauses), "{status}");
        }
        assert_eq!(FollowUp::for_status(&st("VALID_CHANNEL_OPENING")), None);
        assert_eq!(FollowUp::for_status(&st("SOMETHING_NEW")), None);
    }

    #[test]
    fn failure_before_payment_ends_the_order_unpaid() {
        let mut l = Lifecycle::new(0);
        l.placed(1);
        l.on_magma(
            &st("SELLER_REJECTED"),
            Some(&PaymentStatus::PendingPayment),
            2,
        );
        assert_eq!(l.state, Failed);
        assert_eq!(l.follow_up, Some(FollowUp::Reorder));
    }

    #[test]
    fn external_payment_that_never_came() {
        let mut l = Lifecycle::new(0);
        l.placed(1);
        l.paying(PayMode::External, 2);
        l.on_magma(
            &st("BUYER_FAILED_TO_PAY"),
            Some(&PaymentStatus::PendingPayment),
            3,
        );
        assert_eq!(l.state, Paying);
        l.on_node_payment(NodePayment::None, 4);
        assert_eq!(l.state, Failed);
    }

    #[test]
    fn an_external_payment_that_came_back_is_reported_for_the_paying_wallet() {
        let mut l = Lifecycle::new(0);
        l.placed(1);
        l.paying(PayMode::External, 2);
        l.on_magma(
            &st("WAITING_FOR_CHANNEL_OPEN"),
            Some(&PaymentStatus::SuccessfulPayment),
            3,
        );
        assert_eq!(l.state, Paid);
        l.on_magma(
            &st("SELLER_FAILED_TO_OPEN_CHANNEL"),
            Some(&PaymentStatus::HodlInvoiceTimeout),
            4,
        );
        l.on_node_payment(NodePayment::None, 5);
        assert_eq!(l.state, Refunded);
        assert!(l.reason.as_deref().unwrap_or("").contains("paying wallet"));
        // A node-paid order is never closed on Magma's word alone.
        let mut n = paid_order();
        n.on_magma(
            &st("SELLER_FAILED_TO_OPEN_CHANNEL"),
            Some(&PaymentStatus::HodlInvoiceTimeout),
            4,
        );
        n.on_node_payment(NodePayment::None, 5);
        assert_eq!(n.state, Paid);
    }

    #[test]
    fn a_node_payment_that_never_existed_ends_only_with_magmas_failure() {
        let mut l = Lifecycle::new(0);
        l.placed(1);
        l.paying(PayMode::Node, 2);
        l.on_node_payment(NodePayment::None, 3);
        assert_eq!(l.state, Paying, "the pay may still be starting");
        l.on_magma(&st("BUYER_FAILED_TO_PAY"), None, 4);
        l.on_node_payment(NodePayment::Pending, 5);
        assert_eq!(l.state, Paying, "a pending payment keeps it live");
        l.on_node_payment(NodePayment::None, 6);
        assert_eq!(l.state, Failed, "nothing left the node");
    }

    #[test]
    fn final_states_do_not_move() {
        for end in [Done, Abandoned, Rejected, Refunded, Failed] {
            let mut l = Lifecycle::new(0);
            l.state = end;
            assert!(l.placed(1).is_empty());
            assert!(l.paying(PayMode::Node, 1).is_empty());
            l.on_magma(
                &st("VALID_CHANNEL_OPENING"),
                Some(&PaymentStatus::SuccessfulPayment),
                1,
            );
            l.on_node_payment(NodePayment::Failed, 1);
            l.magma_success = true;
            l.on_channel_seen(1, "x");
            assert_eq!(l.state, end);
        }
    }

    #[test]
    fn only_a_placed_order_can_be_rejected_or_start_paying() {
        let mut l = Lifecycle::new(0);
        assert!(l.rejected(1, "x").is_empty(), "Placing cannot be rejected");
        assert!(l.paying(PayMode::Node, 1).is_empty(), "no invoice yet");
        l.placed(1);
        assert_eq!(l.rejected(2, "amount_mismatch").len(), 1);
        assert!(
            l.paying(PayMode::Node, 3).is_empty(),
            "a rejected invoice is never paid"
        );
    }

    #[test]
    fn unknown_statuses_keep_the_order_live_and_are_recorded() {
        let mut l = paid_order();
        let changes = l.on_magma(&st("SELLER_PONDERING"), None, 4);
        assert_eq!(changes.len(), 1);
        assert_eq!(l.state, Paid);
        assert_eq!(
            l.history.last().unwrap().status.as_deref(),
            Some("SELLER_PONDERING")
        );
    }

    #[test]
    fn the_record_round_trips_through_json() {
        let l = paid_order();
        let text = serde_json::to_string(&l).unwrap();
        assert!(text.contains("\"state\":\"PAID\""));
        let back: Lifecycle = serde_json::from_str(&text).unwrap();
        assert_eq!(back, l);
    }
}
