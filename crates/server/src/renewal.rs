//! The renewal engine: one attempt on one claimed certificate (see [`attempt`]).
//!
//! 1. **Is an order needed?** An order in flight is always continued. A scheduled look at a
//!    certificate whose current version exists asks the policy
//!    ([`certfleet_core::policy::plan_renewal`]) — after fetching the CA's ARI window again
//!    when its re-fetch time has come — and, when the renewal moment is still ahead, only
//!    reschedules. A person's request orders now.
//! 2. **Order** through the issuer's [`Acme`], continuing the stored order (`order_url`, with
//!    the kept key) or creating one with `replaces` (the current version, RFC 9773 §5) and the
//!    certificate's profile. The order URL and the key are stored as they appear
//!    ([`RecordOrder`]), so a crash at any point resumes instead of ordering twice.
//! 3. **Record.** Success stores the version (one transaction) and schedules the next renewal
//!    (ARI window or lifetime rule). Failure stores the streak, the error and the CA's
//!    Retry-After, and schedules the next attempt by the backoff policy; an order the CA is
//!    still working on is left pending and resumed when the CA asks.
//!
//! The next due time is returned; [`Issuance`](crate::issuance::Issuance) stores it when it
//! releases the claim.

use async_trait::async_trait;
use certfleet_acme::{Acme, OrderFailure, OrderObserver, OrderRequest, Resume};
use certfleet_core::policy::{self, AriWindow, Basis, Lifetime, Plan, RenewalInputs};
use certfleet_core::time::UnixTime;
use certfleet_core::{
    Certificate, CertificateStatus, EventDetails, EventKind, NewEvent, NewVersion, Secret, Store,
    StoreError,
};

use crate::issuance::{Issuance, Trigger};
use crate::views::rfc3339;

/// When a store write fails mid-attempt, look at the certificate again after this long.
const STORE_RETRY: i64 = 60;
/// The log target of the warning that an attempt failed (`certfleet_server::renewal::failed`).
pub const FAILURE_LOG_TARGET: &str = "certfleet_server::renewal::failed";
/// When the CA's ARI answer could not be had, ask again after this long.
const ARI_ERROR_REFETCH: i64 = policy::BACKOFF_CEILING;

/// Stores an order's URL and key as soon as they exist.
struct RecordOrder<'a> {
    store: &'a dyn Store,
    name: &'a str,
}

#[async_trait]
impl OrderObserver for RecordOrder<'_> {
    async fn order_created(&self, url: &str) {
        // (A key kept for an earlier order was forgotten when that order was given up.)
        if let Err(e) = self.store.set_order_url(self.name, Some(url)).await {
            tracing::warn!(certificate = self.name, error = %e, "could not record the order URL");
        }
    }

    async fn key_generated(&self, _url: &str, key_pem: &Secret) -> Result<(), StoreError> {
        // The order's URL was stored when it was created (or is the one being continued).
        self.store.set_pending_key(self.name, Some(key_pem)).await
    }
}

/// Why an attempt stopped early.
enum Stop {
    /// The certificate was removed meanwhile.
    Gone,
    /// A store write failed.
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Stop::Gone,
            other => Stop::Store(other),
        }
    }
}

/// One attempt on `cert` (claimed by `issuance`); returns when it is due next.
pub(crate) async fn attempt(
    issuance: &Issuance,
    cert: &Certificate,
    trigger: Trigger,
) -> Option<UnixTime> {
    let name = cert.name.as_str();
    match run(issuance, cert, trigger).await {
        Ok(next) => next,
        Err(Stop::Gone) => {
            tracing::info!(certificate = name, "certificate removed during the attempt");
            None
        }
        Err(Stop::Store(e)) => {
            tracing::warn!(certificate = name, error = %e, "store error during the attempt; looking again soon");
            Some(issuance.clock.now() + STORE_RETRY)
        }
    }
}

async fn run(
    issuance: &Issuance,
    cert: &Certificate,
    trigger: Trigger,
) -> Result<Option<UnixTime>, Stop> {
    let now = issuance.clock.now();
    let Some(acme) = issuance.issuers.get(&cert.issuer) else {
        let message = format!("issuer {:?} is no longer configured", cert.issuer);
        return fail(issuance, cert, &message, None, now).await.map(Some);
    };
    // A current version that no longer matches the declaration (names, key kind, issuer
    // changed) is replaced at once, whatever the schedule says.
    let mismatch = cert.declaration_mismatch();
    let scheduled_renewal = trigger == Trigger::Scheduled
        && cert.order_url.is_none()
        && cert.current_version.is_some()
        && mismatch.is_none();
    let mut reason = match (trigger, &mismatch) {
        (Trigger::Requested { .. }, _) => "requested".to_string(),
        (Trigger::Scheduled, Some(m)) => format!("the declaration changed: {m}"),
        (Trigger::Scheduled, None) => "first issuance".to_string(),
    };
    if scheduled_renewal {
        let Some(lifetime) = cert.lifetime() else {
            return Err(Stop::Gone);
        };
        let (plan, look_again) = plan(issuance, acme.as_ref(), cert, lifetime, now).await?;
        if plan.at > now {
            // An attempt that a crash interrupted before it ordered anything; or a renewal
            // that failed and is no longer due (the settings or the CA's window changed):
            // its failure is moot, and left standing it would be reported again and again.
            let interrupted = cert.status == CertificateStatus::Issuing && cert.failure_streak == 0;
            if cert.status == CertificateStatus::Failed {
                tracing::info!(
                    certificate = cert.name.as_str(),
                    "the renewal that failed is not due any more; its failure is cleared"
                );
            }
            if interrupted || cert.status == CertificateStatus::Failed {
                issuance
                    .store
                    .set_status(cert.name.as_str(), CertificateStatus::Valid, None)
                    .await?;
            }
            return Ok(Some(plan.at.min(look_again)));
        }
        reason = match plan.basis {
            Basis::Ari => "renewing inside the CA's ARI window".into(),
            Basis::Lifetime => {
                "renewing: a third (a half under 10 days) of the lifetime is left".into()
            }
            Basis::RenewBefore => "renewing: renew_before reached".into(),
            Basis::Revoked => format!(
                "replacing version {}, revoked at {}",
                cert.current_version.unwrap_or_default(),
                cert.current_revoked_at.map(rfc3339).unwrap_or_default()
            ),
        };
    }
    if let Some(url) = &cert.order_url {
        reason = format!("continuing order {url}");
    }
    order(issuance, acme.as_ref(), cert, &reason, now).await
}

/// Place (or continue) the order and record its outcome.
async fn order(
    issuance: &Issuance,
    acme: &dyn Acme,
    cert: &Certificate,
    reason: &str,
    now: UnixTime,
) -> Result<Option<UnixTime>, Stop> {
    let store = issuance.store.as_ref();
    let name = cert.name.as_str();
    let solvers = match issuance
        .solvers
        .set_for(&cert.solvers, cert.challenge, &cert.domains)
    {
        Ok(solvers) => solvers,
        Err(message) => return fail(issuance, cert, &message, None, now).await.map(Some),
    };
    store
        .set_status(name, CertificateStatus::Issuing, None)
        .await?;
    let started = format!(
        "ordering {} name(s) from issuer {} ({reason})",
        cert.domains.len(),
        cert.issuer
    );
    store
        .append_event(Some(name), EventKind::IssuanceStarted, &started)
        .await?;
    let replaced = match cert.current_version {
        Some(seq) => store.version(name, seq).await?,
        None => None,
    };
    let pending_key = match cert.order_url {
        Some(_) => store.pending_key(name).await?,
        None => None,
    };
    let request = OrderRequest {
        certificate: name,
        names: &cert.domains,
        key_kind: cert.key_kind,
        profile: cert.profile.as_deref(),
        // Only a version this issuer ordered can be named in `replaces` (RFC 9773 §5): an
        // imported one belongs to another account, or to no ACME account at all.
        // A revoked one is not named either: there is nothing left to replace gracefully.
        replaces: replaced
            .as_ref()
            .filter(|v| v.order_url.is_some() && v.revoked_at.is_none())
            .map(|v| v.leaf_pem.as_str()),
        resume: cert.order_url.as_deref().map(|order_url| Resume {
            order_url,
            key_pem: pending_key.as_ref(),
        }),
    };
    let observer = RecordOrder { store, name };
    match acme.order(&request, &solvers, &observer).await {
        Ok(issued) => {
            let leaf = issued.leaf().clone();
            let version = NewVersion {
                serial: leaf.serial.clone(),
                not_before: leaf.not_before,
                not_after: leaf.not_after,
                leaf_pem: issued.chain.leaf_pem.clone(),
                chain_pem: issued.chain.chain_pem.clone(),
                key_kind: cert.key_kind,
                key_pem: issued.key_pem,
                order_url: Some(issued.order_url),
                domains: cert.domains.clone(),
                issuer: cert.issuer.clone(),
            };
            let stored = store.add_version(name, version).await?;
            let replaces = match (&replaced, issued.replaced) {
                (Some(old), true) => format!(
                    ", replacing serial {} (named in the order's ARI `replaces`)",
                    old.serial
                ),
                _ => String::new(),
            };
            let message = format!(
                "issued version {} serial {} valid until {}{replaces}",
                stored.seq,
                stored.serial,
                rfc3339(stored.not_after)
            );
            tracing::info!(certificate = name, "{message}");
            // A version that replaces one is a renewal (the scheduler's and `cert renew`'s).
            let kind = match stored.replaces {
                Some(_) => EventKind::Renewed,
                None => EventKind::Issued,
            };
            let details = EventDetails {
                version: Some(stored.seq),
                serial: Some(stored.serial.clone()),
                not_after: Some(stored.not_after),
                issuer: Some(cert.issuer.clone()),
                ..EventDetails::default()
            };
            store
                .record_event(&NewEvent::about(name, kind, message).with(details))
                .await?;
            let fresh = store
                .certificate(name)
                .await?
                .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
            schedule_new_version(issuance, acme, &fresh, issuance.clock.now()).await
        }
        Err(failure) => record_failure(issuance, cert, failure).await,
    }
}

/// When the fresh current version of `cert` is due, warning about settings that cannot apply.
async fn schedule_new_version(
    issuance: &Issuance,
    acme: &dyn Acme,
    cert: &Certificate,
    now: UnixTime,
) -> Result<Option<UnixTime>, Stop> {
    let Some(lifetime) = cert.lifetime() else {
        return Ok(None);
    };
    let (plan, look_again) = plan(issuance, acme, cert, lifetime, now).await?;
    if let Some(warning) = &plan.warning {
        tracing::warn!(certificate = %cert.name, "{warning}");
        issuance
            .store
            .append_event(Some(cert.name.as_str()), EventKind::PolicyWarning, warning)
            .await?;
    }
    Ok(Some(plan.at.min(look_again)))
}

/// The renewal plan for the current version, after fetching the ARI window when due;
/// returns it with the time to fetch the window again. A revoked current version is due now
/// (its window is not asked for).
async fn plan(
    issuance: &Issuance,
    acme: &dyn Acme,
    cert: &Certificate,
    lifetime: Lifetime,
    now: UnixTime,
) -> Result<(Plan, UnixTime), Stop> {
    let revoked = cert.current_revoked_at.is_some();
    let (mut window, mut fetch_at) = (cert.ari_window, cert.ari_fetch_at);
    if !revoked && fetch_at.is_none_or(|at| at <= now) {
        let (w, at) = refresh_ari(issuance, acme, cert, lifetime, now).await?;
        (window, fetch_at) = (w, Some(at));
    }
    let fraction = window.map_or(0.0, |w| {
        policy::fraction_of(&[
            cert.id.as_bytes(),
            &w.start.to_be_bytes(),
            &w.end.to_be_bytes(),
        ])
    });
    let plan = policy::plan_renewal(RenewalInputs {
        key: cert.name.as_str(),
        lifetime,
        renew_before: cert.renew_before,
        ari: window,
        ari_fraction: fraction,
        now,
        revoked,
    });
    Ok((plan, fetch_at.unwrap_or(lifetime.not_after)))
}

/// Ask the CA for the current version's ARI window and store what can be used.
async fn refresh_ari(
    issuance: &Issuance,
    acme: &dyn Acme,
    cert: &Certificate,
    lifetime: Lifetime,
    now: UnixTime,
) -> Result<(Option<AriWindow>, UnixTime), Stop> {
    let name = cert.name.as_str();
    let Some(seq) = cert.current_version else {
        return Err(Stop::Gone);
    };
    let version = issuance
        .store
        .version(name, seq)
        .await?
        .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
    let (window, fetch_at) = match acme.renewal_info(&version.leaf_pem).await {
        // No ARI at this CA: the lifetime rule, for the whole life of this version.
        Ok(None) => (None, lifetime.not_after),
        Ok(Some(info)) => {
            let again = now + policy::ari_refetch_after(info.retry_after);
            match policy::check_window(info.window, lifetime) {
                Ok(window) => (Some(window), again),
                Err(e) => {
                    tracing::info!(certificate = name, error = %e, start = info.window.start, end = info.window.end, "the CA's ARI window is not usable; using the lifetime rule");
                    (None, again)
                }
            }
        }
        // Unreachable: keep the CA's last word if there is one, else the lifetime rule.
        Err(e) => {
            let kept = cert.ari_window;
            tracing::info!(certificate = name, error = %e, keeping_last_window = kept.is_some(), "no ARI answer from the CA; asking again later");
            (kept, now + ARI_ERROR_REFETCH)
        }
    };
    issuance
        .store
        .set_ari(name, seq, window, Some(fetch_at))
        .await?;
    Ok((window, fetch_at))
}

/// Record a failed order: the order to resume (or not), the CA's Retry-After, the streak.
async fn record_failure(
    issuance: &Issuance,
    cert: &Certificate,
    failure: OrderFailure,
) -> Result<Option<UnixTime>, Stop> {
    let store = issuance.store.as_ref();
    let name = cert.name.as_str();
    let now = issuance.clock.now();
    for url in &failure.abandoned {
        let message = format!("gave up order {url}: {}", failure.error);
        store
            .append_event(Some(name), EventKind::OrderAbandoned, &message)
            .await?;
    }
    store
        .set_order_url(name, failure.order_url.as_deref())
        .await?;
    if failure.order_url.is_none() {
        store.set_pending_key(name, None).await?;
    }
    store.set_retry_after(name, failure.retry_after).await?;
    if let certfleet_acme::error::AcmeError::NotYet {
        order_url,
        status,
        retry_at,
    } = &failure.error
    {
        let message = format!(
            "the CA is still working on order {order_url} ({status}); resuming it at {}",
            rfc3339(*retry_at)
        );
        tracing::info!(certificate = name, "{message}");
        store
            .append_event(Some(name), EventKind::OrderPending, &message)
            .await?;
        return Ok(Some(*retry_at));
    }
    let message = failure.error.to_string();
    fail(issuance, cert, &message, failure.retry_after, now)
        .await
        .map(Some)
}

/// Mark the certificate failed and return when to try again.
async fn fail(
    issuance: &Issuance,
    cert: &Certificate,
    message: &str,
    retry_after: Option<UnixTime>,
    now: UnixTime,
) -> Result<UnixTime, Stop> {
    let store = issuance.store.as_ref();
    let name = cert.name.as_str();
    // Its own target, so that `run --once`, which reports the failure itself, can leave it
    // out of its log.
    tracing::warn!(target: FAILURE_LOG_TARGET, certificate = name, error = %message, "issuance failed");
    store
        .set_status(name, CertificateStatus::Failed, Some(message))
        .await?;
    let streak = cert.failure_streak + 1;
    let fraction = policy::fraction_of(&[cert.id.as_bytes(), &streak.to_be_bytes()]);
    let next = policy::next_attempt(streak, now, cert.not_after, retry_after, fraction);
    // `renewal_failed` while a current version is still served, else `failed`.
    let kind = match cert.current_version {
        Some(_) => EventKind::RenewalFailed,
        None => EventKind::Failed,
    };
    let details = EventDetails {
        version: cert.current_version,
        not_after: cert.not_after,
        failure_streak: Some(streak),
        next_attempt: Some(next),
        ..EventDetails::default()
    };
    store
        .record_event(&NewEvent::about(name, kind, message).with(details))
        .await?;
    Ok(next)
}
