//! Entry points of the lightningd stand-in (the buyer's HTLC arrives, is settled or cancelled)
//! and the test controls on single orders (seller script, forced status).

use anyhow::{Context, anyhow, bail};

use crate::invoice::random_hex32;
use crate::model::{HtlcState, KnownStatus, OrderStatus, PaymentStatus, SellerScript};
use crate::state::State;

impl State {
    fn index_by_hash(&self, payment_hash: &str) -> anyhow::Result<usize> {
        self.by_hash
            .get(&payment_hash.trim().to_ascii_lowercase())
            .copied()
            .ok_or_else(|| anyhow!("unknown payment hash {payment_hash}"))
    }

    pub fn htlc_state(&self, payment_hash: &str) -> Option<HtlcState> {
        let idx = self.index_by_hash(payment_hash).ok()?;
        Some(self.orders[idx].view.htlc.clone())
    }

    /// The buyer's HTLC arrived. It is held unless the order can no longer be paid (final
    /// status, invoice expired) or its seller script fails every HTLC back at once. A held
    /// HTLC on an approved order moves it to `WAITING_FOR_CHANNEL_OPEN`.
    pub fn htlc_held(&mut self, payment_hash: &str) -> anyhow::Result<HtlcState> {
        let idx = self.index_by_hash(payment_hash)?;
        let now = self.clock.now();
        let expiry = self.cfg.timings.invoice_expiry_secs;
        let order = &mut self.orders[idx];
        if order.view.htlc != HtlcState::Unpaid {
            return Ok(order.view.htlc.clone());
        }
        let final_status = order.status().known().is_some_and(KnownStatus::is_final);
        let expired = now >= order.view.created_at.saturating_add(expiry);
        if final_status || expired || order.view.seller == SellerScript::BuyerNeverPays {
            log::info!(
                "order {}: HTLC failed back (status {}, expired {expired}, seller {})",
                order.view.id,
                order.view.status,
                order.view.seller
            );
            order.view.htlc = HtlcState::Cancelled;
            self.changed();
            return Ok(HtlcState::Cancelled);
        }
        order.view.htlc = HtlcState::Held;
        log::info!("order {}: HTLC held", order.view.id);
        if order.is(KnownStatus::WaitingForBuyerPayment) {
            self.on_payment_held(idx);
        }
        self.changed();
        Ok(HtlcState::Held)
    }

    /// Settles a held HTLC (forced by a test; the lifecycle settles by itself).
    pub fn settle(&mut self, payment_hash: &str) -> anyhow::Result<HtlcState> {
        let idx = self.index_by_hash(payment_hash)?;
        let order = &mut self.orders[idx];
        if !order.settle_if_held() {
            bail!("cannot settle: the HTLC is {:?}, not held", order.view.htlc);
        }
        self.changed();
        Ok(self.orders[idx].view.htlc.clone())
    }

    /// Cancels the invoice (forced by a test): a held HTLC is failed back
    /// (`HODL_INVOICE_TIMEOUT`), an unpaid invoice can no longer be paid.
    pub fn cancel(&mut self, payment_hash: &str) -> anyhow::Result<HtlcState> {
        let idx = self.index_by_hash(payment_hash)?;
        let now = self.clock.now();
        let order = &mut self.orders[idx];
        match order.view.htlc {
            HtlcState::Held => {
                order.view.htlc = HtlcState::Cancelled;
                order.set(
                    now,
                    order.view.status.clone(),
                    PaymentStatus::HodlInvoiceTimeout,
                );
            }
            HtlcState::Unpaid => order.view.htlc = HtlcState::Cancelled,
            HtlcState::Cancelled => return Ok(HtlcState::Cancelled),
            HtlcState::Settled { .. } => bail!("cannot cancel: the HTLC is already settled"),
        }
        log::info!("order {}: HTLC cancelled", order.view.id);
        self.changed();
        Ok(HtlcState::Cancelled)
    }

    pub fn set_seller(&mut self, order_id: &str, script: SellerScript) -> anyhow::Result<()> {
        let idx = self
            .order_index(order_id)
            .with_context(|| format!("unknown order {order_id}"))?;
        self.orders[idx].view.seller = script;
        self.changed();
        Ok(())
    }

    /// Sets any status string (an unknown one included); nothing else is scheduled.
    pub fn force_status(&mut self, order_id: &str, status: &str) -> anyhow::Result<()> {
        if status.trim().is_empty() {
            bail!("status must not be empty");
        }
        let idx = self
            .order_index(order_id)
            .with_context(|| format!("unknown order {order_id}"))?;
        let now = self.clock.now();
        let order = &mut self.orders[idx];
        let status = OrderStatus::parse(status);
        let on_chain = matches!(
            status.known(),
            Some(
                KnownStatus::SellerSentTransaction
                    | KnownStatus::WaitingForOnChainConfirmation
                    | KnownStatus::OnChainConfirmation
                    | KnownStatus::SellerOpenedChannel
                    | KnownStatus::ValidChannelOpening
                    | KnownStatus::ChannelMonitoringFinished
            )
        );
        if on_chain && order.view.funding_txid.is_none() {
            order.view.funding_txid = Some(random_hex32());
        }
        log::info!("order {}: status forced to {status}", order.view.id);
        order.set_status(now, status);
        self.changed();
        Ok(())
    }
}
