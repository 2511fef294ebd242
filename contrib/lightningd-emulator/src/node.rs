//! The scriptable node model: identity, chain tip, peers, channels, on-chain funds, datastore,
//! payments and the log of RPC calls. [`NodeHandle`] is the scripting interface; every change
//! that lightningd would announce is emitted as a notification to the plugin.

use crate::channel::{Channel, ChannelSpec, ChannelState, Opener};
use crate::datastore::Datastore;
use crate::pay::Payment;
use crate::util::{fake_hash_hex, pubkey_from_seed, secret_from_seed};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, watch};

/// The version lightningd reports (fixtures/cln/VERSION).
pub const LIGHTNINGD_VERSION: &str = "v26.06-258-g090f4b0";

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrType {
    Ipv4,
    Ipv6,
    Torv3,
    Dns,
}

impl AddrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrType::Ipv4 => "ipv4",
            AddrType::Ipv6 => "ipv6",
            AddrType::Torv3 => "torv3",
            AddrType::Dns => "dns",
        }
    }
}

/// An announced or bound address, as in `getinfo.address` / `getinfo.binding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetAddress {
    pub kind: AddrType,
    pub address: String,
    pub port: u16,
}

impl NetAddress {
    pub fn new(kind: AddrType, address: &str, port: u16) -> Self {
        NetAddress {
            kind,
            address: address.to_string(),
            port,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"type": self.kind.as_str(), "address": self.address, "port": self.port})
    }
}

/// An on-chain output of the wallet (`listfunds.outputs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Utxo {
    pub txid: String,
    pub output: u32,
    pub amount_msat: u64,
    pub blockheight: Option<u32>,
    pub reserved: bool,
}

/// Initial state of the node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Seed of the node key (the node id is derived from it).
    pub seed: String,
    pub alias: String,
    pub addresses: Vec<NetAddress>,
    pub bindings: Vec<NetAddress>,
    pub blockheight: u32,
    /// Confirmations before a channel locks in (lightningd's `funding-confirms`, default 3).
    pub funding_confirms: u32,
    /// After a failed payment, this many `listpays` calls still report it `pending` while
    /// `listsendpays` already says `failed` (see README). 0 = report `failed` at once, as the
    /// captured fixture does.
    pub listpays_pending_after_failure: u32,
    pub onchain_sat: Vec<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            seed: "lightningd-emulator".into(),
            alias: "emulated-node".into(),
            addresses: vec![NetAddress::new(AddrType::Ipv4, "127.0.0.1", 9735)],
            bindings: vec![NetAddress::new(AddrType::Ipv4, "127.0.0.1", 9735)],
            blockheight: 101,
            funding_confirms: 3,
            listpays_pending_after_failure: 0,
            onchain_sat: vec![],
        }
    }
}

/// The outcome of an HTLC the payee was holding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HtlcOutcome {
    /// The payee released the preimage (hex).
    Settled { preimage: String },
    /// The payee failed the HTLC back (e.g. a cancelled HODL invoice).
    Cancelled { reason: String },
}

/// Whoever is at the other end of a payment. `pay` tells it the HTLC arrived and then waits.
pub trait Payee: Send + Sync {
    /// Whether this payee is the destination of the invoice.
    fn accepts(&self, payee_pubkey: &str, payment_hash: &str) -> bool;
    /// The HTLC for `payment_hash` reached the payee and is held.
    fn htlc_held(&self, payment_hash: &str, amount_msat: u64);
    /// Resolves when the payee settles or cancels the HTLC.
    fn wait_outcome(&self, payment_hash: &str) -> BoxFuture<HtlcOutcome>;
}

/// Someone who opens channels to us and shares our chain (the Magma simulator's sellers).
pub trait ChannelSource: Send + Sync {
    /// Blocks were mined on the emulator's chain.
    fn blocks_mined(&self, n: u32);
    /// Channels the source has funded towards `our_id` (polled after every change).
    fn incoming_channels(&self, our_id: &str) -> Vec<IncomingChannel>;
    /// Bumped on every change of the source's state.
    fn subscribe(&self) -> watch::Receiver<u64>;
}

/// A channel funded towards us by a [`ChannelSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingChannel {
    pub peer_id: String,
    pub funding_txid: String,
    /// The short channel id the source announces once the channel is valid; it replaces the
    /// node's own at lockin so both sides name the channel the same way.
    pub short_channel_id: Option<String>,
    pub amount_sat: u64,
}

/// One RPC call received on the socket.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    pub method: String,
    pub params: Value,
    pub from_plugin: bool,
}

/// The node's mutable state.
#[derive(Debug)]
pub struct NodeState {
    pub secret: SecretKey,
    pub id: String,
    pub alias: String,
    pub color: String,
    pub network: String,
    pub lightning_dir: String,
    pub addresses: Vec<NetAddress>,
    pub bindings: Vec<NetAddress>,
    pub blockheight: u32,
    pub funding_confirms: u32,
    pub listpays_pending_after_failure: u32,
    pub peers: Vec<(String, bool)>,
    pub channels: Vec<Channel>,
    pub outputs: Vec<Utxo>,
    pub datastore: Datastore,
    pub payments: Vec<Payment>,
    pub invoices: Vec<crate::invoice::InvoiceRecord>,
    pub next_index: u64,
    pub next_htlc_id: u64,
    pub calls: Vec<RecordedCall>,
}

impl NodeState {
    pub fn channel_mut(&mut self, channel_id: &str) -> Option<&mut Channel> {
        self.channels
            .iter_mut()
            .find(|c| c.channel_id == channel_id)
    }

    pub fn next_index(&mut self) -> u64 {
        self.next_index += 1;
        self.next_index
    }

    pub fn peer_connected(&self, id: &str) -> bool {
        self.peers.iter().any(|(p, c)| p == id && *c)
    }
}

struct Inner {
    state: Mutex<NodeState>,
    events: mpsc::UnboundedSender<(String, Value)>,
    payees: Mutex<Vec<Arc<dyn Payee>>>,
    sources: Mutex<Vec<Arc<dyn ChannelSource>>>,
    changed: watch::Sender<u64>,
}

/// Scripting handle on the node (cheap to clone).
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

impl NodeHandle {
    /// Creates the node; notifications for the plugin come out of the returned receiver.
    pub fn new(
        cfg: &NodeConfig,
        network: &str,
        lightning_dir: &str,
    ) -> (NodeHandle, mpsc::UnboundedReceiver<(String, Value)>) {
        let secret = secret_from_seed(&cfg.seed);
        let id = PublicKey::from_secret_key(&Secp256k1::signing_only(), &secret).to_string();
        let outputs = cfg
            .onchain_sat
            .iter()
            .enumerate()
            .map(|(i, sat)| Utxo {
                txid: fake_hash_hex(&format!("utxo:{i}:{sat}")),
                output: 0,
                amount_msat: sat * 1000,
                blockheight: Some(cfg.blockheight),
                reserved: false,
            })
            .collect();
        let state = NodeState {
            secret,
            color: id[2..8].to_string(),
            id,
            alias: cfg.alias.clone(),
            network: network.to_string(),
            lightning_dir: lightning_dir.to_string(),
            addresses: cfg.addresses.clone(),
            bindings: cfg.bindings.clone(),
            blockheight: cfg.blockheight,
            funding_confirms: cfg.funding_confirms.max(1),
            listpays_pending_after_failure: cfg.listpays_pending_after_failure,
            peers: vec![],
            channels: vec![],
            outputs,
            datastore: Datastore::default(),
            payments: vec![],
            invoices: vec![],
            next_index: 0,
            next_htlc_id: 0,
            calls: vec![],
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (changed, _) = watch::channel(0);
        let handle = NodeHandle {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                events: tx,
                payees: Mutex::new(vec![]),
                sources: Mutex::new(vec![]),
                changed,
            }),
        };
        (handle, rx)
    }

    /// Locks the state. Poisoning is ignored: the state stays usable after a panicking test.
    pub fn state(&self) -> MutexGuard<'_, NodeState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends a notification towards the plugin (delivered if it subscribed).
    pub fn emit(&self, topic: &str, params: Value) {
        // The receiver lives as long as the emulator; after shutdown there is no one to tell.
        let _ = self.inner.events.send((topic.to_string(), params));
    }

    pub(crate) fn bump(&self) {
        self.inner.changed.send_modify(|v| *v += 1);
    }

    /// A receiver bumped on every change of the node state made through this handle.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    // ---- identity and addresses ----

    pub fn id(&self) -> String {
        self.state().id.clone()
    }

    pub fn secret_key(&self) -> SecretKey {
        self.state().secret
    }

    pub fn set_alias(&self, alias: &str) {
        self.state().alias = alias.to_string();
    }

    /// Replaces the announced addresses (`getinfo.address`).
    pub fn set_addresses(&self, addrs: Vec<NetAddress>) {
        self.state().addresses = addrs;
    }

    /// Replaces the bound addresses (`getinfo.binding`).
    pub fn set_bindings(&self, addrs: Vec<NetAddress>) {
        self.state().bindings = addrs;
    }

    pub fn set_listpays_pending_after_failure(&self, n: u32) {
        self.state().listpays_pending_after_failure = n;
    }

    // ---- chain ----

    pub fn blockheight(&self) -> u32 {
        self.state().blockheight
    }

    /// Mines `n` blocks: `block_added` per block, funding transactions confirm, channels lock in
    /// (`channel_state_changed`) once they have their confirmations. Connected channel sources
    /// mine the same blocks.
    pub fn mine_blocks(&self, n: u32) {
        for _ in 0..n {
            let mut events = vec![];
            {
                let mut st = self.state();
                st.blockheight += 1;
                let h = st.blockheight;
                let hash = fake_hash_hex(&format!("block:{}:{h}", st.id));
                events.push((
                    "block_added".to_string(),
                    json!({"block_added": {"hash": hash, "height": h}}),
                ));
                for u in st.outputs.iter_mut() {
                    if u.blockheight.is_none() {
                        u.blockheight = Some(h);
                    }
                }
                for c in st.channels.iter_mut() {
                    if c.state != ChannelState::AwaitingLockin {
                        continue;
                    }
                    if c.funding_height.is_none() {
                        c.funding_height = Some(h);
                    }
                    c.confirmations = c.confirmations_at(h);
                    if c.confirmations >= c.confirmations_required {
                        c.short_channel_id = c.funding_height.map(|fh| format!("{fh}x1x0"));
                        let cause = c.opener.cause();
                        let n = c.change_state(ChannelState::Normal, cause, "Lockin complete");
                        events.push(("channel_state_changed".to_string(), n));
                    }
                }
            }
            for (t, p) in events {
                self.emit(&t, p);
            }
        }
        let sources: Vec<_> = self.sources().clone();
        for s in sources {
            s.blocks_mined(n);
            self.sync_incoming(s.as_ref());
        }
        self.bump();
    }

    // ---- peers ----

    /// Marks a peer connected and sends `connect` (direction `in` or `out`).
    pub fn connect_peer(&self, peer_id: &str, address: NetAddress, direction: &str) {
        {
            let mut st = self.state();
            match st.peers.iter_mut().find(|(p, _)| p == peer_id) {
                Some(p) => p.1 = true,
                None => st.peers.push((peer_id.to_string(), true)),
            }
            for c in st.channels.iter_mut().filter(|c| c.peer_id == peer_id) {
                c.peer_connected = true;
            }
        }
        self.emit(
            "connect",
            json!({"connect": {"id": peer_id, "direction": direction, "address": address.to_json()}}),
        );
        self.bump();
    }

    /// Marks a peer disconnected and sends `disconnect`.
    pub fn disconnect_peer(&self, peer_id: &str) {
        {
            let mut st = self.state();
            for p in st.peers.iter_mut().filter(|(p, _)| p == peer_id) {
                p.1 = false;
            }
            for c in st.channels.iter_mut().filter(|c| c.peer_id == peer_id) {
                c.peer_connected = false;
            }
        }
        self.emit("disconnect", json!({"disconnect": {"id": peer_id}}));
        self.bump();
    }

    // ---- channels ----

    /// Adds an existing channel silently (initial state of a test). Returns its channel id.
    pub fn add_channel(&self, spec: ChannelSpec) -> String {
        let mut st = self.state();
        let (confirms, h) = (st.funding_confirms, st.blockheight);
        let connected = spec.peer_connected;
        let peer = spec.peer_id.clone();
        let c = Channel::from_spec(spec, confirms, h);
        let id = c.channel_id.clone();
        if !st.peers.iter().any(|(p, _)| *p == peer) {
            st.peers.push((peer, connected));
        }
        st.channels.push(c);
        drop(st);
        self.bump();
        id
    }

    /// A peer opens a channel to us (or we to it): the peer connects if needed, the channel
    /// appears in `CHANNELD_AWAITING_LOCKIN` and `channel_state_changed` (plus `channel_opened`
    /// when the remote funded it) are sent. It locks in as blocks are mined.
    pub fn open_channel(&self, spec: ChannelSpec) -> String {
        let peer = spec.peer_id.clone();
        if !self.state().peer_connected(&peer) {
            let direction = if spec.opener == Opener::Remote {
                "in"
            } else {
                "out"
            };
            self.connect_peer(
                &peer,
                NetAddress::new(AddrType::Ipv4, "127.0.0.1", 9735),
                direction,
            );
        }
        let spec = ChannelSpec {
            state: ChannelState::AwaitingLockin,
            peer_connected: true,
            ..spec
        };
        let (id, opened, channel_opened) = {
            let mut st = self.state();
            let (confirms, h) = (st.funding_confirms, st.blockheight);
            let c = Channel::from_spec(spec, confirms, h);
            let opened = c.opened_notification(c.opener.cause());
            let channel_opened = (c.opener == Opener::Remote).then(|| {
                json!({"channel_opened": {
                    "id": c.peer_id,
                    "funding_msat": c.total_msat,
                    "funding_txid": c.funding_txid,
                    "channel_ready": false,
                }})
            });
            let id = c.channel_id.clone();
            st.channels.push(c);
            (id, opened, channel_opened)
        };
        self.emit("channel_state_changed", opened);
        if let Some(n) = channel_opened {
            self.emit("channel_opened", n);
        }
        self.bump();
        id
    }

    /// Moves a channel to another state (sends `channel_state_changed`).
    pub fn set_channel_state(&self, channel_id: &str, state: ChannelState, message: &str) -> bool {
        let n = {
            let mut st = self.state();
            let Some(c) = st.channel_mut(channel_id) else {
                return false;
            };
            c.change_state(state, "user", message)
        };
        self.emit("channel_state_changed", n);
        self.bump();
        true
    }

    /// Sets our balance in a channel (the peer gets the rest).
    pub fn set_channel_balance(&self, channel_id: &str, to_us_msat: u64) -> bool {
        let ok = match self.state().channel_mut(channel_id) {
            Some(c) => {
                c.to_us_msat = to_us_msat.min(c.total_msat);
                true
            }
            None => false,
        };
        self.bump();
        ok
    }

    /// Overrides the derived spendable / receivable amounts of a channel (`None` = derive).
    pub fn set_channel_limits(
        &self,
        channel_id: &str,
        spendable_msat: Option<u64>,
        receivable_msat: Option<u64>,
    ) -> bool {
        let ok = match self.state().channel_mut(channel_id) {
            Some(c) => {
                c.spendable_override = spendable_msat;
                c.receivable_override = receivable_msat;
                true
            }
            None => false,
        };
        self.bump();
        ok
    }

    pub fn remove_channel(&self, channel_id: &str) {
        self.state().channels.retain(|c| c.channel_id != channel_id);
        self.bump();
    }

    pub fn channels(&self) -> Vec<Channel> {
        self.state().channels.clone()
    }

    // ---- on-chain ----

    /// Adds a confirmed wallet output; returns its txid.
    pub fn add_utxo(&self, amount_sat: u64) -> String {
        let mut st = self.state();
        let n = st.outputs.len();
        let txid = fake_hash_hex(&format!("utxo:{}:{n}:{amount_sat}", st.id));
        let h = st.blockheight;
        st.outputs.push(Utxo {
            txid: txid.clone(),
            output: 0,
            amount_msat: amount_sat * 1000,
            blockheight: Some(h),
            reserved: false,
        });
        drop(st);
        self.bump();
        txid
    }

    pub fn clear_utxos(&self) {
        self.state().outputs.clear();
        self.bump();
    }

    // ---- payments, datastore, calls ----

    /// Someone paid our invoice `label` (sends `invoice_payment`). False if unknown.
    pub fn mark_invoice_paid(&self, label: &str) -> bool {
        crate::invoice::mark_paid(self, label)
    }

    pub fn payments(&self) -> Vec<Payment> {
        self.state().payments.clone()
    }

    pub fn datastore_get(&self, key: &[&str]) -> Option<Vec<u8>> {
        let key: Vec<String> = key.iter().map(|s| s.to_string()).collect();
        self.state().datastore.get(&key).map(|e| e.data.clone())
    }

    pub(crate) fn record_call(&self, method: &str, params: &Value, from_plugin: bool) {
        self.state().calls.push(RecordedCall {
            method: method.to_string(),
            params: params.clone(),
            from_plugin,
        });
    }

    /// Every RPC call received on the socket, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state().calls.clone()
    }

    /// How many `pay` calls the plugin made for this payment hash.
    pub fn pay_calls_for(&self, payment_hash: &str) -> usize {
        let st = self.state();
        st.calls
            .iter()
            .filter(|c| c.from_plugin && c.method == "pay")
            .filter(|c| {
                let bolt11 = c
                    .params
                    .get("bolt11")
                    .or_else(|| c.params.get(0))
                    .and_then(Value::as_str);
                bolt11
                    .and_then(|b| crate::bolt11::decode(b).ok())
                    .is_some_and(|i| i.payment_hash == payment_hash)
            })
            .count()
    }

    // ---- payees and channel sources ----

    pub fn add_payee(&self, payee: Arc<dyn Payee>) {
        self.inner
            .payees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(payee);
    }

    pub(crate) fn payee_for(
        &self,
        payee_pubkey: &str,
        payment_hash: &str,
    ) -> Option<Arc<dyn Payee>> {
        self.inner
            .payees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|p| p.accepts(payee_pubkey, payment_hash))
            .cloned()
    }

    fn sources(&self) -> MutexGuard<'_, Vec<Arc<dyn ChannelSource>>> {
        self.inner.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects a channel source: its incoming channels appear on the node (remote-opened,
    /// all funds on the peer's side) as soon as it reports them, and it mines with the node.
    /// Runs until the source's watch channel closes.
    pub fn add_channel_source(
        &self,
        source: Arc<dyn ChannelSource>,
    ) -> tokio::task::JoinHandle<()> {
        self.sources().push(source.clone());
        let node = self.clone();
        let mut rx = source.subscribe();
        tokio::spawn(async move {
            loop {
                node.sync_incoming(source.as_ref());
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
    }

    /// Adds channels the source funded that the node does not know yet.
    pub fn sync_incoming(&self, source: &dyn ChannelSource) {
        let our_id = self.id();
        for inc in source.incoming_channels(&our_id) {
            let known = {
                let mut st = self.state();
                match st
                    .channels
                    .iter_mut()
                    .find(|c| c.funding_txid == inc.funding_txid)
                {
                    Some(c) => {
                        if c.state == ChannelState::Normal && inc.short_channel_id.is_some() {
                            c.short_channel_id = inc.short_channel_id.clone();
                        }
                        true
                    }
                    None => false,
                }
            };
            if known {
                continue;
            }
            let mut spec = ChannelSpec::remote_opened(&inc.peer_id, inc.amount_sat * 1000);
            spec.funding_txid = Some(inc.funding_txid.clone());
            self.open_channel(spec);
        }
    }
}

/// A valid node id for a test peer, derived from a name.
pub fn peer_id(name: &str) -> String {
    pubkey_from_seed(&format!("peer:{name}"))
}
