//! Invoices the node issues (`invoice`, `listinvoices`) and `fundchannel`.

use crate::bolt11::{self, NewInvoice};
use crate::channel::ChannelSpec;
use crate::node::NodeHandle;
use crate::protocol::{Params, RpcError, codes};
use crate::util::{fake_hash_hex, hex, now_secs, sha256};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceRecord {
    pub label: String,
    pub bolt11: String,
    pub payment_hash: String,
    pub payment_secret: String,
    pub preimage: String,
    pub amount_msat: Option<u64>,
    pub description: String,
    pub expires_at: u64,
    pub created_index: u64,
    pub paid: Option<PaidInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaidInfo {
    pub pay_index: u64,
    pub amount_received_msat: u64,
    pub paid_at: u64,
    pub updated_index: u64,
}

impl InvoiceRecord {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("label".into(), json!(self.label));
        m.insert("bolt11".into(), json!(self.bolt11));
        m.insert("payment_hash".into(), json!(self.payment_hash));
        if let Some(a) = self.amount_msat {
            m.insert("amount_msat".into(), json!(a));
        }
        let status = match (&self.paid, now_secs() > self.expires_at) {
            (Some(_), _) => "paid",
            (None, true) => "expired",
            (None, false) => "unpaid",
        };
        m.insert("status".into(), json!(status));
        if let Some(p) = &self.paid {
            m.insert("pay_index".into(), json!(p.pay_index));
            m.insert("amount_received_msat".into(), json!(p.amount_received_msat));
            m.insert("paid_at".into(), json!(p.paid_at));
            m.insert("payment_preimage".into(), json!(self.preimage));
        }
        m.insert("description".into(), json!(self.description));
        m.insert("expires_at".into(), json!(self.expires_at));
        m.insert("created_index".into(), json!(self.created_index));
        if let Some(p) = &self.paid {
            m.insert("updated_index".into(), json!(p.updated_index));
        }
        Value::Object(m)
    }
}

/// `invoice`: a real invoice signed with the node key.
pub fn invoice(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(
        params,
        &[
            "amount_msat",
            "label",
            "description",
            "expiry",
            "fallbacks",
            "preimage",
            "exposeprivatechannels",
            "cltv",
            "deschashonly",
        ],
    )?;
    let amount_msat = match p.required("amount_msat")? {
        Value::String(s) if s == "any" => None,
        _ => p.opt_msat("amount_msat")?,
    };
    let label = match p.required("label")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let description = p.req_str("description")?.to_string();
    let expiry = p.opt_u64("expiry")?.unwrap_or(604_800);
    let mut st = node.state();
    if st.invoices.iter().any(|i| i.label == label) {
        return Err(RpcError::new(900, "Duplicate label"));
    }
    let preimage: [u8; 32] = match p.opt_str("preimage")? {
        Some(h) => hex::decode(h)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| RpcError::invalid_params("preimage: should be 32 bytes of hex"))?,
        None => sha256(format!("preimage:{}:{label}:{}", st.id, st.invoices.len()).as_bytes()),
    };
    let created_at = now_secs();
    let bolt11 = bolt11::create_invoice(
        &st.secret,
        &NewInvoice {
            network: &st.network,
            amount_msat,
            description: &description,
            preimage,
            expiry_secs: expiry,
            created_at,
        },
    )
    .map_err(|e| RpcError::new(codes::LIGHTNINGD, e))?;
    let decoded = bolt11::decode(&bolt11)?;
    let created_index = st.invoices.len() as u64 + 1;
    let rec = InvoiceRecord {
        label: label.clone(),
        payment_hash: decoded.payment_hash.clone(),
        payment_secret: decoded.json["payment_secret"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        preimage: hex::encode(&preimage),
        bolt11: bolt11.clone(),
        amount_msat,
        description,
        expires_at: created_at + expiry,
        created_index,
        paid: None,
    };
    let out = json!({
        "payment_hash": rec.payment_hash,
        "expires_at": rec.expires_at,
        "bolt11": bolt11,
        "payment_secret": rec.payment_secret,
        "created_index": created_index,
    });
    st.invoices.push(rec.clone());
    drop(st);
    node.emit(
        "invoice_creation",
        json!({"invoice_creation": {"msat": amount_msat, "preimage": rec.preimage, "label": label}}),
    );
    Ok(out)
}

/// `listinvoices`.
pub fn listinvoices(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(
        params,
        &[
            "label",
            "invstring",
            "payment_hash",
            "offer_id",
            "index",
            "start",
            "limit",
        ],
    )?;
    let label = p.get("label").map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let invstring = p.opt_str("invstring")?;
    let hash = p.opt_str("payment_hash")?;
    let st = node.state();
    let invoices: Vec<Value> = st
        .invoices
        .iter()
        .filter(|i| label.as_ref().is_none_or(|l| *l == i.label))
        .filter(|i| invstring.is_none_or(|s| s == i.bolt11))
        .filter(|i| hash.is_none_or(|h| h == i.payment_hash))
        .map(InvoiceRecord::to_json)
        .collect();
    Ok(json!({ "invoices": invoices }))
}

/// Scripting: someone paid our invoice `label` (sends `invoice_payment`).
pub fn mark_paid(node: &NodeHandle, label: &str) -> bool {
    let n = {
        let mut st = node.state();
        let pay_index = st.invoices.iter().filter(|i| i.paid.is_some()).count() as u64 + 1;
        let updated_index = pay_index;
        let Some(inv) = st.invoices.iter_mut().find(|i| i.label == label) else {
            return false;
        };
        let amount = inv.amount_msat.unwrap_or(0);
        inv.paid = Some(PaidInfo {
            pay_index,
            amount_received_msat: amount,
            paid_at: now_secs(),
            updated_index,
        });
        json!({"invoice_payment": {"msat": amount, "preimage": inv.preimage, "label": label}})
    };
    node.emit("invoice_payment", n);
    node.bump();
    true
}

/// `fundchannel`: opens a channel with a connected peer (locks in as blocks are mined).
pub fn fundchannel(node: &NodeHandle, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(
        params,
        &[
            "id",
            "amount",
            "feerate",
            "announce",
            "minconf",
            "push_msat",
            "close_to",
            "request_amt",
            "compact_lease",
            "utxos",
            "mindepth",
            "reserve",
            "channel_type",
        ],
    )?;
    let id = p.req_str("id")?.to_string();
    let amount_v = p.required("amount")?.clone();
    let sat = match &amount_v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.strip_suffix("sat").unwrap_or(s).parse().ok(),
        _ => None,
    }
    .ok_or_else(|| RpcError::bad_param("amount", &amount_v, "should be a satoshi amount"))?;
    if !node.state().peer_connected(&id) {
        return Err(RpcError::new(306, "Unknown peer"));
    }
    let txid = fake_hash_hex(&format!("fund:{id}:{sat}:{}", node.state().channels.len()));
    let mut spec = ChannelSpec::local_opened(&id, sat * 1000);
    spec.funding_txid = Some(txid.clone());
    let channel_id = node.open_channel(spec);
    Ok(json!({
        "tx": format!("02000000000101{}", fake_hash_hex(&format!("tx:{txid}")).repeat(6)),
        "txid": txid,
        "channel_id": channel_id,
        "channel_type": {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]},
        "outnum": 0,
    }))
}
