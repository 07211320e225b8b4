//! What an endpoint really serves: a TLS handshake that records the certificate chain, and
//! checks of that chain against trust roots and a name.
//!
//! The handshake is a real one: the server must prove it holds the private key of the leaf
//! (the signature is verified with the leaf's public key), but the chain itself is accepted
//! whatever it is and then inspected, so that an expired or self-made certificate can still be
//! reported. [`wait_for_serial`] polls (10 ms, growing to 250 ms) until the wanted serial is
//! served in three handshakes in a row, or a deadline passes; there are no fixed sleeps.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::DeployError;

/// First interval between handshakes while waiting for a serial.
pub const POLL_FIRST: Duration = Duration::from_millis(10);
/// Longest interval between handshakes while waiting for a serial.
pub const POLL_MAX: Duration = Duration::from_millis(250);
/// Handshakes in a row that must show the new serial. Right after a reload, nginx's old
/// workers still accept connections for a moment beside the new ones; one lucky handshake with
/// a new worker does not prove that every connection gets the new certificate.
pub const CONFIRMATIONS: u32 = 3;
/// Pause between the confirming handshakes.
pub const CONFIRM_SPACING: Duration = Duration::from_millis(50);

/// Details of the served leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServedCertificate {
    /// Serial, lowercase hex without leading zero bytes (as certfleet stores serials).
    pub serial: String,
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// DNS subjectAltNames.
    pub dns_names: Vec<String>,
    /// SHA-256 of the DER, `AB:CD:...` as `openssl x509 -fingerprint -sha256` prints it.
    pub sha256: String,
}

/// What a handshake showed.
#[derive(Debug, Clone)]
pub struct Served {
    /// The leaf.
    pub leaf: ServedCertificate,
    /// Every certificate the server sent, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Negotiated protocol version (`TLSv1_3`).
    pub protocol: String,
}

/// The name to send as SNI for a certificate's first name: wildcards cannot be sent, so
/// `*.example.com` becomes `certfleet-check.example.com`.
pub fn sni_for(domain: &str) -> String {
    match domain.strip_prefix("*.") {
        Some(rest) => format!("certfleet-check.{rest}"),
        None => domain.to_string(),
    }
}

/// Connect to `endpoint` (`host:port`), handshake with `server_name` as SNI (an IP address
/// sends none) and read the chain, all within `timeout`.
pub async fn fetch(
    endpoint: &str,
    server_name: &str,
    timeout: Duration,
) -> Result<Served, DeployError> {
    match tokio::time::timeout(timeout, fetch_inner(endpoint, server_name)).await {
        Ok(result) => result,
        Err(_) => Err(DeployError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: format!("no TLS handshake within {} ms", timeout.as_millis()),
        }),
    }
}

async fn fetch_inner(endpoint: &str, server_name: &str) -> Result<Served, DeployError> {
    let name = parse_server_name(server_name)?;
    let tcp = TcpStream::connect(endpoint)
        .await
        .map_err(|e| DeployError::Unreachable {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let recorder = Arc::new(Recorder::new());
    let config = client_config(recorder.clone());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = connector.connect(name, tcp).await;
    let chain = recorder.chain.lock().map(|c| c.clone()).unwrap_or_default();
    let stream = handshake.map_err(|e| DeployError::Handshake {
        endpoint: endpoint.to_string(),
        reason: e.to_string(),
    })?;
    let protocol = stream
        .get_ref()
        .1
        .protocol_version()
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    drop(stream);
    let leaf = chain.first().ok_or_else(|| DeployError::Handshake {
        endpoint: endpoint.to_string(),
        reason: "the server sent no certificate".into(),
    })?;
    let leaf = describe(leaf).map_err(|reason| DeployError::Handshake {
        endpoint: endpoint.to_string(),
        reason,
    })?;
    Ok(Served {
        leaf,
        chain,
        protocol,
    })
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>, DeployError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(name.to_string())
        .map_err(|_| DeployError::Trust(format!("{name:?} is not a valid server name")))
}

fn client_config(recorder: Arc<Recorder>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder)
        .with_no_client_auth()
}

/// Accepts any chain (and records it) but checks the handshake signature with the leaf's key.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Recorder {
    fn new() -> Self {
        Self {
            chain: Mutex::new(Vec::new()),
            algorithms: rustls::crypto::aws_lc_rs::default_provider()
                .signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            *chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Read a DER certificate's details.
pub fn describe(der: &CertificateDer<'_>) -> Result<ServedCertificate, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(s) => Some(s.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(ServedCertificate {
        serial: serial_hex(cert.raw_serial()),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        dns_names,
        sha256: fingerprint(der),
    })
}

/// SHA-256 of DER bytes as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub use certfleet_core::serial_hex;

/// How [`wait_for_serial`] ended.
#[derive(Debug, Clone)]
pub enum Wait {
    /// The serial was served after this long.
    Served(Duration),
    /// The deadline passed; what was last seen.
    TimedOut {
        /// The serial last served, if a handshake succeeded.
        last_serial: Option<String>,
        /// The last handshake error, if the last one failed.
        last_error: Option<String>,
    },
}

/// Handshake with `endpoint` until it serves `serial` in [`CONFIRMATIONS`] handshakes in a
/// row, or `timeout` passes.
pub async fn wait_for_serial(
    endpoint: &str,
    server_name: &str,
    serial: &str,
    timeout: Duration,
) -> Wait {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut interval = POLL_FIRST;
    let mut last_serial = None;
    let mut in_a_row = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = fetch(endpoint, server_name, left.max(Duration::from_millis(1))).await;
        let last_error = match attempt {
            Ok(served) if served.leaf.serial == serial => {
                in_a_row += 1;
                if in_a_row >= CONFIRMATIONS {
                    return Wait::Served(started.elapsed());
                }
                last_serial = Some(served.leaf.serial);
                if Instant::now() + CONFIRM_SPACING < deadline {
                    tokio::time::sleep(CONFIRM_SPACING).await;
                    continue;
                }
                None
            }
            Ok(served) => {
                in_a_row = 0;
                last_serial = Some(served.leaf.serial);
                None
            }
            Err(e) => {
                in_a_row = 0;
                Some(e.to_string())
            }
        };
        if Instant::now() + interval >= deadline {
            return Wait::TimedOut {
                last_serial,
                last_error,
            };
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 3 / 2).min(POLL_MAX);
    }
}

/// Trust roots: a PEM file of CA certificates, or the system's.
pub fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, DeployError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| DeployError::Trust(format!("{}: {e}", path.display())))?;
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    DeployError::Trust(format!("{}: invalid PEM: {e}", path.display()))
                })?;
                store.add(cert).map_err(|e| {
                    DeployError::Trust(format!("{}: unusable CA certificate: {e}", path.display()))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(DeployError::Trust(format!(
                    "{} holds no PEM certificate",
                    path.display()
                )));
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            for cert in loaded.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(DeployError::Trust(
                    "no system trust roots found (install ca-certificates, or pass a CA file)"
                        .into(),
                ));
            }
        }
    }
    Ok(store)
}

/// Check that `served` chains to `roots` and is valid for `server_name` now; the error says
/// why not in words (expired, unknown issuer, wrong name).
pub fn verify(served: &Served, server_name: &str, roots: RootCertStore) -> Result<(), String> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let name = parse_server_name(server_name).map_err(|e| e.to_string())?;
    let (leaf, rest) = served
        .chain
        .split_first()
        .ok_or_else(|| "no certificate".to_string())?;
    verifier
        .verify_server_cert(leaf, rest, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| explain(&e, server_name))
}

fn explain(error: &rustls::Error, server_name: &str) -> String {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the certificate is not valid yet".into()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("the certificate is not valid for {server_name}")
            }
            C::UnknownIssuer => "the chain does not lead to a trusted root".into(),
            C::Revoked => "the certificate is revoked".into(),
            other => format!("the certificate is not trusted: {other:?}"),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_replaces_wildcards() {
        assert_eq!(sni_for("*.example.com"), "certfleet-check.example.com");
        assert_eq!(sni_for("www.example.com"), "www.example.com");
    }

    #[test]
    fn fingerprints_match_openssls_format() {
        let f = fingerprint(b"abc");
        assert_eq!(
            f,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn describes_a_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example.test".into()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x0a, 0xbc]));
        let cert = params.self_signed(&key).unwrap();
        let info = describe(cert.der()).unwrap();
        assert_eq!(info.serial, "0abc");
        assert_eq!(info.dns_names, ["a.example.test"]);
    }
}
