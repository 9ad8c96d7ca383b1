//! A stand-in for the HTTP API: routes each request by the template's route table and invokes
//! the route's function with the HTTP API's event (payload format 2.0), as API Gateway's Lambda
//! integration does, turning the function's answer back into the HTTP response. Anything
//! unrouted gets API Gateway's 404 `{"message":"Not Found"}`. Requests are counted per route.
//!
//! The event goes through the emulator's invoke API rather than its function URLs: those answer
//! 500 before reaching the function when a JSON request's body is not UTF-8 text, as
//! the client's gzip-compressed bodies are; API Gateway passes such bodies base64-encoded.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body as LambdaBody;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use super::template::{Route, Template};

/// HTTP APIs' largest request payload (10 MB).
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;
/// Media types whose bodies the event carries as text (when not content-encoded); others are
/// base64-encoded.
const TEXT_TYPES: &[&str] = &["text/", "application/json", "application/xml", "application/javascript"];

/// The running stand-in, stopped on drop.
pub struct Gateway {
    addr: SocketAddr,
    traffic: Arc<Mutex<Traffic>>,
    server: JoinHandle<()>,
}

/// What went through the gateway.
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    /// Requests per route key (`POST /api/v1/build/{id}/upload`).
    pub routes: BTreeMap<String, usize>,
    /// Requests per function binary.
    pub functions: BTreeMap<String, usize>,
    /// `METHOD /path` of every request no route matched.
    pub unrouted: Vec<String>,
    /// Invocations that failed (`METHOD /path: error`), answered 500 as API Gateway does.
    pub failed: Vec<String>,
}

#[derive(Clone)]
struct Integration {
    template: Arc<Template>,
    /// Maps a binary to the URL its invocations are posted to.
    invoke_urls: Arc<BTreeMap<String, String>>,
    client: reqwest::Client,
    traffic: Arc<Mutex<Traffic>>,
    requests: Arc<AtomicU64>,
}

impl Gateway {
    /// Serves `template`'s routes on a free loopback port, invoking functions at `invoke_urls`
    /// (binary → URL).
    pub async fn start(template: Template, invoke_urls: BTreeMap<String, String>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let integration = Integration {
            template: Arc::new(template),
            invoke_urls: Arc::new(invoke_urls),
            client: reqwest::Client::builder().no_proxy().build().context("HTTP client")?,
            traffic: traffic.clone(),
            requests: Arc::default(),
        };
        let app = Router::new().fallback(handle).with_state(integration);
        let server = tokio::spawn(async move {
            // Serving only ends when the task is aborted.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, traffic, server })
    }

    /// The API's base URL, as the stack's `ApiUrl` output: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the traffic so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic.lock().expect("traffic lock").clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Routes one request and answers with its function's response.
async fn handle(State(integration): State<Integration>, request: Request) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let Some(route) = integration.template.route(method.as_str(), &path) else {
        integration.record(|t| t.unrouted.push(format!("{method} {path}")));
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    integration.record(|t| {
        *t.routes.entry(route.key()).or_default() += 1;
        *t.functions.entry(route.binary.clone()).or_default() += 1;
    });
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_PAYLOAD).await else {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let id = integration.requests.fetch_add(1, Ordering::Relaxed);
    let event = event(route, &parts, &body, id);
    match integration.invoke(&route.binary, &event).await {
        Ok(response) => response,
        Err(e) => {
            integration.record(|t| t.failed.push(format!("{method} {path}: {e:#}")));
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// API Gateway's own answers: `{"message": …}`.
fn message(status: StatusCode, text: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json!({ "message": text }).to_string()).into_response()
}

impl Integration {
    fn record(&self, change: impl FnOnce(&mut Traffic)) {
        change(&mut self.traffic.lock().expect("traffic lock"));
    }

    /// Invokes `binary` with `event` and converts its answer into a response.
    async fn invoke(&self, binary: &str, event: &Value) -> anyhow::Result<Response> {
        let url = self.invoke_urls.get(binary).with_context(|| format!("no function {binary}"))?;
        let answer = self.client.post(url).json(event).send().await.context("the emulator did not answer")?;
        let (status, function_error) = (answer.status(), answer.headers().contains_key("x-amz-function-error"));
        let text = answer.text().await?;
        if !status.is_success() || function_error {
            bail!("invocation answered {status}: {text}");
        }
        let output: ApiGatewayV2httpResponse =
            serde_json::from_str(&text).with_context(|| format!("not an HTTP API response: {text}"))?;
        response(output)
    }
}

/// The HTTP API event (payload format 2.0) for a request on `route`.
fn event(route: &Route, parts: &Parts, body: &[u8], id: u64) -> Value {
    let mut headers = Map::new();
    for name in parts.headers.keys().filter(|name| *name != header::COOKIE) {
        let values: Vec<&str> = parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        headers.insert(name.as_str().to_owned(), Value::String(values.join(",")));
    }
    let cookies: Vec<&str> = parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    let cookies: Vec<&str> = cookies.iter().flat_map(|c| c.split("; ")).collect();
    let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    let (body, is_base64_encoded) = encode_body(&parts.headers, body);
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.key(),
        "rawPath": parts.uri.path(),
        "rawQueryString": parts.uri.query().unwrap_or_default(),
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": header(header::HOST),
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": format!("{:?}", parts.version),
                "sourceIp": "127.0.0.1",
                "userAgent": header(header::USER_AGENT),
            },
            "requestId": format!("{}-{id}", now.as_nanos()),
            "routeKey": route.key(),
            "stage": "$default",
            "timeEpoch": now.as_millis() as u64,
        },
        "isBase64Encoded": is_base64_encoded,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if let Some(body) = body {
        event["body"] = Value::String(body);
    }
    event
}

/// The body as the event carries it: text for uncompressed text types, base64 otherwise.
fn encode_body(headers: &HeaderMap, body: &[u8]) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let textual =
        TEXT_TYPES.iter().any(|t| content_type.starts_with(t)) && !headers.contains_key(header::CONTENT_ENCODING);
    match std::str::from_utf8(body) {
        Ok(text) if textual => (Some(text.to_owned()), false),
        _ => (Some(BASE64.encode(body)), true),
    }
}

/// The HTTP response a function's answer stands for.
fn response(output: ApiGatewayV2httpResponse) -> anyhow::Result<Response> {
    let body = match output.body {
        Some(LambdaBody::Text(text)) if output.is_base64_encoded => BASE64.decode(text).context("base64 body")?,
        Some(LambdaBody::Text(text)) => text.into_bytes(),
        Some(LambdaBody::Binary(bytes)) => bytes,
        _ => Vec::new(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(u16::try_from(output.status_code)?)?;
    let headers = response.headers_mut();
    for (name, value) in output.multi_value_headers.iter().chain(output.headers.iter()) {
        if !headers.get_all(name).iter().any(|v| v == value) {
            headers.append(name, value.clone());
        }
    }
    for cookie in output.cookies {
        headers.append(header::SET_COOKIE, cookie.parse()?);
    }
    Ok(response)
}
