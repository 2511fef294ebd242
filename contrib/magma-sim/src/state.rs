//! The simulator's whole mutable state and its lookups. The lifecycle lives in `seller.rs`,
//! order creation in `buy.rs`, HTLC handling in `htlc.rs`.

use std::collections::{BTreeMap, HashMap};

use crate::accounts::{Accounts, Caller};
use crate::clock::Clock;
use crate::config::SimConfig;
use crate::error::ApiError;
use crate::faults::{Fault, FaultQueue, Operation};
use crate::invoice::{InvoiceFault, NodeKey};
use crate::order::Order;
use crate::pricing::Price;
use crate::request_log::RequestRecord;
use crate::seller::Event;

pub(crate) struct State {
    pub cfg: SimConfig,
    pub price: Price,
    pub clock: Clock,
    pub node: NodeKey,
    pub accounts: Accounts,
    /// In creation order; never removed, so an index identifies an order.
    pub orders: Vec<Order>,
    pub by_id: HashMap<String, usize>,
    pub by_hash: HashMap<String, usize>,
    /// Scheduled events keyed by (due virtual ms, sequence number).
    pub events: BTreeMap<(u64, u64), Event>,
    pub next_event_seq: u64,
    pub faults: FaultQueue<Operation, Fault>,
    pub invoice_faults: FaultQueue<(), InvoiceFault>,
    pub requests: Vec<RequestRecord>,
    /// Bumped on every observable change (order, HTLC, block).
    pub version: u64,
}

impl State {
    /// Builds the state; `cfg` must have passed `SimConfig::validate`.
    pub fn new(cfg: SimConfig, price: Price) -> State {
        let clock = Clock::new(cfg.start_time, cfg.start_height);
        let mut state = State {
            node: NodeKey::from_seed(&cfg.node_seed),
            accounts: Accounts::with_api_keys(&cfg.api_keys),
            price,
            clock,
            orders: Vec::new(),
            by_id: HashMap::new(),
            by_hash: HashMap::new(),
            events: BTreeMap::new(),
            next_event_seq: 0,
            faults: FaultQueue::default(),
            invoice_faults: FaultQueue::default(),
            requests: Vec::new(),
            version: 0,
            cfg,
        };
        state.schedule_next_block();
        state
    }

    pub fn changed(&mut self) {
        self.version += 1;
    }

    pub fn resolve_caller(&self, authorization: Option<&str>) -> Caller {
        self.accounts.resolve(authorization)
    }

    pub fn order_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub fn order(&self, id: &str) -> Option<&Order> {
        self.order_index(id).map(|idx| &self.orders[idx])
    }

    /// `get_order` for `account_id`: malformed id → `Invalid ID`; unknown or someone else's
    /// order → `Forbidden`.
    pub fn owned_order(&self, account_id: &str, id: &str) -> Result<&Order, ApiError> {
        if uuid::Uuid::try_parse(id).is_err() {
            return Err(ApiError::invalid_id());
        }
        match self.order(&id.to_ascii_lowercase()) {
            Some(order) if order.view.account_id == account_id => Ok(order),
            _ => Err(ApiError::forbidden()),
        }
    }

    /// The account's orders, newest first.
    pub fn orders_of(&self, account_id: &str) -> Vec<&Order> {
        let mut list: Vec<(usize, &Order)> = self
            .orders
            .iter()
            .enumerate()
            .filter(|(_, o)| o.view.account_id == account_id)
            .collect();
        list.sort_by(|(ia, a), (ib, b)| (b.view.created_at, ib).cmp(&(a.view.created_at, ia)));
        list.into_iter().map(|(_, o)| o).collect()
    }

    /// Appends a request record, numbering it.
    pub fn record_request(&mut self, mut record: RequestRecord) {
        record.seq = self.requests.len() as u64 + 1;
        self.requests.push(record);
    }
}
