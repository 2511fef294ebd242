//! The scripted seller and the chain: scheduled events on the virtual clock drive every order
//! through its script's status path. Each event re-checks the order's current status, so a
//! forced status or a changed script simply makes stale events do nothing.

use rand::Rng;

use crate::invoice::random_hex32;
use crate::model::{HtlcState, KnownStatus, PaymentStatus, SellerScript};
use crate::state::State;

/// Something due at a virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A block is produced (and the next one scheduled).
    Block,
    /// A timer of the order at this index fires.
    Order { idx: usize, timer: Timer },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    SellerReact,
    ApprovalTimeout,
    InvoiceExpiry,
    OpenAfter,
    OpenTimeout,
    Mempool,
    SendSwapTimeout,
    Validate,
}

const MS: u64 = 1000;

impl State {
    /// Processes every event due up to `target_ms`, in time order, then sets the clock there.
    pub fn advance_to(&mut self, target_ms: u64) {
        while let Some(entry) = self.events.first_entry() {
            let (due, _) = *entry.key();
            if due > target_ms {
                break;
            }
            let event = entry.remove();
            self.clock.set_ms(due);
            self.handle(event);
        }
        self.clock.set_ms(target_ms);
    }

    /// Mines `n` blocks at the current virtual time.
    pub fn mine_blocks(&mut self, n: u32) {
        for _ in 0..n {
            self.on_block();
        }
    }

    pub(crate) fn schedule_next_block(&mut self) {
        let interval = self.cfg.block_interval_secs;
        if interval > 0 {
            let at = self
                .clock
                .now_ms()
                .saturating_add(interval.saturating_mul(MS));
            self.schedule_at(at, Event::Block);
        }
    }

    fn schedule_at(&mut self, at_ms: u64, event: Event) {
        self.next_event_seq += 1;
        self.events.insert((at_ms, self.next_event_seq), event);
    }

    fn schedule(&mut self, idx: usize, timer: Timer, after_secs: u64) {
        let at = self
            .clock
            .now_ms()
            .saturating_add(after_secs.saturating_mul(MS));
        self.schedule_at(at, Event::Order { idx, timer });
    }

    /// A new order in `WAITING_FOR_SELLER_APPROVAL`: arm the seller and invoice timers.
    pub(crate) fn on_order_created(&mut self, idx: usize) {
        let t = self.cfg.timings.clone();
        let now = self.clock.now();
        self.orders[idx].view.timeout = Some(now + t.approval_timeout_secs);
        self.schedule(idx, Timer::SellerReact, t.seller_react_secs);
        self.schedule(idx, Timer::ApprovalTimeout, t.approval_timeout_secs);
        self.schedule(idx, Timer::InvoiceExpiry, t.invoice_expiry_secs);
    }

    /// The buyer's HTLC is held and the order approved: `WAITING_FOR_CHANNEL_OPEN`.
    pub(crate) fn on_payment_held(&mut self, idx: usize) {
        let t = self.cfg.timings.clone();
        let now = self.clock.now();
        let order = &mut self.orders[idx];
        order.set(
            now,
            KnownStatus::WaitingForChannelOpen,
            PaymentStatus::SuccessfulPayment,
        );
        order.view.timeout = Some(now + t.open_timeout_secs);
        log::info!(
            "order {}: payment held, waiting for channel open",
            order.view.id
        );
        self.schedule(idx, Timer::OpenAfter, t.open_after_secs);
        self.schedule(idx, Timer::OpenTimeout, t.open_timeout_secs);
        self.changed();
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Block => {
                self.on_block();
                self.schedule_next_block();
            }
            Event::Order { idx, timer } => {
                let before = self.orders[idx].view.history.len();
                self.on_timer(idx, timer);
                if self.orders[idx].view.history.len() != before {
                    let v = &self.orders[idx].view;
                    log::info!(
                        "order {}: {} / {}",
                        v.id,
                        v.status,
                        v.payment_status.as_str()
                    );
                    self.changed();
                }
            }
        }
    }

    fn on_timer(&mut self, idx: usize, timer: Timer) {
        let t = self.cfg.timings.clone();
        let now = self.clock.now();
        let script = self.orders[idx].view.seller;
        let order = &mut self.orders[idx];
        match timer {
            Timer::SellerReact if order.is(KnownStatus::WaitingForSellerApproval) => match script {
                SellerScript::Reject => order.fail(now, KnownStatus::SellerRejected),
                SellerScript::NoReact => {}
                _ => {
                    order.set_status(now, KnownStatus::WaitingForBuyerPayment);
                    order.view.timeout = Some(order.view.created_at + t.invoice_expiry_secs);
                    if order.view.htlc == HtlcState::Held {
                        self.on_payment_held(idx);
                    }
                }
            },
            Timer::ApprovalTimeout if order.is(KnownStatus::WaitingForSellerApproval) => {
                order.fail(now, KnownStatus::SellerFailedToReact);
            }
            Timer::InvoiceExpiry
                if (order.is(KnownStatus::WaitingForSellerApproval)
                    || order.is(KnownStatus::WaitingForBuyerPayment))
                    && order.view.htlc != HtlcState::Held =>
            {
                order.fail(now, KnownStatus::BuyerFailedToPay);
            }
            Timer::OpenAfter if order.is(KnownStatus::WaitingForChannelOpen) => match script {
                SellerScript::NoOpen => {}
                SellerScript::AdminClose => order.fail(now, KnownStatus::AdminClosed),
                _ => {
                    order.view.funding_txid = Some(random_hex32());
                    order.set_status(now, KnownStatus::SellerSentTransaction);
                    order.view.timeout = Some(now + t.send_swap_timeout_secs);
                    self.schedule(idx, Timer::Mempool, t.mempool_secs);
                    self.schedule(idx, Timer::SendSwapTimeout, t.send_swap_timeout_secs);
                }
            },
            Timer::OpenTimeout if order.is(KnownStatus::WaitingForChannelOpen) => {
                order.fail(now, KnownStatus::SellerFailedToOpenChannel);
            }
            Timer::Mempool
                if order.is(KnownStatus::SellerSentTransaction)
                    && script != SellerScript::SendSwapFail =>
            {
                order.view.timeout = None;
                order.set_status(now, KnownStatus::WaitingForOnChainConfirmation);
            }
            Timer::SendSwapTimeout if order.is(KnownStatus::SellerSentTransaction) => {
                order.fail(now, KnownStatus::SellerFailedToSendSwap);
            }
            Timer::Validate if order.is(KnownStatus::OnChainConfirmation) => {
                order.set_status(now, KnownStatus::SellerOpenedChannel);
                self.schedule(idx, Timer::Validate, t.validate_secs);
            }
            Timer::Validate if order.is(KnownStatus::SellerOpenedChannel) => {
                if script == SellerScript::InvalidChannel {
                    order.fail(now, KnownStatus::InvalidChannelOpening);
                } else {
                    self.channel_valid(idx);
                }
            }
            // Stale timer: the order has moved on.
            _ => {}
        }
    }

    /// `VALID_CHANNEL_OPENING`: settle the held payment and start the lease.
    fn channel_valid(&mut self, idx: usize) {
        let now = self.clock.now();
        let lease = self.cfg.timings.lease_blocks;
        let order = &mut self.orders[idx];
        order.settle_if_held();
        let (height, tx_index) = order
            .funding_block
            .unwrap_or((self.clock.height(), random_tx_index()));
        order.view.channel_id = Some(format!("{height}x{tx_index}x0"));
        order.view.blocks_until_can_be_closed = Some(lease);
        order.set_status(now, KnownStatus::ValidChannelOpening);
        if lease == 0 {
            order.set_status(now, KnownStatus::ChannelMonitoringFinished);
        }
    }

    fn on_block(&mut self) {
        let height = self.clock.add_block();
        let now = self.clock.now();
        let required = self.cfg.timings.confirmations_required.max(1);
        let validate_secs = self.cfg.timings.validate_secs;
        let mut to_validate = Vec::new();
        for (idx, order) in self.orders.iter_mut().enumerate() {
            let before = order.view.history.len();
            if order.is(KnownStatus::WaitingForOnChainConfirmation) && order.funding_block.is_none()
            {
                order.funding_block = Some((height, random_tx_index()));
            }
            if order.funding_block.is_some() {
                order.view.confirmations += 1;
            }
            if order.is(KnownStatus::WaitingForOnChainConfirmation)
                && order.view.confirmations >= required
            {
                order.set_status(now, KnownStatus::OnChainConfirmation);
                to_validate.push(idx);
            } else if order.is(KnownStatus::ValidChannelOpening) {
                let left = order.view.blocks_until_can_be_closed.unwrap_or(0);
                let left = left.saturating_sub(1);
                order.view.blocks_until_can_be_closed = Some(left);
                if left == 0 {
                    order.set_status(now, KnownStatus::ChannelMonitoringFinished);
                }
            }
            if order.view.history.len() != before {
                log::info!(
                    "order {}: {} at height {height}",
                    order.view.id,
                    order.view.status
                );
            }
        }
        for idx in to_validate {
            self.schedule(idx, Timer::Validate, validate_secs);
        }
        self.changed();
    }
}

fn random_tx_index() -> u32 {
    rand::thread_rng().gen_range(1..3000)
}
