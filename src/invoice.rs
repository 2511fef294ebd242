//! Whether the invoice Magma's `liquidity.buy` returned may be paid: the "never overpay"
//! invariant (design.md §5, invariant 4).
//!
//! The invoice is decoded by lightningd's own `decode` (so the node, not us, parses BOLT11),
//! then [`verify`] — a pure function — checks the decoded invoice against what Magma promised
//! and what the quote said. [`check`] does both; it keeps "the invoice is bad" (a [`Verdict`])
//! apart from "lightningd could not be asked" (a [`NodeError`]): the first rejects the order
//! for good, the second is retried later.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::estimate::Quote;
use crate::magma::Purchase;
use crate::node::{Node, NodeError};

/// An invoice must stay payable at least this long after it is checked (design.md §5: "not
/// expiring within 10 minutes").
pub const MIN_REMAINING_SECS: u64 = 600;

/// Without `payment.amount.sats`, the invoice may be this many percent above or below the
/// quoted cost.
pub const QUOTE_TOLERANCE_PERCENT: u64 = 1;

/// lightningd's `decode` error code for a string it cannot parse (`JSONRPC2_INVALID_PARAMS`).
const INVALID_PARAMS: i64 = -32602;

/// What `decode` says about a BOLT11 invoice (fixtures/cln/decode.bolt11.json). Fields we do
/// not use are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct DecodedInvoice {
    /// `"bolt11 invoice"` for BOLT11; `decode` also knows bolt12 objects and runes.
    #[serde(rename = "type")]
    pub kind: String,
    /// lightningd: "if this is false, you MUST not use the result except for diagnostics".
    pub valid: bool,
    /// The invoice's network prefix (`lightning_hrp`): `bc`, `tb`, `tbs`, `bcrt`.
    pub currency: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Seconds after `created_at`.
    pub expiry: u64,
    pub payment_hash: String,
    pub payee: String,
    /// Absent for an amountless invoice.
    #[serde(default, deserialize_with = "msat")]
    pub amount_msat: Option<u64>,
}

/// What the invoice must look like to be paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// lightningd's network name: `bitcoin`, `testnet`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// `payment.amount.sats` of the buy response: the invoice must ask exactly this.
    pub invoice_sats: Option<u64>,
    /// The quote's cost; used (±1 %) only when Magma gave no `invoice_sats`.
    pub quoted_cost_sat: u64,
    /// Inbound the purchase is expected to bring, for the price in ppm.
    pub expected_inbound_sat: u64,
    /// `magma-max-fee-ppm`.
    pub max_fee_ppm: u64,
    /// Unix seconds.
    pub now: u64,
    /// Normally [`MIN_REMAINING_SECS`].
    pub min_remaining_secs: u64,
}

impl Expectation {
    /// The expectation for a purchase made at `quote`, checked at `now`.
    pub fn for_purchase(
        network: &str,
        purchase: &Purchase,
        quote: &Quote,
        max_fee_ppm: u64,
        now: u64,
    ) -> Expectation {
        Expectation {
            network: network.to_string(),
            invoice_sats: purchase.invoice_sats,
            quoted_cost_sat: quote.expected_cost_sat,
            expected_inbound_sat: quote.expected_inbound_sat,
            max_fee_ppm,
            now,
            min_remaining_secs: MIN_REMAINING_SECS,
        }
    }
}

/// An invoice that passed every check.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct VerifiedInvoice {
    /// Lowercase hex, 64 characters.
    pub payment_hash: String,
    pub amount_sat: u64,
    /// Unix seconds (`created_at + expiry`).
    pub expires_at: u64,
    /// `amount_sat / expected_inbound_sat × 1e6`, rounded up.
    pub price_ppm: u64,
}

/// Why an invoice is not paid. `code()` (and the serialised `code` tag) is stable, for storage.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum InvoiceRejection {
    /// lightningd could not parse the string.
    Undecodable { reason: String },
    /// It parsed, but is not a valid BOLT11 invoice we can use (another kind of object,
    /// marked invalid, a bad payment hash).
    Malformed { reason: String },
    /// `invoice_currency` is the invoice's prefix; `node_network` lightningd's network name.
    WrongNetwork {
        invoice_currency: String,
        node_network: String,
    },
    /// The invoice does not say how much to pay.
    NoAmount,
    /// The amount is not a whole number of sats.
    FractionalAmount { amount_msat: u64 },
    /// The amount differs from `payment.amount.sats`.
    AmountMismatch { invoice_sat: u64, promised_sat: u64 },
    /// Without `payment.amount.sats`: the amount is more than 1 % away from the quote.
    AmountOffQuote { invoice_sat: u64, quoted_sat: u64 },
    /// Expires before `now + min_remaining_secs` (or has expired).
    ExpiresTooSoon {
        expires_at: u64,
        now: u64,
        min_remaining_secs: u64,
    },
    /// The price of the inbound exceeds `magma-max-fee-ppm`.
    PriceTooHigh { ppm: u64, max_ppm: u64 },
}

impl InvoiceRejection {
    /// A short stable identifier (`amount_mismatch`, `wrong_network`, …).
    pub fn code(&self) -> &'static str {
        match self {
            InvoiceRejection::Undecodable { .. } => "undecodable",
            InvoiceRejection::Malformed { .. } => "malformed",
            InvoiceRejection::WrongNetwork { .. } => "wrong_network",
            InvoiceRejection::NoAmount => "no_amount",
            InvoiceRejection::FractionalAmount { .. } => "fractional_amount",
            InvoiceRejection::AmountMismatch { .. } => "amount_mismatch",
            InvoiceRejection::AmountOffQuote { .. } => "amount_off_quote",
            InvoiceRejection::ExpiresTooSoon { .. } => "expires_too_soon",
            InvoiceRejection::PriceTooHigh { .. } => "price_too_high",
        }
    }
}

impl fmt::Display for InvoiceRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvoiceRejection::Undecodable { reason } => {
                write!(f, "lightningd cannot decode the invoice ({reason})")?
            }
            InvoiceRejection::Malformed { reason } => {
                write!(f, "the invoice is unusable: {reason}")?
            }
            InvoiceRejection::WrongNetwork {
                invoice_currency,
                node_network,
            } => match currency_of_network(node_network) {
                Some(want) => write!(
                    f,
                    "invoice is for the '{invoice_currency}' network but this node runs on \
                     {node_network} ('{want}')"
                )?,
                None => write!(
                    f,
                    "invoice is for the '{invoice_currency}' network but this node runs on \
                     {node_network}, whose invoices cannot be checked"
                )?,
            },
            InvoiceRejection::NoAmount => write!(f, "invoice does not state an amount")?,
            InvoiceRejection::FractionalAmount { amount_msat } => write!(
                f,
                "invoice asks {} msat, not a whole number of sats",
                grouped(*amount_msat)
            )?,
            InvoiceRejection::AmountMismatch {
                invoice_sat,
                promised_sat,
            } => write!(
                f,
                "invoice asks {} sats but Magma promised {}",
                grouped(*invoice_sat),
                grouped(*promised_sat)
            )?,
            InvoiceRejection::AmountOffQuote {
                invoice_sat,
                quoted_sat,
            } => write!(
                f,
                "invoice asks {} sats, more than {QUOTE_TOLERANCE_PERCENT} % away from the \
                 quoted {}",
                grouped(*invoice_sat),
                grouped(*quoted_sat)
            )?,
            InvoiceRejection::ExpiresTooSoon {
                expires_at,
                now,
                min_remaining_secs,
            } => {
                if expires_at <= now {
                    write!(
                        f,
                        "invoice expired {} s ago (at unix time {expires_at})",
                        grouped(now - expires_at)
                    )?
                } else {
                    write!(
                        f,
                        "invoice expires in {} s (at unix time {expires_at}), less than the {} s \
                         needed to pay it",
                        grouped(expires_at - now),
                        grouped(*min_remaining_secs)
                    )?
                }
            }
            InvoiceRejection::PriceTooHigh { ppm, max_ppm } => write!(
                f,
                "invoice costs {} ppm of the inbound bought, above magma-max-fee-ppm {}",
                grouped(*ppm),
                grouped(*max_ppm)
            )?,
        }
        f.write_str("; not paid")
    }
}

impl std::error::Error for InvoiceRejection {}

/// The invoice prefix (`lightning_hrp`) lightningd uses on a network, from lightningd's
/// `bitcoin/chainparams.c`. `None` for networks this plugin does not buy on.
pub fn currency_of_network(network: &str) -> Option<&'static str> {
    match network {
        "bitcoin" => Some("bc"),
        "testnet" | "testnet4" => Some("tb"),
        "signet" => Some("tbs"),
        "regtest" => Some("bcrt"),
        _ => None,
    }
}

/// Checks a decoded invoice against the expectation. Pure: no clock, no I/O.
///
/// The checks, in order: a valid BOLT11 invoice with a 64-hex payment hash; the node's network;
/// an amount in whole sats; equal to `invoice_sats` (or within 1 % of the quote without it);
/// payable for at least `min_remaining_secs` more; a price within `max_fee_ppm`.
pub fn verify(
    decoded: &DecodedInvoice,
    expect: &Expectation,
) -> Result<VerifiedInvoice, InvoiceRejection> {
    let malformed = |reason: String| InvoiceRejection::Malformed { reason };
    if decoded.kind != "bolt11 invoice" {
        return Err(malformed(format!(
            "it decodes as a {}, not a bolt11 invoice",
            decoded.kind
        )));
    }
    if !decoded.valid {
        return Err(malformed("lightningd marks it invalid".into()));
    }
    let hash = &decoded.payment_hash;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(format!(
            "its payment hash {hash:?} is not 64 hex characters"
        )));
    }

    if currency_of_network(&expect.network) != Some(decoded.currency.as_str()) {
        return Err(InvoiceRejection::WrongNetwork {
            invoice_currency: decoded.currency.clone(),
            node_network: expect.network.clone(),
        });
    }

    let amount_msat = match decoded.amount_msat {
        None | Some(0) => return Err(InvoiceRejection::NoAmount),
        Some(m) => m,
    };
    if !amount_msat.is_multiple_of(1000) {
        return Err(InvoiceRejection::FractionalAmount { amount_msat });
    }
    let amount_sat = amount_msat / 1000;
    match expect.invoice_sats {
        Some(promised) if amount_sat != promised => {
            return Err(InvoiceRejection::AmountMismatch {
                invoice_sat: amount_sat,
                promised_sat: promised,
            });
        }
        Some(_) => {}
        None => {
            let quoted = expect.quoted_cost_sat;
            let off = u128::from(amount_sat.abs_diff(quoted));
            if off * 100 > u128::from(quoted) * u128::from(QUOTE_TOLERANCE_PERCENT) {
                return Err(InvoiceRejection::AmountOffQuote {
                    invoice_sat: amount_sat,
                    quoted_sat: quoted,
                });
            }
        }
    }

    let expires_at = decoded.created_at.saturating_add(decoded.expiry);
    if expires_at < expect.now.saturating_add(expect.min_remaining_secs) {
        return Err(InvoiceRejection::ExpiresTooSoon {
            expires_at,
            now: expect.now,
            min_remaining_secs: expect.min_remaining_secs,
        });
    }

    let price_ppm = price_ppm(amount_sat, expect.expected_inbound_sat);
    if price_ppm > expect.max_fee_ppm {
        return Err(InvoiceRejection::PriceTooHigh {
            ppm: price_ppm,
            max_ppm: expect.max_fee_ppm,
        });
    }

    Ok(VerifiedInvoice {
        payment_hash: hash.to_ascii_lowercase(),
        amount_sat,
        expires_at,
        price_ppm,
    })
}

/// `cost / inbound × 1e6`, rounded up; no inbound at all is an infinite price.
fn price_ppm(cost_sat: u64, inbound_sat: u64) -> u64 {
    if inbound_sat == 0 {
        return u64::MAX;
    }
    let ppm = (u128::from(cost_sat) * 1_000_000).div_ceil(u128::from(inbound_sat));
    u64::try_from(ppm).unwrap_or(u64::MAX)
}

/// The answer about an invoice lightningd could be asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Every check passed: the invoice may be paid.
    Payable(VerifiedInvoice),
    /// The invoice must never be paid.
    Rejected(InvoiceRejection),
}

impl Verdict {
    pub fn into_result(self) -> Result<VerifiedInvoice, InvoiceRejection> {
        match self {
            Verdict::Payable(v) => Ok(v),
            Verdict::Rejected(r) => Err(r),
        }
    }
}

/// Decodes `bolt11` with lightningd's `decode` and [`verify`]s it.
///
/// `Err` only when lightningd could not give an answer about the invoice (unreachable, or
/// a refusal other than "this is not an invoice", such as `decode` being unavailable): the
/// caller should try again later, not reject the order. Everything wrong with the invoice
/// itself is `Ok(Verdict::Rejected(..))`.
pub async fn check(node: &Node, bolt11: &str, expect: &Expectation) -> Result<Verdict, NodeError> {
    let raw = match node.call_value("decode", json!({ "string": bolt11 })).await {
        Ok(raw) => raw,
        Err(NodeError::Refused { code, message, .. }) if code == INVALID_PARAMS => {
            return Ok(Verdict::Rejected(InvoiceRejection::Undecodable {
                reason: message,
            }));
        }
        Err(e) => return Err(e),
    };
    let decoded = match parse_decoded(raw) {
        Ok(d) => d,
        Err(reason) => return Ok(Verdict::Rejected(InvoiceRejection::Malformed { reason })),
    };
    Ok(match verify(&decoded, expect) {
        Ok(v) => Verdict::Payable(v),
        Err(r) => Verdict::Rejected(r),
    })
}

/// A `decode` result that is not a usable BOLT11 invoice (a bolt12 offer, a rune, missing
/// fields) is a property of the string, so a rejection rather than a node error.
fn parse_decoded(raw: Value) -> Result<DecodedInvoice, String> {
    let kind = raw
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("(no type)");
    if kind != "bolt11 invoice" {
        return Err(format!("it decodes as a {kind}, not a bolt11 invoice"));
    }
    serde_json::from_value(raw).map_err(|e| format!("lightningd's decoding is incomplete: {e}"))
}

/// `amount_msat` as a number (current lightningd) or as `"12345msat"` (before v23).
fn msat<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a whole number of millisatoshis")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("negative amount {v}")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let digits = v.strip_suffix("msat").unwrap_or(v);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!("amount {v:?} is not a number of msat")));
            }
            digits
                .parse()
                .map(Some)
                .map_err(|_| E::custom(format!("amount {v:?} is out of range")))
        }
    }
    d.deserialize_option(V)
}

/// `12600` → `12,600`, as every amount in an operator-facing message is written.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "8ff42a898577ffc9a4fe0070a68bc0fa294e04a7874915e8a1328e1815c3dc5e";
    const NOW: u64 = 1_795_634_769;

    fn fixture() -> Value {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/cln/decode.bolt11.json"
        )))
        .unwrap()
    }

    /// A regtest invoice for 12,500 sats, created now, expiring in an hour.
    fn invoice() -> DecodedInvoice {
        DecodedInvoice {
            kind: "bolt11 invoice".into(),
            valid: true,
            currency: "bcrt".into(),
            created_at: NOW,
            expiry: 3600,
            payment_hash: HASH.into(),
            payee: "0314bc1b8b11f1829802fb3ea8765a8d18e56225ad3ceb4e76c2909edaf1e825ae".into(),
            amount_msat: Some(12_500_000),
        }
    }

    /// Magma promised 12,500; the quote said 12,500 for 6,250,000 inbound (2,000 ppm).
    fn expect() -> Expectation {
        Expectation {
            network: "regtest".into(),
            invoice_sats: Some(12_500),
            quoted_cost_sat: 12_500,
            expected_inbound_sat: 6_250_000,
            max_fee_ppm: 2_000,
            now: NOW,
            min_remaining_secs: 600,
        }
    }

    #[test]
    fn the_fixture_parses_and_verifies() {
        let d: DecodedInvoice = serde_json::from_value(fixture()).unwrap();
        assert_eq!(d.kind, "bolt11 invoice");
        assert!(d.valid);
        assert_eq!(d.currency, "bcrt");
        assert_eq!(d.amount_msat, Some(10_000_000));
        assert_eq!(d.created_at, 1_795_634_769);
        assert_eq!(d.expiry, 604_800);
        assert_eq!(d.payment_hash, HASH);
        let e = Expectation {
            invoice_sats: Some(10_000),
            quoted_cost_sat: 10_000,
            ..expect()
        };
        let v = verify(&d, &e).unwrap();
        assert_eq!(
            v,
            VerifiedInvoice {
                payment_hash: HASH.into(),
                amount_sat: 10_000,
                expires_at: 1_795_634_769 + 604_800,
                price_ppm: 1_600,
            }
        );
    }

    #[test]
    fn amountless_and_old_style_amounts_parse() {
        let mut raw = fixture();
        raw.as_object_mut().unwrap().remove("amount_msat");
        let d: DecodedInvoice = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(d.amount_msat, None);
        raw["amount_msat"] = json!("12500000msat");
        let d: DecodedInvoice = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(d.amount_msat, Some(12_500_000));
        raw["amount_msat"] = Value::Null;
        let d: DecodedInvoice = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(d.amount_msat, None);
        for bad in [json!(-1), json!("12.5msat"), json!("msat"), json!(1.5)] {
            raw["amount_msat"] = bad.clone();
            assert!(
                serde_json::from_value::<DecodedInvoice>(raw.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_rule_on_both_sides_of_its_boundary() {
        use InvoiceRejection as R;
        type Case = (
            &'static str,
            fn(&mut DecodedInvoice, &mut Expectation),
            Result<(), InvoiceRejection>,
        );
        let cases: Vec<Case> = vec![
            ("as promised", |_, _| {}, Ok(())),
            // Kind and validity.
            (
                "bolt12",
                |d, _| d.kind = "bolt12 invoice".into(),
                Err(R::Malformed {
                    reason: "it decodes as a bolt12 invoice, not a bolt11 invoice".into(),
                }),
            ),
            (
                "invalid",
                |d, _| d.valid = false,
                Err(R::Malformed {
                    reason: "lightningd marks it invalid".into(),
                }),
            ),
            // Payment hash.
            (
                "hash 63 hex",
                |d, _| d.payment_hash.truncate(63),
                Err(R::Malformed {
                    reason: format!(
                        "its payment hash {:?} is not 64 hex characters",
                        &HASH[..63]
                    ),
                }),
            ),
            (
                "hash not hex",
                |d, _| d.payment_hash.replace_range(0..1, "g"),
                Err(R::Malformed {
                    reason: format!(
                        "its payment hash \"g{}\" is not 64 hex characters",
                        &HASH[1..]
                    ),
                }),
            ),
            (
                "hash uppercase",
                |d, _| d.payment_hash = d.payment_hash.to_ascii_uppercase(),
                Ok(()),
            ),
            // Network.
            (
                "mainnet invoice, regtest node",
                |d, _| d.currency = "bc".into(),
                Err(R::WrongNetwork {
                    invoice_currency: "bc".into(),
                    node_network: "regtest".into(),
                }),
            ),
            (
                "mainnet",
                |d, e| {
                    d.currency = "bc".into();
                    e.network = "bitcoin".into();
                },
                Ok(()),
            ),
            (
                "testnet",
                |d, e| {
                    d.currency = "tb".into();
                    e.network = "testnet".into();
                },
                Ok(()),
            ),
            (
                "testnet4",
                |d, e| {
                    d.currency = "tb".into();
                    e.network = "testnet4".into();
                },
                Ok(()),
            ),
            (
                "signet",
                |d, e| {
                    d.currency = "tbs".into();
                    e.network = "signet".into();
                },
                Ok(()),
            ),
            (
                "testnet invoice, signet node",
                |d, e| {
                    d.currency = "tb".into();
                    e.network = "signet".into();
                },
                Err(R::WrongNetwork {
                    invoice_currency: "tb".into(),
                    node_network: "signet".into(),
                }),
            ),
            (
                "unknown node network",
                |d, e| {
                    d.currency = "ex".into();
                    e.network = "liquid".into();
                },
                Err(R::WrongNetwork {
                    invoice_currency: "ex".into(),
                    node_network: "liquid".into(),
                }),
            ),
            // Amount present, whole sats.
            ("amountless", |d, _| d.amount_msat = None, Err(R::NoAmount)),
            ("zero", |d, _| d.amount_msat = Some(0), Err(R::NoAmount)),
            (
                "sub-sat",
                |d, _| d.amount_msat = Some(12_499_999),
                Err(R::FractionalAmount {
                    amount_msat: 12_499_999,
                }),
            ),
            (
                "sub-sat above",
                |d, _| d.amount_msat = Some(12_500_001),
                Err(R::FractionalAmount {
                    amount_msat: 12_500_001,
                }),
            ),
            // Equal to payment.amount.sats.
            (
                "one sat above the promise",
                |d, _| d.amount_msat = Some(12_501_000),
                Err(R::AmountMismatch {
                    invoice_sat: 12_501,
                    promised_sat: 12_500,
                }),
            ),
            (
                "one sat below the promise",
                |d, _| d.amount_msat = Some(12_499_000),
                Err(R::AmountMismatch {
                    invoice_sat: 12_499,
                    promised_sat: 12_500,
                }),
            ),
            (
                "the promise wins over the quote",
                |d, e| {
                    d.amount_msat = Some(12_600_000);
                    e.invoice_sats = Some(12_600);
                    e.max_fee_ppm = 3_000;
                },
                Ok(()),
            ),
            // Without a promise: within 1 % of the quote (12,500 ± 125).
            (
                "1 % above the quote",
                |d, e| {
                    e.invoice_sats = None;
                    d.amount_msat = Some(12_625_000);
                    e.max_fee_ppm = 3_000;
                },
                Ok(()),
            ),
            (
                "just over 1 % above the quote",
                |d, e| {
                    e.invoice_sats = None;
                    d.amount_msat = Some(12_626_000);
                    e.max_fee_ppm = 3_000;
                },
                Err(R::AmountOffQuote {
                    invoice_sat: 12_626,
                    quoted_sat: 12_500,
                }),
            ),
            (
                "1 % below the quote",
                |d, e| {
                    e.invoice_sats = None;
                    d.amount_msat = Some(12_375_000);
                },
                Ok(()),
            ),
            (
                "just over 1 % below the quote",
                |d, e| {
                    e.invoice_sats = None;
                    d.amount_msat = Some(12_374_000);
                },
                Err(R::AmountOffQuote {
                    invoice_sat: 12_374,
                    quoted_sat: 12_500,
                }),
            ),
            // Expiry: at least 600 s left.
            (
                "expires in 599 s",
                |d, _| d.expiry = 599,
                Err(R::ExpiresTooSoon {
                    expires_at: NOW + 599,
                    now: NOW,
                    min_remaining_secs: 600,
                }),
            ),
            ("expires in 600 s", |d, _| d.expiry = 600, Ok(())),
            ("expires in 601 s", |d, _| d.expiry = 601, Ok(())),
            (
                "expired",
                |d, _| d.created_at = NOW - 7200,
                Err(R::ExpiresTooSoon {
                    expires_at: NOW - 3600,
                    now: NOW,
                    min_remaining_secs: 600,
                }),
            ),
            (
                "absurd expiry saturates",
                |d, _| d.expiry = u64::MAX,
                Ok(()),
            ),
            // Price: 12,500 / 6,250,000 = 2,000 ppm exactly.
            ("ppm at the cap", |_, e| e.max_fee_ppm = 2_000, Ok(())),
            (
                "ppm one above the cap",
                |_, e| e.max_fee_ppm = 1_999,
                Err(R::PriceTooHigh {
                    ppm: 2_000,
                    max_ppm: 1_999,
                }),
            ),
            (
                "ppm rounds up",
                // 12,500 / 6,250,001 = 1,999.9997 ppm → 2,000.
                |_, e| {
                    e.expected_inbound_sat = 6_250_001;
                    e.max_fee_ppm = 1_999;
                },
                Err(R::PriceTooHigh {
                    ppm: 2_000,
                    max_ppm: 1_999,
                }),
            ),
            (
                "no inbound is an infinite price",
                |_, e| e.expected_inbound_sat = 0,
                Err(R::PriceTooHigh {
                    ppm: u64::MAX,
                    max_ppm: 2_000,
                }),
            ),
        ];
        for (name, tweak, want) in cases {
            let (mut d, mut e) = (invoice(), expect());
            tweak(&mut d, &mut e);
            let got = verify(&d, &e);
            match (&got, &want) {
                (Ok(v), Ok(())) => {
                    assert_eq!(v.payment_hash, HASH, "{name}");
                    assert_eq!(v.amount_sat * 1000, d.amount_msat.unwrap(), "{name}");
                    assert_eq!(
                        v.expires_at,
                        d.created_at.saturating_add(d.expiry),
                        "{name}"
                    );
                    assert!(v.price_ppm <= e.max_fee_ppm, "{name}");
                }
                (Err(r), Err(w)) => assert_eq!(r, w, "{name}"),
                _ => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn verified_figures() {
        let v = verify(&invoice(), &expect()).unwrap();
        assert_eq!(
            v,
            VerifiedInvoice {
                payment_hash: HASH.into(),
                amount_sat: 12_500,
                expires_at: NOW + 3600,
                price_ppm: 2_000,
            }
        );
    }

    #[test]
    fn checks_run_in_order() {
        // A wrong-network invoice that is also too expensive and expired is reported as the
        // first failing check.
        let mut d = invoice();
        d.currency = "bc".into();
        d.amount_msat = Some(99_000_000);
        d.expiry = 0;
        assert_eq!(verify(&d, &expect()).unwrap_err().code(), "wrong_network");
        d.currency = "bcrt".into();
        assert_eq!(verify(&d, &expect()).unwrap_err().code(), "amount_mismatch");
    }

    #[test]
    fn operators_read_the_numbers() {
        use InvoiceRejection as R;
        let cases = [
            (
                R::AmountMismatch {
                    invoice_sat: 12_600,
                    promised_sat: 12_500,
                },
                "amount_mismatch",
                "invoice asks 12,600 sats but Magma promised 12,500; not paid",
            ),
            (
                R::AmountOffQuote {
                    invoice_sat: 1_262_600,
                    quoted_sat: 1_250_000,
                },
                "amount_off_quote",
                "invoice asks 1,262,600 sats, more than 1 % away from the quoted 1,250,000; not paid",
            ),
            (
                R::WrongNetwork {
                    invoice_currency: "bc".into(),
                    node_network: "regtest".into(),
                },
                "wrong_network",
                "invoice is for the 'bc' network but this node runs on regtest ('bcrt'); not paid",
            ),
            (
                R::ExpiresTooSoon {
                    expires_at: NOW + 300,
                    now: NOW,
                    min_remaining_secs: 600,
                },
                "expires_too_soon",
                "invoice expires in 300 s (at unix time 1795635069), less than the 600 s needed \
                 to pay it; not paid",
            ),
            (
                R::ExpiresTooSoon {
                    expires_at: NOW - 1_200,
                    now: NOW,
                    min_remaining_secs: 600,
                },
                "expires_too_soon",
                "invoice expired 1,200 s ago (at unix time 1795633569); not paid",
            ),
            (
                R::PriceTooHigh {
                    ppm: 4_000,
                    max_ppm: 2_000,
                },
                "price_too_high",
                "invoice costs 4,000 ppm of the inbound bought, above magma-max-fee-ppm 2,000; \
                 not paid",
            ),
            (
                R::NoAmount,
                "no_amount",
                "invoice does not state an amount; not paid",
            ),
            (
                R::FractionalAmount {
                    amount_msat: 12_500_500,
                },
                "fractional_amount",
                "invoice asks 12,500,500 msat, not a whole number of sats; not paid",
            ),
            (
                R::Undecodable {
                    reason: "string: Bad bech32 string".into(),
                },
                "undecodable",
                "lightningd cannot decode the invoice (string: Bad bech32 string); not paid",
            ),
            (
                R::Malformed {
                    reason: "lightningd marks it invalid".into(),
                },
                "malformed",
                "the invoice is unusable: lightningd marks it invalid; not paid",
            ),
        ];
        for (r, code, text) in cases {
            assert_eq!(r.code(), code);
            assert_eq!(r.to_string(), text);
            // Stored with its code as the tag, and read back.
            let stored = serde_json::to_value(&r).unwrap();
            assert_eq!(stored["code"], code);
            assert_eq!(
                serde_json::from_value::<InvoiceRejection>(stored).unwrap(),
                r
            );
        }
    }

    #[test]
    fn grouping() {
        for (n, s) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (12_600, "12,600"),
            (123_456_789, "123,456,789"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(grouped(n), s);
        }
    }

    #[test]
    fn the_mapping_agrees_with_the_emulator() {
        for net in ["bitcoin", "testnet", "testnet4", "signet", "regtest"] {
            assert_eq!(
                currency_of_network(net),
                Some(lightningd_emulator::bolt11::network_currency(net)),
                "{net}"
            );
        }
        assert_eq!(currency_of_network("mainnet"), None);
    }

    // --- `check` against a scripted lightningd socket ------------------------------------

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;

    /// Answers one call with `reply` (a JSON-RPC response without the id).
    async fn lightningd_answering(reply: Value) -> (tempfile::TempDir, Node) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightning-rpc");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let _ = s.read(&mut req).await;
            let mut bytes = serde_json::to_vec(&reply).unwrap();
            bytes.extend_from_slice(b"\n\n");
            s.write_all(&bytes).await.unwrap();
        });
        (dir, Node::new(path))
    }

    fn fixture_error(name: &str) -> Value {
        let path = format!("{}/fixtures/cln/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn check_tells_rejections_from_node_trouble() {
        let e = Expectation {
            invoice_sats: Some(10_000),
            now: 1_795_634_769,
            ..expect()
        };

        let (_d, node) =
            lightningd_answering(json!({"jsonrpc": "2.0", "id": 1, "result": fixture()})).await;
        let v = check(&node, "lnbcrt100u1...", &e).await.unwrap();
        assert_eq!(v.into_result().unwrap().amount_sat, 10_000);

        // The captured "not an invoice" error.
        let (_d, node) = lightningd_answering(fixture_error("rpc-error.decode-invalid.json")).await;
        let v = check(&node, "lnbcrt1notaninvoice", &e).await.unwrap();
        assert_eq!(
            v,
            Verdict::Rejected(InvoiceRejection::Undecodable {
                reason: "string: Bad bech32 string: invalid token '\"lnbcrt1notaninvoice\"'".into()
            })
        );

        // A bolt12 offer decodes, but is not something to pay here.
        let (_d, node) = lightningd_answering(json!({"jsonrpc": "2.0", "id": 1, "result": {
            "type": "bolt12 offer", "offer_id": "00", "valid": true}}))
        .await;
        let v = check(&node, "lno1...", &e).await.unwrap();
        assert_eq!(
            v,
            Verdict::Rejected(InvoiceRejection::Malformed {
                reason: "it decodes as a bolt12 offer, not a bolt11 invoice".into()
            })
        );

        // A bolt11 answer missing what we need.
        let mut partial = fixture();
        partial.as_object_mut().unwrap().remove("payment_hash");
        let (_d, node) =
            lightningd_answering(json!({"jsonrpc": "2.0", "id": 1, "result": partial})).await;
        let v = check(&node, "lnbcrt100u1...", &e).await.unwrap();
        assert!(
            matches!(&v, Verdict::Rejected(InvoiceRejection::Malformed { reason }) if reason.contains("payment_hash")),
            "{v:?}"
        );

        // `decode` unavailable (its plugin is gone): ask again later, do not reject.
        let (_d, node) =
            lightningd_answering(fixture_error("rpc-error.unknown-command.json")).await;
        let err = check(&node, "lnbcrt100u1...", &e).await.unwrap_err();
        assert!(matches!(err, NodeError::Refused { .. }), "{err}");
        let (_d, node) = lightningd_answering(json!({"jsonrpc": "2.0", "id": 1, "error": {
            "code": -4, "message": "Plugin terminated before replying to RPC call."}}))
        .await;
        let err = check(&node, "lnbcrt100u1...", &e).await.unwrap_err();
        assert_eq!(err.code(), Some(-4));
    }
}
