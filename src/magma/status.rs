//! Magma's order and payment statuses (magma-api.md §5, §6).
//!
//! Both enums keep values they do not know (`Unknown`): the service may add in-flight statuses at
//! any time, and the guide's rule is to decide "done" only by membership in the published
//! terminal sets, treating anything else as still in flight.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this build has never seen, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Every value this build knows, in documentation order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Unknown(s) => s,
                }
            }

            pub fn parse(s: &str) -> Self {
                match s {
                    $($wire => $name::$variant,)+
                    other => $name::Unknown(other.to_string()),
                }
            }

            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Unknown(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(|s| $name::parse(&s))
            }
        }
    };
}

wire_enum! {
    /// `MarketOrderStatus`: the 17 documented values.
    OrderStatus {
        WaitingForSellerApproval = "WAITING_FOR_SELLER_APPROVAL",
        WaitingForBuyerPayment = "WAITING_FOR_BUYER_PAYMENT",
        WaitingForChannelOpen = "WAITING_FOR_CHANNEL_OPEN",
        SellerSentTransaction = "SELLER_SENT_TRANSACTION",
        WaitingForOnChainConfirmation = "WAITING_FOR_ON_CHAIN_CONFIRMATION",
        OnChainConfirmation = "ON_CHAIN_CONFIRMATION",
        SellerOpenedChannel = "SELLER_OPENED_CHANNEL",
        ValidChannelOpening = "VALID_CHANNEL_OPENING",
        ChannelMonitoringFinished = "CHANNEL_MONITORING_FINISHED",
        SellerRejected = "SELLER_REJECTED",
        SellerFailedToReact = "SELLER_FAILED_TO_REACT",
        BuyerRejected = "BUYER_REJECTED",
        BuyerFailedToPay = "BUYER_FAILED_TO_PAY",
        SellerFailedToOpenChannel = "SELLER_FAILED_TO_OPEN_CHANNEL",
        SellerFailedToSendSwap = "SELLER_FAILED_TO_SEND_SWAP",
        InvalidChannelOpening = "INVALID_CHANNEL_OPENING",
        AdminClosed = "ADMIN_CLOSED",
    }
}

wire_enum! {
    /// `MarketOrderPaymentStatus`: the values of the legacy enum plus the new docs' example.
    PaymentStatus {
        PendingPayment = "PENDING_PAYMENT",
        SuccessfulPayment = "SUCCESSFUL_PAYMENT",
        PaymentFailed = "PAYMENT_FAILED",
        PaymentRejectedByDestination = "PAYMENT_REJECTED_BY_DESTINATION",
        InvalidPaymentSecret = "INVALID_PAYMENT_SECRET",
        HodlInvoiceTimeout = "HODL_INVOICE_TIMEOUT",
        SellerInvoiceExpired = "SELLER_INVOICE_EXPIRED",
    }
}

/// Where an order stands for a buyer, by the guide's terminal sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    InFlight,
    Success,
    Failure,
}

impl OrderStatus {
    /// The guide's classification. `VALID_CHANNEL_OPENING` already counts as success even though
    /// the service later moves it to `CHANNEL_MONITORING_FINISHED` (magma-api.md §5 note).
    pub fn outcome(&self) -> Outcome {
        use OrderStatus::*;
        match self {
            ValidChannelOpening | ChannelMonitoringFinished => Outcome::Success,
            SellerRejected
            | SellerFailedToReact
            | BuyerRejected
            | BuyerFailedToPay
            | SellerFailedToOpenChannel
            | SellerFailedToSendSwap
            | InvalidChannelOpening
            | AdminClosed => Outcome::Failure,
            _ => Outcome::InFlight,
        }
    }

    /// The funding transaction is on chain: the guide slows polling to every 45 s.
    pub fn is_on_chain(&self) -> bool {
        matches!(
            self,
            OrderStatus::SellerSentTransaction | OrderStatus::WaitingForOnChainConfirmation
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seventeen_statuses_round_trip() {
        assert_eq!(OrderStatus::KNOWN.len(), 17);
        for s in OrderStatus::KNOWN {
            assert_eq!(&OrderStatus::parse(s.as_str()), s);
        }
        for s in PaymentStatus::KNOWN {
            assert_eq!(&PaymentStatus::parse(s.as_str()), s);
        }
    }

    #[test]
    fn terminal_sets_match_the_guide() {
        let success: Vec<_> = OrderStatus::KNOWN
            .iter()
            .filter(|s| s.outcome() == Outcome::Success)
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            success,
            ["VALID_CHANNEL_OPENING", "CHANNEL_MONITORING_FINISHED"]
        );
        let failure: Vec<_> = OrderStatus::KNOWN
            .iter()
            .filter(|s| s.outcome() == Outcome::Failure)
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            failure,
            [
                "SELLER_REJECTED",
                "SELLER_FAILED_TO_REACT",
                "BUYER_REJECTED",
                "BUYER_FAILED_TO_PAY",
                "SELLER_FAILED_TO_OPEN_CHANNEL",
                "SELLER_FAILED_TO_SEND_SWAP",
                "INVALID_CHANNEL_OPENING",
                "ADMIN_CLOSED",
            ]
        );
    }

    #[test]
    fn unknown_status_is_kept_and_in_flight() {
        let s: OrderStatus = serde_json::from_str("\"SELLER_PONDERING\"").unwrap();
        assert_eq!(s, OrderStatus::Unknown("SELLER_PONDERING".into()));
        assert_eq!(s.outcome(), Outcome::InFlight);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"SELLER_PONDERING\"");
    }
}
