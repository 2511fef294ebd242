//! The GraphQL documents the client sends. Selection sets are exactly the documented ones
//! (magma-api.md §4, the integration guide): selecting a field the service does not have fails
//! validation on every call, so nothing speculative goes in here.

pub const PRICE: &str =
    "query LiquidityPerUsd { market { liquidity { liquidity_per_usd { sats usd } } } }";

pub const BUY: &str = "mutation BuyLiquidity($input: LiquidityOrderInput!) { liquidity { buy(input: $input) { account { id session_key } order { transaction_id usd_cents } payment { lightning_invoice redirect_url amount { sats } } } } }";

pub const GET_ORDER: &str = "query GetOrder($orderId: String!) { user { market { orders { get_order(order_id: $orderId) { id status payment_status channel_id transaction_id timeout blocks_until_can_be_closed confirmations { confirmations } fees { buyer { sats usd } } } } } } }";

pub const TRANSACTION_LIST: &str = "query Reconcile($page: PageInput) { user { transactions { transaction_list(page: $page) { list { id status created_at } } } } }";
