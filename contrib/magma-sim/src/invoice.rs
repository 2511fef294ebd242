//! Real signed BOLT11 hold invoices, and deliberate tampering for testing a buyer's checks.

use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::Network;

/// Tampering applied to the invoice of the next buy(s).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceFault {
    /// The invoice asks for this many sats more than `payment.amount.sats` says.
    AmountAbove(u64),
    /// The invoice is for another network (regtest ↔ mainnet).
    WrongNetwork,
    /// The invoice's expiry is this many seconds instead of the configured one.
    ExpiresIn(u64),
    /// A garbage string that starts with the right prefix but does not decode.
    Undecodable,
}

/// The simulator's Lightning node key; it signs every invoice.
#[derive(Clone)]
pub(crate) struct NodeKey {
    secp: Secp256k1<All>,
    secret: SecretKey,
    pubkey: PublicKey,
}

impl NodeKey {
    /// Derives the key from a seed string, so the pubkey is stable across runs.
    pub fn from_seed(seed: &str) -> NodeKey {
        let secp = Secp256k1::new();
        let mut digest = sha256::Hash::hash(format!("magma-sim node key/{seed}").as_bytes());
        // A sha256 output is a valid secret key with overwhelming probability; re-hash if not.
        let secret = loop {
            match SecretKey::from_slice(digest.as_byte_array()) {
                Ok(key) => break key,
                Err(_) => digest = sha256::Hash::hash(digest.as_byte_array()),
            }
        };
        let pubkey = PublicKey::from_secret_key(&secp, &secret);
        NodeKey {
            secp,
            secret,
            pubkey,
        }
    }

    /// Compressed pubkey, hex.
    pub fn pubkey_hex(&self) -> String {
        self.pubkey.to_string()
    }
}

/// What the buy needs to describe its invoice.
pub(crate) struct InvoiceRequest<'a> {
    pub network: Network,
    pub sats: u64,
    pub order_id: &'a str,
    pub timestamp_secs: u64,
    pub expiry_secs: u64,
}

/// An issued invoice and the secret that settles it.
pub(crate) struct IssuedInvoice {
    pub bolt11: String,
    pub payment_hash: String,
    pub preimage: [u8; 32],
}

/// Creates and signs the invoice, applying `fault` if given. Fails only for amounts or
/// timestamps BOLT11 cannot represent.
pub(crate) fn issue(
    key: &NodeKey,
    req: &InvoiceRequest<'_>,
    fault: Option<&InvoiceFault>,
) -> Result<IssuedInvoice, String> {
    let mut rng = rand::thread_rng();
    let preimage: [u8; 32] = rng.r#gen();
    let payment_hash = sha256::Hash::hash(&preimage);

    let mut currency = req.network.currency();
    let mut sats = req.sats;
    let mut expiry = req.expiry_secs;
    match fault {
        Some(InvoiceFault::AmountAbove(extra)) => sats = sats.saturating_add(*extra),
        Some(InvoiceFault::WrongNetwork) => currency = wrong_currency(currency),
        Some(InvoiceFault::ExpiresIn(secs)) => expiry = *secs,
        Some(InvoiceFault::Undecodable) => {
            return Ok(IssuedInvoice {
                bolt11: undecodable(req.network),
                payment_hash: payment_hash.to_string(),
                preimage,
            });
        }
        None => {}
    }

    let msat = sats
        .checked_mul(1000)
        .ok_or_else(|| format!("invoice amount of {sats} sat is too large"))?;
    let invoice = InvoiceBuilder::new(currency)
        .description(format!("Magma inbound liquidity order {}", req.order_id))
        .payment_hash(payment_hash)
        .payment_secret(PaymentSecret(rng.r#gen()))
        .duration_since_epoch(Duration::from_secs(req.timestamp_secs))
        .min_final_cltv_expiry_delta(80)
        .amount_milli_satoshis(msat)
        .expiry_time(Duration::from_secs(expiry))
        .build_signed(|msg| key.secp.sign_ecdsa_recoverable(msg, &key.secret))
        .map_err(|e| format!("cannot create invoice: {e}"))?;
    Ok(IssuedInvoice {
        bolt11: invoice.to_string(),
        payment_hash: payment_hash.to_string(),
        preimage,
    })
}

fn wrong_currency(c: Currency) -> Currency {
    match c {
        Currency::Bitcoin => Currency::Regtest,
        _ => Currency::Bitcoin,
    }
}

/// `b`, `i` and `o` are outside the bech32 alphabet, so this never decodes.
fn undecodable(network: Network) -> String {
    let noise: [u8; 8] = rand::thread_rng().r#gen();
    format!(
        "{}1bioinvalid{}",
        network.bolt11_prefix(),
        noise.to_lower_hex_string()
    )
}

/// Random 32 bytes as hex (funding txids).
pub(crate) fn random_hex32() -> String {
    let bytes: [u8; 32] = rand::thread_rng().r#gen();
    bytes.to_lower_hex_string()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use lightning_invoice::Bolt11Invoice;

    use super::*;

    fn req(network: Network) -> InvoiceRequest<'static> {
        InvoiceRequest {
            network,
            sats: 54_208,
            order_id: "ec562479-a4b8-44f4-95b4-150b310832de",
            timestamp_secs: 1_781_116_920,
            expiry_secs: 3600,
        }
    }

    #[test]
    fn invoice_decodes_with_promised_fields() {
        let key = NodeKey::from_seed("test");
        let issued = issue(&key, &req(Network::Regtest), None).expect("issue");
        assert!(issued.bolt11.starts_with("lnbcrt"));
        let inv = Bolt11Invoice::from_str(&issued.bolt11).expect("decodes");
        assert_eq!(inv.amount_milli_satoshis(), Some(54_208_000));
        assert_eq!(inv.currency(), Currency::Regtest);
        assert_eq!(inv.payment_hash().to_string(), issued.payment_hash);
        assert_eq!(
            sha256::Hash::hash(&issued.preimage).to_string(),
            issued.payment_hash
        );
        assert_eq!(inv.expiry_time(), Duration::from_secs(3600));
        assert_eq!(inv.min_final_cltv_expiry_delta(), 80);
        assert_eq!(inv.recover_payee_pub_key().to_string(), key.pubkey_hex());
    }

    #[test]
    fn node_key_is_stable() {
        assert_eq!(
            NodeKey::from_seed("a").pubkey_hex(),
            NodeKey::from_seed("a").pubkey_hex()
        );
        assert_ne!(
            NodeKey::from_seed("a").pubkey_hex(),
            NodeKey::from_seed("b").pubkey_hex()
        );
    }

    #[test]
    fn prefixes_per_network() {
        let key = NodeKey::from_seed("test");
        for (net, hrp) in [
            (Network::Bitcoin, "lnbc5"),
            (Network::Testnet, "lntb5"),
            (Network::Signet, "lntbs5"),
        ] {
            let issued = issue(&key, &req(net), None).expect("issue");
            assert!(issued.bolt11.starts_with(hrp), "{}", issued.bolt11);
        }
    }

    #[test]
    fn faults_tamper_as_described() {
        let key = NodeKey::from_seed("test");
        let r = req(Network::Regtest);
        let above = issue(&key, &r, Some(&InvoiceFault::AmountAbove(10))).expect("issue");
        let inv = Bolt11Invoice::from_str(&above.bolt11).expect("decodes");
        assert_eq!(inv.amount_milli_satoshis(), Some(54_218_000));

        let wrong = issue(&key, &r, Some(&InvoiceFault::WrongNetwork)).expect("issue");
        let inv = Bolt11Invoice::from_str(&wrong.bolt11).expect("decodes");
        assert_eq!(inv.currency(), Currency::Bitcoin);

        let short = issue(&key, &r, Some(&InvoiceFault::ExpiresIn(5))).expect("issue");
        let inv = Bolt11Invoice::from_str(&short.bolt11).expect("decodes");
        assert_eq!(inv.expiry_time(), Duration::from_secs(5));

        let bad = issue(&key, &r, Some(&InvoiceFault::Undecodable)).expect("issue");
        assert!(bad.bolt11.starts_with("lnbcrt1"));
        assert!(Bolt11Invoice::from_str(&bad.bolt11).is_err());
    }
}
