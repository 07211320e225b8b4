//! [`AcmeIssuer`]: one ACME account per issuer and the order flow of RFC 8555 §7.4.
//!
//! The account is created once, its credentials sealed in the store and reused after a
//! restart (same account URL). An order publishes every challenge response in one call to the
//! [`Solver`], tells the CA all of them are ready (so the CA validates them in parallel), waits
//! for the order to become ready, finalizes with a CSR for a fresh key, downloads the chain and
//! checks it before handing it back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use certfleet_core::{
    AccountRecord, ChallengeKind, DnsName, EventKind, KeyKind, PendingChallenge, Secret, SolverSet,
    Store, validate_token,
};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use tokio::sync::OnceCell;

use crate::cleanup::CleanupOnDrop;
use crate::error::{AcmeError, Problem, error_chain};
use crate::http::CaClient;
use crate::inspect::{CertInfo, ParsedChain};
use crate::keys;

/// How many times a whole order (or account registration) is retried when the CA keeps
/// answering badNonce (instant-acme already retries each request with the fresh nonce,
/// RFC 8555 §6.5).
pub const BAD_NONCE_ORDER_RETRIES: u32 = 5;
/// First wait before polling an order; grows by [`POLL_BACKOFF`] (Retry-After wins).
pub const POLL_INITIAL_DELAY: Duration = Duration::from_millis(15);
/// Growth factor between polls.
pub const POLL_BACKOFF: f32 = 1.5;
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
}

impl Issued {
    /// The leaf's details.
    pub fn leaf(&self) -> &CertInfo {
        self.chain.leaf()
    }
}

/// Told about an order as soon as the CA creates it, so it can be resumed after a crash.
#[async_trait]
pub trait OrderObserver: Send + Sync {
    /// The CA created an order at `url`.
    async fn order_created(&self, url: &str);
}

/// An ACME CA with its account.
pub struct AcmeIssuer {
    config: IssuerConfig,
    client: CaClient,
    store: Arc<dyn Store>,
    account: OnceCell<Account>,
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
            account: OnceCell::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// Reach the CA and make sure the account exists; returns the account URL.
    pub async fn account_url(&self) -> Result<String, AcmeError> {
        Ok(self.account().await?.id().to_string())
    }

    async fn account(&self) -> Result<&Account, AcmeError> {
        self.account
            .get_or_try_init(|| self.load_or_create_account())
            .await
    }

    async fn load_or_create_account(&self) -> Result<Account, AcmeError> {
        let cfg = &self.config;
        if let Some(record) = self.store.account(&cfg.name, &cfg.directory_url).await? {
            let creds: AccountCredentials = serde_json::from_str(record.credentials.expose())
                .map_err(|e| AcmeError::Config(format!("stored account is unreadable: {e}")))?;
            let account = Account::builder_with_http(Box::new(self.client.clone()))
                .from_credentials(creds)
                .await
                .map_err(|e| self.directory_error(e))?;
            tracing::debug!(issuer = %cfg.name, account = %account.id(), "loaded ACME account");
            return Ok(account);
        }
        let contacts: Vec<&str> = cfg.contacts.iter().map(String::as_str).collect();
        let eab = match &cfg.eab {
            Some(eab) => Some(ExternalAccountKey::new(
                eab.key_id.clone(),
                &decode_hmac(eab)?,
            )),
            None => None,
        };
        let new = NewAccount {
            contact: &contacts,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let mut attempt = 0;
        let (account, creds) = loop {
            let created = Account::builder_with_http(Box::new(self.client.clone()))
                .create(&new, cfg.directory_url.clone(), eab.as_ref())
                .await
                .map_err(|e| self.directory_error(e));
            match created {
                Err(e) if e.is_bad_nonce() && attempt < BAD_NONCE_ORDER_RETRIES => attempt += 1,
                other => break other?,
            }
        };
        let credentials = serde_json::to_string(&creds)
            .map_err(|e| AcmeError::Config(format!("serializing account credentials: {e}")))?;
        self.store
            .save_account(&AccountRecord {
                issuer: cfg.name.clone(),
                directory_url: cfg.directory_url.clone(),
                account_url: account.id().to_string(),
                credentials: Secret::new(credentials),
                created_at: certfleet_core::time::now(),
            })
            .await?;
        let message = format!(
            "registered ACME account {} at {}",
            account.id(),
            cfg.directory_url
        );
        tracing::info!(issuer = %cfg.name, "{message}");
        self.store
            .append_event(None, EventKind::AccountCreated, &message)
            .await?;
        Ok(account)
    }

    fn directory_error(&self, err: instant_acme::Error) -> AcmeError {
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
    /// name with its solver in `solvers`.
    pub async fn issue(
        &self,
        certificate: &str,
        names: &[DnsName],
        key_kind: KeyKind,
        solvers: &SolverSet,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, AcmeError> {
        let mut attempt = 0;
        loop {
            match self
                .issue_once(certificate, names, key_kind, solvers, observer)
                .await
            {
                Err(e) if e.is_bad_nonce() && attempt < BAD_NONCE_ORDER_RETRIES => {
                    attempt += 1;
                    tracing::debug!(
                        certificate,
                        attempt,
                        "badNonce persisted; retrying the order"
                    );
                }
                other => return other,
            }
        }
    }

    async fn issue_once(
        &self,
        certificate: &str,
        names: &[DnsName],
        key_kind: KeyKind,
        solvers: &SolverSet,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, AcmeError> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = names
            .iter()
            .map(|n| Identifier::Dns(n.as_str().to_string()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await?;
        observer.order_created(order.url()).await;
        let challenges = collect_challenges(&mut order, certificate, solvers).await?;
        // Cleanup runs whatever happens, including a failed (or partial) present, and on
        // cancellation through the guard.
        let guard = CleanupOnDrop::new(solvers, &challenges);
        let result = match solvers.present(&challenges).await {
            Ok(()) => self.complete(&mut order, names, key_kind, solvers).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = solvers.cleanup(&challenges).await {
            tracing::warn!(certificate, error = %e, "could not withdraw challenge responses");
        }
        guard.disarm();
        result
    }

    async fn complete(
        &self,
        order: &mut Order,
        names: &[DnsName],
        key_kind: KeyKind,
        solvers: &SolverSet,
    ) -> Result<Issued, AcmeError> {
        set_all_ready(order, solvers).await?;
        let policy = RetryPolicy::new()
            .initial_delay(POLL_INITIAL_DELAY)
            .backoff(POLL_BACKOFF)
            .timeout(self.config.order_timeout);
        match order.poll_ready(&policy).await {
            Ok(OrderStatus::Ready) => {}
            Ok(_) => return Err(validation_error(order, None).await),
            Err(instant_acme::Error::Api(problem)) => {
                // Either the order now carries an error (find the identifier that failed) or
                // the poll request itself was refused (badNonce, rate limit), which the
                // caller may retry.
                let problem = Problem::from(problem);
                let state = order.state();
                if state.error.is_some() || state.status == OrderStatus::Invalid {
                    return Err(validation_error(order, Some(problem)).await);
                }
                return Err(AcmeError::Problem(problem));
            }
            Err(e) => return Err(e.into()),
        }
        let key = tokio::task::spawn_blocking(move || keys::generate(key_kind))
            .await
            .map_err(|e| AcmeError::Key(format!("key generation task: {e}")))??;
        let csr = keys::csr(names, &key.pair)?;
        order.finalize_csr(&csr).await?;
        let pem = order.poll_certificate(&policy).await?;
        let chain = ParsedChain::parse(&pem).map_err(AcmeError::BadResponse)?;
        chain
            .check_matches(names, key.pair.public_key_raw())
            .map_err(AcmeError::BadResponse)?;
        Ok(Issued {
            chain,
            key_pem: key.pem,
            order_url: order.url().to_string(),
        })
    }
}

fn decode_hmac(eab: &Eab) -> Result<Vec<u8>, AcmeError> {
    let text = eab.hmac_key.expose().trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| AcmeError::Config("eab.hmac_key is not base64url".into()))
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

/// Fetch every authorization and build our responses to the pending ones, each with the
/// challenge type of its identifier's solver.
async fn collect_challenges(
    order: &mut Order,
    certificate: &str,
    solvers: &SolverSet,
) -> Result<Vec<PendingChallenge>, AcmeError> {
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        let wildcard = authz.identifier().wildcard;
        let identifier = authz.identifier().identifier.clone();
        let Identifier::Dns(identifier) = identifier else {
            return Err(AcmeError::BadResponse(
                "authorization for a non-DNS identifier".into(),
            ));
        };
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::BadResponse(format!(
                    "authorization for {identifier} is {other:?}"
                )));
            }
        }
        let Some(kind) = solvers.kind_for(&identifier, wildcard) else {
            return Err(AcmeError::Config(format!(
                "no solver is configured for {}{identifier}",
                if wildcard { "*." } else { "" }
            )));
        };
        let Some(challenge) = authz.challenge(challenge_type(kind)) else {
            return Err(AcmeError::ChallengeUnavailable {
                kind: kind.to_string(),
                identifier,
            });
        };
        validate_token(&challenge.token).map_err(|e| AcmeError::BadResponse(e.to_string()))?;
        out.push(PendingChallenge {
            kind,
            identifier,
            token: challenge.token.clone(),
            key_authorization: Secret::new(challenge.key_authorization().as_str()),
            certificate: certificate.to_string(),
            wildcard,
        });
    }
    Ok(out)
}

/// Tell the CA every pending challenge is ready, each of its solver's type (the
/// authorizations are cached by now).
async fn set_all_ready(order: &mut Order, solvers: &SolverSet) -> Result<(), AcmeError> {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let id = authz.identifier();
        let Identifier::Dns(name) = id.identifier else {
            continue;
        };
        let (identifier, wildcard) = (name.clone(), id.wildcard);
        let Some(kind) = solvers.kind_for(&identifier, wildcard) else {
            continue;
        };
        if let Some(mut challenge) = authz.challenge(challenge_type(kind)) {
            challenge.set_ready().await?;
        }
    }
    Ok(())
}

/// After an order went invalid: find which identifier failed and why. `reported` is the
/// problem the CA answered the poll with, if any.
async fn validation_error(order: &mut Order, reported: Option<Problem>) -> AcmeError {
    let order_problem = order.state().error.clone().map(Problem::from);
    let mut authzs = order.authorizations();
    while let Some(Ok(mut authz)) = authzs.next().await {
        if authz.refresh().await.is_err() || authz.status != AuthorizationStatus::Invalid {
            continue;
        }
        let identifier = authz.identifier().to_string();
        if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.clone()) {
            return AcmeError::Validation {
                identifier,
                problem: problem.into(),
            };
        }
    }
    match order_problem.or(reported) {
        Some(p) => AcmeError::Problem(p),
        None => AcmeError::BadResponse("the order became invalid without a reason".into()),
    }
}
