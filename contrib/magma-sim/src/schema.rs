//! The typed GraphQL schema of the buyer API: field names, nullability and string-typed
//! amounts as documented, so that selecting an unknown field fails validation.

use std::borrow::Cow;
use std::marker::PhantomData;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, EmptySubscription, Enum, ErrorExtensions, InputObject, Name,
    Object, OutputType, Positioned, Schema, ServerResult, SimpleObject, Value,
};

use crate::accounts::Caller;
use crate::apollo::ApolloErrors;
use crate::buy::{BuyReceipt, BuyRequest};
use crate::clock::iso8601;
use crate::error::ApiError;
use crate::model::{HtlcState, OrderStatus, PaymentStatus};
use crate::order::OrderSnapshot;
use crate::pricing::{Price, format_btc};
use crate::sim::Sim;

pub(crate) type SimSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

pub(crate) fn build_schema(sim: Sim) -> SimSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(sim)
        .disable_suggestions()
        .extension(ApolloErrors)
        .finish()
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        async_graphql::Error::new(e.message).extend_with(|_, ext| ext.set("code", e.code))
    }
}

fn sim<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Sim> {
    ctx.data::<Sim>()
}

fn caller(ctx: &Context<'_>) -> Caller {
    ctx.data_opt::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous)
}

fn to_int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Enums

/// `MarketOrderStatus` (used as an input type, and as the registered type of status outputs).
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
#[graphql(name = "MarketOrderStatus", display)]
pub(crate) enum MarketOrderStatus {
    WaitingForSellerApproval,
    WaitingForBuyerPayment,
    WaitingForChannelOpen,
    SellerSentTransaction,
    WaitingForOnChainConfirmation,
    OnChainConfirmation,
    SellerOpenedChannel,
    ValidChannelOpening,
    ChannelMonitoringFinished,
    SellerRejected,
    SellerFailedToReact,
    BuyerRejected,
    BuyerFailedToPay,
    SellerFailedToOpenChannel,
    SellerFailedToSendSwap,
    InvalidChannelOpening,
    AdminClosed,
}

/// `MarketOrderPaymentStatus`.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
#[graphql(name = "MarketOrderPaymentStatus")]
pub(crate) enum MarketOrderPaymentStatus {
    PendingPayment,
    SuccessfulPayment,
    PaymentFailed,
    PaymentRejectedByDestination,
    InvalidPaymentSecret,
    HodlInvoiceTimeout,
    SellerInvoiceExpired,
}

/// An enum value output by name, typed as the GraphQL enum `G`. This lets a status forced to
/// an undocumented value reach the wire, as a new server-side status would.
pub(crate) struct EnumValueOf<G> {
    name: String,
    _type: PhantomData<fn() -> G>,
}

impl<G> EnumValueOf<G> {
    fn new(name: &str) -> Self {
        EnumValueOf {
            name: name.to_string(),
            _type: PhantomData,
        }
    }
}

impl<G: OutputType> OutputType for EnumValueOf<G> {
    fn type_name() -> Cow<'static, str> {
        G::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        G::create_type_info(registry)
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        Ok(Value::Enum(Name::new(&self.name)))
    }
}

type StatusValue = EnumValueOf<MarketOrderStatus>;
type PaymentStatusValue = EnumValueOf<MarketOrderPaymentStatus>;

fn status_value(s: &OrderStatus) -> StatusValue {
    EnumValueOf::new(s.as_str())
}

fn payment_status_value(s: PaymentStatus) -> PaymentStatusValue {
    EnumValueOf::new(s.as_str())
}

// ---------------------------------------------------------------------------------------------
// Query

pub(crate) struct QueryRoot;

#[Object(
    name = "Query",
    rename_fields = "snake_case",
    rename_args = "snake_case"
)]
impl QueryRoot {
    /// Public market data.
    async fn market(&self) -> Market {
        Market
    }

    /// The caller's account (API key or session key required).
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        match caller(ctx) {
            Caller::Account { id, .. } => Ok(User { account_id: id }),
            _ => Err(ApiError::unauthorized().into()),
        }
    }
}

pub(crate) struct Market;

#[Object(rename_fields = "snake_case")]
impl Market {
    async fn liquidity(&self) -> MarketLiquidity {
        MarketLiquidity
    }
}

pub(crate) struct MarketLiquidity;

#[Object(rename_fields = "snake_case")]
impl MarketLiquidity {
    /// Inbound sats and USD of capacity per USD spent.
    async fn liquidity_per_usd(&self, ctx: &Context<'_>) -> async_graphql::Result<LiquidityPerUsd> {
        let (sats, usd) = sim(ctx)?.with_state(|s| (s.price.sats.clone(), s.price.usd.clone()));
        Ok(LiquidityPerUsd { sats, usd })
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct LiquidityPerUsd {
    sats: String,
    usd: String,
}

pub(crate) struct User {
    account_id: String,
}

#[Object(rename_fields = "snake_case")]
impl User {
    async fn id(&self) -> &str {
        &self.account_id
    }

    async fn email(&self) -> Option<String> {
        None
    }

    async fn market(&self) -> UserMarket {
        UserMarket {
            account_id: self.account_id.clone(),
        }
    }

    async fn transactions(&self) -> UserTransactions {
        UserTransactions {
            account_id: self.account_id.clone(),
        }
    }
}

pub(crate) struct UserMarket {
    account_id: String,
}

#[Object(rename_fields = "snake_case")]
impl UserMarket {
    async fn orders(&self) -> UserOrders {
        UserOrders {
            account_id: self.account_id.clone(),
        }
    }
}

#[derive(InputObject, Clone, Copy, Default)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct PageInput {
    limit: Option<i32>,
    offset: Option<i32>,
}

#[derive(InputObject, Clone, Default)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct OrderInput {
    /// Only orders to this buyer node.
    peer_pubkey: Option<String>,
    /// Only orders in one of these statuses.
    status: Option<Vec<MarketOrderStatus>>,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct Pagination {
    limit: i32,
    offset: i32,
}

const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 100;

/// `(limit, offset)`: defaults 10 and 0, limit capped at 100.
fn page_bounds(page: Option<PageInput>) -> Result<(usize, usize), ApiError> {
    let page = page.unwrap_or_default();
    let non_negative = |v: Option<i32>, default: usize| match v {
        None => Ok(default),
        Some(v) => usize::try_from(v)
            .map_err(|_| ApiError::bad_input("page limit and offset must not be negative")),
    };
    let limit = non_negative(page.limit, DEFAULT_LIMIT)?.min(MAX_LIMIT);
    let offset = non_negative(page.offset, 0)?;
    Ok((limit, offset))
}

fn pagination(limit: usize, offset: usize) -> Pagination {
    Pagination {
        limit: i32::try_from(limit).unwrap_or(i32::MAX),
        offset: i32::try_from(offset).unwrap_or(i32::MAX),
    }
}

fn total(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(crate) struct UserOrders {
    account_id: String,
}

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl UserOrders {
    /// One of the caller's orders.
    async fn get_order(
        &self,
        ctx: &Context<'_>,
        order_id: String,
    ) -> async_graphql::Result<MarketOrder> {
        let order = sim(ctx)?.with_state(|s| {
            s.owned_order(&self.account_id, &order_id)
                .map(|o| MarketOrder::new(&o.view, &s.price, &s.node.pubkey_hex()))
        })?;
        Ok(order)
    }

    /// The caller's purchases, newest first.
    async fn purchases(
        &self,
        ctx: &Context<'_>,
        page: Option<PageInput>,
        input: Option<OrderInput>,
    ) -> async_graphql::Result<MarketOrderList> {
        let (limit, offset) = page_bounds(page)?;
        let filter = input.unwrap_or_default();
        let list = sim(ctx)?.with_state(|s| {
            let seller = s.node.pubkey_hex();
            s.orders_of(&self.account_id)
                .into_iter()
                .map(|o| &o.view)
                .filter(|v| filter_matches(&filter, v))
                .map(|v| SimpleMarketOrder::new(v, &seller))
                .collect::<Vec<_>>()
        });
        Ok(MarketOrderList {
            total: total(list.len()),
            pagination: pagination(limit, offset),
            list: list.into_iter().skip(offset).take(limit).collect(),
        })
    }
}

fn filter_matches(filter: &OrderInput, v: &OrderSnapshot) -> bool {
    let peer_ok = filter
        .peer_pubkey
        .as_ref()
        .is_none_or(|p| p.eq_ignore_ascii_case(&v.destination_pubkey));
    let status_ok = filter
        .status
        .as_ref()
        .is_none_or(|list| list.iter().any(|s| s.to_string() == v.status.as_str()));
    peer_ok && status_ok
}

pub(crate) struct UserTransactions {
    account_id: String,
}

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl UserTransactions {
    /// The caller's orders as transactions, newest first.
    async fn transaction_list(
        &self,
        ctx: &Context<'_>,
        page: Option<PageInput>,
    ) -> async_graphql::Result<TransactionList> {
        let (limit, offset) = page_bounds(page)?;
        let list = sim(ctx)?.with_state(|s| {
            s.orders_of(&self.account_id)
                .into_iter()
                .map(|o| Transaction {
                    id: o.view.id.clone(),
                    status: status_value(&o.view.status),
                    created_at: iso8601(o.view.created_at),
                })
                .collect::<Vec<_>>()
        });
        Ok(TransactionList {
            total: total(list.len()),
            pagination: pagination(limit, offset),
            list: list.into_iter().skip(offset).take(limit).collect(),
        })
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct TransactionList {
    total: i32,
    pagination: Pagination,
    list: Vec<Transaction>,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct Transaction {
    id: String,
    status: StatusValue,
    created_at: String,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct MarketOrderList {
    total: i32,
    pagination: Pagination,
    list: Vec<SimpleMarketOrder>,
}

// ---------------------------------------------------------------------------------------------
// Orders

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct MarketOrder {
    id: String,
    status: StatusValue,
    payment_status: Option<PaymentStatusValue>,
    channel_id: Option<String>,
    /// The funding transaction, once the seller sent it.
    transaction_id: Option<String>,
    timeout: Option<String>,
    blocks_until_can_be_closed: Option<i32>,
    confirmations: Option<MarketOrderConfirmations>,
    fees: MarketOrderFees,
    created_at: String,
    amount: SizeValue,
    destination: MarketNode,
    source: MarketNode,
    payment: MarketOrderPayment,
    options: MarketOrderOptions,
}

impl MarketOrder {
    fn new(v: &OrderSnapshot, price: &Price, seller_pubkey: &str) -> MarketOrder {
        let pending = matches!(v.htlc, HtlcState::Unpaid | HtlcState::Held);
        MarketOrder {
            id: v.id.clone(),
            status: status_value(&v.status),
            payment_status: Some(payment_status_value(v.payment_status)),
            channel_id: v.channel_id.clone(),
            transaction_id: v.funding_txid.clone(),
            timeout: v.timeout.map(iso8601),
            blocks_until_can_be_closed: v.blocks_until_can_be_closed.map(to_int),
            confirmations: Some(MarketOrderConfirmations {
                confirmations: to_int(v.confirmations),
            }),
            fees: MarketOrderFees::new(v),
            created_at: iso8601(v.created_at),
            amount: SizeValue {
                satoshi: SatoshiValue {
                    sats: v.channel_size_sat.to_string(),
                    btc: format_btc(v.channel_size_sat),
                    usd: price.usd_of_sats(v.channel_size_sat),
                },
            },
            destination: MarketNode::buyer(v),
            source: MarketNode::seller(seller_pubkey),
            payment: MarketOrderPayment {
                lightning: LightningPayment {
                    invoice: v.invoice.clone(),
                    pending,
                },
            },
            options: MarketOrderOptions {
                private: v.private,
                rails_cluster_only: v.rails_cluster_only,
                asset_id: v.asset_id.clone(),
            },
        }
    }
}

/// A purchases list item: no transaction id, confirmations, payment or lease fields.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct SimpleMarketOrder {
    id: String,
    created_at: String,
    status: StatusValue,
    payment_status: Option<PaymentStatusValue>,
    timeout: Option<String>,
    channel_id: Option<String>,
    source: MarketNode,
    destination: MarketNode,
    amount: SimpleSizeValue,
    fees: MarketOrderFees,
}

impl SimpleMarketOrder {
    fn new(v: &OrderSnapshot, seller_pubkey: &str) -> SimpleMarketOrder {
        SimpleMarketOrder {
            id: v.id.clone(),
            created_at: iso8601(v.created_at),
            status: status_value(&v.status),
            payment_status: Some(payment_status_value(v.payment_status)),
            timeout: v.timeout.map(iso8601),
            channel_id: v.channel_id.clone(),
            source: MarketNode::seller(seller_pubkey),
            destination: MarketNode::buyer(v),
            amount: SimpleSizeValue {
                satoshi: SimpleSatoshiValue {
                    sats: v.channel_size_sat.to_string(),
                },
            },
            fees: MarketOrderFees::new(v),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct MarketOrderConfirmations {
    confirmations: i32,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct MarketOrderFees {
    buyer: FeeAmount,
    seller: FeeAmount,
}

impl MarketOrderFees {
    /// The seller's share is shown equal to the buyer's fee (the real split is unknown).
    fn new(v: &OrderSnapshot) -> MarketOrderFees {
        let fee = || FeeAmount {
            sats: v.invoice_sats.to_string(),
            usd: v.fee_usd.clone(),
        };
        MarketOrderFees {
            buyer: fee(),
            seller: fee(),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct FeeAmount {
    sats: String,
    usd: String,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct SizeValue {
    satoshi: SatoshiValue,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct SatoshiValue {
    sats: String,
    btc: String,
    usd: String,
}

/// The list item's amount has only `sats`.
#[derive(SimpleObject)]
#[graphql(name = "SimpleSizeValue", rename_fields = "snake_case")]
pub(crate) struct SimpleSizeValue {
    satoshi: SimpleSatoshiValue,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct SimpleSatoshiValue {
    sats: String,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct MarketNode {
    pubkey: String,
    alias: Option<String>,
}

impl MarketNode {
    fn buyer(v: &OrderSnapshot) -> MarketNode {
        MarketNode {
            pubkey: v.destination_pubkey.clone(),
            alias: None,
        }
    }

    fn seller(pubkey: &str) -> MarketNode {
        MarketNode {
            pubkey: pubkey.to_string(),
            alias: Some("magma-sim seller".to_string()),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct MarketOrderPayment {
    lightning: LightningPayment,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct LightningPayment {
    /// The buyer's BOLT11 invoice.
    invoice: String,
    /// The invoice is neither settled nor cancelled.
    pending: bool,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct MarketOrderOptions {
    private: bool,
    rails_cluster_only: bool,
    asset_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Mutation

pub(crate) struct MutationRoot;

#[Object(name = "Mutation", rename_fields = "snake_case")]
impl MutationRoot {
    async fn liquidity(&self) -> LiquidityMutations {
        LiquidityMutations
    }
}

pub(crate) struct LiquidityMutations;

#[derive(InputObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct LiquidityOrderInput {
    connection_uri: String,
    usd_cents: String,
    redirect_url: Option<String>,
    options: Option<LiquidityOrderOptions>,
}

#[derive(InputObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct LiquidityOrderOptions {
    private: Option<bool>,
    rails_cluster_only: Option<bool>,
    asset_id: Option<String>,
}

#[Object(rename_fields = "snake_case", rename_args = "snake_case")]
impl LiquidityMutations {
    /// Buys inbound liquidity; creates a new order on every call.
    async fn buy(
        &self,
        ctx: &Context<'_>,
        input: LiquidityOrderInput,
    ) -> async_graphql::Result<LiquidityOrder> {
        let caller = caller(ctx);
        let options = input.options;
        let request = BuyRequest {
            connection_uri: input.connection_uri,
            usd_cents: input.usd_cents,
            redirect_url: input.redirect_url,
            private: options.as_ref().and_then(|o| o.private),
            rails_cluster_only: options.as_ref().and_then(|o| o.rails_cluster_only),
            asset_id: options.and_then(|o| o.asset_id),
        };
        let receipt = sim(ctx)?.with_state(|s| s.buy(&caller, request))?;
        Ok(LiquidityOrder::from(receipt))
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct LiquidityOrder {
    account: LiquidityOrderAccount,
    order: LiquidityOrderInfo,
    payment: LiquidityOrderPayment,
}

impl From<BuyReceipt> for LiquidityOrder {
    fn from(r: BuyReceipt) -> Self {
        LiquidityOrder {
            account: LiquidityOrderAccount {
                id: r.account_id,
                session_key: r.session_key,
            },
            order: LiquidityOrderInfo {
                transaction_id: r.transaction_id,
                usd_cents: r.usd_cents.to_string(),
            },
            payment: LiquidityOrderPayment {
                lightning_invoice: Some(r.invoice),
                redirect_url: r.redirect_url,
                amount: PaymentAmount {
                    sats: r.invoice_sats.to_string(),
                },
            },
        }
    }
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct LiquidityOrderAccount {
    id: String,
    session_key: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct LiquidityOrderInfo {
    transaction_id: String,
    usd_cents: String,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct LiquidityOrderPayment {
    lightning_invoice: Option<String>,
    redirect_url: Option<String>,
    amount: PaymentAmount,
}

#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub(crate) struct PaymentAmount {
    sats: String,
}

#[cfg(test)]
mod tests {
    use async_graphql::resolver_utils::EnumType;

    use super::*;
    use crate::model::KnownStatus;

    #[test]
    fn graphql_enums_match_the_model() {
        let names: Vec<&str> = MarketOrderStatus::items().iter().map(|i| i.name).collect();
        let model: Vec<&str> = KnownStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, model);
        let names: Vec<&str> = MarketOrderPaymentStatus::items()
            .iter()
            .map(|i| i.name)
            .collect();
        let model: Vec<&str> = PaymentStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, model);
    }

    #[test]
    fn paging_defaults_and_cap() {
        assert_eq!(page_bounds(None), Ok((10, 0)));
        assert_eq!(
            page_bounds(Some(PageInput {
                limit: Some(1000),
                offset: Some(5)
            })),
            Ok((100, 5))
        );
        assert!(
            page_bounds(Some(PageInput {
                limit: Some(-1),
                offset: None
            }))
            .is_err()
        );
    }
}
