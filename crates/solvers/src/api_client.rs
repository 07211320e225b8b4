//! A small HTTPS client for DNS provider APIs (Cloudflare, Route 53, acme-dns) and for the
//! HTTP-01 self-check: system trust roots, a timeout on every request, and plain `http://`
//! only towards loopback addresses (tests, or a local acme-dns), so credentials never cross a
//! network unencrypted.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::Error;
use certfleet_core::text::error_chain;

/// Default bound on one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body read.
const MAX_BODY: usize = 4 << 20;

type Inner = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The answer to a request.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl ApiResponse {
    /// The body as (lossy) text, cut to `max` characters for error messages.
    pub fn text(&self, max: usize) -> String {
        let t = String::from_utf8_lossy(&self.body);
        t.chars().take(max).collect()
    }
}

/// The client.
#[derive(Clone)]
pub struct ApiClient {
    inner: Inner,
    timeout: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client trusting the system roots.
    pub fn new(timeout: Duration) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            inner: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// Send `request`; `what` names the call in errors (`POST /zones/ID/dns_records`).
    pub async fn send(&self, request: Request<Bytes>) -> Result<ApiResponse, String> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let work = async {
            let rsp = self
                .inner
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            let (parts, body) = rsp.into_parts();
            let body = http_body_util::Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(ApiResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| format!("no answer within {} s", self.timeout.as_secs()))?
    }

    /// Build and send a request with a body and headers.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<ApiResponse, String> {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, v);
        }
        let request = builder.body(body).map_err(|e| e.to_string())?;
        self.send(request).await
    }
}

/// Check an API base URL from the config: `https://`, or `http://` towards a loopback
/// address. Returns it without a trailing slash.
pub fn check_base_url(field: &str, url: &str) -> Result<String, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|_| Error::config(field, format!("{url:?} is not a URL")))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => {}
        Some("http") if is_loopback(host) => {}
        Some("http") => {
            return Err(Error::config(
                field,
                format!(
                    "{url:?}: credentials are sent only over https:// (http:// is allowed for loopback addresses only)"
                ),
            ));
        }
        _ => {
            return Err(Error::config(
                field,
                format!("{url:?} is not an https:// URL"),
            ));
        }
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Whether `host` is `localhost` or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
