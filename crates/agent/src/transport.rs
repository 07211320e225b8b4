//! Talking to the certfleet server from another machine: HTTPS trusting a CA file, the system
//! roots or a pinned fingerprint; plain HTTP only to a loopback address. Used by the agent and
//! by the CLI's `--server https://...`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use certfleet_core::Secret;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AgentError;
use crate::pin::{Fingerprint, PinMismatch, PinnedVerifier};

/// Largest answer read from the server.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How the server's TLS certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's roots (a server with a publicly trusted certificate).
    System,
    /// The CA certificates in this PEM file (e.g. the server's `tls/ca.pem`).
    CaFile(PathBuf),
    /// A certificate of the server's chain with this SHA-256 fingerprint.
    Pin(Fingerprint),
}

/// The HTTP client type (HTTPS and loopback HTTP).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client trusting the server as `trust` says.
pub fn http_client(trust: &Trust) -> Result<HttpClient, AgentError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Config(format!("TLS: {e}")))?;
    let config = match trust {
        Trust::System => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::CaFile(path) => {
            let roots = certfleet_deploy::probe::roots(Some(path))
                .map_err(|e| AgentError::Config(format!("ca_file: {e}")))?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(*pin)))
            .with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Check a server URL: `https://HOST[:PORT]`, or `http://` to a loopback address only.
/// Returns it without a trailing slash.
pub fn check_server_url(url: &str) -> Result<String, AgentError> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        AgentError::Config(format!(
            "server {url:?} is not a URL; write https://HOST:PORT (or http://127.0.0.1:PORT on the server's machine)"
        ))
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || rest.contains(['/', '?', '#']) {
        return Err(AgentError::Config(format!(
            "server {url:?} must be just a scheme, host and port, such as https://certfleet.example.com:8556"
        )));
    }
    match scheme {
        "https" => Ok(url.to_string()),
        "http" if is_loopback(authority) => Ok(url.to_string()),
        "http" => Err(AgentError::Config(format!(
            "server {url:?}: plain http:// is allowed to a loopback address only; use https:// (the server's --tls-listen) with a CA file or a pinned fingerprint"
        ))),
        other => Err(AgentError::Config(format!(
            "server {url:?}: unknown scheme {other:?}; use https://"
        ))),
    }
}

fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An error as one line, with a pinned-fingerprint mismatch said plainly.
pub fn describe_error(err: &(dyn std::error::Error + 'static)) -> String {
    if let Some(mismatch) = find_pin_mismatch(err) {
        return mismatch;
    }
    let mut parts = Vec::new();
    let mut node: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = node {
        let text = e.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        node = e.source();
    }
    let text = parts.join(": ");
    if text.contains("UnknownIssuer") {
        // The server's own CA (the internal one) is not among the system roots.
        return format!(
            "{text} (the server's certificate is not signed by a CA this machine trusts: pin it \
             with the fingerprint `certfleet server info` prints, or trust the server's tls/ca.pem)"
        );
    }
    text
}

/// The pinned-fingerprint mismatch somewhere in `err`'s chain, said plainly.
pub fn find_pin_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut node: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = node {
        if let Some(mismatch) = pin_mismatch(e) {
            return Some(mismatch);
        }
        node = e.source();
    }
    None
}

fn pin_mismatch(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    // io::Error hides what it wraps from `source()`; connectors nest them, so unwrap by hand.
    let mut e = e;
    while let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        e = inner;
    }
    let rustls_error = e.downcast_ref::<rustls::Error>()?;
    match rustls_error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => other
            .0
            .downcast_ref::<PinMismatch>()
            .map(ToString::to_string),
        _ => None,
    }
}

/// The server, its token and the client.
pub struct ServerClient {
    base: String,
    token: Secret,
    http: HttpClient,
}

impl ServerClient {
    /// A client for `server` (checked with [`check_server_url`]).
    pub fn new(server: &str, token: Secret, trust: &Trust) -> Result<Self, AgentError> {
        Ok(Self {
            base: check_server_url(server)?,
            token,
            http: http_client(trust)?,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` and decode the JSON answer.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, AgentError> {
        let body = self.send(Method::GET, path, None::<&()>, timeout).await?;
        decode(path, &body)
    }

    /// POST a JSON body; the answer's body is returned raw.
    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<Bytes, AgentError> {
        self.send(Method::POST, path, Some(body), timeout).await
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Bytes, AgentError> {
        let url = format!("{}{path}", self.base);
        let payload = match body {
            Some(b) => {
                Bytes::from(serde_json::to_vec(b).map_err(|e| AgentError::Protocol(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.token.expose()),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(payload))
            .map_err(|e| AgentError::Config(format!("{url}: {e}")))?;
        let unreachable = |reason: String| AgentError::Unreachable {
            server: self.base.clone(),
            reason,
        };
        let exchange = async {
            let response =
                self.http
                    .request(request)
                    .await
                    .map_err(|e| match find_pin_mismatch(&e) {
                        Some(reason) => AgentError::Untrusted {
                            server: self.base.clone(),
                            reason,
                        },
                        None => unreachable(describe_error(&e)),
                    })?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, AgentError>((status, body))
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", timeout.as_secs())))??;
        if status.is_success() {
            return Ok(body);
        }
        Err(refused(status, &body))
    }
}

fn refused(status: StatusCode, body: &[u8]) -> AgentError {
    #[derive(serde::Deserialize)]
    struct Problem {
        detail: String,
    }
    let detail = serde_json::from_slice::<Problem>(body)
        .map(|p| p.detail)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string());
    AgentError::Refused {
        status: status.as_u16(),
        detail,
    }
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, AgentError> {
    serde_json::from_slice(body)
        .map_err(|e| AgentError::Protocol(format!("unexpected answer to {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_server_url("http://127.0.0.1:8555/").is_ok());
        assert!(check_server_url("http://[::1]:8555").is_ok());
        assert!(check_server_url("http://localhost:8555").is_ok());
        assert!(check_server_url("https://certfleet.example.com:8556").is_ok());
        let e = check_server_url("http://10.0.0.1:8555")
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = check_server_url("127.0.0.1:8555").unwrap_err().to_string();
        assert!(e.contains("not a URL"), "{e}");
        assert!(check_server_url("https://x.example/api").is_err());
    }
}
