//! The order flow of RFC 8555 §7.4, run by [`AcmeIssuer`].
//!
//! An order publishes every challenge response in one call to the [`Solver`], tells the CA
//! all of them are ready (so the CA validates them in parallel), polls the order until it is
//! ready ([`poll`](AcmeIssuer::poll_order): a fast start, the interval capped at
//! [`POLL_MAX_DELAY`], the CA's Retry-After honoured, one last poll at the deadline),
//! finalizes with a CSR for a fresh key, polls until the certificate is issued, and downloads
//! the chain — the alternate the issuer prefers when the CA offers one (§7.4.2) — and checks
//! it before handing it back.

use std::time::Duration;

use certfleet_core::policy;
use certfleet_core::{
    ChallengeKind, DnsName, KeyKind, PendingChallenge, Secret, Solver, validate_token,
};
use instant_acme::{
    AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderState, OrderStatus,
};
use tokio::time::Instant;

use crate::account::{AccountState, means_account_gone};
use crate::error::{AcmeError, Problem};
use crate::inspect::ParsedChain;
use crate::issuer::{AcmeIssuer, Issued, OrderObserver};
use crate::keys;

/// First wait before polling an order: short, so a fast CA is fast.
pub const POLL_INITIAL_DELAY: Duration = Duration::from_millis(15);
/// Growth factor between polls.
pub const POLL_BACKOFF: f64 = 1.5;
/// Longest wait between polls without a Retry-After from the CA.
pub const POLL_MAX_DELAY: Duration = Duration::from_secs(2);

/// What one order is for.
pub(crate) struct OrderRequest<'a> {
    pub certificate: &'a str,
    pub names: &'a [DnsName],
    pub key_kind: KeyKind,
}

impl AcmeIssuer {
    /// One order from creation to checked chain.
    pub(crate) async fn issue_once(
        &self,
        state: &AccountState,
        request: &OrderRequest<'_>,
        solver: &dyn Solver,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, AcmeError> {
        let ids: Vec<Identifier> = request
            .names
            .iter()
            .map(|n| Identifier::Dns(n.as_str().to_string()))
            .collect();
        let mut order = match state.account.new_order(&NewOrder::new(&ids)).await {
            Ok(order) => order,
            Err(instant_acme::Error::Api(p)) => {
                let problem = Problem::from(p);
                if means_account_gone(&problem) {
                    return Err(AcmeError::AccountGone {
                        account: state.url().to_string(),
                        problem,
                    });
                }
                return Err(AcmeError::Problem(problem));
            }
            Err(e) => return Err(e.into()),
        };
        observer.order_created(order.url()).await;
        let challenges = collect_challenges(&mut order, request.certificate, solver.kind()).await?;
        solver.present(&challenges).await?;
        let result = self
            .complete(state, &mut order, request, solver.kind())
            .await;
        if let Err(e) = solver.cleanup(&challenges).await {
            tracing::warn!(certificate = request.certificate, error = %e, "could not withdraw challenge responses");
        }
        result
    }

    async fn complete(
        &self,
        state: &AccountState,
        order: &mut Order,
        request: &OrderRequest<'_>,
        kind: ChallengeKind,
    ) -> Result<Issued, AcmeError> {
        set_all_ready(order, kind).await?;
        let url = order.url().to_string();
        let ready = self.poll_order(state, &url, OrderStatus::Ready).await?;
        if ready.status == OrderStatus::Invalid {
            return Err(validation_error(order, ready.error.map(Problem::from)).await);
        }
        let key_kind = request.key_kind;
        let key = tokio::task::spawn_blocking(move || keys::generate(key_kind))
            .await
            .map_err(|e| AcmeError::Key(format!("key generation task: {e}")))??;
        let csr = keys::csr(request.names, &key.pair)?;
        order.finalize_csr(&csr).await?;
        let valid = self.poll_order(state, &url, OrderStatus::Valid).await?;
        let Some(cert_url) = valid
            .certificate
            .filter(|_| valid.status == OrderStatus::Valid)
        else {
            return Err(match valid.error {
                Some(p) => AcmeError::Problem(p.into()),
                None => AcmeError::BadResponse(format!(
                    "order {url} ended {:?} without a certificate",
                    valid.status
                )),
            });
        };
        let chain = self.download(state, &cert_url).await?;
        chain
            .check_matches(request.names, key.pair.public_key_raw())
            .map_err(AcmeError::BadResponse)?;
        Ok(Issued {
            chain,
            key_pem: key.pem,
            order_url: url,
        })
    }

    /// Poll the order at `url` until it reaches `target` (or a later state, or `invalid`).
    ///
    /// The first poll comes after [`POLL_INITIAL_DELAY`]; the interval grows by
    /// [`POLL_BACKOFF`] up to [`POLL_MAX_DELAY`]; a Retry-After from the CA is the least wait.
    /// The last poll happens at the order timeout; past it the order is reported as timed out
    /// and left for a later attempt to resume. When the CA's Retry-After reaches past the
    /// timeout, polling stops at once with [`AcmeError::NotYet`].
    pub(crate) async fn poll_order(
        &self,
        state: &AccountState,
        url: &str,
        target: OrderStatus,
    ) -> Result<OrderState, AcmeError> {
        let timeout = self.config().order_timeout;
        let deadline = Instant::now() + timeout;
        let raw = self.raw().await?;
        let mut delay = POLL_INITIAL_DELAY;
        let mut wait = delay;
        loop {
            let now = Instant::now();
            tokio::time::sleep_until((now + wait).min(deadline)).await;
            let response = raw.post_as_get(&state.key, url).await?;
            let hint = response
                .retry_after()
                .and_then(|v| policy::retry_after(v, certfleet_core::time::now()));
            let order: OrderState = response.check()?.json()?;
            if reached(order.status, target) {
                return Ok(order);
            }
            if Instant::now() >= deadline {
                return Err(AcmeError::Timeout(format!(
                    "order {url} is still {:?} after {} s; it is left at the CA to resume",
                    order.status,
                    timeout.as_secs()
                )));
            }
            delay = delay.mul_f64(POLL_BACKOFF).min(POLL_MAX_DELAY);
            wait = delay;
            if let Some(at) = hint {
                let hinted = Duration::from_secs(
                    u64::try_from(at - certfleet_core::time::now()).unwrap_or(0),
                );
                if Instant::now() + hinted > deadline {
                    return Err(AcmeError::NotYet {
                        order_url: url.to_string(),
                        status: format!("{:?}", order.status).to_lowercase(),
                        retry_at: at,
                    });
                }
                wait = wait.max(hinted);
            }
        }
    }

    /// Download the chain at `url`; when the issuer prefers another root and the CA offers
    /// alternates (`Link: rel="alternate"`, RFC 8555 §7.4.2), the first one leading to it.
    pub(crate) async fn download(
        &self,
        state: &AccountState,
        url: &str,
    ) -> Result<ParsedChain, AcmeError> {
        let raw = self.raw().await?;
        let response = raw.post_as_get(&state.key, url).await?.check()?;
        let chain = parse_chain(&response.body)?;
        let Some(preferred) = self.config().preferred_chain.as_deref() else {
            return Ok(chain);
        };
        if chain.root_name() == Some(preferred) {
            return Ok(chain);
        }
        for alternate in response.links("alternate") {
            let response = raw.post_as_get(&state.key, &alternate).await?.check()?;
            let candidate = parse_chain(&response.body)?;
            if candidate.root_name() == Some(preferred) && candidate.leaf() == chain.leaf() {
                tracing::debug!(url = %alternate, preferred, "using the preferred alternate chain");
                return Ok(candidate);
            }
        }
        tracing::info!(
            preferred,
            default = chain.root_name().unwrap_or("?"),
            "the CA offers no chain to the preferred root; keeping the default chain"
        );
        Ok(chain)
    }
}

fn parse_chain(body: &[u8]) -> Result<ParsedChain, AcmeError> {
    let pem = std::str::from_utf8(body)
        .map_err(|_| AcmeError::BadResponse("the certificate chain is not text".into()))?;
    ParsedChain::parse(pem).map_err(AcmeError::BadResponse)
}

/// Whether an order in `status` is done waiting for `target`.
fn reached(status: OrderStatus, target: OrderStatus) -> bool {
    use OrderStatus as S;
    match target {
        S::Ready => matches!(status, S::Ready | S::Processing | S::Valid | S::Invalid),
        _ => matches!(status, S::Valid | S::Invalid),
    }
}

fn challenge_type(kind: ChallengeKind) -> ChallengeType {
    match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

/// Fetch every authorization and build our responses to the pending ones.
async fn collect_challenges(
    order: &mut Order,
    certificate: &str,
    kind: ChallengeKind,
) -> Result<Vec<PendingChallenge>, AcmeError> {
    let mut out = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
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
        });
    }
    Ok(out)
}

/// Tell the CA every pending challenge of `kind` is ready (the authorizations are cached by now).
async fn set_all_ready(order: &mut Order, kind: ChallengeKind) -> Result<(), AcmeError> {
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
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
