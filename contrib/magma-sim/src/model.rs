//! Domain enums: order status, payment status, seller scripts, HTLC state.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Defines a fieldless enum with a fixed wire name per variant, plus `ALL`, `as_str`,
/// `Display`, `FromStr` and string serialisation.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!(
                        "unknown {} `{}` (expected one of: {})",
                        stringify!($name),
                        s,
                        $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    ))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// The 17 documented `MarketOrderStatus` values.
    pub enum KnownStatus {
        WaitingForSellerApproval => "WAITING_FOR_SELLER_APPROVAL",
        WaitingForBuyerPayment => "WAITING_FOR_BUYER_PAYMENT",
        WaitingForChannelOpen => "WAITING_FOR_CHANNEL_OPEN",
        SellerSentTransaction => "SELLER_SENT_TRANSACTION",
        WaitingForOnChainConfirmation => "WAITING_FOR_ON_CHAIN_CONFIRMATION",
        OnChainConfirmation => "ON_CHAIN_CONFIRMATION",
        SellerOpenedChannel => "SELLER_OPENED_CHANNEL",
        ValidChannelOpening => "VALID_CHANNEL_OPENING",
        ChannelMonitoringFinished => "CHANNEL_MONITORING_FINISHED",
        SellerRejected => "SELLER_REJECTED",
        SellerFailedToReact => "SELLER_FAILED_TO_REACT",
        BuyerRejected => "BUYER_REJECTED",
        BuyerFailedToPay => "BUYER_FAILED_TO_PAY",
        SellerFailedToOpenChannel => "SELLER_FAILED_TO_OPEN_CHANNEL",
        SellerFailedToSendSwap => "SELLER_FAILED_TO_SEND_SWAP",
        InvalidChannelOpening => "INVALID_CHANNEL_OPENING",
        AdminClosed => "ADMIN_CLOSED",
    }
}

impl KnownStatus {
    /// Statuses the simulator never leaves by itself. `VALID_CHANNEL_OPENING` (a success for a
    /// buyer) is not among them: it later becomes `CHANNEL_MONITORING_FINISHED`.
    pub(crate) fn is_final(self) -> bool {
        !matches!(
            self,
            KnownStatus::WaitingForSellerApproval
                | KnownStatus::WaitingForBuyerPayment
                | KnownStatus::WaitingForChannelOpen
                | KnownStatus::SellerSentTransaction
                | KnownStatus::WaitingForOnChainConfirmation
                | KnownStatus::OnChainConfirmation
                | KnownStatus::SellerOpenedChannel
                | KnownStatus::ValidChannelOpening
        )
    }
}

/// An order's status: a documented value, or any string forced by a test.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Known(KnownStatus),
    /// A status outside the documented enum (only via `force_status`).
    Other(String),
}

impl OrderStatus {
    pub fn as_str(&self) -> &str {
        match self {
            OrderStatus::Known(s) => s.as_str(),
            OrderStatus::Other(s) => s,
        }
    }

    /// Parses any string; documented names become `Known`.
    pub fn parse(s: &str) -> OrderStatus {
        s.parse::<KnownStatus>()
            .map(OrderStatus::Known)
            .unwrap_or_else(|_| OrderStatus::Other(s.to_string()))
    }

    pub fn known(&self) -> Option<KnownStatus> {
        match self {
            OrderStatus::Known(s) => Some(*s),
            OrderStatus::Other(_) => None,
        }
    }

    pub fn is(&self, status: KnownStatus) -> bool {
        self.known() == Some(status)
    }
}

impl From<KnownStatus> for OrderStatus {
    fn from(s: KnownStatus) -> Self {
        OrderStatus::Known(s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OrderStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

wire_enum! {
    /// `MarketOrderPaymentStatus` values (legacy enum, §6).
    pub enum PaymentStatus {
        PendingPayment => "PENDING_PAYMENT",
        SuccessfulPayment => "SUCCESSFUL_PAYMENT",
        PaymentFailed => "PAYMENT_FAILED",
        PaymentRejectedByDestination => "PAYMENT_REJECTED_BY_DESTINATION",
        InvalidPaymentSecret => "INVALID_PAYMENT_SECRET",
        HodlInvoiceTimeout => "HODL_INVOICE_TIMEOUT",
        SellerInvoiceExpired => "SELLER_INVOICE_EXPIRED",
    }
}

wire_enum! {
    /// Scripted behaviour of the seller of an order (kebab-case names on the CLI and admin API).
    pub enum SellerScript {
        /// Approves, opens, confirms; the channel is valid, later the lease ends.
        Happy => "happy",
        /// Rejects the order.
        Reject => "reject",
        /// Never reacts; the approval deadline passes.
        NoReact => "no-react",
        /// Approves and receives the payment but never funds the channel.
        NoOpen => "no-open",
        /// Reports a funding transaction that never reaches the mempool.
        SendSwapFail => "send-swap-fail",
        /// Opens a channel that fails validation.
        InvalidChannel => "invalid-channel",
        /// Amboss closes the order after the payment arrived.
        AdminClose => "admin-close",
        /// Every HTLC for the order is failed back at once; the invoice expires unpaid.
        BuyerNeverPays => "buyer-never-pays",
    }
}

impl SellerScript {
    /// Parses a script name, accepting `_` for `-` and any case.
    pub fn parse_lenient(s: &str) -> Result<SellerScript, String> {
        s.to_ascii_lowercase().replace('_', "-").parse()
    }
}

/// State of the HTLC paying an order's (hold) invoice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HtlcState {
    /// No HTLC has arrived.
    Unpaid,
    /// The buyer's HTLC arrived and is held.
    Held,
    /// The held HTLC was settled with this preimage (hex).
    Settled { preimage: String },
    /// The HTLC was failed back (or the invoice cancelled before payment).
    Cancelled,
}

/// Which kind of credential owns an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    ApiKey,
    SessionKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seventeen_statuses_round_trip() {
        assert_eq!(KnownStatus::ALL.len(), 17);
        for s in KnownStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), OrderStatus::Known(*s));
        }
        assert_eq!(
            OrderStatus::parse("SOMETHING_NEW"),
            OrderStatus::Other("SOMETHING_NEW".into())
        );
    }

    #[test]
    fn seller_names_are_kebab_case() {
        assert_eq!(
            SellerScript::parse_lenient("NO_OPEN"),
            Ok(SellerScript::NoOpen)
        );
        assert_eq!(
            "buyer-never-pays".parse::<SellerScript>(),
            Ok(SellerScript::BuyerNeverPays)
        );
        assert!("sometimes".parse::<SellerScript>().is_err());
    }
}
