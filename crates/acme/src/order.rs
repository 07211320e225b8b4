//! The order flow of RFC 8555 §7.4, run by [`AcmeIssuer`], able to continue an order created
//! earlier (after a restart, a timeout, a persistent badNonce).
//!
//! An order publishes every challenge response through the solver of each identifier (a
//! [`SolverSet`]; a [`CleanupOnDrop`] guard withdraws them if the order is cancelled), tells the CA
//! all of them are ready (so the CA validates them in parallel), polls the order until it is
//! ready ([`poll_order`](AcmeIssuer::poll_order): a fast start, the interval capped at
//! [`POLL_MAX_DELAY`], the CA's Retry-After honoured, one last poll at the deadline), keeps a
//! fresh key through the [`OrderObserver`] and finalizes with its CSR, polls until the
//! certificate is issued, and downloads the chain — the alternate the issuer prefers when the
//! CA offers one (§7.4.2) — and checks it before handing it back.
//!
//! A resumed order continues from its state at the CA: `pending` (answer the challenges
//! again), `ready` (finalize), `processing` (poll), `valid` (download with the kept key).
//! An `invalid` or vanished order, or a finalized one whose key was not kept, is replaced by
//! a new order; orders given up while still alive at the CA are logged at warn level with
//! their URL.

use std::time::Duration;

use certfleet_core::{ChallengeKind, PendingChallenge, Secret, SolverSet, policy, validate_token};
use instant_acme::{
    AuthorizationStatus, CertificateIdentifier, ChallengeStatus, ChallengeType, Identifier,
    NewOrder, Order, OrderState, OrderStatus,
};
use tokio::time::Instant;

use crate::account::{AccountState, means_account_gone};
use crate::ca::{OrderFailure, OrderObserver, OrderRequest};
use crate::cleanup::CleanupOnDrop;
use crate::error::{AcmeError, Problem};
use crate::http::with_hints;
use crate::inspect::ParsedChain;
use crate::issuer::{AcmeIssuer, BAD_NONCE_ORDER_RETRIES, Issued};
use crate::{ari, keys};

/// First wait before polling an order: short, so a fast CA is fast.
pub const POLL_INITIAL_DELAY: Duration = Duration::from_millis(15);
/// Growth factor between polls.
pub const POLL_BACKOFF: f64 = 1.5;
/// Longest wait between polls without a Retry-After from the CA.
pub const POLL_MAX_DELAY: Duration = Duration::from_secs(2);

/// How far an order got, so that a retry continues it.
#[derive(Default)]
struct Progress {
    order_url: Option<String>,
    key_pem: Option<Secret>,
    abandoned: Vec<String>,
    replaced: bool,
    invalid: bool,
}

impl Progress {
    fn start_over(&mut self) {
        self.order_url = None;
        self.key_pem = None;
        self.invalid = false;
    }
}

/// Whether an order that failed with `error` is worth continuing later.
fn keeps_order(error: &AcmeError) -> bool {
    match error {
        AcmeError::Transport(_)
        | AcmeError::Timeout(_)
        | AcmeError::NotYet { .. }
        | AcmeError::Solver(_)
        | AcmeError::Store(_)
        | AcmeError::Unreachable { .. } => true,
        AcmeError::Problem(p) => p.is_retryable() || p.status == Some(429),
        _ => false,
    }
}

impl AcmeIssuer {
    /// Order (or continue) a certificate; the [`crate::Acme::order`] of a real CA.
    ///
    /// A persistent badNonce continues the same order; when the CA no longer knows the
    /// account, a new one is registered once and a new order placed (a second refusal is
    /// reported); a refused `replaces` is dropped and the order placed again without it.
    pub async fn run_order(
        &self,
        request: &OrderRequest<'_>,
        solvers: &SolverSet,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, OrderFailure> {
        let (result, hints) = with_hints(self.drive(request, solvers, observer)).await;
        result.map_err(|(error, mut progress)| {
            let now = certfleet_core::time::now();
            let retry_after = match &error {
                AcmeError::NotYet { retry_at, .. } => Some(*retry_at),
                _ => hints
                    .retry_after
                    .as_deref()
                    .and_then(|v| policy::retry_after(v, now)),
            };
            let keep = keeps_order(&error);
            if let (false, false, Some(url)) = (keep, progress.invalid, &progress.order_url) {
                tracing::warn!(certificate = request.certificate, order = %url, error = %error, "abandoning the order");
                progress.abandoned.push(url.clone());
            }
            OrderFailure {
                retry_after,
                order_url: progress.order_url.filter(|_| keep),
                abandoned: progress.abandoned,
                error,
            }
        })
    }

    async fn drive(
        &self,
        request: &OrderRequest<'_>,
        solvers: &SolverSet,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, (AcmeError, Progress)> {
        let mut progress = Progress::default();
        if let Some(resume) = request.resume {
            progress.order_url = Some(resume.order_url.to_string());
            progress.key_pem = resume.key_pem.cloned();
        }
        let mut state = match self.account().await {
            Ok(state) => state,
            Err(e) => return Err((e, progress)),
        };
        let replaces = match request.replaces {
            Some(pem) => self.replaces_id(pem).await,
            None => None,
        };
        let (mut nonce_retries, mut reregistered) = (0, false);
        loop {
            let attempt = self
                .attempt(
                    &state,
                    request,
                    replaces.as_ref(),
                    solvers,
                    observer,
                    &mut progress,
                )
                .await;
            match attempt {
                Ok(issued) => return Ok(issued),
                Err(e) if e.is_bad_nonce() && nonce_retries < BAD_NONCE_ORDER_RETRIES => {
                    nonce_retries += 1;
                    tracing::debug!(
                        certificate = request.certificate,
                        order = ?progress.order_url,
                        "badNonce persisted; continuing the same order"
                    );
                }
                Err(AcmeError::AccountGone { problem, .. }) if !reregistered => {
                    reregistered = true;
                    let old_url = state.url().to_string();
                    state = match self.replace_forgotten_account(&state, &problem).await {
                        Ok(state) => state,
                        Err(e) => return Err((e, progress)),
                    };
                    // The old account's orders went with it (not so after a key rollover).
                    if state.url() != old_url {
                        progress.start_over();
                    }
                }
                Err(e) => return Err((e, progress)),
            }
        }
    }

    /// The ARI identifier of the certificate being replaced, when the CA offers ARI.
    async fn replaces_id(&self, leaf_pem: &str) -> Option<CertificateIdentifier<'static>> {
        if !self.directory().await.ok()?.has_ari() {
            return None;
        }
        match ari::certificate_id(leaf_pem) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::info!(error = %e, "no ARI identifier for the replaced certificate; ordering without `replaces`");
                None
            }
        }
    }

    /// One pass over the order: continue or create it, then drive it to a checked chain.
    async fn attempt(
        &self,
        state: &AccountState,
        request: &OrderRequest<'_>,
        replaces: Option<&CertificateIdentifier<'static>>,
        solvers: &SolverSet,
        observer: &dyn OrderObserver,
        progress: &mut Progress,
    ) -> Result<Issued, AcmeError> {
        let mut order = match self.resume(state, request, progress).await? {
            Some(order) => order,
            None => {
                self.create(state, request, replaces, observer, progress)
                    .await?
            }
        };
        let url = order.url().to_string();
        let mut status = order.state().status;
        if status == OrderStatus::Pending {
            status = self
                .authorize(state, &mut order, request, solvers, progress)
                .await?;
        }
        if status == OrderStatus::Ready {
            self.finalize(&mut order, request, observer, progress)
                .await?;
        }
        let cert_url = match order.state() {
            done if done.status == OrderStatus::Valid && done.certificate.is_some() => {
                done.certificate.clone()
            }
            _ => {
                let done = self.poll_order(state, &url, OrderStatus::Valid).await?;
                if done.status != OrderStatus::Valid {
                    progress.invalid = true;
                }
                match done.error {
                    Some(p) if done.status != OrderStatus::Valid => {
                        return Err(AcmeError::Problem(p.into()));
                    }
                    _ => done.certificate,
                }
            }
        };
        let cert_url = cert_url.ok_or_else(|| {
            AcmeError::BadResponse(format!("order {url} ended without a certificate URL"))
        })?;
        let key_pem = progress.key_pem.clone().ok_or_else(|| {
            AcmeError::BadResponse(format!("order {url} is finalized but its key is unknown"))
        })?;
        let chain = self.download(state, &cert_url).await?;
        let public_key = keys::public_key_of(key_pem.expose())?;
        chain
            .check_matches(request.names, &public_key)
            .map_err(AcmeError::BadResponse)?;
        Ok(Issued {
            chain,
            key_pem,
            order_url: url,
            replaced: progress.replaced,
        })
    }

    /// The order to continue, if there is one worth continuing.
    async fn resume(
        &self,
        state: &AccountState,
        request: &OrderRequest<'_>,
        progress: &mut Progress,
    ) -> Result<Option<Order>, AcmeError> {
        let Some(url) = progress.order_url.clone() else {
            return Ok(None);
        };
        let certificate = request.certificate;
        let mut order = match state.account.order(url.clone()).await {
            Ok(order) => order,
            Err(instant_acme::Error::Api(p)) => {
                let problem = Problem::from(p);
                if means_account_gone(&problem) {
                    return Err(AcmeError::AccountGone {
                        account: state.url().to_string(),
                        problem,
                    });
                }
                // A refusal that may pass (badNonce kept coming, rate limit, CA trouble) is
                // no sign the order is gone: keep it for the next attempt.
                if problem.is_retryable() || problem.status == Some(429) {
                    return Err(AcmeError::Problem(problem));
                }
                tracing::info!(certificate, order = %url, %problem, "the CA no longer has the order; ordering anew");
                progress.start_over();
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let status = order.state().status;
        match status {
            OrderStatus::Invalid => {
                tracing::info!(certificate, order = %url, "the order is invalid at the CA; ordering anew");
                progress.start_over();
                Ok(None)
            }
            OrderStatus::Processing | OrderStatus::Valid if progress.key_pem.is_none() => {
                tracing::warn!(certificate, order = %url, "abandoning the order: it was finalized but its key was not kept");
                progress.abandoned.push(url);
                progress.start_over();
                Ok(None)
            }
            _ => {
                tracing::info!(certificate, order = %url, ?status, "continuing the order");
                Ok(Some(order))
            }
        }
    }

    /// A new order, with `replaces` and the profile; a refused `replaces` is dropped once.
    async fn create(
        &self,
        state: &AccountState,
        request: &OrderRequest<'_>,
        replaces: Option<&CertificateIdentifier<'static>>,
        observer: &dyn OrderObserver,
        progress: &mut Progress,
    ) -> Result<Order, AcmeError> {
        let profile = self.profile_for(request).await?;
        let ids: Vec<Identifier> = request
            .names
            .iter()
            .map(|n| Identifier::Dns(n.as_str().to_string()))
            .collect();
        let mut replaces = replaces.cloned();
        loop {
            let mut new = NewOrder::new(&ids);
            if let Some(profile) = profile.as_deref() {
                new = new.profile(profile);
            }
            if let Some(id) = &replaces {
                new = new.replaces(id.clone());
            }
            let problem = match state.account.new_order(&new).await {
                Ok(order) => {
                    progress.start_over();
                    progress.replaced = replaces.is_some();
                    progress.order_url = Some(order.url().to_string());
                    observer.order_created(order.url()).await;
                    return Ok(order);
                }
                Err(instant_acme::Error::Api(p)) => Problem::from(p),
                Err(e) => return Err(e.into()),
            };
            // alreadyReplaced, or any other refusal of an order carrying `replaces` (a CA
            // that cannot find the replaced certificate answers serverInternal or malformed;
            // one issued to another account — an import from certbot — is `unauthorized`):
            // the renewal must not hinge on ARI, so order once more without it.
            let settled = matches!(
                problem.short_type(),
                Some("rateLimited" | "badNonce" | "accountDoesNotExist")
            );
            if replaces.is_some() && !settled {
                tracing::info!(certificate = request.certificate, %problem, "the CA refused the order with `replaces`; ordering without it");
                replaces = None;
                continue;
            }
            if means_account_gone(&problem) {
                return Err(AcmeError::AccountGone {
                    account: state.url().to_string(),
                    problem,
                });
            }
            return Err(AcmeError::Problem(problem));
        }
    }

    /// The profile to order with, checked against the CA's `meta.profiles`.
    async fn profile_for(&self, request: &OrderRequest<'_>) -> Result<Option<String>, AcmeError> {
        let Some(profile) = request.profile.or(self.config().default_profile.as_deref()) else {
            return Ok(None);
        };
        let offered = self.directory().await?.profiles();
        check_profile(profile, &offered, &self.config().directory_url)?;
        Ok(Some(profile.to_string()))
    }

    /// Publish the responses, tell the CA, wait until the order is ready.
    async fn authorize(
        &self,
        state: &AccountState,
        order: &mut Order,
        request: &OrderRequest<'_>,
        solvers: &SolverSet,
        progress: &mut Progress,
    ) -> Result<OrderStatus, AcmeError> {
        let url = order.url().to_string();
        let challenges = collect_challenges(order, request.certificate, solvers).await?;
        // Cleanup runs whatever happens, including a failed (or partial) present, and on
        // cancellation through the guard.
        let guard = CleanupOnDrop::new(solvers, &challenges);
        let result = match solvers.present(&challenges).await {
            Ok(()) => match set_all_ready(order, solvers).await {
                Ok(()) => self.poll_order(state, &url, OrderStatus::Ready).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        guard.disarm();
        // An order left at the CA to resume (still validating when polling gave up) keeps its
        // responses published: the CA may still look at them. They stay recorded, so the
        // resumed order (or the next start) withdraws them.
        let left_to_resume = matches!(
            result,
            Err(AcmeError::Timeout(_) | AcmeError::NotYet { .. })
        );
        if !left_to_resume && let Err(e) = solvers.cleanup(&challenges).await {
            tracing::warn!(certificate = request.certificate, error = %e, "could not withdraw challenge responses");
        }
        let ready = result?;
        if ready.status == OrderStatus::Invalid {
            progress.invalid = true;
            return Err(validation_error(order, ready.error.map(Problem::from)).await);
        }
        Ok(ready.status)
    }

    /// A fresh key, kept through the observer before its CSR finalizes the order.
    async fn finalize(
        &self,
        order: &mut Order,
        request: &OrderRequest<'_>,
        observer: &dyn OrderObserver,
        progress: &mut Progress,
    ) -> Result<(), AcmeError> {
        let key_kind = request.key_kind;
        let key = tokio::task::spawn_blocking(move || keys::generate(key_kind))
            .await
            .map_err(|e| AcmeError::Key(format!("key generation task: {e}")))??;
        observer.key_generated(order.url(), &key.pem).await?;
        progress.key_pem = Some(key.pem.clone());
        let csr = keys::csr(request.names, &key.pair)?;
        order.finalize_csr(&csr).await?;
        Ok(())
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
            tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
            let response = raw.post_as_get(&state.key, url).await?;
            let now = certfleet_core::time::now();
            let hint = response
                .retry_after()
                .and_then(|v| policy::retry_after(v, now));
            let order: OrderState = response.check()?.json()?;
            if reached(order.status, target) {
                return Ok(order);
            }
            if Instant::now() >= deadline {
                return Err(AcmeError::Timeout(format!(
                    "order {url} is still {} after {} s; it is left at the CA to resume",
                    status_name(order.status),
                    timeout.as_secs()
                )));
            }
            delay = delay.mul_f64(POLL_BACKOFF).min(POLL_MAX_DELAY);
            wait = delay;
            if let Some(at) = hint {
                let hinted = Duration::from_secs(u64::try_from(at - now).unwrap_or(0));
                if Instant::now() + hinted > deadline {
                    return Err(AcmeError::NotYet {
                        order_url: url.to_string(),
                        status: status_name(order.status).to_string(),
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

/// Refuse a profile the CA does not offer, naming the ones it does.
pub fn check_profile(profile: &str, offered: &[String], directory: &str) -> Result<(), AcmeError> {
    if offered.iter().any(|p| p == profile) {
        return Ok(());
    }
    if offered.is_empty() {
        return Err(AcmeError::Config(format!(
            "profile {profile:?}: the CA at {directory} offers no ACME profiles"
        )));
    }
    Err(AcmeError::Config(format!(
        "profile {profile:?} is not offered by the CA at {directory}; it offers: {}",
        offered.join(", ")
    )))
}

fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Pending => "pending",
        OrderStatus::Ready => "ready",
        OrderStatus::Processing => "processing",
        OrderStatus::Valid => "valid",
        OrderStatus::Invalid => "invalid",
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
/// authorizations are cached by now). A challenge the CA is already validating (an order
/// resumed after a restart) is left alone.
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
        if let Some(mut challenge) = authz.challenge(challenge_type(kind))
            && challenge.status == ChallengeStatus::Pending
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_checked_against_the_directory() {
        let offered = ["default".to_string(), "shortlived".to_string()];
        assert!(check_profile("shortlived", &offered, "https://ca/dir").is_ok());
        let e = check_profile("tlsserver", &offered, "https://ca/dir").unwrap_err();
        assert_eq!(
            e.to_string(),
            "issuer configuration: profile \"tlsserver\" is not offered by the CA at https://ca/dir; it offers: default, shortlived"
        );
        let e = check_profile("x", &[], "https://ca/dir").unwrap_err();
        assert!(e.to_string().contains("offers no ACME profiles"), "{e}");
    }

    #[test]
    fn which_failures_keep_the_order() {
        assert!(keeps_order(&AcmeError::Transport("reset".into())));
        assert!(keeps_order(&AcmeError::Timeout("slow".into())));
        let problem = |t: &str, status| Problem {
            kind: Some(format!("urn:ietf:params:acme:error:{t}")),
            detail: None,
            status: Some(status),
            subproblems: Vec::new(),
        };
        assert!(keeps_order(&AcmeError::Problem(problem(
            "rateLimited",
            429
        ))));
        assert!(keeps_order(&AcmeError::Problem(problem(
            "serverInternal",
            500
        ))));
        assert!(!keeps_order(&AcmeError::Problem(problem(
            "rejectedIdentifier",
            400
        ))));
        assert!(!keeps_order(&AcmeError::BadResponse("mismatch".into())));
    }
}
