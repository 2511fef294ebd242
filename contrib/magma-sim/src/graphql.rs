//! `POST /graphql`: credential lookup, operation recognition, fault injection, execution,
//! Apollo-style HTTP statuses, and the request log.

use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_graphql::{ServerError, Value};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::accounts::Caller;
use crate::faults::{Fault, Operation};
use crate::operation::{Analysis, analyze};
use crate::request_log::RequestRecord;
use crate::server::AppState;
use crate::sim::Sim;

const MAINTENANCE_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\
<body><h1>Magma is down for maintenance</h1><p>We'll be back shortly.</p></body></html>\n";

pub(crate) async fn handle(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sim = &app.sim;
    let virtual_time = sim.now();
    let wall_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let caller = match headers.get(header::AUTHORIZATION).map(HeaderValue::to_str) {
        None => Caller::Anonymous,
        Some(Err(_)) => Caller::Invalid,
        Some(Ok(value)) => sim.with_state(|s| s.resolve_caller(Some(value))),
    };
    let mut record = RequestRecord {
        seq: 0,
        operation: Operation::Other,
        credential: caller.credential_kind(),
        order_id: None,
        http_status: None,
        fault: None,
        virtual_time,
        wall_time,
    };

    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let body = error_body(&format!("invalid request body: {e}"), "BAD_REQUEST");
            return finish(sim, record, json_response(StatusCode::BAD_REQUEST, body));
        }
    };
    let Analysis {
        operation,
        order_id,
        variable_error,
    } = analyze(
        &request.query,
        request.operation_name.as_deref(),
        &request.variables,
    );
    record.operation = operation;
    record.order_id = order_id;
    let fault = sim.with_state(|s| s.faults.take(&operation));
    record.fault = fault.as_ref().map(Fault::label);

    if let Some(response) = fault.as_ref().and_then(refuse) {
        return finish(sim, record, response);
    }
    if let Some(message) = variable_error {
        let body = error_body(&message, "BAD_USER_INPUT");
        return finish(sim, record, json_response(StatusCode::BAD_REQUEST, body));
    }

    let response = app.schema.execute(request.data(caller)).await;
    let (status, mut body) = render(response);
    match fault {
        Some(Fault::Slow { delay_ms }) => {
            // Record before waiting: a client that gives up closes the connection, and axum then
            // drops this future, so nothing after the sleep would run.
            let response = finish(sim, record, json_response(status, body));
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            return response;
        }
        Some(Fault::UnknownStatus(status)) => {
            if let Some(data) = body.data.as_mut() {
                rewrite_statuses(data, &status);
            }
        }
        Some(Fault::DropAfterCommit) => {
            log::info!("graphql {operation}: executed, dropping the connection (fault)");
            sim.with_state(|s| s.record_request(record));
            return dropped_connection();
        }
        _ => {}
    }
    finish(sim, record, json_response(status, body))
}

/// Logs the request with the status of `response` and passes the response on.
fn finish(sim: &Sim, mut record: RequestRecord, response: Response) -> Response {
    let status = response.status().as_u16();
    record.http_status = Some(status);
    log::info!(
        "graphql {} ({:?}) → {status}{}",
        record.operation,
        record.credential,
        record
            .fault
            .as_ref()
            .map(|f| format!(" [fault {f}]"))
            .unwrap_or_default()
    );
    sim.with_state(|s| s.record_request(record));
    response
}

/// The response of a fault that refuses the request without executing it.
fn refuse(fault: &Fault) -> Option<Response> {
    let response = match fault {
        Fault::Http500 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Internal Server Error\n",
        )
            .into_response(),
        Fault::RateLimited { retry_after_secs } => {
            let mut response = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                error_body("Too many requests, please slow down", "RATE_LIMITED"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            response
        }
        Fault::NonJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            MAINTENANCE_PAGE,
        )
            .into_response(),
        Fault::GraphqlError { message, code } => {
            let mut body = error_body(message, code);
            body["data"] = Json::Null;
            json_response(StatusCode::OK, body)
        }
        Fault::Slow { .. } | Fault::DropAfterCommit | Fault::UnknownStatus(_) => return None,
    };
    Some(response)
}

/// Body of a GraphQL response, `errors` first as Apollo sends it.
#[derive(Serialize)]
struct GraphqlBody {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ServerError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

/// HTTP status and body of an executed request. Request errors (parse, validation, variables:
/// no field path) are HTTP 400 without `data`; field errors are HTTP 200 with `data: null`.
fn render(response: async_graphql::Response) -> (StatusCode, GraphqlBody) {
    let mut errors = response.errors;
    if errors.is_empty() {
        let body = GraphqlBody {
            errors,
            data: Some(response.data),
        };
        return (StatusCode::OK, body);
    }
    if errors.iter().all(|e| e.path.is_empty()) {
        for e in &mut errors {
            let ext = e.extensions.get_or_insert_with(Default::default);
            if ext.get("code").is_none() {
                ext.set("code", "BAD_REQUEST");
            }
        }
        return (StatusCode::BAD_REQUEST, GraphqlBody { errors, data: None });
    }
    let body = GraphqlBody {
        errors,
        data: Some(Value::Null),
    };
    (StatusCode::OK, body)
}

fn error_body(message: &str, code: &str) -> Json {
    json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}

fn json_response(status: StatusCode, body: impl Serialize) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Replaces the value of every `status` key holding a string or enum value.
fn rewrite_statuses(value: &mut Value, status: &str) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key.as_str() == "status" && matches!(v, Value::Enum(_) | Value::String(_)) {
                    *v = Value::String(status.to_string());
                } else {
                    rewrite_statuses(v, status);
                }
            }
        }
        Value::List(items) => items.iter_mut().for_each(|v| rewrite_statuses(v, status)),
        _ => {}
    }
}

/// A response whose body fails before the first byte, so hyper aborts the connection without
/// sending anything.
fn dropped_connection() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped by fault injection",
        ))
    });
    Response::new(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_rewritten_everywhere() {
        let mut v = Value::from_json(json!({"a": {"status": "X", "payment_status": "P",
            "list": [{"status": "Y"}, {"status": null}]}}))
        .expect("valid value");
        rewrite_statuses(&mut v, "NEW");
        assert_eq!(
            v.into_json().expect("json"),
            json!({"a": {"status": "NEW", "payment_status": "P",
                "list": [{"status": "NEW"}, {"status": null}]}})
        );
    }
}
