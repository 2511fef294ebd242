//! The admin HTTP API under `/admin/…`: JSON in, JSON out, errors as `{"error": "..."}`.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

use crate::clock::iso8601;
use crate::faults::{Fault, Operation};
use crate::invoice::InvoiceFault;
use crate::model::SellerScript;
use crate::sim::Sim;

pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route("/info", get(info))
        .route("/orders", get(orders))
        .route("/orders/{id}", get(order))
        .route("/orders/{id}/seller", post(order_seller))
        .route("/orders/{id}/status", post(order_status))
        .route("/advance", post(advance))
        .route("/mine", post(mine))
        .route("/htlc/{hash}", get(htlc))
        .route("/htlc/{hash}/{action}", post(htlc_action))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/invoice-faults", post(add_invoice_fault))
        .route("/price", post(price))
        .route("/seller", post(default_seller))
        .route("/requests", get(requests))
}

/// An admin error: a 4xx status and a message.
struct AdminError(StatusCode, String);

impl AdminError {
    fn bad_request(message: impl Into<String>) -> AdminError {
        AdminError(StatusCode::BAD_REQUEST, message.into())
    }

    fn not_found(message: impl Into<String>) -> AdminError {
        AdminError(StatusCode::NOT_FOUND, message.into())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

type AdminResult = Result<axum::Json<Json>, AdminError>;

fn ok(value: impl serde::Serialize) -> AdminResult {
    serde_json::to_value(value)
        .map(axum::Json)
        .map_err(|e| AdminError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body).map_err(|e| AdminError::bad_request(format!("invalid body: {e}")))
}

fn info_json(sim: &Sim) -> Json {
    sim.with_state(|s| {
        json!({
            "network": s.cfg.network,
            "node_pubkey": s.node.pubkey_hex(),
            "block_height": s.clock.height(),
            "now": s.clock.now(),
            "now_iso": iso8601(s.clock.now()),
            "default_seller": s.cfg.default_seller,
            "price": { "sats": s.price.sats, "usd": s.price.usd },
            "orders": s.orders.len(),
        })
    })
}

async fn info(State(sim): State<Sim>) -> AdminResult {
    Ok(axum::Json(info_json(&sim)))
}

async fn orders(State(sim): State<Sim>) -> AdminResult {
    ok(sim.orders())
}

fn order_json(sim: &Sim, id: &str) -> AdminResult {
    match sim.order(id) {
        Some(order) => ok(order),
        None => Err(AdminError::not_found(format!("unknown order {id}"))),
    }
}

async fn order(State(sim): State<Sim>, Path(id): Path<String>) -> AdminResult {
    order_json(&sim, &id)
}

#[derive(Deserialize)]
struct SellerBody {
    seller: String,
}

fn parse_seller(name: &str) -> Result<SellerScript, AdminError> {
    SellerScript::parse_lenient(name).map_err(AdminError::bad_request)
}

async fn order_seller(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> AdminResult {
    let body: SellerBody = parse(&body)?;
    let script = parse_seller(&body.seller)?;
    sim.set_seller(&id, script)
        .map_err(|e| AdminError::not_found(e.to_string()))?;
    order_json(&sim, &id)
}

#[derive(Deserialize)]
struct StatusBody {
    status: String,
}

async fn order_status(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> AdminResult {
    let body: StatusBody = parse(&body)?;
    if sim.order(&id).is_none() {
        return Err(AdminError::not_found(format!("unknown order {id}")));
    }
    sim.force_status(&id, &body.status)
        .map_err(|e| AdminError::bad_request(e.to_string()))?;
    order_json(&sim, &id)
}

#[derive(Deserialize)]
struct AdvanceBody {
    seconds: f64,
}

async fn advance(State(sim): State<Sim>, body: Bytes) -> AdminResult {
    let body: AdvanceBody = parse(&body)?;
    let d = Duration::try_from_secs_f64(body.seconds)
        .map_err(|_| AdminError::bad_request("seconds must be a non-negative number of seconds"))?;
    sim.advance(d);
    Ok(axum::Json(info_json(&sim)))
}

#[derive(Deserialize)]
struct MineBody {
    blocks: u32,
}

async fn mine(State(sim): State<Sim>, body: Bytes) -> AdminResult {
    let body: MineBody = parse(&body)?;
    sim.mine_blocks(body.blocks);
    Ok(axum::Json(info_json(&sim)))
}

async fn htlc(State(sim): State<Sim>, Path(hash): Path<String>) -> AdminResult {
    match sim.htlc_state(&hash) {
        Some(state) => ok(json!({ "payment_hash": hash, "htlc": state })),
        None => Err(AdminError::not_found(format!(
            "unknown payment hash {hash}"
        ))),
    }
}

async fn htlc_action(
    State(sim): State<Sim>,
    Path((hash, action)): Path<(String, String)>,
) -> AdminResult {
    if sim.htlc_state(&hash).is_none() {
        return Err(AdminError::not_found(format!(
            "unknown payment hash {hash}"
        )));
    }
    let result = match action.as_str() {
        "held" => sim.htlc_held(&hash),
        "settle" => sim.settle(&hash),
        "cancel" => sim.cancel(&hash),
        other => {
            return Err(AdminError::not_found(format!(
                "unknown HTLC action `{other}` (expected held, settle or cancel)"
            )));
        }
    };
    let state = result.map_err(|e| AdminError(StatusCode::CONFLICT, e.to_string()))?;
    ok(json!({ "payment_hash": hash, "htlc": state }))
}

#[derive(Deserialize)]
struct FaultBody {
    operation: Operation,
    fault: Fault,
    count: Option<u32>,
}

async fn add_fault(State(sim): State<Sim>, body: Bytes) -> AdminResult {
    let body: FaultBody = parse(&body)?;
    sim.inject_fault(body.operation, body.fault, body.count);
    ok(json!({ "ok": true }))
}

async fn clear_faults(State(sim): State<Sim>) -> AdminResult {
    sim.clear_faults();
    ok(json!({ "ok": true }))
}

#[derive(Deserialize)]
struct InvoiceFaultBody {
    fault: InvoiceFault,
    count: Option<u32>,
}

async fn add_invoice_fault(State(sim): State<Sim>, body: Bytes) -> AdminResult {
    let body: InvoiceFaultBody = parse(&body)?;
    sim.inject_invoice_fault(body.fault, body.count);
    ok(json!({ "ok": true }))
}

#[derive(Deserialize)]
struct PriceBody {
    sats: String,
    usd: String,
}

async fn price(State(sim): State<Sim>, body: Bytes) -> AdminResult {
    let body: PriceBody = parse(&body)?;
    sim.set_price(&body.sats, &body.usd)
        .map_err(|e| AdminError::bad_request(format!("{e:#}")))?;
    Ok(axum::Json(info_json(&sim)))
}

async fn default_seller(State(sim): State<Sim>, body: Bytes) -> AdminResult {
    let body: SellerBody = parse(&body)?;
    sim.set_default_seller(parse_seller(&body.seller)?);
    Ok(axum::Json(info_json(&sim)))
}

async fn requests(State(sim): State<Sim>) -> AdminResult {
    ok(sim.request_log())
}
