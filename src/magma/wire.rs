//! Wire types of the Magma buyer API and the domain values the client hands out.
//!
//! The service sends satoshi and USD amounts as decimal strings, but some objects have been seen
//! with JSON numbers (magma-api.md §3), so every amount accepts both. Anything else — a negative,
//! fractional or absurd value, a missing required field — is a protocol error, never a panic.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::status::{OrderStatus, PaymentStatus};
use crate::secret::Secret;

/// A whole number of satoshis, sent as `"12500"` or `12500`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sats(pub u64);

impl<'de> Deserialize<'de> for Sats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Sats;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole, non-negative number of sats as a string or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Sats, E> {
                Ok(Sats(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Sats, E> {
                u64::try_from(v)
                    .map(Sats)
                    .map_err(|_| E::custom(format!("negative sats amount {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Sats, E> {
                Err(E::custom(format!("fractional sats amount {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Sats, E> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!(
                        "sats amount {v:?} is not a whole number"
                    )));
                }
                v.parse()
                    .map(Sats)
                    .map_err(|_| E::custom(format!("sats amount {v:?} is out of range")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A non-negative USD decimal, sent as `"501.09"` (any precision) or as a number. Kept as text
/// so nothing is lost to floating point; [`Usd::cents_floor`] gives whole cents for arithmetic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Usd(String);

impl Usd {
    pub fn parse(v: &str) -> Result<Usd, String> {
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (v.contains('.') && frac.is_empty()) {
            return Err(format!("USD amount {v:?} is not a non-negative decimal"));
        }
        if int.len() > 15 {
            return Err(format!("USD amount {v:?} is out of range"));
        }
        Ok(Usd(v.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The exact value as `numerator / denominator` (denominator a power of ten), for
    /// arithmetic without floating point. `None` only for absurd precision.
    pub fn as_fraction(&self) -> Option<(u128, u128)> {
        let (int, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        let den = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        let num = format!("{int}{frac}").parse::<u128>().ok()?;
        Some((num, den))
    }

    /// The amount in whole cents, rounded down.
    pub fn cents_floor(&self) -> u64 {
        let (int, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        // Both parts were checked to be digits and the integer part to be at most 15 of them.
        let int: u64 = int.parse().unwrap_or(0);
        let frac2: String = frac.chars().chain("00".chars()).take(2).collect();
        int * 100 + frac2.parse::<u64>().unwrap_or(0)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Usd;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative USD decimal as a string or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Usd, E> {
                Usd::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Usd, E> {
                Usd::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Usd, E> {
                if !v.is_finite() || v < 0.0 {
                    return Err(E::custom(format!(
                        "USD amount {v} is not a non-negative number"
                    )));
                }
                Usd::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Usd, E> {
                Usd::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserialises an optional string, treating `""` like `null` (the legacy API sent `""` for
/// unknown timeouts and ids).
fn blank_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

// ---------------------------------------------------------------------------------------------
// Price

/// `market.liquidity.liquidity_per_usd`: inbound sats per USD spent, and the USD of receiving
/// capacity per USD spent.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Price {
    pub sats: Sats,
    pub usd: Usd,
}

#[derive(Deserialize)]
pub(crate) struct PriceData {
    market: PriceMarket,
}
#[derive(Deserialize)]
struct PriceMarket {
    liquidity: PriceLiquidity,
}
#[derive(Deserialize)]
struct PriceLiquidity {
    liquidity_per_usd: Price,
}

impl PriceData {
    pub(crate) fn into_price(self) -> Price {
        self.market.liquidity.liquidity_per_usd
    }
}

// ---------------------------------------------------------------------------------------------
// Buy

/// What to buy: `LiquidityOrderInput`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuyRequest {
    /// `pubkey@host:port` of the node that receives the channel.
    pub connection_uri: String,
    pub usd_cents: u64,
    pub private: bool,
    pub rails_cluster_only: bool,
    pub asset_id: Option<String>,
    pub redirect_url: Option<String>,
}

impl BuyRequest {
    pub(crate) fn variables(&self) -> serde_json::Value {
        let mut options = serde_json::json!({
            "private": self.private,
            "rails_cluster_only": self.rails_cluster_only,
        });
        if let Some(asset) = &self.asset_id {
            options["asset_id"] = asset.clone().into();
        }
        let mut input = serde_json::json!({
            "connection_uri": self.connection_uri,
            // The service takes an integer *string*; every Amboss-written client sends one.
            "usd_cents": self.usd_cents.to_string(),
            "options": options,
        });
        if let Some(url) = &self.redirect_url {
            input["redirect_url"] = url.clone().into();
        }
        serde_json::json!({ "input": input })
    }
}

/// The answer to `liquidity.buy`: everything that must be stored before the invoice is paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purchase {
    pub account_id: String,
    /// Present for anonymous buys; the only credential that can read this order later.
    pub session_key: Option<Secret>,
    /// `order.transaction_id`, the id to give to `get_order`.
    pub order_id: String,
    pub usd_cents: Option<u64>,
    pub lightning_invoice: String,
    pub redirect_url: Option<String>,
    /// `payment.amount.sats`: what the invoice must ask for.
    pub invoice_sats: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct BuyData {
    liquidity: BuyLiquidity,
}
#[derive(Deserialize)]
struct BuyLiquidity {
    buy: BuyResult,
}
#[derive(Deserialize)]
struct BuyResult {
    account: BuyAccount,
    order: BuyOrder,
    payment: Option<BuyPayment>,
}
#[derive(Deserialize)]
struct BuyAccount {
    id: String,
    session_key: Option<Secret>,
}
#[derive(Deserialize)]
struct BuyOrder {
    transaction_id: String,
    usd_cents: Option<Sats>,
}
#[derive(Deserialize)]
struct BuyPayment {
    lightning_invoice: Option<String>,
    #[serde(default, deserialize_with = "blank_as_none")]
    redirect_url: Option<String>,
    amount: Option<SatsObject>,
}
#[derive(Deserialize)]
struct SatsObject {
    sats: Option<Sats>,
}

impl BuyData {
    pub(crate) fn into_purchase(self) -> Result<Purchase, String> {
        let buy = self.liquidity.buy;
        if buy.order.transaction_id.is_empty() {
            return Err("buy response has an empty order.transaction_id".into());
        }
        let payment = buy.payment.ok_or("buy response has no payment")?;
        let invoice = payment
            .lightning_invoice
            .filter(|i| !i.is_empty())
            .ok_or("buy response has no payment.lightning_invoice")?;
        Ok(Purchase {
            account_id: buy.account.id,
            session_key: buy.account.session_key.filter(|k| !k.expose().is_empty()),
            order_id: buy.order.transaction_id,
            usd_cents: buy.order.usd_cents.map(|s| s.0),
            lightning_invoice: invoice,
            redirect_url: payment.redirect_url,
            invoice_sats: payment.amount.and_then(|a| a.sats).map(|s| s.0),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// get_order

/// `user.market.orders.get_order`: an order as the buyer sees it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Order {
    pub id: String,
    pub status: OrderStatus,
    pub payment_status: Option<PaymentStatus>,
    #[serde(default, deserialize_with = "blank_as_none")]
    pub channel_id: Option<String>,
    /// The funding transaction reported by the seller (not the order id).
    #[serde(default, deserialize_with = "blank_as_none")]
    pub transaction_id: Option<String>,
    #[serde(default, deserialize_with = "blank_as_none")]
    pub timeout: Option<String>,
    #[serde(default)]
    pub blocks_until_can_be_closed: Option<i64>,
    #[serde(default, deserialize_with = "confirmations")]
    pub confirmations: Option<u32>,
    #[serde(default, rename(deserialize = "fees"), deserialize_with = "buyer_fee")]
    pub buyer_fee: Option<BuyerFee>,
}

/// `fees.buyer`: what the buyer pays in total.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct BuyerFee {
    pub sats: Option<Sats>,
    pub usd: Option<Usd>,
}

fn confirmations<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    struct C {
        confirmations: Option<u32>,
    }
    Ok(Option::<C>::deserialize(d)?.and_then(|c| c.confirmations))
}

fn buyer_fee<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BuyerFee>, D::Error> {
    #[derive(Deserialize)]
    struct Fees {
        buyer: Option<BuyerFee>,
    }
    Ok(Option::<Fees>::deserialize(d)?.and_then(|f| f.buyer))
}

#[derive(Deserialize)]
pub(crate) struct GetOrderData {
    user: GetOrderUser,
}
#[derive(Deserialize)]
struct GetOrderUser {
    market: GetOrderMarket,
}
#[derive(Deserialize)]
struct GetOrderMarket {
    orders: GetOrderOrders,
}
#[derive(Deserialize)]
struct GetOrderOrders {
    get_order: Option<Order>,
}

impl GetOrderData {
    pub(crate) fn into_order(self) -> Option<Order> {
        self.user.market.orders.get_order
    }
}

// ---------------------------------------------------------------------------------------------
// transaction_list

/// One entry of `user.transactions.transaction_list`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Transaction {
    pub id: String,
    pub status: OrderStatus,
    #[serde(default, deserialize_with = "blank_as_none")]
    pub created_at: Option<String>,
}

/// Offset paging as the service takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Page {
    pub limit: u32,
    pub offset: u32,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 10,
            offset: 0,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct TransactionListData {
    user: TlUser,
}
#[derive(Deserialize)]
struct TlUser {
    transactions: TlTransactions,
}
#[derive(Deserialize)]
struct TlTransactions {
    transaction_list: TlList,
}
#[derive(Deserialize)]
struct TlList {
    list: Vec<Transaction>,
}

impl TransactionListData {
    pub(crate) fn into_list(self) -> Vec<Transaction> {
        self.user.transactions.transaction_list.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sats_accept_strings_and_numbers_only_when_whole() {
        let ok = |j: &str| serde_json::from_str::<Sats>(j).map(|s| s.0);
        assert_eq!(ok("\"12500\"").unwrap(), 12500);
        assert_eq!(ok("12500").unwrap(), 12500);
        assert_eq!(ok("0").unwrap(), 0);
        for bad in [
            "\"-5\"",
            "-5",
            "12.5",
            "\"12.5\"",
            "\"\"",
            "\"1e3\"",
            "\" 12\"",
            "\"99999999999999999999999\"",
            "null",
            "true",
            "{}",
        ] {
            assert!(ok(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn usd_keeps_precision_and_gives_cents() {
        let u: Usd = serde_json::from_str("\"501.0921588\"").unwrap();
        assert_eq!(u.as_str(), "501.0921588");
        assert_eq!(u.cents_floor(), 50109);
        let u: Usd = serde_json::from_str("5.6").unwrap();
        assert_eq!(u.cents_floor(), 560);
        let u: Usd = serde_json::from_str("\"7\"").unwrap();
        assert_eq!(u.cents_floor(), 700);
        assert_eq!(u.as_fraction(), Some((7, 1)));
        let u: Usd = serde_json::from_str("\"501.0921588\"").unwrap();
        assert_eq!(u.as_fraction(), Some((5_010_921_588, 10_000_000)));
        for bad in [
            "\"-1\"",
            "\"1.\"",
            "\".5\"",
            "\"abc\"",
            "-2.5",
            "\"1.2.3\"",
            "\"\"",
        ] {
            assert!(
                serde_json::from_str::<Usd>(bad).is_err(),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn buy_variables_send_usd_cents_as_string() {
        let req = BuyRequest {
            connection_uri: "02aa@1.2.3.4:9735".into(),
            usd_cents: 5000,
            private: true,
            rails_cluster_only: false,
            asset_id: None,
            redirect_url: None,
        };
        let v = req.variables();
        assert_eq!(v["input"]["usd_cents"], "5000");
        assert_eq!(v["input"]["options"]["private"], true);
        assert!(v["input"].get("redirect_url").is_none());
    }

    #[test]
    fn buy_without_invoice_is_refused() {
        let data: BuyData = serde_json::from_value(serde_json::json!({"liquidity":{"buy":{
            "account":{"id":"a","session_key":"k"},
            "order":{"transaction_id":"t","usd_cents":"500"},
            "payment":{"lightning_invoice":null,"redirect_url":null}}}}))
        .unwrap();
        assert!(
            data.into_purchase()
                .unwrap_err()
                .contains("lightning_invoice")
        );
    }

    #[test]
    fn order_parses_the_documented_example() {
        let o: Order = serde_json::from_value(serde_json::json!({
            "id": "ec562479-a4b8-44f4-95b4-150b310832de",
            "status": "WAITING_FOR_ON_CHAIN_CONFIRMATION",
            "payment_status": "SUCCESSFUL_PAYMENT",
            "channel_id": null,
            "transaction_id": "5e8a3f...c4f1",
            "timeout": "",
            "blocks_until_can_be_closed": 4320,
            "confirmations": {"confirmations": 2},
            "fees": {"buyer": {"sats": "12500", "usd": "5.62"}}
        }))
        .unwrap();
        assert_eq!(o.status, OrderStatus::WaitingForOnChainConfirmation);
        assert_eq!(o.confirmations, Some(2));
        assert_eq!(o.timeout, None);
        let fee = o.buyer_fee.unwrap();
        assert_eq!(fee.sats, Some(Sats(12500)));
        assert_eq!(fee.usd.unwrap().cents_floor(), 562);
    }
}
