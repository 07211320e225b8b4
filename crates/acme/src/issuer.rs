//! [`AcmeIssuer`]: one CA, its account ([`crate::account`]) and its orders
//! ([`crate::order`]).
//!
//! The account is created once, its credentials sealed in the store and reused after a
//! restart (same account URL). The directory is fetched once per process; certfleet's own
//! signed requests ([`crate::jws`]) go through the same HTTPS client as instant-acme's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use certfleet_core::{DnsName, KeyKind, Secret, SolverSet, Store};
use tokio::sync::{Mutex, OnceCell};

use crate::account::AccountState;
use crate::ca::{Acme, OrderFailure, OrderObserver, OrderRequest, RenewalInfo};
use crate::directory::Directory;
use crate::error::{AcmeError, error_chain};
use crate::http::CaClient;
use crate::inspect::{CertInfo, ParsedChain};
use crate::jws::RawClient;

/// How many times a whole order (or account registration) is retried when the CA keeps
/// answering badNonce (instant-acme already retries each request with the fresh nonce,
/// RFC 8555 §6.5).
pub const BAD_NONCE_ORDER_RETRIES: u32 = 5;
/// Default bound on waiting for validation and for the certificate.
pub const DEFAULT_ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// External account binding (RFC 8555 §7.3.4), as ZeroSSL and some private CAs require.
#[derive(Debug, Clone)]
pub struct Eab {
    /// Key identifier given by the CA.
    pub key_id: String,
    /// The HMAC key, base64url as the CA hands it out.
    pub hmac_key: Secret,
}

/// Everything needed to talk to one CA.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Issuer name (`default`, `letsencrypt`, ...).
    pub name: String,
    /// ACME directory URL.
    pub directory_url: String,
    /// Account contacts (`mailto:...`).
    pub contacts: Vec<String>,
    /// Extra PEM trust roots for the CA's HTTPS endpoint.
    pub ca_roots: Vec<PathBuf>,
    /// External account binding.
    pub eab: Option<Eab>,
    /// Bound on each HTTP request.
    pub request_timeout: Duration,
    /// Bound on waiting for an order.
    pub order_timeout: Duration,
    /// Issuer common name of the top certificate of the chain to prefer when the CA offers
    /// alternates (RFC 8555 §7.4.2); the default chain when none matches.
    pub preferred_chain: Option<String>,
    /// ACME profile for certificates that name none (checked against `meta.profiles`).
    pub default_profile: Option<String>,
}

/// A certificate fresh from the CA, checked against the request.
#[derive(Debug)]
pub struct Issued {
    /// Leaf, chain and details.
    pub chain: ParsedChain,
    /// The private key, PKCS#8 PEM.
    pub key_pem: Secret,
    /// The order URL.
    pub order_url: String,
    /// Whether the order was accepted with ARI `replaces` (RFC 9773 §5).
    pub replaced: bool,
}

impl Issued {
    /// The leaf's details.
    pub fn leaf(&self) -> &CertInfo {
        self.chain.leaf()
    }
}

/// An ACME CA with its account.
pub struct AcmeIssuer {
    config: IssuerConfig,
    client: CaClient,
    store: Arc<dyn Store>,
    session: OnceCell<Session>,
    account: Mutex<Option<Arc<AccountState>>>,
}

/// The directory and certfleet's own signed-request client, fetched once.
struct Session {
    directory: Directory,
    raw: RawClient,
}

impl AcmeIssuer {
    /// Prepare an issuer; nothing is sent to the CA until the first order or [`Self::account_url`].
    pub fn new(config: IssuerConfig, store: Arc<dyn Store>) -> Result<Self, AcmeError> {
        let client = CaClient::new(&config.ca_roots, config.request_timeout)?;
        if let Some(eab) = &config.eab {
            decode_hmac(eab)?;
        }
        Ok(Self {
            config,
            client,
            store,
            session: OnceCell::new(),
            account: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// Reach the CA and make sure the account exists and carries the configured contacts;
    /// returns the account URL.
    pub async fn account_url(&self) -> Result<String, AcmeError> {
        Ok(self.account().await?.url().to_string())
    }

    pub(crate) fn client(&self) -> &CaClient {
        &self.client
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub(crate) fn account_slot(&self) -> &Mutex<Option<Arc<AccountState>>> {
        &self.account
    }

    /// The CA's directory, fetched on first use.
    pub async fn directory(&self) -> Result<&Directory, AcmeError> {
        Ok(&self.session().await?.directory)
    }

    pub(crate) async fn raw(&self) -> Result<&RawClient, AcmeError> {
        Ok(&self.session().await?.raw)
    }

    async fn session(&self) -> Result<&Session, AcmeError> {
        self.session
            .get_or_try_init(|| async {
                let directory = self.fetch_directory().await?;
                let raw = RawClient::new(self.client.clone(), directory.new_nonce.clone());
                Ok(Session { directory, raw })
            })
            .await
    }

    async fn fetch_directory(&self) -> Result<Directory, AcmeError> {
        let url = self.config.directory_url.clone();
        let request = http::Request::builder()
            .uri(&url)
            .body(instant_acme::BodyWrapper::default())
            .map_err(|e| AcmeError::Config(format!("directory URL {url:?}: {e}")))?;
        let response = instant_acme::HttpClient::request(&self.client, request)
            .await
            .map_err(|e| self.directory_error(e))?;
        let status = response.parts.status;
        let mut body = response.body;
        let body = body
            .into_bytes()
            .await
            .map_err(|e| AcmeError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if !status.is_success() {
            return Err(AcmeError::NotAcme {
                url,
                reason: format!("it answered HTTP {status}"),
            });
        }
        serde_json::from_slice(&body).map_err(|e| AcmeError::NotAcme {
            url,
            reason: format!("the answer is not an ACME directory document ({e})"),
        })
    }

    pub(crate) fn directory_error(&self, err: instant_acme::Error) -> AcmeError {
        let url = self.config.directory_url.clone();
        match err {
            instant_acme::Error::Json(e) => AcmeError::NotAcme {
                url,
                reason: format!("the answer is not an ACME directory document ({e})"),
            },
            instant_acme::Error::Api(p) => AcmeError::Problem(p.into()),
            other => AcmeError::Unreachable {
                url,
                reason: error_chain(&other),
            },
        }
    }

    /// Issue a certificate for `names` with a fresh `key_kind` key, proving control of each
    /// name with its solver in `solvers`: a new order without profile or `replaces` (see
    /// [`Acme::order`] for more).
    pub async fn issue(
        &self,
        certificate: &str,
        names: &[DnsName],
        key_kind: KeyKind,
        solvers: &SolverSet,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, AcmeError> {
        let request = OrderRequest {
            certificate,
            names,
            key_kind,
            profile: None,
            replaces: None,
            resume: None,
        };
        self.run_order(&request, solvers, observer)
            .await
            .map_err(|f| f.error)
    }
}

#[async_trait]
impl Acme for AcmeIssuer {
    async fn profiles(&self) -> Result<Option<Vec<String>>, AcmeError> {
        let directory = self.directory().await?;
        Ok((!directory.meta.profiles.is_empty()).then(|| directory.profiles()))
    }

    async fn renewal_info(&self, leaf_pem: &str) -> Result<Option<RenewalInfo>, AcmeError> {
        self.fetch_renewal_info(leaf_pem).await
    }

    async fn order(
        &self,
        request: &OrderRequest<'_>,
        solvers: &SolverSet,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, OrderFailure> {
        self.run_order(request, solvers, observer).await
    }
}

pub(crate) fn decode_hmac(eab: &Eab) -> Result<Vec<u8>, AcmeError> {
    let text = eab.hmac_key.expose().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| AcmeError::Config("eab.hmac_key is not base64url".into()))
}
