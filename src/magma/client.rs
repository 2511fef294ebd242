//! The HTTP side of the Magma client: endpoint rules, TLS, proxy, timeouts, size cap, and the
//! classification of every way a call can fail.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::{Host, Url};

use super::error::{ConfigError, MagmaError};
use super::queries;
use super::wire::{
    BuyData, BuyRequest, GetOrderData, Order, Page, Price, PriceData, Purchase, Transaction,
    TransactionListData,
};
use crate::secret::Secret;

/// The production endpoint (magma-api.md §1).
pub const DEFAULT_API_URL: &str = "https://magma.amboss.tech/graphql";

/// How the client reaches the service.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub api_url: String,
    /// Whole-request limit: connect, send, and read the response.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Larger responses are refused: a GraphQL answer of ours is a few kilobytes.
    pub max_response_bytes: usize,
    /// `host:port` of a SOCKS5 proxy (the node's Tor proxy); names are resolved by the proxy.
    pub socks_proxy: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            api_url: DEFAULT_API_URL.to_string(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 1024 * 1024,
            socks_proxy: None,
        }
    }
}

/// Whether a call changes anything on the service. A mutation whose outcome is unknown is
/// `Ambiguous`; a query that failed the same way is merely `Transient`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Read,
    Buy,
}

/// One async method per Magma operation. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct MagmaClient {
    http: reqwest::Client,
    url: Url,
    max_response_bytes: usize,
}

impl MagmaClient {
    pub fn new(options: &ClientOptions) -> Result<Self, ConfigError> {
        let url = validate_api_url(&options.api_url)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            // A GraphQL POST is never redirected by a healthy server, and following one could
            // carry the Bearer credential somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cln-magma/", env!("CARGO_PKG_VERSION")))
            // The network path is lightningd's to decide (its proxy), not the environment's.
            .no_proxy();
        if let Some(proxy) = &options.socks_proxy {
            builder = builder.proxy(socks_proxy(proxy)?);
        }
        let http = builder.build().map_err(|e| ConfigError::Http {
            reason: error_chain(&e),
        })?;
        Ok(MagmaClient {
            http,
            url,
            max_response_bytes: options.max_response_bytes,
        })
    }

    pub fn api_url(&self) -> &Url {
        &self.url
    }

    /// `market.liquidity.liquidity_per_usd`: free, public, safe to repeat.
    pub async fn price(&self) -> Result<Price, MagmaError> {
        let data: PriceData = self
            .execute(
                "price",
                Effect::Read,
                queries::PRICE,
                serde_json::json!({}),
                None,
            )
            .await?;
        price_from(data)
    }

    /// `liquidity.buy`. Sent exactly once per call: this method never retries, because a buy
    /// is not idempotent. `auth` is an API key, an earlier session key, or none (anonymous).
    pub async fn buy(
        &self,
        request: &BuyRequest,
        auth: Option<&Secret>,
    ) -> Result<Purchase, MagmaError> {
        let data: BuyData = self
            .execute("buy", Effect::Buy, queries::BUY, request.variables(), auth)
            .await?;
        purchase_from(data)
    }

    /// `user.market.orders.get_order` with the API key or the order's session key.
    pub async fn get_order(&self, order_id: &str, auth: &Secret) -> Result<Order, MagmaError> {
        let data: GetOrderData = self
            .execute(
                "get_order",
                Effect::Read,
                queries::GET_ORDER,
                serde_json::json!({ "orderId": order_id }),
                Some(auth),
            )
            .await?;
        order_from(data)
    }

    /// The invoice of an order, for an order adopted after its buy answer was lost. `Ok(None)`
    /// when the service does not give it.
    pub async fn order_invoice(
        &self,
        order_id: &str,
        auth: &Secret,
    ) -> Result<Option<String>, MagmaError> {
        let data: serde_json::Value = self
            .execute(
                "order_invoice",
                Effect::Read,
                queries::ORDER_INVOICE,
                serde_json::json!({ "orderId": order_id }),
                Some(auth),
            )
            .await?;
        Ok(
            data["user"]["market"]["orders"]["get_order"]["payment"]["lightning"]["invoice"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        )
    }

    /// One page of `user.transactions.transaction_list`, newest first.
    pub async fn transaction_list(
        &self,
        page: Page,
        auth: &Secret,
    ) -> Result<Vec<Transaction>, MagmaError> {
        let data: TransactionListData = self
            .execute(
                "transaction_list",
                Effect::Read,
                queries::TRANSACTION_LIST,
                serde_json::json!({ "page": page }),
                Some(auth),
            )
            .await?;
        list_from(data)
    }

    async fn execute<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        effect: Effect,
        query: &str,
        variables: serde_json::Value,
        auth: Option<&Secret>,
    ) -> Result<T, MagmaError> {
        let started = Instant::now();
        let result = self
            .round_trip(effect, query, variables, auth)
            .await
            .and_then(|(answer, body)| decode(operation, effect, answer, &body, auth));
        let ms = started.elapsed().as_millis();
        match &result {
            Ok(_) => log::debug!("magma {operation}: ok in {ms} ms"),
            Err(e) => log::debug!("magma {operation}: {} after {ms} ms: {e}", e.class()),
        }
        result
    }

    /// Sends the request and reads at most `max_response_bytes` of the answer.
    async fn round_trip(
        &self,
        effect: Effect,
        query: &str,
        variables: serde_json::Value,
        auth: Option<&Secret>,
    ) -> Result<(Answer, Vec<u8>), MagmaError> {
        let body = serde_json::json!({ "query": query, "variables": variables });
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header("apollographql-client-name", "cln-magma")
            .header("apollographql-client-version", env!("CARGO_PKG_VERSION"))
            .json(&body);
        if let Some(secret) = auth {
            // reqwest marks this header sensitive, so it is left out of its own debug output.
            request = request.bearer_auth(secret.expose());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| effect.send_failed(&e, auth))?;
        let answer = Answer {
            status: response.status().as_u16(),
            retry_after: retry_after(response.headers()),
        };
        if answer.status == 429 {
            // Refused before doing anything; the body does not matter.
            return Ok((answer, Vec::new()));
        }
        let cap = self.max_response_bytes;
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(effect.unusable(format!("response larger than {cap} bytes")));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > cap {
                        return Err(effect.unusable(format!("response larger than {cap} bytes")));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(effect.interrupted(&e, auth)),
            }
        }
        Ok((answer, body))
    }
}

#[derive(Clone, Copy, Debug)]
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    errors: Option<Vec<GraphqlError>>,
}

#[derive(Deserialize)]
struct GraphqlError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    extensions: Option<serde_json::Value>,
}

impl GraphqlError {
    fn code(&self) -> Option<&str> {
        self.extensions.as_ref()?.get("code")?.as_str()
    }
}

/// The `data` of an answer in the shape `T` of one operation, or a classified error.
fn decode<T: DeserializeOwned>(
    operation: &str,
    effect: Effect,
    answer: Answer,
    body: &[u8],
    auth: Option<&Secret>,
) -> Result<T, MagmaError> {
    let data = interpret(effect, answer, body, auth)?;
    serde_json::from_value(data)
        .map_err(|e| effect.unusable(format!("{operation} response has an unexpected shape: {e}")))
}

fn price_from(data: PriceData) -> Result<Price, MagmaError> {
    Ok(data.into_price())
}

fn purchase_from(data: BuyData) -> Result<Purchase, MagmaError> {
    // A 200 answer we cannot use may still mean an order was created.
    data.into_purchase()
        .map_err(|reason| MagmaError::Ambiguous { reason })
}

fn order_from(data: GetOrderData) -> Result<Order, MagmaError> {
    data.into_order().ok_or_else(|| MagmaError::NotFound {
        message: "get_order returned null".into(),
    })
}

fn list_from(data: TransactionListData) -> Result<Vec<Transaction>, MagmaError> {
    Ok(data.into_list())
}

/// An operation whose answer [`parse_response`] reads.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Price,
    Buy,
    GetOrder,
    TransactionList,
}

/// What [`parse_response`] made of an answer: the value the client method would return.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Price(Price),
    Purchase(Purchase),
    Order(Order),
    Transactions(Vec<Transaction>),
}

/// What the client makes of one HTTP answer (status, `Retry-After` header text, body as
/// received, within the size cap) to `op`: the same code the client methods run after their
/// round trip. For the tests that feed the parsers hostile answers; not part of the plugin's
/// interface.
#[doc(hidden)]
pub fn parse_response(
    op: Operation,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> Result<Parsed, MagmaError> {
    let answer = Answer {
        status,
        retry_after: retry_after.and_then(retry_after_value),
    };
    match op {
        Operation::Price => decode("price", Effect::Read, answer, body, None)
            .and_then(price_from)
            .map(Parsed::Price),
        Operation::Buy => decode("buy", Effect::Buy, answer, body, None)
            .and_then(purchase_from)
            .map(Parsed::Purchase),
        Operation::GetOrder => decode("get_order", Effect::Read, answer, body, None)
            .and_then(order_from)
            .map(Parsed::Order),
        Operation::TransactionList => decode("transaction_list", Effect::Read, answer, body, None)
            .and_then(list_from)
            .map(Parsed::Transactions),
    }
}

/// Turns an HTTP answer into the `data` object or a classified error. GraphQL `errors[]` are
/// read whatever the HTTP status: the service reports business and auth errors with HTTP 200.
fn interpret(
    effect: Effect,
    answer: Answer,
    body: &[u8],
    auth: Option<&Secret>,
) -> Result<serde_json::Value, MagmaError> {
    let status = answer.status;
    if status == 429 {
        return Err(MagmaError::RateLimited {
            retry_after: answer.retry_after,
        });
    }
    // Only a JSON object is a GraphQL answer (serde would also read the envelope from an array).
    let envelope: Option<Envelope> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(serde_json::Value::is_object)
        .and_then(|v| serde_json::from_value(v).ok());
    let server_error = (500..600).contains(&status);
    let Some(envelope) = envelope else {
        let what = format!(
            "HTTP {status} with a body that is not GraphQL JSON ({})",
            snippet(body, auth)
        );
        return Err(if server_error {
            effect.temporary(what)
        } else {
            effect.unusable(what)
        });
    };
    let errors = envelope.errors.unwrap_or_default();
    if server_error {
        let detail = messages(&errors, auth);
        return Err(effect.temporary(if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {detail}")
        }));
    }
    if !errors.is_empty() {
        return Err(classify(effect, answer, &errors, auth));
    }
    if !(200..300).contains(&status) {
        return Err(match status {
            401 | 403 => MagmaError::Unauthorized {
                message: format!("HTTP {status}"),
            },
            _ => MagmaError::Protocol {
                reason: format!("unexpected HTTP status {status}"),
            },
        });
    }
    match envelope.data {
        Some(data) if !data.is_null() => Ok(data),
        _ => Err(effect.unusable("response has neither data nor errors".into())),
    }
}

/// Maps GraphQL errors to a class by `extensions.code`, falling back on the documented messages
/// where the service's codes are unknown (magma-api.md §8.2).
fn classify(
    effect: Effect,
    answer: Answer,
    errors: &[GraphqlError],
    auth: Option<&Secret>,
) -> MagmaError {
    let message = messages(errors, auth);
    let first = &errors[0];
    let code = first.code().unwrap_or("");
    let text = first.message.as_deref().unwrap_or("");
    match code {
        "UNAUTHORIZED" | "UNAUTHENTICATED" => return MagmaError::Unauthorized { message },
        "FORBIDDEN" | "NOT_FOUND" => return MagmaError::NotFound { message },
        "BAD_USER_INPUT" | "GRAPHQL_VALIDATION_FAILED" | "GRAPHQL_PARSE_FAILED" | "BAD_REQUEST" => {
            return MagmaError::Invalid { message };
        }
        "RATE_LIMITED" | "TOO_MANY_REQUESTS" => {
            return MagmaError::RateLimited {
                retry_after: answer.retry_after,
            };
        }
        _ => {}
    }
    if text == "Unauthorized token" {
        MagmaError::Unauthorized { message }
    } else if text == "Forbidden" {
        MagmaError::NotFound { message }
    } else if text == "Invalid ID"
        || text == "Min amount violated"
        || text.starts_with("connection_uri must be")
    {
        MagmaError::Invalid { message }
    } else {
        // An error we cannot place: harmless to repeat for a read, but a buy that met a
        // server-side error may or may not have created the order.
        effect.temporary(message)
    }
}

impl Effect {
    /// The service failed (5xx, unknown server error).
    fn temporary(self, reason: String) -> MagmaError {
        match self {
            Effect::Read => MagmaError::Transient { reason },
            Effect::Buy => MagmaError::Ambiguous { reason },
        }
    }

    /// The answer arrived but cannot be used.
    fn unusable(self, reason: String) -> MagmaError {
        match self {
            Effect::Read => MagmaError::Protocol { reason },
            Effect::Buy => MagmaError::Ambiguous { reason },
        }
    }

    /// `send()` failed. A failure to connect means the request never left; anything later
    /// (timeout, reset) may have reached the server.
    fn send_failed(self, e: &reqwest::Error, auth: Option<&Secret>) -> MagmaError {
        let reason = scrubbed(&error_chain(e), auth);
        if e.is_connect() {
            return MagmaError::Transient {
                reason: format!("could not connect: {reason}"),
            };
        }
        let reason = if e.is_timeout() {
            format!("timed out: {reason}")
        } else {
            reason
        };
        self.temporary(reason)
    }

    /// Reading the body failed after the server had started answering.
    fn interrupted(self, e: &reqwest::Error, auth: Option<&Secret>) -> MagmaError {
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "broke off"
        };
        self.temporary(format!(
            "response {what}: {}",
            scrubbed(&error_chain(e), auth)
        ))
    }
}

fn messages(errors: &[GraphqlError], auth: Option<&Secret>) -> String {
    let joined = errors
        .iter()
        .map(|e| e.message.as_deref().unwrap_or("(no message)"))
        .collect::<Vec<_>>()
        .join("; ");
    truncate(&scrubbed(&joined, auth), 300)
}

fn snippet(body: &[u8], auth: Option<&Secret>) -> String {
    if body.is_empty() {
        return "empty".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("starts with {:?}", truncate(&scrubbed(&one_line, auth), 60))
}

fn scrubbed(text: &str, auth: Option<&Secret>) -> String {
    match auth {
        Some(secret) => secret.scrub(text),
        None => text.to_string(),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// reqwest's own `Display` stops at the outermost layer ("error sending request"); the cause
/// an operator needs (connection refused, timed out) is further down the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    retry_after_value(headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?)
}

fn retry_after_value(value: &str) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    // A hostile value must not park the plugin for years.
    Some(Duration::from_secs(secs.min(24 * 3600)))
}

/// https:// anywhere; http:// only where nothing crosses a network (the simulator, a local
/// reverse proxy).
pub fn validate_api_url(raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| ConfigError::BadUrl {
        url: raw.to_string(),
        reason: e.to_string(),
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::BadUrl {
            url: raw.to_string(),
            reason: "credentials in the URL would end up in logs; use magma-api-key-file".into(),
        });
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(url.host()) => Ok(url),
        "http" => Err(ConfigError::InsecureUrl {
            url: raw.to_string(),
        }),
        _ => Err(ConfigError::BadScheme {
            url: raw.to_string(),
        }),
    }
}

fn is_loopback(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn socks_proxy(addr: &str) -> Result<reqwest::Proxy, ConfigError> {
    let bad = |reason: String| ConfigError::BadProxy {
        proxy: addr.to_string(),
        reason,
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port".into()))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad("expected host:port with a port from 1 to 65535".into()));
    }
    // socks5h: the proxy resolves names, so no DNS query leaks around Tor.
    reqwest::Proxy::all(format!("socks5h://{addr}")).map_err(|e| bad(error_chain(&e)))
}

/// rustls with the ring provider and the bundled Mozilla roots: the same trust on every host,
/// whatever its CA store holds.
fn tls_config() -> Result<rustls::ClientConfig, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Http {
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_rules() {
        for ok in [
            "https://magma.amboss.tech/graphql",
            "http://127.0.0.1:8080/graphql",
            "http://127.5.5.5/graphql",
            "http://[::1]:9000/graphql",
            "http://localhost:8080/graphql",
            "https://10.0.0.1/graphql",
        ] {
            assert!(validate_api_url(ok).is_ok(), "{ok} should be accepted");
        }
        assert!(matches!(
            validate_api_url("http://magma.amboss.tech/graphql"),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(matches!(
            validate_api_url("http://192.168.1.2/graphql"),
            Err(ConfigError::InsecureUrl { .. })
        ));
        assert!(matches!(
            validate_api_url("ftp://127.0.0.1/x"),
            Err(ConfigError::BadScheme { .. })
        ));
        assert!(matches!(
            validate_api_url("not a url"),
            Err(ConfigError::BadUrl { .. })
        ));
        assert!(matches!(
            validate_api_url("https://user:pw@magma.amboss.tech/graphql"),
            Err(ConfigError::BadUrl { .. })
        ));
    }

    #[test]
    fn proxy_address_rules() {
        assert!(socks_proxy("127.0.0.1:9050").is_ok());
        assert!(socks_proxy("tor.local:9050").is_ok());
        for bad in [
            "127.0.0.1",
            ":9050",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            "host:port",
        ] {
            assert!(socks_proxy(bad).is_err(), "{bad} should be refused");
        }
    }

    fn answer(status: u16) -> Answer {
        Answer {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn classification_table() {
        use MagmaError as E;
        let err = |code: &str, msg: &str| {
            serde_json::json!({"data": null, "errors": [{"message": msg, "extensions": {"code": code}}]})
                .to_string()
        };
        let cases: Vec<(Effect, u16, String, &str)> = vec![
            (
                Effect::Read,
                200,
                err("UNAUTHORIZED", "Unauthorized token"),
                "unauthorized",
            ),
            (
                Effect::Read,
                200,
                err("", "Unauthorized token"),
                "unauthorized",
            ),
            (
                Effect::Read,
                200,
                err("FORBIDDEN", "Forbidden"),
                "not_found",
            ),
            (
                Effect::Read,
                200,
                err("BAD_USER_INPUT", "Invalid ID"),
                "invalid",
            ),
            (Effect::Read, 200, err("", "Invalid ID"), "invalid"),
            (Effect::Buy, 200, err("", "Min amount violated"), "invalid"),
            (
                Effect::Buy,
                400,
                err("GRAPHQL_VALIDATION_FAILED", "Cannot query field"),
                "invalid",
            ),
            (
                Effect::Read,
                200,
                err("INTERNAL_SERVER_ERROR", "boom"),
                "transient",
            ),
            (
                Effect::Buy,
                200,
                err("INTERNAL_SERVER_ERROR", "boom"),
                "ambiguous",
            ),
            (
                Effect::Read,
                500,
                err("INTERNAL_SERVER_ERROR", "boom"),
                "transient",
            ),
            (Effect::Buy, 503, "<html>down</html>".into(), "ambiguous"),
            (Effect::Read, 502, "<html>down</html>".into(), "transient"),
            (
                Effect::Read,
                200,
                "<html>maintenance</html>".into(),
                "protocol",
            ),
            (
                Effect::Buy,
                200,
                "<html>maintenance</html>".into(),
                "ambiguous",
            ),
            (Effect::Read, 200, "{}".into(), "protocol"),
            (Effect::Read, 200, "{\"data\":null}".into(), "protocol"),
            (Effect::Read, 404, "{\"data\":null}".into(), "protocol"),
            (Effect::Read, 401, "{\"data\":null}".into(), "unauthorized"),
            (Effect::Buy, 429, "".into(), "rate_limited"),
        ];
        for (effect, status, body, class) in cases {
            let got = interpret(effect, answer(status), body.as_bytes(), None)
                .map(|_| ())
                .unwrap_err();
            assert_eq!(got.class(), class, "{effect:?} {status} {body}");
        }
        let ok = interpret(Effect::Read, answer(200), b"{\"data\":{\"a\":1}}", None).unwrap();
        assert_eq!(ok["a"], 1);
        assert!(matches!(
            interpret(Effect::Read, answer(429), b"", None),
            Err(E::RateLimited { .. })
        ));
    }

    #[test]
    fn server_text_is_scrubbed_and_shortened() {
        let key = Secret::new("amboss_0123456789abcdef");
        let body = serde_json::json!({"errors": [{"message": format!("bad key amboss_0123456789abcdef {}", "x".repeat(500))}]});
        let e = interpret(
            Effect::Read,
            answer(200),
            body.to_string().as_bytes(),
            Some(&key),
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert!(text.contains("[redacted]"));
        assert!(text.chars().count() < 400);
    }
}
