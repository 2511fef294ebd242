//! The order record as stored in the datastore, and the redacted view every output uses.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use crate::order::Lifecycle;
use crate::secret::Secret;

/// Bumped when the stored shape changes incompatibly.
pub const RECORD_VERSION: u32 = 1;

/// Who started the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Auto,
}

/// What was asked of Magma, with the quote it was priced at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub usd_cents: u64,
    pub connection_uri: String,
    pub private: bool,
    pub rails_cluster_only: bool,
    pub expected_inbound_sat: u64,
    pub quoted_cost_sat: u64,
    pub quoted_ppm: u64,
    /// Pay from another wallet even if the node could pay.
    pub external: bool,
    pub force: bool,
}

/// How the order is read back from Magma.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credential {
    ApiKey,
    SessionKey,
}

/// Magma's answer to the buy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub order_id: String,
    pub account_id: String,
    pub credential: Credential,
    /// The only key to an anonymous order: stored, never shown.
    #[serde(
        default,
        serialize_with = "store_secret",
        deserialize_with = "load_secret"
    )]
    pub session_key: Option<Secret>,
    pub invoice: String,
    /// `payment.amount.sats`, when Magma gave it.
    pub invoice_sats: Option<u64>,
    /// How the order was found: the buy's answer, or reconciliation after a lost answer.
    #[serde(default)]
    pub adopted: bool,
}

fn store_secret<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_some(secret.expose()),
        None => s.serialize_none(),
    }
}

fn load_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// The invoice as checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckedInvoice {
    pub payment_hash: String,
    pub amount_sat: u64,
    pub expires_at: u64,
    pub price_ppm: u64,
}

/// The channel that delivered the order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub peer_id: String,
    pub channel_id: Option<String>,
    pub short_channel_id: Option<String>,
    pub capacity_sat: u64,
    pub inbound_sat: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub version: u32,
    pub id: String,
    pub created_at: u64,
    pub trigger: Trigger,
    pub request: Request,
    #[serde(default)]
    pub placement: Option<Placement>,
    #[serde(default)]
    pub invoice: Option<CheckedInvoice>,
    /// The funding transaction Magma reported.
    #[serde(default)]
    pub funding_txid: Option<String>,
    #[serde(default)]
    pub magma_channel_id: Option<String>,
    #[serde(default)]
    pub delivery: Option<Delivery>,
    pub lifecycle: Lifecycle,
}

impl OrderRecord {
    /// What commands and notifications show: everything but the session key, which appears
    /// only as "stored".
    pub fn view(&self) -> Value {
        let l = &self.lifecycle;
        let placement = self.placement.as_ref().map(|p| {
            json!({
                "order_id": p.order_id,
                "credential": p.credential,
                "session_key": p.session_key.as_ref().map(|_| "[redacted]"),
                "invoice": p.invoice,
                "invoice_sats": p.invoice_sats,
                "adopted": p.adopted,
            })
        });
        json!({
            "id": self.id,
            "created_at": self.created_at,
            "trigger": self.trigger,
            "state": l.state,
            "status": l.status,
            "payment_status": l.payment_status,
            "pay_mode": l.pay_mode,
            "request": self.request,
            "magma": placement,
            "invoice": self.invoice,
            "funding_txid": self.funding_txid,
            "channel": self.delivery,
            "reason": l.reason,
            "follow_up": l.follow_up.map(|f| json!({"what": f, "advice": f.advice()})),
            "history": l.history,
        })
    }
}
