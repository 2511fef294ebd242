//! The request log: one record per GraphQL request, without secrets.

use serde::Serialize;

use crate::faults::Operation;

/// Which kind of credential a request carried (never the credential itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// No `Authorization` header.
    None,
    /// A configured API key.
    ApiKey,
    /// A session key minted by an anonymous buy.
    SessionKey,
    /// A header that is not `Bearer <known key>`.
    Invalid,
}

/// One GraphQL request as seen by the simulator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// 1, 2, 3, ... in arrival order.
    pub seq: u64,
    pub operation: Operation,
    pub credential: CredentialKind,
    /// The `order_id` argument of `get_order`, if any.
    pub order_id: Option<String>,
    /// HTTP status sent; `None` when the connection was dropped without a response.
    pub http_status: Option<u16>,
    /// The injected fault, if one applied.
    pub fault: Option<String>,
    /// Virtual unix seconds when the request arrived.
    pub virtual_time: u64,
    /// Wall-clock unix milliseconds when the request arrived.
    pub wall_time: u64,
}
