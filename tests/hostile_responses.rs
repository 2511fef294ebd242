//! The Magma client's parsers against hostile answers: random bytes, random JSON, every
//! truncation of a valid answer, and valid answers with one part deleted, retyped or replaced by
//! random JSON — for each operation the plugin relies on (price, buy, get_order,
//! transaction_list). Fed through `parse_response`, the very code the client runs on what it
//! read from the wire (size cap aside, which `tests/magma_client.rs` covers).
//!
//! What must hold: no panic; a malformed answer is an error, of the class the plugin acts on —
//! `protocol` for a read (retried later), `ambiguous` for a buy (reconciled before any new buy,
//! never bought again blindly); a valid answer still parses, whatever unknown fields it carries.

use cln_magma::magma::{MagmaError, Operation, OrderStatus, Parsed, parse_response};
use proptest::prelude::*;
use proptest::test_runner::{Config, FailurePersistence};
use serde_json::{Value, json};

const OPS: [Operation; 4] = [
    Operation::Price,
    Operation::Buy,
    Operation::GetOrder,
    Operation::TransactionList,
];

/// A modest number of cases per property, so the whole file runs in a few seconds
/// (`PROPTEST_CASES` asks for more in a deeper run); no regression files are written into the
/// source tree.
fn config(cases: u32) -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None::<Box<dyn FailurePersistence>>,
        ..Config::default()
    }
}

/// A valid answer to `op`, as the service sends it (HTTP 200), with only fields the client
/// reads, so that every leaf matters.
fn valid(op: Operation) -> Value {
    match op {
        Operation::Price => json!({"data": {"market": {"liquidity": {"liquidity_per_usd": {
            "sats": "543260", "usd": "501.09"
        }}}}}),
        Operation::Buy => json!({"data": {"liquidity": {"buy": {
            "account": {"id": "acct-7f3a", "session_key": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"},
            "order": {"transaction_id": "ec562479-a4b8-44f4-95b4-150b310832de", "usd_cents": "1000"},
            "payment": {
                "lightning_invoice": "lnbcrt199340n1pjexample",
                "redirect_url": null,
                "amount": {"sats": "19934"}
            }
        }}}}),
        Operation::GetOrder => json!({"data": {"user": {"market": {"orders": {"get_order": {
            "id": "ec562479-a4b8-44f4-95b4-150b310832de",
            "status": "WAITING_FOR_ON_CHAIN_CONFIRMATION",
            "payment_status": "SUCCESSFUL_PAYMENT",
            "channel_id": "850003x1x0",
            "transaction_id": "5e8a3fc4f1",
            "timeout": "2026-06-10T18:42:00Z",
            "blocks_until_can_be_closed": 4320,
            "confirmations": {"confirmations": 2},
            "fees": {"buyer": {"sats": "12500", "usd": "5.62"}}
        }}}}}}),
        Operation::TransactionList => json!({"data": {"user": {"transactions": {
            "transaction_list": {"list": [
                {"id": "b1d0c9e8-0000-4000-8000-000000000002", "status": "WAITING_FOR_BUYER_PAYMENT",
                 "created_at": "2026-06-10T18:40:00Z"},
                {"id": "b1d0c9e8-0000-4000-8000-000000000001", "status": "CHANNEL_MONITORING_FINISHED",
                 "created_at": "2026-06-09T10:00:00Z"}
            ]}
        }}}}),
    }
}

/// The class a malformed answer to `op` must be refused with: a read is simply unusable, a buy
/// may have created an order.
fn malformed_class(op: Operation) -> &'static str {
    match op {
        Operation::Buy => "ambiguous",
        _ => "protocol",
    }
}

/// A body that is not JSON at all, with this HTTP status: the same classes, except that a 5xx
/// read is transient (the service said it failed).
fn garbage_class(op: Operation, status: u16) -> &'static str {
    match (op, status) {
        (Operation::Buy, _) => "ambiguous",
        (_, 500..=599) => "transient",
        _ => "protocol",
    }
}

fn parse(op: Operation, status: u16, body: &[u8]) -> Result<Parsed, MagmaError> {
    parse_response(op, status, None, body)
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serialises")
}

/// Every error text is scrubbed and shortened: nothing a hostile server sends can flood the
/// log through it.
fn assert_short(e: &MagmaError) {
    let text = e.to_string();
    assert!(text.chars().count() < 600, "error text too long: {text}");
}

// ---- valid answers ----------------------------------------------------------------------------

#[test]
fn valid_answers_parse_to_what_they_say() {
    match parse(Operation::Price, 200, &bytes(&valid(Operation::Price))).unwrap() {
        Parsed::Price(p) => {
            assert_eq!(p.sats.0, 543_260);
            assert_eq!(p.usd.as_str(), "501.09");
        }
        other => panic!("{other:?}"),
    }
    match parse(Operation::Buy, 200, &bytes(&valid(Operation::Buy))).unwrap() {
        Parsed::Purchase(p) => {
            assert_eq!(p.order_id, "ec562479-a4b8-44f4-95b4-150b310832de");
            assert_eq!(p.lightning_invoice, "lnbcrt199340n1pjexample");
            assert_eq!(p.invoice_sats, Some(19_934));
            assert_eq!(p.usd_cents, Some(1000));
            assert!(p.session_key.is_some());
        }
        other => panic!("{other:?}"),
    }
    match parse(
        Operation::GetOrder,
        200,
        &bytes(&valid(Operation::GetOrder)),
    )
    .unwrap()
    {
        Parsed::Order(o) => {
            assert_eq!(o.status, OrderStatus::WaitingForOnChainConfirmation);
            assert_eq!(o.confirmations, Some(2));
            assert_eq!(o.channel_id.as_deref(), Some("850003x1x0"));
        }
        other => panic!("{other:?}"),
    }
    match parse(
        Operation::TransactionList,
        200,
        &bytes(&valid(Operation::TransactionList)),
    )
    .unwrap()
    {
        Parsed::Transactions(list) => {
            assert_eq!(list.len(), 2);
            assert_eq!(list[1].status, OrderStatus::ChannelMonitoringFinished);
        }
        other => panic!("{other:?}"),
    }
}

// ---- truncations (exhaustive) -----------------------------------------------------------------

/// Every proper prefix of every valid answer — a connection cut anywhere — is refused with the
/// operation's class; none parses, none panics.
#[test]
fn every_truncation_of_a_valid_answer_is_refused() {
    for op in OPS {
        for pretty in [false, true] {
            let full = if pretty {
                serde_json::to_vec_pretty(&valid(op)).unwrap()
            } else {
                bytes(&valid(op))
            };
            for cut in 0..full.len() {
                let body = &full[..cut];
                // A pretty answer cut in its trailing whitespace is still whole.
                if pretty && full[cut..].iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let e = parse(op, 200, body).expect_err("a truncated answer is refused");
                assert_eq!(
                    e.class(),
                    malformed_class(op),
                    "{op:?} cut at {cut}: {}",
                    String::from_utf8_lossy(body)
                );
                assert_short(&e);
            }
        }
    }
}

/// A valid answer that is not a JSON object at the top (an array of the same parts) is not a
/// GraphQL answer.
#[test]
fn a_top_level_array_is_not_an_answer() {
    for op in OPS {
        for body in [
            json!([]),
            json!([null]),
            json!([valid(op)["data"].clone()]),
            json!([null, [{"message": "boom"}]]),
        ] {
            let e = parse(op, 200, &bytes(&body)).expect_err("refused");
            assert_eq!(e.class(), malformed_class(op), "{op:?} {body}");
        }
    }
}

// ---- generators -------------------------------------------------------------------------------

fn op() -> impl Strategy<Value = Operation> {
    prop::sample::select(OPS.to_vec())
}

/// Any JSON value, up to a few levels deep. Object keys are short lowercase words, so they
/// (practically) never spell `data` or `errors` by chance.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::String),
        // Strings that look like what the service sends, in the wrong place or form.
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "12.5",
            "1e3",
            "543260",
            "501.09",
            "NaN",
            "null",
            "99999999999999999999999",
            "WAITING_FOR_BUYER_PAYMENT",
            "SELLER_PONDERING",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every position inside `v` (JSON pointers), the root excepted.
fn positions(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                positions(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                positions(child, p, out);
            }
        }
        _ => {}
    }
}

fn all_positions(op: Operation) -> Vec<String> {
    let mut out = Vec::new();
    positions(&valid(op), String::new(), &mut out);
    out
}

/// The positions whose absence or nullness makes an answer unusable: the path to every field
/// the client cannot do without (every other field is optional).
fn required(op: Operation) -> Vec<&'static str> {
    match op {
        Operation::Price => vec![
            "/data",
            "/data/market",
            "/data/market/liquidity",
            "/data/market/liquidity/liquidity_per_usd",
            "/data/market/liquidity/liquidity_per_usd/sats",
            "/data/market/liquidity/liquidity_per_usd/usd",
        ],
        Operation::Buy => vec![
            "/data",
            "/data/liquidity",
            "/data/liquidity/buy",
            "/data/liquidity/buy/account",
            "/data/liquidity/buy/account/id",
            "/data/liquidity/buy/order",
            "/data/liquidity/buy/order/transaction_id",
            "/data/liquidity/buy/payment",
            "/data/liquidity/buy/payment/lightning_invoice",
        ],
        Operation::GetOrder => vec![
            "/data",
            "/data/user",
            "/data/user/market",
            "/data/user/market/orders",
            GET_ORDER,
            "/data/user/market/orders/get_order/id",
            "/data/user/market/orders/get_order/status",
        ],
        Operation::TransactionList => vec![
            "/data",
            "/data/user",
            "/data/user/transactions",
            "/data/user/transactions/transaction_list",
            "/data/user/transactions/transaction_list/list",
            "/data/user/transactions/transaction_list/list/0/id",
            "/data/user/transactions/transaction_list/list/0/status",
            "/data/user/transactions/transaction_list/list/1/id",
            "/data/user/transactions/transaction_list/list/1/status",
        ],
    }
}

/// `get_order` itself null reads as "no such order for this credential" — the service's own way
/// of saying so — not as a broken answer; so does an `orders` object without it (serde reads a
/// missing optional field as null), which a mutation of any position on the way there can make.
const GET_ORDER: &str = "/data/user/market/orders/get_order";

fn has_array(v: &Value) -> bool {
    match v {
        Value::Array(_) => true,
        Value::Object(m) => m.values().any(has_array),
        _ => false,
    }
}

/// Removes the value at `pointer` (from its object, or its array).
fn delete(doc: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').expect("a pointer below the root");
    match doc.pointer_mut(parent).expect("the parent exists") {
        Value::Object(m) => {
            m.remove(last);
        }
        Value::Array(a) => {
            a.remove(last.parse::<usize>().expect("an index"));
        }
        _ => unreachable!("positions are inside objects and arrays"),
    }
}

fn replace(doc: &mut Value, pointer: &str, with: Value) {
    *doc.pointer_mut(pointer).expect("the position exists") = with;
}

/// The error classes a mutated answer may get: the operation's class for anything broken, and
/// for get_order "not found" when the order itself is gone.
fn allowed(op: Operation, pointer: &str, e: &MagmaError) -> bool {
    e.class() == malformed_class(op)
        || (op == Operation::GetOrder
            && (GET_ORDER == pointer || GET_ORDER.starts_with(&format!("{pointer}/")))
            && matches!(e, MagmaError::NotFound { .. }))
}

// ---- properties -------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    /// Random bytes, with any status a server might send, are refused with the class the status
    /// and the operation call for.
    #[test]
    fn random_bytes_are_refused(
        op in op(),
        status in prop::sample::select(vec![200u16, 201, 204, 301, 400, 401, 403, 404, 500, 502, 503]),
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        // Bytes that happen to be JSON are the next property's business.
        prop_assume!(serde_json::from_slice::<Value>(&body).is_err());
        let e = parse(op, status, &body).expect_err("random bytes are refused");
        prop_assert_eq!(e.class(), garbage_class(op, status), "{:?}", e);
        assert_short(&e);
    }

    /// Random JSON as the whole body, or as its `data`: refused with the operation's class.
    /// (serde reads a struct from an array of its fields in order too, so a random array could
    /// in principle spell a well-typed answer; only then may it be accepted.)
    #[test]
    fn random_json_is_refused(op in op(), value in any_json(), as_data in any::<bool>()) {
        let body = if as_data { json!({"data": value}) } else { value };
        match parse(op, 200, &bytes(&body)) {
            Err(e) => {
                prop_assert_eq!(e.class(), malformed_class(op), "{:?} for {}", e, body);
                assert_short(&e);
            }
            Ok(parsed) => prop_assert!(
                as_data && has_array(&body),
                "random JSON accepted: {} as {:?}",
                body,
                parsed
            ),
        }
    }

    /// A valid answer with one position deleted, nulled, retyped or replaced by random JSON:
    /// never a panic; an error is of the operation's class; and the answer is refused whenever
    /// the position was one the client cannot do without (retyped: any field, since an optional
    /// field present with the wrong type is as broken as a required one).
    #[test]
    fn mutated_answers_are_refused_or_still_valid(
        op in op(),
        pick in any::<prop::sample::Index>(),
        how in 0u8..5,
        random in any_json(),
    ) {
        let spots = all_positions(op);
        let pointer = pick.get(&spots).clone();
        let mut doc = valid(op);
        let original = doc.pointer(&pointer).cloned().unwrap();
        let must_fail = match how {
            0 => {
                delete(&mut doc, &pointer);
                required(op).contains(&pointer.as_str())
            }
            1 => {
                replace(&mut doc, &pointer, Value::Null);
                required(op).contains(&pointer.as_str())
            }
            // A scalar turned into an object, an array or a boolean: no field of ours is any of
            // those where the answer has a scalar.
            2 | 3 => {
                let wrong = if how == 2 { json!({"x": 1}) } else { json!([1]) };
                let scalar = !(original.is_object() || original.is_array());
                replace(&mut doc, &pointer, if scalar { wrong } else { json!(true) });
                true
            }
            _ => {
                replace(&mut doc, &pointer, random);
                false
            }
        };
        match parse(op, 200, &bytes(&doc)) {
            Ok(parsed) => prop_assert!(
                !must_fail,
                "{:?}: {} ({}) was accepted: {:?}",
                op, pointer, how, parsed
            ),
            Err(e) => {
                prop_assert!(allowed(op, &pointer, &e), "{:?} {} ({}): {:?}", op, pointer, how, e);
                assert_short(&e);
            }
        }
    }

    /// Fields the client does not know, anywhere in a valid answer, change nothing: the service
    /// may add fields at any time.
    #[test]
    fn unknown_fields_are_ignored(
        op in op(),
        pick in any::<prop::sample::Index>(),
        name in "x_[a-z]{1,8}",
        extra in any_json(),
    ) {
        let baseline = parse(op, 200, &bytes(&valid(op))).unwrap();
        let mut doc = valid(op);
        let mut objects = vec![String::new()];
        objects.extend(
            all_positions(op)
                .into_iter()
                .filter(|p| doc.pointer(p).is_some_and(Value::is_object)),
        );
        let at = pick.get(&objects).clone();
        doc.pointer_mut(&at)
            .and_then(Value::as_object_mut)
            .unwrap()
            .insert(name, extra);
        prop_assert_eq!(parse(op, 200, &bytes(&doc)).unwrap(), baseline);
    }

    /// A GraphQL error list of any content, with any status: always an error, never an answer,
    /// and its text is bounded however long the server's messages are.
    #[test]
    fn any_error_list_is_an_error(
        op in op(),
        status in prop::sample::select(vec![200u16, 400, 401, 403, 404, 429, 500, 503]),
        retry_after in prop::option::of(prop_oneof![
            (0u64..1_000_000_000_000).prop_map(|n| n.to_string()),
            ".{0,12}",
        ]),
        messages in prop::collection::vec(
            (prop::option::of(".{0,2000}"), prop::option::of(prop::sample::select(vec![
                "UNAUTHORIZED", "FORBIDDEN", "BAD_USER_INPUT", "INTERNAL_SERVER_ERROR",
                "RATE_LIMITED", "NOT_FOUND", "", "SOMETHING_NEW",
            ]))),
            1..4,
        ),
        with_data in prop::option::of(any_json()),
    ) {
        let errors: Vec<Value> = messages
            .into_iter()
            .map(|(m, c)| json!({"message": m, "extensions": {"code": c}}))
            .collect();
        let mut body = json!({"errors": errors});
        if let Some(d) = with_data {
            body["data"] = d;
        }
        let e = parse_response(op, status, retry_after.as_deref(), &bytes(&body))
            .expect_err("an error list is an error");
        assert_short(&e);
        if let MagmaError::RateLimited { retry_after: Some(d) } = &e {
            prop_assert!(d.as_secs() <= 24 * 3600, "a hostile Retry-After is capped: {:?}", d);
        }
        if status == 429 {
            prop_assert!(matches!(e, MagmaError::RateLimited { .. }), "{:?}", e);
        }
        // A buy the service reported failing for an unknown reason may have gone through: it
        // is never taken as "nothing happened" unless the service said exactly why.
        if op == Operation::Buy {
            prop_assert!(
                !matches!(e, MagmaError::Transient { .. } | MagmaError::Protocol { .. }),
                "{:?}", e
            );
        }
    }
}
