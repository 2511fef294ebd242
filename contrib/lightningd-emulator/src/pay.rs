//! `pay` (blocking while the payee holds the HTLC), `listpays`, `listsendpays`, and a manual
//! payee for tests.

use crate::bolt11::{self, Invoice};
use crate::channel::{ChannelState, OutHtlc};
use crate::node::{BoxFuture, HtlcOutcome, NodeHandle, Payee};
use crate::protocol::{Params, RpcError, codes};
use crate::util::{fake_hash_hex, hex, now_secs, now_secs_f64, sha256};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayStatus {
    Pending,
    Complete,
    Failed,
}

impl PayStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PayStatus::Pending => "pending",
            PayStatus::Complete => "complete",
            PayStatus::Failed => "failed",
        }
    }
}

/// One payment attempt (one `sendpay` part in lightningd's terms).
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub created_index: u64,
    pub updated_index: Option<u64>,
    pub payment_hash: String,
    pub groupid: u64,
    pub partid: u64,
    pub destination: String,
    pub amount_msat: u64,
    pub created_at: u64,
    pub completed_at: Option<u64>,
    pub status: PayStatus,
    pub preimage: Option<String>,
    pub bolt11: String,
    pub label: Option<String>,
    /// `listpays` calls that will still show this failed payment as pending.
    pub listpays_lag: u32,
    /// Channel HTLCs carrying this payment: (channel id, htlc id, amount).
    pub htlcs: Vec<(String, u64, u64)>,
}

impl Payment {
    fn listsendpays_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("created_index".into(), json!(self.created_index));
        m.insert("id".into(), json!(self.created_index));
        m.insert("payment_hash".into(), json!(self.payment_hash));
        m.insert("groupid".into(), json!(self.groupid));
        if let Some(u) = self.updated_index {
            m.insert("updated_index".into(), json!(u));
        }
        m.insert("partid".into(), json!(self.partid));
        m.insert("destination".into(), json!(self.destination));
        m.insert("amount_msat".into(), json!(self.amount_msat));
        m.insert("amount_sent_msat".into(), json!(self.amount_msat));
        m.insert("created_at".into(), json!(self.created_at));
        if let Some(c) = self.completed_at {
            m.insert("completed_at".into(), json!(c));
        }
        m.insert("status".into(), json!(self.status.as_str()));
        if let Some(p) = &self.preimage {
            m.insert("payment_preimage".into(), json!(p));
        }
        if let Some(l) = &self.label {
            m.insert("label".into(), json!(l));
        }
        m.insert("bolt11".into(), json!(self.bolt11));
        if self.status == PayStatus::Failed {
            m.insert(
                "erroronion".into(),
                json!(fake_hash_hex(&format!("onion:{}", self.payment_hash)).repeat(4)),
            );
        }
        Value::Object(m)
    }

    fn listpays_json(&self, status: PayStatus) -> Value {
        let mut m = Map::new();
        m.insert("bolt11".into(), json!(self.bolt11));
        m.insert("destination".into(), json!(self.destination));
        m.insert("payment_hash".into(), json!(self.payment_hash));
        m.insert("status".into(), json!(status.as_str()));
        m.insert("created_at".into(), json!(self.created_at));
        if status == PayStatus::Complete {
            if let Some(c) = self.completed_at {
                m.insert("completed_at".into(), json!(c));
            }
            if let Some(p) = &self.preimage {
                m.insert("preimage".into(), json!(p));
            }
        }
        if let Some(l) = &self.label {
            m.insert("label".into(), json!(l));
        }
        if status != PayStatus::Failed {
            m.insert("amount_msat".into(), json!(self.amount_msat));
            m.insert("amount_sent_msat".into(), json!(self.amount_msat));
        } else {
            m.insert("amount_sent_msat".into(), json!(0));
        }
        m.insert("created_index".into(), json!(self.created_index));
        if let Some(u) = self.updated_index {
            m.insert("updated_index".into(), json!(u));
        }
        Value::Object(m)
    }

    fn success_json(&self, parts: usize) -> Value {
        json!({
            "payment_preimage": self.preimage,
            "amount_msat": self.amount_msat,
            "amount_sent_msat": self.amount_msat,
            "parts": parts,
            "destination": self.destination,
            "payment_hash": self.payment_hash,
            "status": "complete",
            "created_at": self.created_at as f64 + now_secs_f64().fract(),
        })
    }
}

const LIST_PARAMS: &[&str] = &[
    "bolt11",
    "payment_hash",
    "status",
    "index",
    "start",
    "limit",
];

struct ListFilter {
    bolt11: Option<String>,
    payment_hash: Option<String>,
    status: Option<String>,
}

fn list_filter(params: &Value) -> Result<ListFilter, RpcError> {
    let p = Params::parse(params, LIST_PARAMS)?;
    Ok(ListFilter {
        bolt11: p.opt_str("bolt11")?.map(str::to_owned),
        payment_hash: p.opt_str("payment_hash")?.map(str::to_owned),
        status: p.opt_str("status")?.map(str::to_owned),
    })
}

impl ListFilter {
    fn matches(&self, p: &Payment, status: PayStatus) -> bool {
        self.bolt11.as_ref().is_none_or(|b| *b == p.bolt11)
            && self
                .payment_hash
                .as_ref()
                .is_none_or(|h| *h == p.payment_hash)
            && self.status.as_ref().is_none_or(|s| s == status.as_str())
    }
}

/// `listsendpays`.
pub fn listsendpays(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let f = list_filter(params)?;
    let st = node.state();
    let payments: Vec<Value> = st
        .payments
        .iter()
        .filter(|p| f.matches(p, p.status))
        .map(Payment::listsendpays_json)
        .collect();
    Ok(json!({ "payments": payments }))
}

/// `listpays`: one entry per payment (group), with the lag knob for failed payments.
pub fn listpays(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let f = list_filter(params)?;
    let mut st = node.state();
    let mut out = vec![];
    for p in st.payments.iter_mut() {
        let mut shown = p.status;
        if p.status == PayStatus::Failed && p.listpays_lag > 0 {
            p.listpays_lag -= 1;
            shown = PayStatus::Pending;
        }
        if f.matches(p, shown) {
            out.push(p.listpays_json(shown));
        }
    }
    Ok(json!({ "pays": out }))
}

const PAY_PARAMS: &[&str] = &[
    "bolt11",
    "amount_msat",
    "label",
    "riskfactor",
    "maxfeepercent",
    "retry_for",
    "maxdelay",
    "exemptfee",
    "localinvreqid",
    "exclude",
    "maxfee",
    "description",
    "partial_msat",
];

fn destination_failure() -> RpcError {
    RpcError::new(
        codes::PAY_DESTINATION_PERM_FAIL,
        "Destination said it doesn't know invoice: incorrect_or_unknown_payment_details",
    )
}

/// `pay`: checks the invoice, reserves outbound capacity as HTLCs, tells the payee the HTLC is
/// held and waits for it to settle (success) or cancel (failure, code 203).
pub async fn pay(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(params, PAY_PARAMS)?;
    let bolt11_v = p.required("bolt11")?.clone();
    let bolt11_s = p.req_str("bolt11")?;
    let inv = bolt11::decode(bolt11_s).map_err(|_| {
        RpcError::bad_param("bolt11", &bolt11_v, "Invalid bolt11: Bad bech32 string")
    })?;
    let param_amount = p.opt_msat("amount_msat")?;
    let label = p.opt_str("label")?.map(str::to_owned);
    let amount = match (inv.amount_msat, param_amount) {
        (Some(_), Some(_)) => {
            return Err(RpcError::invalid_params(
                "amount_msat parameter unnecessary",
            ));
        }
        (None, None) => {
            return Err(RpcError::invalid_params("amount_msat parameter required"));
        }
        (Some(a), None) | (None, Some(a)) => a,
    };

    let reservation = reserve(node, &inv, amount, label)?;
    let payment_hash = inv.payment_hash.clone();
    let payment = match reservation {
        Reservation::AlreadyComplete(p) => return Ok(p.success_json(1)),
        Reservation::Started(p) => p,
    };
    let parts = payment.htlcs.len().max(1);
    node.bump();

    let outcome = match node.payee_for(&inv.payee, &payment_hash) {
        None => HtlcOutcome::Cancelled {
            reason: "unknown destination".into(),
        },
        Some(payee) => {
            payee.htlc_held(&payment_hash, amount);
            payee.wait_outcome(&payment_hash).await
        }
    };
    let outcome = match outcome {
        HtlcOutcome::Settled { preimage }
            if hex::decode(&preimage).is_none_or(|b| hex::encode(&sha256(&b)) != payment_hash) =>
        {
            log::warn!("payee settled {payment_hash} with a preimage that does not match");
            HtlcOutcome::Cancelled {
                reason: "bad preimage".into(),
            }
        }
        o => o,
    };
    let result = resolve(node, payment.created_index, &outcome);
    node.bump();
    match (outcome, result) {
        (HtlcOutcome::Settled { .. }, Some(p)) => Ok(p.success_json(parts)),
        _ => Err(destination_failure()),
    }
}

enum Reservation {
    AlreadyComplete(Payment),
    Started(Payment),
}

/// Under the node lock: network/expiry/duplicate/capacity checks, then a pending record and
/// the HTLCs on our channels.
fn reserve(
    node: &NodeHandle,
    inv: &Invoice,
    amount: u64,
    label: Option<String>,
) -> Result<Reservation, RpcError> {
    let mut st = node.state();
    let want = bolt11::network_currency(&st.network);
    if inv.currency != want {
        return Err(RpcError::invalid_params(format!(
            "Invoice is for another network {}",
            inv.currency
        )));
    }
    if now_secs() > inv.expires_at() {
        return Err(RpcError::new(codes::PAY_INVOICE_EXPIRED, "Invoice expired"));
    }
    if inv.payee == st.id {
        return Err(RpcError::new(codes::LIGHTNINGD, "This is a self-payment"));
    }
    let same: Vec<&Payment> = st
        .payments
        .iter()
        .filter(|p| p.payment_hash == inv.payment_hash)
        .collect();
    if let Some(done) = same.iter().find(|p| p.status == PayStatus::Complete) {
        return Ok(Reservation::AlreadyComplete((*done).clone()));
    }
    if same.iter().any(|p| p.status == PayStatus::Pending) {
        return Err(RpcError::new(
            codes::PAY_IN_PROGRESS,
            "Payment is pending: wait for it to complete or fail",
        ));
    }

    // Spread the amount over usable channels, largest spendable first.
    let mut usable: Vec<(usize, u64)> = st
        .channels
        .iter()
        .enumerate()
        .filter(|(_, c)| c.state == ChannelState::Normal && c.peer_connected)
        .map(|(i, c)| (i, c.spendable_msat()))
        .filter(|(_, s)| *s > 0)
        .collect();
    usable.sort_by_key(|u| std::cmp::Reverse(u.1));
    let total: u64 = usable.iter().map(|(_, s)| s).sum();
    if total < amount {
        return Err(RpcError::new(
            codes::PAY_ROUTE_NOT_FOUND,
            format!(
                "We could not find a usable set of paths. The total spendable of our channels is {total}msat, the amount is {amount}msat"
            ),
        ));
    }
    let groupid = u64::from_be_bytes(
        sha256(format!("group:{}:{}", inv.payment_hash, st.payments.len()).as_bytes())[..8]
            .try_into()
            .unwrap_or([0; 8]),
    ) >> 1;
    let mut htlcs = vec![];
    let mut left = amount;
    let expiry = st.blockheight + 6 + inv_min_cltv(inv);
    for (i, spendable) in usable {
        if left == 0 {
            break;
        }
        let take = spendable.min(left);
        left -= take;
        st.next_htlc_id += 1;
        let hid = st.next_htlc_id;
        let c = &mut st.channels[i];
        c.htlcs_out.push(OutHtlc {
            id: hid,
            payment_hash: inv.payment_hash.clone(),
            amount_msat: take,
            expiry,
        });
        c.out_payments_offered += 1;
        c.out_offered_msat += take;
        htlcs.push((c.channel_id.clone(), hid, take));
    }
    let created_index = st.next_index();
    let payment = Payment {
        created_index,
        updated_index: None,
        payment_hash: inv.payment_hash.clone(),
        groupid,
        partid: 1,
        destination: inv.payee.clone(),
        amount_msat: amount,
        created_at: now_secs(),
        completed_at: None,
        status: PayStatus::Pending,
        preimage: None,
        bolt11: inv.bolt11.clone(),
        label,
        listpays_lag: 0,
        htlcs,
    };
    st.payments.push(payment.clone());
    Ok(Reservation::Started(payment))
}

fn inv_min_cltv(inv: &Invoice) -> u32 {
    inv.json
        .get("min_final_cltv_expiry")
        .and_then(Value::as_u64)
        .unwrap_or(18) as u32
}

/// Applies the payee's outcome to the payment record and channels.
fn resolve(node: &NodeHandle, created_index: u64, outcome: &HtlcOutcome) -> Option<Payment> {
    let mut st = node.state();
    let lag = st.listpays_pending_after_failure;
    let updated = st.next_index();
    let idx = st
        .payments
        .iter()
        .position(|p| p.created_index == created_index)?;
    let htlcs = std::mem::take(&mut st.payments[idx].htlcs);
    for (cid, hid, amount) in &htlcs {
        if let Some(c) = st.channel_mut(cid) {
            c.htlcs_out.retain(|h| h.id != *hid);
            if matches!(outcome, HtlcOutcome::Settled { .. }) {
                c.to_us_msat = c.to_us_msat.saturating_sub(*amount);
                c.out_payments_fulfilled += 1;
                c.out_fulfilled_msat += amount;
            }
        }
    }
    let p = &mut st.payments[idx];
    p.htlcs = htlcs;
    p.updated_index = Some(updated);
    p.completed_at = Some(now_secs());
    match outcome {
        HtlcOutcome::Settled { preimage } => {
            p.status = PayStatus::Complete;
            p.preimage = Some(preimage.clone());
        }
        HtlcOutcome::Cancelled { .. } => {
            p.status = PayStatus::Failed;
            p.listpays_lag = lag;
        }
    }
    Some(p.clone())
}

/// A payee driven by the test: HTLCs are held until [`ManualPayee::settle`] or
/// [`ManualPayee::cancel`].
pub struct ManualPayee {
    pubkey: Option<String>,
    state: Arc<Mutex<HashMap<String, ManualHtlc>>>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ManualHtlc {
    Held { amount_msat: u64 },
    Done(HtlcOutcome),
}

impl ManualPayee {
    /// Accepts invoices of any payee.
    pub fn new() -> Self {
        ManualPayee {
            pubkey: None,
            state: Arc::new(Mutex::new(HashMap::new())),
            changed: watch::channel(0).0,
        }
    }

    /// Accepts only invoices whose payee is `pubkey`.
    pub fn for_pubkey(pubkey: &str) -> Self {
        ManualPayee {
            pubkey: Some(pubkey.to_string()),
            ..Self::new()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ManualHtlc>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, hash: &str, outcome: HtlcOutcome) {
        self.lock()
            .insert(hash.to_string(), ManualHtlc::Done(outcome));
        self.changed.send_modify(|v| *v += 1);
    }

    /// Releases the preimage (hex); `pay` succeeds.
    pub fn settle(&self, payment_hash: &str, preimage_hex: &str) {
        self.set(
            payment_hash,
            HtlcOutcome::Settled {
                preimage: preimage_hex.to_string(),
            },
        );
    }

    /// Fails the HTLC back; `pay` fails.
    pub fn cancel(&self, payment_hash: &str) {
        self.set(
            payment_hash,
            HtlcOutcome::Cancelled {
                reason: "cancelled by payee".into(),
            },
        );
    }

    /// Payment hashes currently held, with amounts.
    pub fn held(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .filter_map(|(h, s)| match s {
                ManualHtlc::Held { amount_msat } => Some((h.clone(), *amount_msat)),
                ManualHtlc::Done(_) => None,
            })
            .collect()
    }

    /// Waits until an HTLC for `payment_hash` is held.
    pub async fn wait_held(&self, payment_hash: &str) {
        let mut rx = self.changed.subscribe();
        loop {
            if self.held().iter().any(|(h, _)| h == payment_hash) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Default for ManualPayee {
    fn default() -> Self {
        Self::new()
    }
}

impl Payee for ManualPayee {
    fn accepts(&self, payee_pubkey: &str, _payment_hash: &str) -> bool {
        self.pubkey.as_deref().is_none_or(|p| p == payee_pubkey)
    }

    fn htlc_held(&self, payment_hash: &str, amount_msat: u64) {
        let mut st = self.lock();
        // An outcome decided in advance stands.
        if !matches!(st.get(payment_hash), Some(ManualHtlc::Done(_))) {
            st.insert(payment_hash.to_string(), ManualHtlc::Held { amount_msat });
        }
        drop(st);
        self.changed.send_modify(|v| *v += 1);
    }

    fn wait_outcome(&self, payment_hash: &str) -> BoxFuture<HtlcOutcome> {
        let mut rx = self.changed.subscribe();
        let hash = payment_hash.to_string();
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            loop {
                let done = match state.lock().unwrap_or_else(|p| p.into_inner()).get(&hash) {
                    Some(ManualHtlc::Done(o)) => Some(o.clone()),
                    _ => None,
                };
                if let Some(o) = done {
                    return o;
                }
                if rx.changed().await.is_err() {
                    return HtlcOutcome::Cancelled {
                        reason: "payee went away".into(),
                    };
                }
            }
        })
    }
}
