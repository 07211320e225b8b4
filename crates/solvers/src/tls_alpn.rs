//! TLS-ALPN-01 (RFC 8737): a rustls listener that, for a pending challenge, completes a
//! handshake offering ALPN `acme-tls/1` with the identifier as SNI using a self-signed
//! certificate carrying the critical `acmeIdentifier` extension (SHA-256 of the key
//! authorization, RFC 8737 §3), then closes the connection. Every other handshake fails: no
//! `acme-tls/1` offered, no SNI, or no challenge pending for the name.
//!
//! [`TlsAlpn01Solver`] fills the [`TlsAlpnResponder`]'s table; [`serve`] runs the listener.
//! The table lives in memory, in the process that runs the order; port 443 of every name must
//! reach that process (route `acme-tls/1` connections to it).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use certfleet_core::{ChallengeKind, PendingChallenge, Solver, SolverError};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// The ALPN protocol of RFC 8737 §6.2.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Bound on one handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The challenge certificates currently served, by lowercase identifier.
#[derive(Debug, Default)]
pub struct TlsAlpnResponder {
    certs: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl TlsAlpnResponder {
    /// An empty responder, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// How many names have a challenge certificate.
    pub fn len(&self) -> usize {
        self.certs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.certs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name.to_ascii_lowercase())
            .cloned()
    }
}

#[derive(Debug)]
struct Resolver(Arc<TlsAlpnResponder>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if !offers_acme {
            return None;
        }
        self.0.get(hello.server_name()?)
    }
}

/// The challenge certificate for `identifier` and `key_authorization` (RFC 8737 §3).
pub fn challenge_certificate(
    identifier: &str,
    key_authorization: &str,
) -> Result<CertifiedKey, Error> {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Tls(format!("challenge key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec![identifier.to_string()])
        .map_err(|e| Error::Tls(format!("challenge certificate for {identifier}: {e}")))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest.as_ref())];
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Tls(format!("challenge certificate for {identifier}: {e}")))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
        .map_err(|e| Error::Tls(format!("challenge key: {e}")))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

/// The rustls configuration of the listener.
pub fn server_config(responder: Arc<TlsAlpnResponder>) -> Result<rustls::ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(responder)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(config)
}

/// Accept connections on `listener` until `stopped` turns true; each gets one handshake and
/// is then closed.
pub async fn serve(
    listener: TcpListener,
    responder: Arc<TlsAlpnResponder>,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), Error> {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(responder)?));
    loop {
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return Ok(()),
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "TLS-ALPN-01 accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(mut tls)) => {
                    let name = tls
                        .get_ref()
                        .1
                        .server_name()
                        .unwrap_or_default()
                        .to_string();
                    tracing::debug!(%peer, %name, "answered a TLS-ALPN-01 handshake");
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "refused a TLS handshake"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Serves TLS-ALPN-01 challenge certificates through a [`TlsAlpnResponder`].
pub struct TlsAlpn01Solver {
    responder: Arc<TlsAlpnResponder>,
}

impl TlsAlpn01Solver {
    /// A solver filling `responder`.
    pub fn new(responder: Arc<TlsAlpnResponder>) -> Self {
        Self { responder }
    }
}

#[async_trait]
impl Solver for TlsAlpn01Solver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::TlsAlpn01
    }

    async fn present(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let mut built = Vec::with_capacity(challenges.len());
        for c in challenges {
            let (id, ka) = (
                c.identifier.clone(),
                c.key_authorization.expose().to_string(),
            );
            let cert = tokio::task::spawn_blocking(move || challenge_certificate(&id, &ka))
                .await
                .map_err(|e| {
                    SolverError::new(ChallengeKind::TlsAlpn01, format!("certificate task: {e}"))
                })?
                .map_err(|e| e.into_solver_error(ChallengeKind::TlsAlpn01))?;
            built.push((c.identifier.to_ascii_lowercase(), Arc::new(cert)));
        }
        let mut certs = self
            .responder
            .certs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        certs.extend(built);
        Ok(())
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let mut certs = self
            .responder
            .certs
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for c in challenges {
            certs.remove(&c.identifier.to_ascii_lowercase());
        }
        Ok(())
    }
}
