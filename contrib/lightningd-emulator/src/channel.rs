//! Channels of the node model and their `listpeerchannels` / `listfunds` JSON
//! (shapes from fixtures/cln/listpeerchannels.*.json and listfunds.with-channels.json).

use crate::util::{fake_hash_hex, iso8601_now};
use serde_json::{Map, Value, json};

/// Commitment fee the opener pays (anchors, feerate 3750 perkw), as seen in the fixtures:
/// 1 000 000 000 msat − 1 % reserve − 11 282 000 = 978 718 000 spendable.
pub const COMMIT_FEE_ALLOWANCE_MSAT: u64 = 11_282_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Openingd,
    AwaitingLockin,
    Normal,
    ShuttingDown,
    ClosingdSigexchange,
    ClosingdComplete,
    AwaitingUnilateral,
    FundingSpendSeen,
    Onchain,
}

impl ChannelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Openingd => "OPENINGD",
            ChannelState::AwaitingLockin => "CHANNELD_AWAITING_LOCKIN",
            ChannelState::Normal => "CHANNELD_NORMAL",
            ChannelState::ShuttingDown => "CHANNELD_SHUTTING_DOWN",
            ChannelState::ClosingdSigexchange => "CLOSINGD_SIGEXCHANGE",
            ChannelState::ClosingdComplete => "CLOSINGD_COMPLETE",
            ChannelState::AwaitingUnilateral => "AWAITING_UNILATERAL",
            ChannelState::FundingSpendSeen => "FUNDING_SPEND_SEEN",
            ChannelState::Onchain => "ONCHAIN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    Local,
    Remote,
}

impl Opener {
    pub fn as_str(self) -> &'static str {
        match self {
            Opener::Local => "local",
            Opener::Remote => "remote",
        }
    }

    /// The `cause` lightningd reports for state changes of channels this side opened.
    pub fn cause(self) -> &'static str {
        match self {
            Opener::Local => "user",
            Opener::Remote => "remote",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateChange {
    pub timestamp: String,
    pub old_state: ChannelState,
    pub new_state: ChannelState,
    pub cause: String,
    pub message: String,
}

/// An HTLC we offered and the payee has not resolved yet.
#[derive(Debug, Clone, PartialEq)]
pub struct OutHtlc {
    pub id: u64,
    pub payment_hash: String,
    pub amount_msat: u64,
    pub expiry: u32,
}

/// How to add a channel to the node.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub peer_id: String,
    pub opener: Opener,
    pub total_msat: u64,
    pub to_us_msat: u64,
    pub state: ChannelState,
    pub peer_connected: bool,
    pub private: bool,
    /// Defaults to a deterministic fake txid.
    pub funding_txid: Option<String>,
    /// Defaults to the BOLT 2 channel id of the funding outpoint.
    pub channel_id: Option<String>,
    /// Blocks needed for lockin; defaults to the node's `funding_confirms`.
    pub confirmations_required: Option<u32>,
    /// Overrides of the derived amounts.
    pub spendable_msat: Option<u64>,
    pub receivable_msat: Option<u64>,
}

impl ChannelSpec {
    /// A channel the remote side opened with all funds on its side (bought inbound liquidity).
    pub fn remote_opened(peer_id: &str, total_msat: u64) -> Self {
        ChannelSpec {
            peer_id: peer_id.to_string(),
            opener: Opener::Remote,
            total_msat,
            to_us_msat: 0,
            state: ChannelState::AwaitingLockin,
            peer_connected: true,
            private: false,
            funding_txid: None,
            channel_id: None,
            confirmations_required: None,
            spendable_msat: None,
            receivable_msat: None,
        }
    }

    /// A channel we opened with all funds on our side.
    pub fn local_opened(peer_id: &str, total_msat: u64) -> Self {
        ChannelSpec {
            opener: Opener::Local,
            to_us_msat: total_msat,
            ..Self::remote_opened(peer_id, total_msat)
        }
    }

    pub fn state(mut self, s: ChannelState) -> Self {
        self.state = s;
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub peer_id: String,
    pub peer_connected: bool,
    pub state: ChannelState,
    pub opener: Opener,
    pub channel_id: String,
    pub funding_txid: String,
    pub funding_outnum: u32,
    /// Height of the block holding the funding transaction, once mined.
    pub funding_height: Option<u32>,
    pub confirmations_required: u32,
    /// Confirmations at the node's tip (kept up to date by the node model).
    pub confirmations: u32,
    pub short_channel_id: Option<String>,
    pub total_msat: u64,
    pub to_us_msat: u64,
    pub private: bool,
    pub spendable_override: Option<u64>,
    pub receivable_override: Option<u64>,
    pub htlcs_out: Vec<OutHtlc>,
    pub state_changes: Vec<StateChange>,
    pub alias_local: String,
    pub alias_remote: String,
    pub out_payments_fulfilled: u64,
    pub out_fulfilled_msat: u64,
    pub out_payments_offered: u64,
    pub out_offered_msat: u64,
}

impl Channel {
    pub fn from_spec(spec: ChannelSpec, default_confirms: u32, height: u32) -> Channel {
        let funding_txid = spec.funding_txid.unwrap_or_else(|| {
            fake_hash_hex(&format!(
                "funding:{}:{height}:{}",
                spec.peer_id, spec.total_msat
            ))
        });
        let channel_id = spec
            .channel_id
            .unwrap_or_else(|| crate::util::channel_id_for(&funding_txid, 0));
        let alias = |tag: &str| {
            let h = crate::util::sha256(format!("{tag}{channel_id}").as_bytes());
            format!(
                "{}x{}x{}",
                u32::from_be_bytes([0, h[0], h[1], h[2]]),
                u32::from_be_bytes([0, h[3], h[4], h[5]]),
                u16::from_be_bytes([h[6], h[7]])
            )
        };
        let normal =
            spec.state != ChannelState::AwaitingLockin && spec.state != ChannelState::Openingd;
        let funding_height = normal.then(|| height.saturating_sub(6).max(1));
        Channel {
            peer_id: spec.peer_id,
            peer_connected: spec.peer_connected,
            state: spec.state,
            opener: spec.opener,
            alias_local: alias("local"),
            alias_remote: alias("remote"),
            channel_id,
            funding_txid,
            funding_outnum: 0,
            funding_height,
            confirmations_required: spec.confirmations_required.unwrap_or(default_confirms),
            confirmations: funding_height
                .map(|h| height.saturating_sub(h) + 1)
                .unwrap_or(0),
            short_channel_id: funding_height.map(|h| format!("{h}x1x0")),
            total_msat: spec.total_msat,
            to_us_msat: spec.to_us_msat.min(spec.total_msat),
            private: spec.private,
            spendable_override: spec.spendable_msat,
            receivable_override: spec.receivable_msat,
            htlcs_out: vec![],
            state_changes: vec![],
            out_payments_fulfilled: 0,
            out_fulfilled_msat: 0,
            out_payments_offered: 0,
            out_offered_msat: 0,
        }
    }

    pub fn reserve_msat(&self) -> u64 {
        self.total_msat / 100
    }

    pub fn in_flight_out_msat(&self) -> u64 {
        self.htlcs_out.iter().map(|h| h.amount_msat).sum()
    }

    /// What we can still send: our balance above our reserve, less the commitment fee if we
    /// opened, less HTLCs in flight.
    pub fn spendable_msat(&self) -> u64 {
        let base = self.spendable_override.unwrap_or_else(|| {
            let fee = if self.opener == Opener::Local {
                COMMIT_FEE_ALLOWANCE_MSAT
            } else {
                0
            };
            self.to_us_msat
                .saturating_sub(self.reserve_msat())
                .saturating_sub(fee)
        });
        base.saturating_sub(self.in_flight_out_msat())
    }

    /// What we can still receive: the peer's balance above its reserve, less the commitment fee
    /// if it opened.
    pub fn receivable_msat(&self) -> u64 {
        self.receivable_override.unwrap_or_else(|| {
            let fee = if self.opener == Opener::Remote {
                COMMIT_FEE_ALLOWANCE_MSAT
            } else {
                0
            };
            self.total_msat
                .saturating_sub(self.to_us_msat)
                .saturating_sub(self.reserve_msat())
                .saturating_sub(fee)
        })
    }

    /// Records a state change and returns the `channel_state_changed` notification params.
    pub fn change_state(&mut self, new_state: ChannelState, cause: &str, message: &str) -> Value {
        let old = self.state;
        let timestamp = iso8601_now();
        self.state = new_state;
        self.state_changes.push(StateChange {
            timestamp: timestamp.clone(),
            old_state: old,
            new_state,
            cause: cause.to_string(),
            message: message.to_string(),
        });
        let mut n = Map::new();
        n.insert("peer_id".into(), json!(self.peer_id));
        n.insert("channel_id".into(), json!(self.channel_id));
        if let Some(s) = &self.short_channel_id {
            n.insert("short_channel_id".into(), json!(s));
        }
        n.insert("timestamp".into(), json!(timestamp));
        n.insert("old_state".into(), json!(old.as_str()));
        n.insert("new_state".into(), json!(new_state.as_str()));
        n.insert("cause".into(), json!(cause));
        n.insert("message".into(), json!(message));
        json!({ "channel_state_changed": n })
    }

    /// The notification for a channel just opened (no `old_state`, as in the fixture).
    pub fn opened_notification(&self, cause: &str) -> Value {
        json!({"channel_state_changed": {
            "peer_id": self.peer_id,
            "channel_id": self.channel_id,
            "timestamp": iso8601_now(),
            "new_state": self.state.as_str(),
            "cause": cause,
            "message": "new channel opened",
        }})
    }

    fn is_locked_in(&self) -> bool {
        !matches!(
            self.state,
            ChannelState::AwaitingLockin | ChannelState::Openingd
        )
    }

    fn updates_side(&self) -> Value {
        json!({
            "htlc_minimum_msat": 0,
            "htlc_maximum_msat": self.max_htlc_msat(),
            "cltv_expiry_delta": 6,
            "fee_base_msat": 1,
            "fee_proportional_millionths": 10,
        })
    }

    fn max_htlc_msat(&self) -> u64 {
        self.total_msat / 100 * 99
    }

    /// One entry of `listpeerchannels`.
    pub fn to_listpeerchannels(&self, our_id: &str) -> Value {
        let locked = self.is_locked_in();
        let mut m = Map::new();
        m.insert("peer_id".into(), json!(self.peer_id));
        m.insert("peer_connected".into(), json!(self.peer_connected));
        if self.peer_connected {
            m.insert("reestablished".into(), json!(true));
        }
        m.insert(
            "channel_type".into(),
            json!({"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]}),
        );
        m.insert("ignore_fee_limits".into(), json!(true));
        let mut updates = Map::new();
        updates.insert("local".into(), self.updates_side());
        if locked {
            updates.insert("remote".into(), self.updates_side());
        }
        m.insert("updates".into(), Value::Object(updates));
        m.insert("state".into(), json!(self.state.as_str()));
        m.insert(
            "scratch_txid".into(),
            json!(fake_hash_hex(&format!("scratch:{}", self.channel_id))),
        );
        m.insert("last_tx_fee_msat".into(), json!(4_545_000u64));
        m.insert("lost_state".into(), json!(false));
        m.insert("feerate".into(), json!({"perkw": 3750, "perkb": 15000}));
        if self.peer_connected {
            m.insert("owner".into(), json!("channeld"));
        }
        if let Some(s) = &self.short_channel_id {
            m.insert("short_channel_id".into(), json!(s));
        }
        m.insert(
            "direction".into(),
            json!(if our_id < self.peer_id.as_str() { 0 } else { 1 }),
        );
        m.insert("channel_id".into(), json!(self.channel_id));
        m.insert("funding_txid".into(), json!(self.funding_txid));
        m.insert("funding_outnum".into(), json!(self.funding_outnum));
        let close_to_hash = fake_hash_hex(&format!("close:{}", self.channel_id));
        m.insert(
            "close_to_addr".into(),
            json!(format!("bcrt1p{}", &close_to_hash[..58])),
        );
        m.insert("close_to".into(), json!(format!("5120{close_to_hash}")));
        m.insert("private".into(), json!(self.private));
        m.insert("opener".into(), json!(self.opener.as_str()));
        let mut alias = Map::new();
        alias.insert("local".into(), json!(self.alias_local));
        if locked {
            alias.insert("remote".into(), json!(self.alias_remote));
        }
        m.insert("alias".into(), Value::Object(alias));
        m.insert(
            "features".into(),
            json!(["option_static_remotekey", "option_anchors"]),
        );
        let (local_funds, remote_funds) = match self.opener {
            Opener::Local => (self.total_msat, 0),
            Opener::Remote => (0, self.total_msat),
        };
        let mut funding = Map::new();
        funding.insert("local_funds_msat".into(), json!(local_funds));
        funding.insert("remote_funds_msat".into(), json!(remote_funds));
        funding.insert("pushed_msat".into(), json!(0));
        if self.opener == Opener::Local {
            funding.insert(
                "psbt".into(),
                json!("cHNidP8BAgQCAAAAAQMEZgAAAAEEAQABBQEAAQYBAwH7BAIAAAAA"),
            );
        }
        funding.insert("withheld".into(), json!(false));
        m.insert("funding".into(), Value::Object(funding));
        m.insert("to_us_msat".into(), json!(self.to_us_msat));
        let after_htlcs = self.to_us_msat.saturating_sub(self.in_flight_out_msat());
        m.insert("min_to_us_msat".into(), json!(after_htlcs));
        m.insert("max_to_us_msat".into(), json!(self.to_us_msat));
        m.insert("total_msat".into(), json!(self.total_msat));
        m.insert("fee_base_msat".into(), json!(1));
        m.insert("fee_proportional_millionths".into(), json!(10));
        m.insert("dust_limit_msat".into(), json!(546_000));
        m.insert(
            "their_max_htlc_value_in_flight_msat".into(),
            json!(u64::MAX),
        );
        m.insert("our_max_htlc_value_in_flight_msat".into(), json!(u64::MAX));
        m.insert("their_reserve_msat".into(), json!(self.reserve_msat()));
        m.insert("our_reserve_msat".into(), json!(self.reserve_msat()));
        m.insert("spendable_msat".into(), json!(self.spendable_msat()));
        m.insert("receivable_msat".into(), json!(self.receivable_msat()));
        m.insert("minimum_htlc_in_msat".into(), json!(0));
        m.insert("minimum_htlc_out_msat".into(), json!(0));
        m.insert("maximum_htlc_out_msat".into(), json!(self.max_htlc_msat()));
        m.insert("their_to_self_delay".into(), json!(5));
        m.insert("our_to_self_delay".into(), json!(5));
        m.insert("max_accepted_htlcs".into(), json!(483));
        m.insert(
            "state_changes".into(),
            Value::Array(
                self.state_changes
                    .iter()
                    .map(|c| {
                        json!({
                            "timestamp": c.timestamp,
                            "old_state": c.old_state.as_str(),
                            "new_state": c.new_state.as_str(),
                            "cause": c.cause,
                            "message": c.message,
                        })
                    })
                    .collect(),
            ),
        );
        m.insert("status".into(), json!([self.status_line()]));
        m.insert("in_payments_offered".into(), json!(0));
        m.insert("in_offered_msat".into(), json!(0));
        m.insert("in_payments_fulfilled".into(), json!(0));
        m.insert("in_fulfilled_msat".into(), json!(0));
        m.insert(
            "out_payments_offered".into(),
            json!(self.out_payments_offered),
        );
        m.insert("out_offered_msat".into(), json!(self.out_offered_msat));
        m.insert(
            "out_payments_fulfilled".into(),
            json!(self.out_payments_fulfilled),
        );
        m.insert("out_fulfilled_msat".into(), json!(self.out_fulfilled_msat));
        m.insert(
            "htlcs".into(),
            Value::Array(
                self.htlcs_out
                    .iter()
                    .map(|h| {
                        json!({
                            "direction": "out",
                            "id": h.id,
                            "amount_msat": h.amount_msat,
                            "expiry": h.expiry,
                            "payment_hash": h.payment_hash,
                            "state": "SENT_ADD_ACK_REVOCATION",
                        })
                    })
                    .collect(),
            ),
        );
        Value::Object(m)
    }

    fn status_line(&self) -> String {
        match self.state {
            ChannelState::AwaitingLockin => {
                let have = self.confirmations;
                let need = self.confirmations_required.saturating_sub(have).max(1);
                format!(
                    "CHANNELD_AWAITING_LOCKIN:Funding needs {need} more confirmations to be ready."
                )
            }
            ChannelState::Normal if !self.peer_connected => {
                "CHANNELD_NORMAL:Peer is not connected.".to_string()
            }
            ChannelState::Normal => "CHANNELD_NORMAL:Channel ready for use.".to_string(),
            s => format!("{}:", s.as_str()),
        }
    }

    /// Confirmations of the funding transaction at the given tip.
    pub fn confirmations_at(&self, height: u32) -> u32 {
        self.funding_height
            .map(|h| height.saturating_sub(h) + 1)
            .unwrap_or(0)
    }

    /// One entry of `listfunds.channels`.
    pub fn to_listfunds(&self) -> Value {
        let mut m = Map::new();
        m.insert("peer_id".into(), json!(self.peer_id));
        m.insert("connected".into(), json!(self.peer_connected));
        m.insert("state".into(), json!(self.state.as_str()));
        m.insert("channel_id".into(), json!(self.channel_id));
        if let Some(s) = &self.short_channel_id {
            m.insert("short_channel_id".into(), json!(s));
        }
        m.insert("our_amount_msat".into(), json!(self.to_us_msat));
        m.insert("amount_msat".into(), json!(self.total_msat));
        m.insert("funding_txid".into(), json!(self.funding_txid));
        m.insert("funding_output".into(), json!(self.funding_outnum));
        Value::Object(m)
    }
}
