//! [`FaultProxy`]: an HTTPS proxy in front of real Pebble that adds what Pebble lacks or cannot
//! be made to do, and records every request.
//!
//! It listens on a free loopback port with Pebble's own listener certificate (signed by the
//! test kit's CA, so a client that trusts [`Pebble::ca_cert_path`] trusts it) and forwards to
//! Pebble over HTTPS, keeping the client's `Host` header — Pebble builds every URL it returns
//! from that header, so the client stays on the proxy for the whole order. [`Rule`]s,
//! checked in the order added, can answer instead of Pebble (a chosen ARI window, 429
//! `rateLimited` or 503 with Retry-After in seconds or as an HTTP date), reset the
//! connection, slow an answer down, or make a finished order look still `processing`.
//! Everything else is the real Pebble.
//!
//! ```no_run
//! # async fn demo(pebble: &certfleet_testkit::Pebble) {
//! use certfleet_testkit::proxy::{Action, FaultProxy, Match, Rule};
//! let proxy = FaultProxy::start(pebble).await;
//! proxy.add(Rule::new(Match::post("/order-plz"), Action::rate_limited("3600")).times(1));
//! let url = proxy.directory_url(); // point the client here instead of Pebble
//! # let _ = url;
//! # }
//! ```

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::Pebble;

/// Which requests a [`Rule`] applies to; every field given must match.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// HTTP method (`POST`, `GET`).
    pub method: Option<String>,
    /// A substring of the path (`/order-plz`, `renewalInfo/`, `/my-order/`).
    pub path: Option<String>,
    /// A substring of the decoded JWS payload (an identifier, `"replaces"`).
    pub payload: Option<String>,
}

impl Match {
    /// POST requests whose path contains `path`.
    pub fn post(path: &str) -> Self {
        Self {
            method: Some("POST".into()),
            path: Some(path.into()),
            payload: None,
        }
    }

    /// GET requests whose path contains `path`.
    pub fn get(path: &str) -> Self {
        Self {
            method: Some("GET".into()),
            path: Some(path.into()),
            payload: None,
        }
    }

    /// Also require `text` in the decoded JWS payload.
    pub fn with_payload(mut self, text: &str) -> Self {
        self.payload = Some(text.into());
        self
    }

    /// Whether `record` (a request seen by the proxy) matches.
    pub fn matches(&self, record: &Record) -> bool {
        self.method.as_deref().is_none_or(|m| m == record.method)
            && self.path.as_deref().is_none_or(|p| record.path.contains(p))
            && self
                .payload
                .as_deref()
                .is_none_or(|p| record.payload.contains(p))
    }
}

/// What a [`Rule`] does instead of (or to) Pebble's answer.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer with this status, headers and body; Pebble never sees the request.
    Respond {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: String,
    },
    /// Reset the connection (TCP RST) without an answer.
    Reset,
    /// Forward to Pebble, which acts on the request, then reset the connection instead of
    /// answering: the client never learns what happened (a lost answer).
    ForwardThenReset,
    /// Forward after this delay (a slow CA).
    Delay(Duration),
    /// Forward; if Pebble's answer is an order that is `valid`, present it as `processing`
    /// without a certificate URL, with `Retry-After: <seconds>`. Only answers it changed
    /// count against [`Rule::times`].
    StillProcessing(u64),
}

impl Action {
    /// An ACME problem document answer.
    pub fn problem(status: u16, kind: &str, detail: &str, retry_after: Option<&str>) -> Self {
        let body = serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": detail,
            "status": status,
        });
        let mut headers = vec![("Content-Type".into(), "application/problem+json".into())];
        if let Some(ra) = retry_after {
            headers.push(("Retry-After".into(), ra.into()));
        }
        Action::Respond {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// 429 `rateLimited` with `Retry-After: <value>` (seconds or an HTTP date).
    pub fn rate_limited(retry_after: &str) -> Self {
        Self::problem(
            429,
            "rateLimited",
            "fault proxy: too many new orders",
            Some(retry_after),
        )
    }

    /// 503 with `Retry-After: <value>` (seconds or an HTTP date).
    pub fn unavailable(retry_after: &str) -> Self {
        Self::problem(
            503,
            "serverInternal",
            "fault proxy: the CA is down for maintenance",
            Some(retry_after),
        )
    }

    /// A renewalInfo answer (RFC 9773 §4.2) with this window (Unix seconds).
    pub fn ari_window(start: i64, end: i64, retry_after: Option<&str>) -> Self {
        let fmt = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t)
                .expect("window time")
                .format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339")
        };
        let body = serde_json::json!({"suggestedWindow": {"start": fmt(start), "end": fmt(end)}});
        let mut headers = vec![("Content-Type".into(), "application/json".into())];
        if let Some(ra) = retry_after {
            headers.push(("Retry-After".into(), ra.into()));
        }
        Action::Respond {
            status: 200,
            headers,
            body: body.to_string(),
        }
    }
}

/// A fault to inject: what, to which requests, how often.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Set when added.
    id: u64,
    /// Which requests.
    pub matcher: Match,
    /// What to do.
    pub action: Action,
    /// How many more times (`None`: every time).
    pub remaining: Option<u32>,
}

impl Rule {
    /// A rule applying every time.
    pub fn new(matcher: Match, action: Action) -> Self {
        Self {
            id: 0,
            matcher,
            action,
            remaining: None,
        }
    }

    /// Apply only `n` times.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }
}

/// A request the proxy saw, with what was answered.
#[derive(Debug, Clone)]
pub struct Record {
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, in Unix seconds (wall clock).
    pub unix: f64,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The decoded JWS payload of a POST (`""` for POST-as-GET and other requests).
    pub payload: String,
    /// The status answered (0 for a reset).
    pub status: u16,
    /// The `Location` header answered, if any (a new order's URL).
    pub location: Option<String>,
    /// The body answered.
    pub body: String,
    /// Whether a rule changed or replaced Pebble's answer.
    pub injected: bool,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Shared {
    upstream: String,
    client: HttpsClient,
    rules: Mutex<Vec<Rule>>,
    next_rule: std::sync::atomic::AtomicU64,
    log: Mutex<Vec<Record>>,
    events: broadcast::Sender<Record>,
}

/// A running fault proxy; stops when dropped.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listen on a free loopback port in front of `pebble`.
    pub async fn start(pebble: &Pebble) -> FaultProxy {
        let acceptor = tls_acceptor(pebble.dir());
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: format!("https://127.0.0.1:{}", pebble.acme_port()),
            client: upstream_client(&pebble.ca_cert_pem()),
            rules: Mutex::new(Vec::new()),
            next_rule: std::sync::atomic::AtomicU64::new(1),
            log: Mutex::new(Vec::new()),
            events: broadcast::channel(4096).0,
        });
        let task = tokio::spawn(accept_loop(listener, acceptor, shared.clone()));
        FaultProxy { port, shared, task }
    }

    /// The ACME directory URL through the proxy.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Add a rule (checked after the ones added before).
    pub fn add(&self, mut rule: Rule) {
        rule.id = self
            .shared
            .next_rule
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.shared.rules.lock().unwrap().push(rule);
    }

    /// Remove every rule.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Record> {
        self.shared.log.lock().unwrap().clone()
    }

    /// How many requests so far match `m`.
    pub fn count(&self, m: &Match) -> usize {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| m.matches(r))
            .count()
    }

    /// Requests as they are answered, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Record> {
        self.shared.events.subscribe()
    }
}

fn tls_acceptor(pebble_dir: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(pebble_dir.join("cert.pem"))
        .expect("Pebble's listener certificate")
        .collect::<Result<Vec<_>, _>>()
        .expect("Pebble's listener certificate");
    let key =
        PrivateKeyDer::from_pem_file(pebble_dir.join("key.pem")).expect("Pebble's listener key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("proxy TLS configuration");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn upstream_client(ca_pem: &str) -> HttpsClient {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("testkit CA"))
        .expect("testkit CA");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // A second handle on the socket, to reset it when a rule says so.
        let Ok(fd) = tcp.as_fd().try_clone_to_owned() else {
            continue;
        };
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let fd = Arc::new(Mutex::new(Some(fd)));
            let service = service_fn(move |request| handle(shared.clone(), fd.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Raised to make hyper drop the connection after its socket was set to reset.
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}

impl std::error::Error for ResetConnection {}

async fn handle(
    shared: Arc<Shared>,
    fd: Arc<Mutex<Option<OwnedFd>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ResetConnection> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let mut record = Record {
        at,
        unix,
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        payload: jws_payload(&body),
        status: 0,
        location: None,
        body: String::new(),
        injected: false,
    };
    let (rule, action) = match take_action(&shared, &record) {
        Some((rule, action)) => (rule, Some(action)),
        None => (0, None),
    };
    let response = match action {
        Some(Action::Reset) => {
            record.injected = true;
            finish(&shared, record);
            if let Some(fd) = fd.lock().unwrap().take() {
                let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
            }
            return Err(ResetConnection);
        }
        Some(Action::ForwardThenReset) => {
            let answer = forward(&shared, &parts, body).await;
            record.injected = true;
            record.status = answer.status().as_u16();
            finish(&shared, record);
            if let Some(fd) = fd.lock().unwrap().take() {
                let _ = socket2::SockRef::from(&fd).set_linger(Some(Duration::ZERO));
            }
            return Err(ResetConnection);
        }
        Some(Action::Respond {
            status,
            headers,
            body,
        }) => {
            record.injected = true;
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    name.parse::<http::HeaderName>(),
                    HeaderValue::from_str(&value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
        Some(Action::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            forward(&shared, &parts, body).await
        }
        Some(Action::StillProcessing(retry_after)) => {
            let (response, changed) =
                pretend_processing(forward(&shared, &parts, body).await, retry_after);
            if changed {
                consume(&shared, rule);
            }
            record.injected = changed;
            response
        }
        None => forward(&shared, &parts, body).await,
    };
    let (response, answered) = split_body(response).await;
    record.status = response.status().as_u16();
    record.location = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    record.body = String::from_utf8_lossy(&answered).into_owned();
    finish(&shared, record);
    Ok(response.map(|_| Full::new(answered)))
}

/// The first live rule for `record`, counted as used unless it only sometimes applies.
fn take_action(shared: &Shared, record: &Record) -> Option<(u64, Action)> {
    let mut rules = shared.rules.lock().unwrap();
    let rule = rules
        .iter_mut()
        .find(|r| r.matcher.matches(record) && r.remaining != Some(0))?;
    if !matches!(rule.action, Action::StillProcessing(_))
        && let Some(n) = &mut rule.remaining
    {
        *n -= 1;
    }
    Some((rule.id, rule.action.clone()))
}

/// Count one use of the rule with id `id`.
fn consume(shared: &Shared, id: u64) {
    let mut rules = shared.rules.lock().unwrap();
    if let Some(n) = rules
        .iter_mut()
        .find(|r| r.id == id)
        .and_then(|r| r.remaining.as_mut())
    {
        *n = n.saturating_sub(1);
    }
}

fn finish(shared: &Shared, record: Record) {
    shared.log.lock().unwrap().push(record.clone());
    let _ = shared.events.send(record);
}

async fn split_body(response: Response<Full<Bytes>>) -> (Response<()>, Bytes) {
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (Response::from_parts(parts, ()), bytes)
}

async fn forward(
    shared: &Shared,
    parts: &http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path}", shared.upstream));
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    let request = builder.body(Full::new(body)).expect("upstream request");
    match shared.client.request(request).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Response::from_parts(parts, Full::new(bytes))
        }
        Err(e) => {
            let mut response = Response::new(Full::new(Bytes::from(format!(
                "fault proxy: upstream failed: {e}"
            ))));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

/// An order answer that says `valid`, turned into `processing` with a Retry-After; whether
/// it was changed.
fn pretend_processing(
    response: Response<Full<Bytes>>,
    retry_after: u64,
) -> (Response<Full<Bytes>>, bool) {
    let (parts, body) = response.into_parts();
    let bytes = futures_bytes(body);
    let Ok(mut order) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return (Response::from_parts(parts, Full::new(bytes)), false);
    };
    if order["status"] != "valid" || order.get("finalize").is_none() {
        return (Response::from_parts(parts, Full::new(bytes)), false);
    }
    order["status"] = "processing".into();
    if let Some(map) = order.as_object_mut() {
        map.remove("certificate");
    }
    let mut response = Response::from_parts(parts, Full::new(Bytes::from(order.to_string())));
    response.headers_mut().remove(http::header::CONTENT_LENGTH);
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        HeaderValue::from_str(&retry_after.to_string()).expect("number"),
    );
    (response, true)
}

/// The bytes of a `Full` body (always ready).
fn futures_bytes(body: Full<Bytes>) -> Bytes {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    let mut body = pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    match hyper::body::Body::poll_frame(body.as_mut(), &mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// The decoded payload of a flattened JWS body, or `""`.
fn jws_payload(body: &[u8]) -> String {
    let Ok(jws) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let payload = jws["payload"].as_str().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map(|p| String::from_utf8_lossy(&p).into_owned())
        .unwrap_or_default()
}
