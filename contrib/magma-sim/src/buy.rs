//! `liquidity.buy`: input validation and order creation.

use std::net::Ipv6Addr;

use uuid::Uuid;

use crate::accounts::Caller;
use crate::error::ApiError;
use crate::invoice::{self, InvoiceRequest};
use crate::model::{HtlcState, KnownStatus, OwnerKind, PaymentStatus};
use crate::order::{Order, OrderSnapshot};
use crate::state::State;

/// The buy input as received.
#[derive(Clone, Debug, Default)]
pub(crate) struct BuyRequest {
    pub connection_uri: String,
    pub usd_cents: String,
    pub redirect_url: Option<String>,
    pub private: Option<bool>,
    pub rails_cluster_only: Option<bool>,
    pub asset_id: Option<String>,
}

/// What the buy response reports.
#[derive(Clone, Debug)]
pub(crate) struct BuyReceipt {
    pub account_id: String,
    /// The session key of a new anonymous session, or the one the caller used; `None` for
    /// API-key callers.
    pub session_key: Option<String>,
    pub transaction_id: String,
    pub usd_cents: u64,
    pub invoice: String,
    pub invoice_sats: u64,
    pub redirect_url: Option<String>,
}

const URI_FORMAT: &str = "connection_uri must be in <pubkey>@<host>:<port> format";

impl State {
    pub fn buy(&mut self, caller: &Caller, req: BuyRequest) -> Result<BuyReceipt, ApiError> {
        if *caller == Caller::Invalid {
            return Err(ApiError::unauthorized());
        }
        let usd_cents = parse_usd_cents(&req.usd_cents)?;
        if usd_cents < i128::from(self.cfg.min_usd_cents) {
            return Err(ApiError::bad_input("Min amount violated"));
        }
        if usd_cents > i128::from(self.cfg.max_usd_cents) {
            return Err(ApiError::bad_input("Max amount violated"));
        }
        let usd_cents =
            u64::try_from(usd_cents).map_err(|_| ApiError::bad_input("Min amount violated"))?;
        let destination_pubkey = parse_connection_uri(&req.connection_uri)
            .ok_or_else(|| ApiError::bad_input(URI_FORMAT))?;

        let amounts = self.price.amounts(usd_cents);
        let order_id = Uuid::new_v4().to_string();
        let now = self.clock.now();
        let invoice_fault = self.invoice_faults.take(&());
        let issued = invoice::issue(
            &self.node,
            &InvoiceRequest {
                network: self.cfg.network,
                sats: amounts.fee_sats,
                order_id: &order_id,
                timestamp_secs: now,
                expiry_secs: self.cfg.timings.invoice_expiry_secs,
            },
            invoice_fault.as_ref(),
        )
        .map_err(ApiError::internal)?;

        let (account_id, owner, session_key) = match caller {
            Caller::Account {
                id,
                kind,
                session_key,
            } => (id.clone(), *kind, session_key.clone()),
            _ => {
                let session = self.accounts.new_session();
                (
                    session.account_id,
                    OwnerKind::SessionKey,
                    Some(session.session_key),
                )
            }
        };
        let transaction_id = if self.cfg.order_id_is_transaction_id {
            order_id.clone()
        } else {
            Uuid::new_v4().to_string()
        };
        let view = OrderSnapshot {
            id: order_id.clone(),
            transaction_id: transaction_id.clone(),
            account_id: account_id.clone(),
            owner,
            connection_uri: req.connection_uri,
            destination_pubkey,
            usd_cents,
            channel_size_sat: amounts.channel_sats,
            fee_usd: amounts.fee_usd,
            invoice_sats: amounts.fee_sats,
            invoice: issued.bolt11.clone(),
            payment_hash: issued.payment_hash.clone(),
            htlc: HtlcState::Unpaid,
            status: KnownStatus::WaitingForSellerApproval.into(),
            payment_status: PaymentStatus::PendingPayment,
            funding_txid: None,
            channel_id: None,
            confirmations: 0,
            blocks_until_can_be_closed: Some(self.cfg.timings.lease_blocks),
            private: req.private.unwrap_or(false),
            rails_cluster_only: req.rails_cluster_only.unwrap_or(false),
            asset_id: req.asset_id,
            redirect_url: req.redirect_url,
            created_at: now,
            timeout: None,
            history: Vec::new(),
            seller: self.cfg.default_seller,
        };
        let idx = self.orders.len();
        self.orders.push(Order::new(view, issued.preimage));
        self.by_id.insert(order_id.clone(), idx);
        self.by_hash.insert(issued.payment_hash, idx);
        self.on_order_created(idx);
        self.changed();
        log::info!(
            "buy: order {order_id} of {usd_cents} cents, {} sat invoice, seller {}, owner {owner:?}{}",
            amounts.fee_sats,
            self.cfg.default_seller,
            invoice_fault
                .map(|f| format!(", invoice fault {f:?}"))
                .unwrap_or_default()
        );
        Ok(BuyReceipt {
            account_id,
            session_key,
            transaction_id,
            usd_cents,
            invoice: issued.bolt11,
            invoice_sats: amounts.fee_sats,
            redirect_url: None,
        })
    }
}

fn parse_usd_cents(s: &str) -> Result<i128, ApiError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_input("usd_cents must be an integer string"));
    }
    // More than 30 digits cannot be a sensible amount; treat it as above the maximum.
    Ok(s.parse::<i128>().unwrap_or(i128::MAX))
}

/// Validates `<66 hex pubkey>@<host>:<port>` (host: letters, digits, `_`, `.`, `-`, or a
/// bracketed IPv6 address; port 1–65535). Returns the pubkey in lowercase.
pub(crate) fn parse_connection_uri(uri: &str) -> Option<String> {
    let (pubkey, address) = uri.split_once('@')?;
    if pubkey.len() != 66 || !pubkey.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (host, port) = address.rsplit_once(':')?;
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    let port_ok = (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
    (host_ok && port_ok).then(|| pubkey.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "02eadbd9e7557375161df8b646776a547c5cbc2e95b3071ec81553f8ec2cea3b8c";

    #[test]
    fn connection_uris() {
        for ok in [
            format!("{PK}@203.0.113.7:9735"),
            format!("{PK}@node.example_1-a.onion:1"),
            format!("{PK}@[2001:db8::1]:65535"),
            format!("{}@HOST:9735", PK.to_uppercase()),
        ] {
            assert_eq!(
                parse_connection_uri(&ok).as_deref(),
                Some(PK),
                "{ok} should pass"
            );
        }
        for bad in [
            PK.to_string(),
            format!("{PK}@host"),
            format!("{PK}@host:0"),
            format!("{PK}@host:65536"),
            format!("{PK}@host:123456"),
            format!("{PK}@:9735"),
            format!("{PK}@ho st:9735"),
            format!("{PK}@[not-ipv6]:9735"),
            format!("{}@host:9735", &PK[1..]),
            format!("{}x@host:9735", &PK[1..]),
        ] {
            assert_eq!(parse_connection_uri(&bad), None, "{bad} should fail");
        }
    }

    #[test]
    fn usd_cents_must_be_integer_strings() {
        assert_eq!(parse_usd_cents("5000"), Ok(5000));
        assert_eq!(parse_usd_cents("-5"), Ok(-5));
        for bad in ["", "-", "5.0", "5e3", " 500", "abc", "+500"] {
            assert!(parse_usd_cents(bad).is_err(), "{bad:?}");
        }
    }
}
