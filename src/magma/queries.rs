//! The GraphQL documents the client sends. Selection sets are exactly the documented ones
//! (magma-api.md §4, the integration guide): selecting a field the service does not have fails
//! validation on every call, so nothing speculative goes in here.

pub const PRICE: &str =
    "query LiquidityPerUsd { market { liquidity { liquidity_per_usd { sats usd } } } }";

pub const BUY: &str = "mutation BuyLiquidity($input: LiquidityOrderInput!) { liquidity { buy(input: $input) { account { id session_key } order { transaction_id usd_cents } payment { lightning_invoice redirect_url amount { sats } } } } }";

pub const GET_ORDER: &str = "query GetOrder($orderId: String!) { user { market { orders { get_order(order_id: $orderId) { id status payment_status channel_id transaction_id timeout blocks_until_can_be_closed confirmations { confirmations } fees { buyer { sats usd } } } } } } }";

pub const TRANSACTION_LIST: &str = "query Reconcile($page: PageInput) { user { transactions { transaction_list(page: $page) { list { id status created_at } } } } }";

/// Only for an order whose buy answer was lost: `payment { lightning { invoice } }` is seen in
/// Amboss's own ThunderHub (magma-api.md §4.3 [AMB]) but is not in the documented selection, so
/// it is asked separately and a validation error just means the invoice cannot be recovered.
pub const ORDER_INVOICE: &str = "query OrderInvoice($orderId: String!) { user { market { orders { get_order(order_id: $orderId) { id payment { lightning { invoice } } } } } } }";
