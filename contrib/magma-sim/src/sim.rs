//! `Sim`: the cheap-to-clone handle through which tests, the server and the admin API drive
//! the simulator.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::millis;
use crate::config::{Network, SimConfig};
use crate::faults::{Fault, Operation};
use crate::invoice::InvoiceFault;
use crate::model::{HtlcState, SellerScript};
use crate::order::OrderSnapshot;
use crate::pricing::Price;
use crate::request_log::RequestRecord;
use crate::server::SimServer;
use crate::state::State;

/// The simulator. Clones share the same state.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

impl Sim {
    /// Creates a simulator.
    ///
    /// # Panics
    /// If `cfg` is invalid (see [`SimConfig::validate`]); use [`Sim::try_new`] for configuration
    /// that comes from outside the program.
    pub fn new(cfg: SimConfig) -> Sim {
        match Sim::try_new(cfg) {
            Ok(sim) => sim,
            Err(e) => panic!("invalid simulator configuration: {e:#}"),
        }
    }

    /// Creates a simulator, rejecting an invalid configuration.
    pub fn try_new(cfg: SimConfig) -> anyhow::Result<Sim> {
        cfg.validate()?;
        let price = Price::parse(&cfg.price_sats, &cfg.price_usd, cfg.btc_sats_per_usd)?;
        let (changes, _) = watch::channel(0);
        Ok(Sim {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(cfg, price)),
                changes,
            }),
        })
    }

    /// Binds `addr` (port 0 picks a free port) and serves GraphQL and the admin API.
    pub async fn serve(&self, addr: SocketAddr) -> anyhow::Result<SimServer> {
        SimServer::start(self.clone(), addr).await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than losing the simulator, so keep going with the inner value.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the state and notifies subscribers if it changed anything.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.lock();
        let before = state.version;
        let result = f(&mut state);
        if state.version != before {
            self.inner.changes.send_replace(state.version);
        }
        result
    }

    /// Advances virtual time, processing every event due on the way (instantly).
    pub fn advance(&self, d: Duration) {
        self.with_state(|s| {
            let target = s.clock.now_ms().saturating_add(millis(d));
            s.advance_to(target);
        });
    }

    /// Mines `n` blocks at the current virtual time.
    pub fn mine_blocks(&self, n: u32) {
        self.with_state(|s| s.mine_blocks(n));
    }

    /// Virtual unix seconds.
    pub fn now(&self) -> u64 {
        self.lock().clock.now()
    }

    pub fn block_height(&self) -> u32 {
        self.lock().clock.height()
    }

    pub fn network(&self) -> Network {
        self.lock().cfg.network
    }

    pub fn set_default_seller(&self, s: SellerScript) {
        self.with_state(|st| st.cfg.default_seller = s);
    }

    pub fn set_seller(&self, order_id: &str, s: SellerScript) -> anyhow::Result<()> {
        self.with_state(|st| st.set_seller(order_id, s))
    }

    /// Forces any status string onto an order (recorded in its history).
    pub fn force_status(&self, order_id: &str, status: &str) -> anyhow::Result<()> {
        self.with_state(|st| st.force_status(order_id, status))
    }

    /// Arms `fault` for the next `count` requests of `op` (`None` = until cleared).
    pub fn inject_fault(&self, op: Operation, fault: Fault, count: Option<u32>) {
        log::info!("fault armed: {op} → {} ×{count:?}", fault.label());
        self.with_state(|st| st.faults.push(op, fault, count));
    }

    /// Clears request faults and invoice faults.
    pub fn clear_faults(&self) {
        self.with_state(|st| {
            st.faults.clear();
            st.invoice_faults.clear();
        });
    }

    /// Tampers with the invoices of the next `count` buys (`None` = until cleared).
    pub fn inject_invoice_fault(&self, f: InvoiceFault, count: Option<u32>) {
        self.with_state(|st| st.invoice_faults.push((), f, count));
    }

    /// The buyer's HTLC for `payment_hash` (hex) arrived; returns the resulting HTLC state.
    pub fn htlc_held(&self, payment_hash: &str) -> anyhow::Result<HtlcState> {
        self.with_state(|st| st.htlc_held(payment_hash))
    }

    pub fn settle(&self, payment_hash: &str) -> anyhow::Result<HtlcState> {
        self.with_state(|st| st.settle(payment_hash))
    }

    pub fn cancel(&self, payment_hash: &str) -> anyhow::Result<HtlcState> {
        self.with_state(|st| st.cancel(payment_hash))
    }

    pub fn htlc_state(&self, payment_hash: &str) -> Option<HtlcState> {
        self.lock().htlc_state(payment_hash)
    }

    /// A receiver whose value changes on every order, HTLC or block change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// All orders in creation order.
    pub fn orders(&self) -> Vec<OrderSnapshot> {
        self.lock().orders.iter().map(|o| o.view.clone()).collect()
    }

    pub fn order(&self, id: &str) -> Option<OrderSnapshot> {
        self.lock().order(id).map(|o| o.view.clone())
    }

    /// Changes the `liquidity_per_usd` quote (and, unless overridden, the fee exchange rate).
    pub fn set_price(&self, sats: &str, usd: &str) -> anyhow::Result<()> {
        self.with_state(|st| {
            st.price = Price::parse(sats, usd, st.cfg.btc_sats_per_usd)?;
            st.cfg.price_sats = sats.to_string();
            st.cfg.price_usd = usd.to_string();
            Ok(())
        })
    }

    /// The simulator node's pubkey (hex); it signs every invoice and is every order's seller.
    pub fn node_pubkey(&self) -> String {
        self.lock().node.pubkey_hex()
    }

    /// Advances the clock by `step × speed` every `step` of real time, until the task is
    /// aborted or the runtime ends.
    pub fn spawn_clock(&self, step: Duration, speed: f64) -> tokio::task::JoinHandle<()> {
        let sim = self.clone();
        let step = step.max(Duration::from_millis(1));
        let virtual_step =
            Duration::try_from_secs_f64(step.as_secs_f64() * speed).unwrap_or(Duration::ZERO);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(step);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                sim.advance(virtual_step);
            }
        })
    }
}
