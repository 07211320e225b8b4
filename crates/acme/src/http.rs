//! The HTTPS client certfleet uses to reach a CA.
//!
//! Trusts the system's roots plus any extra roots configured for the issuer (a private CA, or
//! Pebble in tests), and bounds every request by a timeout so that a CA that accepts a
//! connection and never answers cannot stall an order forever.
//!
//! A `503 Service Unavailable` with a short Retry-After (at most [`INLINE_RETRY_MAX`]) is
//! sent again after the delay, up to [`INLINE_RETRIES`] times, instead of failing the order.
//! The Retry-After of the last error answer is kept for the caller in [`Hints`]: wrap the
//! work in [`with_hints`] to read it (instant-acme does not hand response headers back).

use std::cell::RefCell;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::AcmeError;

/// What certfleet calls itself in requests to a CA (RFC 8555 §6.1).
pub const USER_AGENT: &str = concat!("certfleet/", env!("CARGO_PKG_VERSION"));
/// Default bound on one request to the CA.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest Retry-After of a 503 answer that is waited out within the request.
pub const INLINE_RETRY_MAX: Duration = Duration::from_secs(30);
/// How many times one request is sent again after a 503 with a short Retry-After.
pub const INLINE_RETRIES: u32 = 3;

/// What the last error answer from the CA said beyond its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// Its `Retry-After` header, as sent.
    pub retry_after: Option<String>,
    /// Its status.
    pub status: Option<u16>,
}

tokio::task_local! {
    static HINTS: RefCell<Hints>;
}

/// Run `work`, returning its output and the [`Hints`] of the last answer if it was an error
/// (cleared by every successful answer in between).
pub async fn with_hints<F: Future>(work: F) -> (F::Output, Hints) {
    HINTS
        .scope(RefCell::new(Hints::default()), async {
            let out = work.await;
            let hints = HINTS.with(|h| h.borrow().clone());
            (out, hints)
        })
        .await
}

fn record_hints<B>(response: &Response<B>) {
    let status = response.status();
    let _ = HINTS.try_with(|h| {
        let mut h = h.borrow_mut();
        if status.is_client_error() || status.is_server_error() {
            h.retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            h.status = Some(status.as_u16());
        } else {
            *h = Hints::default();
        }
    });
}

/// How long a 503 answer asks to wait, if it is short enough to wait within the request.
fn inline_wait<B>(response: &Response<B>) -> Option<Duration> {
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = response
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    let now = certfleet_core::time::now();
    let at = certfleet_core::policy::retry_after(value, now)?;
    let wait = Duration::from_secs(u64::try_from(at - now).ok()?);
    (wait <= INLINE_RETRY_MAX).then_some(wait.max(Duration::from_millis(100)))
}

type Inner = Client<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// An [`HttpClient`] for instant-acme with extra trust roots and a per-request timeout.
#[derive(Clone)]
pub struct CaClient {
    inner: Inner,
    timeout: Duration,
}

impl CaClient {
    /// Build a client trusting the system roots and every certificate in `extra_roots` (PEM files).
    pub fn new(extra_roots: &[impl AsRef<Path>], timeout: Duration) -> Result<Self, AcmeError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for path in extra_roots {
            add_pem_roots(&mut roots, path.as_ref())?;
        }
        if roots.is_empty() {
            return Err(AcmeError::Config(
                "no trust roots: the system has none and no ca_roots are configured".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AcmeError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        // ACME is many small request/response exchanges; without TCP_NODELAY, Nagle's
        // algorithm and delayed ACKs add tens of milliseconds to each (docs/benchmarks.md).
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { inner, timeout })
    }
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), AcmeError> {
    let bad = |why: String| AcmeError::Config(format!("trust root file {}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| bad(format!("not valid PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable certificate: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad("contains no PEM certificate".into()));
    }
    Ok(())
}

impl HttpClient for CaClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let inner = self.inner.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let mut attempt = 0;
            loop {
                let mut builder = Request::builder()
                    .method(parts.method.clone())
                    .uri(parts.uri.clone())
                    .version(parts.version);
                if let Some(headers) = builder.headers_mut() {
                    headers.extend(parts.headers.clone());
                    // RFC 8555 §6.1: clients send a User-Agent (Pebble ≥ 2.7 requires one).
                    headers
                        .entry(http::header::USER_AGENT)
                        .or_insert(http::HeaderValue::from_static(USER_AGENT));
                }
                let request = builder
                    .body(BodyWrapper::from(body.to_vec()))
                    .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
                let response = match tokio::time::timeout(timeout, inner.request(request)).await {
                    Ok(Ok(rsp)) => rsp,
                    Ok(Err(e)) => return Err(instant_acme::Error::Other(Box::new(e))),
                    Err(_) => {
                        return Err(instant_acme::Error::Other(
                            format!("no answer within {} s", timeout.as_secs_f32()).into(),
                        ));
                    }
                };
                if attempt < INLINE_RETRIES
                    && let Some(wait) = inline_wait(&response)
                {
                    attempt += 1;
                    tracing::info!(
                        url = %parts.uri,
                        wait_secs = wait.as_secs_f32(),
                        "the CA answered 503 with a short Retry-After; sending again after it"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                record_hints(&response);
                return Ok(BytesResponse::from(response));
            }
        })
    }
}
