//! The HTTPS client certfleet uses to reach a CA.
//!
//! Trusts the system's roots plus any extra roots configured for the issuer (a private CA, or
//! Pebble in tests), and bounds every request by a timeout so that a CA that accepts a
//! connection and never answers cannot stall an order forever.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::AcmeError;

/// Default bound on one request to the CA.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
        let fut = self.inner.request(req);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(Ok(rsp)) => Ok(BytesResponse::from(rsp)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no answer within {} s", timeout.as_secs_f32()).into(),
                )),
            }
        })
    }
}
