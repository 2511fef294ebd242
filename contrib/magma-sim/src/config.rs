//! Simulator configuration: network, price, credentials, seller behaviour and timings.

use std::fmt;
use std::str::FromStr;

use lightning_invoice::Currency;
use serde::Serialize;

use crate::model::SellerScript;
use crate::pricing::Price;

/// The Bitcoin network the simulator's invoices are issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Bitcoin,
    Testnet,
    Signet,
    Regtest,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Bitcoin => "bitcoin",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }

    /// The BOLT11 currency (human-readable prefix) of invoices on this network.
    pub fn currency(self) -> Currency {
        match self {
            Network::Bitcoin => Currency::Bitcoin,
            Network::Testnet => Currency::BitcoinTestnet,
            Network::Signet => Currency::Signet,
            Network::Regtest => Currency::Regtest,
        }
    }

    /// The BOLT11 human-readable part without an amount (`lnbcrt`, `lnbc`, ...).
    pub fn bolt11_prefix(self) -> &'static str {
        match self {
            Network::Bitcoin => "lnbc",
            Network::Testnet => "lntb",
            Network::Signet => "lntbs",
            Network::Regtest => "lnbcrt",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "bitcoin" | "mainnet" => Ok(Network::Bitcoin),
            "testnet" => Ok(Network::Testnet),
            "signet" => Ok(Network::Signet),
            "regtest" => Ok(Network::Regtest),
            other => Err(format!(
                "unknown network `{other}` (expected regtest, signet, testnet, mainnet or bitcoin)"
            )),
        }
    }
}

/// Durations (virtual seconds) and block counts of the scripted seller lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// Order creation → the seller approves or rejects.
    pub seller_react_secs: u64,
    /// Order creation → `SELLER_FAILED_TO_REACT` when the seller never reacts.
    pub approval_timeout_secs: u64,
    /// Expiry of the buyer's invoice; an unpaid order then becomes `BUYER_FAILED_TO_PAY`.
    pub invoice_expiry_secs: u64,
    /// Payment held and order approved → the seller broadcasts the funding transaction.
    pub open_after_secs: u64,
    /// Payment held → `SELLER_FAILED_TO_OPEN_CHANNEL` when no funding transaction comes.
    pub open_timeout_secs: u64,
    /// `SELLER_SENT_TRANSACTION` → `WAITING_FOR_ON_CHAIN_CONFIRMATION`.
    pub mempool_secs: u64,
    /// Confirmations after which the funding transaction counts as confirmed (at least 1).
    pub confirmations_required: u32,
    /// Duration of each validation step after confirmation
    /// (`ON_CHAIN_CONFIRMATION` → `SELLER_OPENED_CHANNEL` → `VALID_CHANNEL_OPENING`).
    pub validate_secs: u64,
    /// Lease length in blocks: `VALID_CHANNEL_OPENING` → `CHANNEL_MONITORING_FINISHED`.
    pub lease_blocks: u32,
    /// `SELLER_SENT_TRANSACTION` → `SELLER_FAILED_TO_SEND_SWAP` for the `send-swap-fail` seller.
    pub send_swap_timeout_secs: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            seller_react_secs: 5,
            approval_timeout_secs: 600,
            invoice_expiry_secs: 3600,
            open_after_secs: 30,
            open_timeout_secs: 1800,
            mempool_secs: 10,
            confirmations_required: 3,
            validate_secs: 60,
            lease_blocks: 4320,
            send_swap_timeout_secs: 600,
        }
    }
}

/// Everything the simulator needs to start.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub network: Network,
    /// `liquidity_per_usd.sats`: inbound sats per USD spent (an integer string).
    pub price_sats: String,
    /// `liquidity_per_usd.usd`: USD of capacity per USD spent (a decimal string).
    pub price_usd: String,
    /// Exchange rate used for the buyer fee in sats; `None` = `price_sats / price_usd`.
    pub btc_sats_per_usd: Option<f64>,
    /// API keys accepted as `Authorization: Bearer <key>`; each one is its own account.
    pub api_keys: Vec<String>,
    /// Seller script of new orders unless one is set per order.
    pub default_seller: SellerScript,
    pub timings: Timings,
    /// `true` (default): the buy response's `order.transaction_id` is the order id.
    /// `false`: it is a different UUID and `get_order` accepts only the order id.
    pub order_id_is_transaction_id: bool,
    /// Virtual seconds between automatically produced blocks; 0 = only `mine_blocks`.
    pub block_interval_secs: u64,
    /// Block height at start.
    pub start_height: u32,
    /// Virtual unix time at start; `None` = the wall clock at start.
    pub start_time: Option<u64>,
    /// Seed of the simulator node key that signs invoices (the pubkey is stable per seed).
    pub node_seed: String,
    /// Smallest accepted `usd_cents` (the service's documented minimum is 500).
    pub min_usd_cents: u64,
    /// Largest accepted `usd_cents` (the real maximum is unknown).
    pub max_usd_cents: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            network: Network::Regtest,
            price_sats: "543260".to_string(),
            price_usd: "501.09".to_string(),
            btc_sats_per_usd: None,
            api_keys: Vec::new(),
            default_seller: SellerScript::Happy,
            timings: Timings::default(),
            order_id_is_transaction_id: true,
            block_interval_secs: 600,
            start_height: 850_000,
            start_time: None,
            node_seed: "magma-sim".to_string(),
            min_usd_cents: 500,
            max_usd_cents: 100_000_000,
        }
    }
}

impl SimConfig {
    /// Checks the values that could otherwise only fail later, naming the offending setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        Price::parse(&self.price_sats, &self.price_usd, self.btc_sats_per_usd)?;
        if self.api_keys.iter().any(|k| k.trim().is_empty()) {
            anyhow::bail!("api key: must not be empty");
        }
        if self.min_usd_cents > self.max_usd_cents {
            anyhow::bail!("min_usd_cents must not exceed max_usd_cents");
        }
        if self.timings.confirmations_required == 0 {
            anyhow::bail!("confirmations_required must be at least 1");
        }
        Ok(())
    }
}
