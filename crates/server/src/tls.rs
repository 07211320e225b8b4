//! The API over TLS, for agents and CLIs on other machines.
//!
//! With `--tls-cert`/`--tls-key` the server presents that chain. Without them it runs a small
//! internal CA kept in the data directory (`tls/`, created on first run): the CA's key never
//! leaves it, and a server certificate for `localhost`, `127.0.0.1`, `::1`, the host name and
//! every `--tls-name` is issued (again when the names change or it nears its end). Agents trust
//! `tls/ca.pem` or pin its SHA-256 fingerprint, which the server prints at start and
//! `certfleet server info` shows.
//!
//! | file                  | mode | content                              |
//! |-----------------------|------|--------------------------------------|
//! | `tls/ca.pem`          | 0644 | the internal CA (what agents trust)  |
//! | `tls/ca-key.pem`      | 0600 | its key                              |
//! | `tls/server.pem`      | 0644 | the API's certificate, then the CA   |
//! | `tls/server-key.pem`  | 0600 | its key                              |
//! | `tls/server-names`    | 0644 | the names it was issued for          |

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::ServerError;
use crate::datadir::DataDir;
use crate::fsutil::{create_private_dir, write_atomic};

/// Lifetime of the internal CA.
const CA_DAYS: i64 = 3650;
/// Lifetime of the API's certificate from the internal CA.
const SERVER_DAYS: i64 = 365;
/// The API's certificate is issued again when fewer days than this are left.
const RENEW_WITHIN_DAYS: i64 = 30;
/// Bound on one TLS handshake with a client.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting to be served.
const ACCEPT_QUEUE: usize = 64;

/// Where the API's TLS certificate comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `--tls-cert`: PEM chain, leaf first.
    pub cert: Option<PathBuf>,
    /// `--tls-key`: PEM private key.
    pub key: Option<PathBuf>,
    /// `--tls-name`: extra names (DNS or IP) for the internal CA's certificate.
    pub names: Vec<String>,
}

/// A ready TLS configuration.
pub struct TlsSetup {
    /// For the acceptor.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the certificate to pin (`SHA256:AB:CD:...`): the internal CA, or the given
    /// leaf.
    pub fingerprint: String,
    /// The CA file agents can trust (internal CA only).
    pub ca_file: Option<PathBuf>,
}

/// Load `--tls-cert/--tls-key`, or the internal CA (creating it on first run).
pub fn setup(data: &DataDir, settings: &TlsSettings) -> Result<TlsSetup, ServerError> {
    let (chain, key, fingerprint, ca_file) = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            let chain = read_chain(cert)?;
            let key = read_key(key)?;
            let fingerprint = format!("SHA256:{}", certfleet_deploy::probe::fingerprint(&chain[0]));
            (chain, key, fingerprint, None)
        }
        (None, None) => internal_ca(data, &settings.names)?,
        _ => {
            return Err(ServerError::Startup(
                "--tls-cert and --tls-key go together".into(),
            ));
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Startup(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Startup(format!("TLS certificate and key: {e}")))?;
    Ok(TlsSetup {
        config: Arc::new(config),
        fingerprint,
        ca_file,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let pem = std::fs::read(path)
        .map_err(|e| ServerError::io(format!("reading --tls-cert {}", path.display()), e))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ServerError::Startup(format!("--tls-cert {}: invalid PEM: {e}", path.display()))
        })?;
    if chain.is_empty() {
        return Err(ServerError::Startup(format!(
            "--tls-cert {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    let pem = std::fs::read(path)
        .map_err(|e| ServerError::io(format!("reading --tls-key {}", path.display()), e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        ServerError::Startup(format!(
            "--tls-key {}: no usable private key: {e}",
            path.display()
        ))
    })
}

/// The files of the internal CA.
pub struct CaFiles {
    dir: PathBuf,
}

impl CaFiles {
    /// The internal CA of data directory `data`.
    pub fn new(data: &DataDir) -> Self {
        Self {
            dir: data.root().join("tls"),
        }
    }

    /// `tls/ca.pem`.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
    fn server(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }
    fn names(&self) -> PathBuf {
        self.dir.join("server-names")
    }

    /// The pinned fingerprint of the CA, if it exists.
    pub fn fingerprint(&self) -> Option<String> {
        let pem = std::fs::read(self.ca()).ok()?;
        let der = CertificateDer::from_pem_slice(&pem).ok()?;
        Some(format!(
            "SHA256:{}",
            certfleet_deploy::probe::fingerprint(&der)
        ))
    }
}

type Loaded = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    String,
    Option<PathBuf>,
);

fn internal_ca(data: &DataDir, extra_names: &[String]) -> Result<Loaded, ServerError> {
    let files = CaFiles::new(data);
    create_private_dir(&files.dir)
        .map_err(|e| ServerError::io(format!("creating {}", files.dir.display()), e))?;
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e| ServerError::io(format!("writing {what}"), e)
    };
    if !files.ca().exists() || !files.ca_key().exists() {
        let (ca_pem, key_pem) = new_ca()?;
        write_atomic(&files.ca_key(), key_pem.as_bytes(), 0o600).map_err(io(&files.ca_key()))?;
        write_atomic(&files.ca(), ca_pem.as_bytes(), 0o644).map_err(io(&files.ca()))?;
        tracing::info!(ca = %files.ca().display(), "created the internal CA for the API's TLS listener");
    }
    let ca_pem = std::fs::read_to_string(files.ca())
        .map_err(|e| ServerError::io(format!("reading {}", files.ca().display()), e))?;
    let ca_key_pem = std::fs::read_to_string(files.ca_key())
        .map_err(|e| ServerError::io(format!("reading {}", files.ca_key().display()), e))?;
    let names = wanted_names(extra_names);
    if needs_new_server_cert(&files, &names) {
        let (cert_pem, key_pem) = new_server_cert(&ca_pem, &ca_key_pem, &names)?;
        write_atomic(&files.server_key(), key_pem.as_bytes(), 0o600)
            .map_err(io(&files.server_key()))?;
        write_atomic(
            &files.server(),
            format!("{cert_pem}{ca_pem}").as_bytes(),
            0o644,
        )
        .map_err(io(&files.server()))?;
        let list: Vec<&str> = names.iter().map(String::as_str).collect();
        write_atomic(
            &files.names(),
            format!("{}\n", list.join("\n")).as_bytes(),
            0o644,
        )
        .map_err(io(&files.names()))?;
        tracing::info!(names = ?names, "issued the API's TLS certificate from the internal CA");
    }
    let chain = read_chain(&files.server())?;
    let key = read_key(&files.server_key())?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| ServerError::Startup(format!("{}: {e}", files.ca().display())))?;
    let fingerprint = format!("SHA256:{}", certfleet_deploy::probe::fingerprint(&ca_der));
    Ok((chain, key, fingerprint, Some(files.ca())))
}

fn startup(what: &str) -> impl Fn(rcgen::Error) -> ServerError + '_ {
    move |e| ServerError::Startup(format!("{what}: {e}"))
}

fn new_ca() -> Result<(String, String), ServerError> {
    let key = KeyPair::generate().map_err(startup("generating the internal CA key"))?;
    let mut id = [0u8; 4];
    aws_lc_rs::rand::fill(&mut id)
        .map_err(|_| ServerError::Startup("random generator failed".into()))?;
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("certfleet internal CA {id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(startup("creating the internal CA"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn new_server_cert(
    ca_pem: &str,
    ca_key_pem: &str,
    names: &BTreeSet<String>,
) -> Result<(String, String), ServerError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(startup("reading the internal CA key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(startup("reading the internal CA"))?;
    let key = KeyPair::generate().map_err(startup("generating the API's TLS key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "certfleet API");
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(startup("a --tls-name")),
        })
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SERVER_DAYS);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(startup("issuing the API's TLS certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn wanted_names(extra: &[String]) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_ascii_lowercase();
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if !host.is_empty() && host.chars().all(plain) {
            names.insert(host);
        }
    }
    names.extend(extra.iter().map(|n| n.to_ascii_lowercase()));
    names
}

fn needs_new_server_cert(files: &CaFiles, names: &BTreeSet<String>) -> bool {
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    let recorded = std::fs::read_to_string(files.names()).unwrap_or_default();
    if recorded.lines().collect::<Vec<_>>() != wanted || !files.server_key().exists() {
        return true;
    }
    let Ok(pem) = std::fs::read(files.server()) else {
        return true;
    };
    let Ok(leaf) = CertificateDer::from_pem_slice(&pem) else {
        return true;
    };
    match certfleet_deploy::probe::describe(&leaf) {
        Ok(info) => {
            let days_left =
                (info.not_after - certfleet_core::time::now()) / certfleet_core::time::DAY;
            days_left < RENEW_WITHIN_DAYS
        }
        Err(_) => true,
    }
}

/// An [`axum::serve::Listener`] that hands out connections after their TLS handshake; the
/// handshakes run concurrently, each bounded by a timeout, so a slow client blocks nobody.
pub struct TlsListener {
    queue: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `listener` with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, queue) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                // Stop accepting (and free the port) as soon as the listener is dropped.
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, queue) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = queue.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { queue, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.queue.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internal_ca_is_made_once_and_its_certificate_carries_the_names() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::new(tmp.path().join("data"));
        data.create().unwrap();
        let names = vec!["api.example.test".to_string(), "10.0.0.7".to_string()];
        let first = setup(
            &data,
            &TlsSettings {
                names: names.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let again = setup(
            &data,
            &TlsSettings {
                names,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(first.fingerprint, again.fingerprint, "the CA is kept");
        assert_eq!(
            CaFiles::new(&data).fingerprint().unwrap(),
            first.fingerprint
        );
        let pem = std::fs::read(tmp.path().join("data/tls/server.pem")).unwrap();
        let leaf = CertificateDer::from_pem_slice(&pem).unwrap();
        let info = certfleet_deploy::probe::describe(&leaf).unwrap();
        assert!(
            info.dns_names.contains(&"api.example.test".to_string()),
            "{info:?}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("data/tls/ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
