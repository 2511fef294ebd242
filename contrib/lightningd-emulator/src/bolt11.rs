//! BOLT11 decoding into the shape of lightningd's `decode` result
//! (fixtures/cln/decode.bolt11.json).

use crate::hex;
use crate::protocol::RpcError;
use lightning_invoice::{
    Bolt11Invoice, Bolt11InvoiceDescriptionRef, Currency, ParseOrSemanticError,
};
use serde_json::{Map, Value, json};
use std::str::FromStr;

/// The facts the node model needs from an invoice.
#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    pub bolt11: String,
    pub currency: String,
    pub payee: String,
    pub payment_hash: String,
    pub amount_msat: Option<u64>,
    pub created_at: u64,
    pub expiry: u64,
    pub json: Value,
}

impl Invoice {
    pub fn expires_at(&self) -> u64 {
        self.created_at.saturating_add(self.expiry)
    }
}

/// The bech32 prefix lightningd prints as `currency`.
pub fn currency_prefix(c: &Currency) -> &'static str {
    match c {
        Currency::Bitcoin => "bc",
        Currency::BitcoinTestnet => "tb",
        Currency::Regtest => "bcrt",
        Currency::Simnet => "sb",
        Currency::Signet => "tbs",
    }
}

/// The currency prefix of a lightningd network name.
pub fn network_currency(network: &str) -> &'static str {
    match network {
        "bitcoin" | "mainnet" => "bc",
        "testnet" | "testnet4" => "tb",
        "signet" => "tbs",
        _ => "bcrt",
    }
}

/// Formats a short channel id the way lightningd does (`BLOCKxTXxOUT`).
pub fn scid_string(scid: u64) -> String {
    format!(
        "{}x{}x{}",
        scid >> 40,
        (scid >> 16) & 0xff_ffff,
        scid & 0xffff
    )
}

/// Decodes an invoice string; errors are lightningd's `decode` parameter errors.
pub fn decode(s: &str) -> Result<Invoice, RpcError> {
    let token = Value::String(s.to_string());
    let inv = Bolt11Invoice::from_str(s.trim()).map_err(|e| {
        let msg = match &e {
            ParseOrSemanticError::ParseError(_) => "Bad bech32 string".to_string(),
            ParseOrSemanticError::SemanticError(se) => format!("Invalid bolt11: {se}"),
        };
        RpcError::bad_param("string", &token, &msg)
    })?;
    Ok(to_invoice(s.trim(), &inv))
}

fn to_invoice(s: &str, inv: &Bolt11Invoice) -> Invoice {
    let currency = currency_prefix(&inv.currency()).to_string();
    let payee = inv.get_payee_pub_key().to_string();
    let payment_hash = inv.payment_hash().to_string();
    let created_at = inv.duration_since_epoch().as_secs();
    let expiry = inv.expiry_time().as_secs();

    let mut m = Map::new();
    m.insert("type".into(), json!("bolt11 invoice"));
    m.insert("currency".into(), json!(currency));
    m.insert("created_at".into(), json!(created_at));
    m.insert("expiry".into(), json!(expiry));
    m.insert("payee".into(), json!(payee));
    if let Some(a) = inv.amount_milli_satoshis() {
        m.insert("amount_msat".into(), json!(a));
    }
    match inv.description() {
        Bolt11InvoiceDescriptionRef::Direct(d) => {
            m.insert("description".into(), json!(d.clone().into_inner().0));
        }
        Bolt11InvoiceDescriptionRef::Hash(h) => {
            m.insert("description_hash".into(), json!(h.0.to_string()));
        }
    }
    m.insert(
        "min_final_cltv_expiry".into(),
        json!(inv.min_final_cltv_expiry_delta()),
    );
    m.insert(
        "payment_secret".into(),
        json!(hex::encode(&inv.payment_secret().0)),
    );
    if let Some(f) = inv.features() {
        // Big-endian feature bits without leading zero bytes.
        let mut be: Vec<u8> = f.le_flags().iter().rev().copied().collect();
        while be.first() == Some(&0) {
            be.remove(0);
        }
        m.insert("features".into(), json!(hex::encode(&be)));
    }
    let routes: Vec<Value> = inv
        .route_hints()
        .iter()
        .map(|r| {
            Value::Array(
                r.0.iter()
                    .map(|h| {
                        json!({
                            "pubkey": h.src_node_id.to_string(),
                            "short_channel_id": scid_string(h.short_channel_id),
                            "fee_base_msat": h.fees.base_msat,
                            "fee_proportional_millionths": h.fees.proportional_millionths,
                            "cltv_expiry_delta": h.cltv_expiry_delta,
                        })
                    })
                    .collect(),
            )
        })
        .collect();
    if !routes.is_empty() {
        m.insert("routes".into(), Value::Array(routes));
    }
    let fallbacks: Vec<Value> = inv
        .fallback_addresses()
        .iter()
        .map(|a| json!({"type": "address", "addr": a.to_string(), "hex": hex::encode(a.script_pubkey().as_bytes())}))
        .collect();
    if !fallbacks.is_empty() {
        m.insert("fallbacks".into(), Value::Array(fallbacks));
    }
    m.insert("payment_hash".into(), json!(payment_hash));
    m.insert(
        "signature".into(),
        json!(hex::encode(
            &inv.clone()
                .into_signed_raw()
                .signature()
                .0
                .to_standard()
                .serialize_der()
        )),
    );
    m.insert("valid".into(), json!(true));

    Invoice {
        bolt11: s.to_string(),
        currency,
        payee,
        payment_hash,
        amount_msat: inv.amount_milli_satoshis(),
        created_at,
        expiry,
        json: Value::Object(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scid_format() {
        let scid = (104u64 << 40) | (1 << 16);
        assert_eq!(scid_string(scid), "104x1x0");
    }

    #[test]
    fn garbage_is_bad_bech32() {
        let e = decode("lnbcrt1notaninvoice").unwrap_err();
        assert_eq!(e.code, -32602);
        assert_eq!(
            e.message,
            "string: Bad bech32 string: invalid token '\"lnbcrt1notaninvoice\"'"
        );
    }
}

/// Parameters of an invoice to create.
#[derive(Debug, Clone)]
pub struct NewInvoice<'a> {
    pub network: &'a str,
    pub amount_msat: Option<u64>,
    pub description: &'a str,
    pub preimage: [u8; 32],
    pub expiry_secs: u64,
    pub created_at: u64,
}

/// Creates and signs a real BOLT11 invoice with `secret` (the payee's node key).
pub fn create_invoice(
    secret: &bitcoin::secp256k1::SecretKey,
    inv: &NewInvoice<'_>,
) -> Result<String, String> {
    use bitcoin::hashes::{Hash, sha256};
    use lightning_invoice::{InvoiceBuilder, PaymentSecret};
    use std::time::Duration;
    let currency = match network_currency(inv.network) {
        "bc" => Currency::Bitcoin,
        "tb" => Currency::BitcoinTestnet,
        "tbs" => Currency::Signet,
        _ => Currency::Regtest,
    };
    let hash = sha256::Hash::hash(&inv.preimage);
    let mut secret_seed = inv.preimage.to_vec();
    secret_seed.extend_from_slice(b"payment_secret");
    let payment_secret = PaymentSecret(crate::util::sha256(&secret_seed));
    let mut b = InvoiceBuilder::new(currency)
        .description(inv.description.to_string())
        .payment_hash(hash)
        .payment_secret(payment_secret)
        .duration_since_epoch(Duration::from_secs(inv.created_at))
        .min_final_cltv_expiry_delta(5)
        .expiry_time(Duration::from_secs(inv.expiry_secs));
    if let Some(a) = inv.amount_msat {
        b = b.amount_milli_satoshis(a);
    }
    let secp = bitcoin::secp256k1::Secp256k1::new();
    b.build_signed(|m| secp.sign_ecdsa_recoverable(m, secret))
        .map(|i| i.to_string())
        .map_err(|e| format!("creating invoice: {e}"))
}
