//! [`WebhookNotifier`]: POSTs each notification as JSON — `text` (what Slack, Rocket.Chat and
//! Mattermost incoming webhooks show) plus the structured fields of [`Notification`].
//!
//! The URL often is the secret (Slack's carries its token in the path), so it is never
//! logged or shown: errors name the notifier and `Debug` redacts it. A 2xx answer is success;
//! 429 and 5xx are retried by the dispatcher; other statuses are given up at once.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{Notification, Notifier, NotifyError};
use certfleet_core::text::error_chain;

/// Most bytes of a refusal's body quoted in the log.
const MAX_QUOTED_BODY: usize = 200;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A webhook receiver.
pub struct WebhookNotifier {
    name: String,
    url: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpsClient,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("name", &self.name)
            .field("url", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier POSTing to `url` (http or https) with extra `headers` (values are secrets),
    /// trusting the system's roots plus `ca_roots` (PEM files) for https.
    pub fn new(
        name: &str,
        url: Uri,
        headers: Vec<(HeaderName, HeaderValue)>,
        ca_roots: &[PathBuf],
        field: &str,
    ) -> Result<Self, NotifyError> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for (i, path) in ca_roots.iter().enumerate() {
            add_roots(&mut roots, path, &format!("{field}.ca_roots[{i}]"))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| NotifyError::Config {
                field: field.to_string(),
                message: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            name: name.to_string(),
            url,
            headers,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn post(&self, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(n).map_err(|e| self.unreachable(e.to_string()))?;
        let mut request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "certfleet");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.unreachable(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let quoted: String = self
            .redact(&String::from_utf8_lossy(&body))
            .chars()
            .take(MAX_QUOTED_BODY)
            .collect();
        Err(NotifyError::Refused {
            notifier: self.name.clone(),
            reason: format!("HTTP {status}: {}", quoted.trim()),
            retryable: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
        })
    }

    /// `text` with the URL, its path and every header value blanked out: a receiver that
    /// echoes the request must not put a secret into our log.
    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        let url = self.url.to_string();
        let path = self.url.path_and_query().map(|p| p.as_str().to_string());
        let values = self
            .headers
            .iter()
            .filter_map(|(_, v)| v.to_str().ok().map(str::to_string));
        for secret in [Some(url), path].into_iter().flatten().chain(values) {
            if secret.len() > 1 {
                out = out.replace(&secret, "<redacted>");
            }
        }
        out
    }

    fn unreachable(&self, reason: String) -> NotifyError {
        NotifyError::Unreachable {
            notifier: self.name.clone(),
            reason,
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, batch: &[Notification]) -> Result<(), NotifyError> {
        for n in batch {
            self.post(n).await?;
        }
        Ok(())
    }
}

/// Add every certificate of a PEM file to `roots`.
pub(crate) fn add_roots(
    roots: &mut RootCertStore,
    path: &std::path::Path,
    field: &str,
) -> Result<(), NotifyError> {
    let bad = |message: String| NotifyError::Config {
        field: field.to_string(),
        message: format!("{}: {message}", path.display()),
    };
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
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_secrets_are_redacted() {
        let mut token = HeaderValue::from_static("Bearer tok-123");
        token.set_sensitive(true);
        let hook = WebhookNotifier::new(
            "chat",
            "https://hooks.example.test/services/T0/B0/sec-456"
                .parse()
                .unwrap(),
            vec![(header::AUTHORIZATION, token)],
            &[],
            "notifiers[0]",
        )
        .unwrap();
        let echoed = "POST /services/T0/B0/sec-456 authorization: Bearer tok-123";
        assert_eq!(
            hook.redact(echoed),
            "POST <redacted> authorization: <redacted>"
        );
        assert!(!format!("{hook:?}").contains("sec-456"));
    }
}
