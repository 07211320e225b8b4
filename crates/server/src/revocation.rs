//! Revocation (`POST /api/v1/certificates/{name}/revoke`, `certfleet cert revoke`): a version
//! is revoked at the CA through an issuer's ACME account (RFC 8555 §7.6, reasons of RFC 5280
//! §5.3.1), marked revoked in the store with the time and reason, and a `revoked` event is
//! recorded.
//!
//! A revoked *current* version of a certificate certfleet renews is due at once: the renewal
//! policy treats it as due now ([`certfleet_core::policy::Basis::Revoked`]), so the scheduler
//! replaces it within moments; with `reissue` the replacement is started by the request
//! itself. The certificate is claimed (under its own claim owner) while the CA is asked, so
//! no renewal runs beside the revocation.
//!
//! Which account asks: the certificate's issuer, or `issuer` in the request (required for an
//! imported `manual` certificate). The CA decides whether that account may revoke the
//! certificate; a refusal (`unauthorized` when another account ordered it, `malformed` when
//! the CA never issued it) is answered with the CA's own words and nothing is marked.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use certfleet_acme::AcmeError;
use certfleet_acme::revoke::Revocation;
use certfleet_core::time::UnixTime;
use certfleet_core::{
    CertName, Certificate, EventDetails, EventKind, MANUAL_ISSUER, NewEvent, RevocationReason,
    Version,
};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::issuance::{CLAIM_LEASE, Started, Trigger};
use crate::problem::ApiError;
use crate::views::{CertificateView, rfc3339};

/// The body of `POST /api/v1/certificates/{name}/revoke`; every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeCertificate {
    /// The version to revoke (default: the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Why (`keyCompromise`, `superseded`, `cessationOfOperation`, `affiliationChanged`,
    /// `unspecified`; default `unspecified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Start issuing the replacement now (only for the current version of a certificate
    /// certfleet renews); without it the scheduler replaces a revoked current version by
    /// itself at once.
    #[serde(default)]
    pub reissue: bool,
    /// The configured issuer whose account asks the CA (default: the certificate's issuer;
    /// required for an imported certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// What happens to the certificate after the revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replacement {
    /// `reissue`: an order for the replacement was started (or was already running).
    Started,
    /// The scheduler replaces the revoked current version at once.
    Scheduled,
    /// The CA asked (Retry-After) not to be sent orders before `retry_after`; the scheduler
    /// orders then.
    NotBefore,
    /// Nothing is replaced: an older version was revoked, or certfleet does not renew the
    /// certificate (imported).
    None,
}

/// The answer to a revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevocationView {
    /// Certificate name.
    pub name: String,
    /// The revoked version.
    pub version: u32,
    /// Its serial, lowercase hex.
    pub serial: String,
    /// When certfleet recorded the revocation (RFC 3339).
    pub revoked_at: String,
    /// The reason sent.
    pub reason: String,
    /// The issuer whose account asked the CA.
    pub issuer: String,
    /// The CA answered that it had revoked the certificate before (`alreadyRevoked`).
    pub already_revoked: bool,
    /// What happens next.
    pub replacement: Replacement,
    /// With `replacement: not_before`, the CA's Retry-After (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
    /// The certificate as it is now.
    pub certificate: CertificateView,
}

/// `POST /api/v1/certificates/{name}/revoke`.
pub async fn revoke(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Json<RevokeCertificate>, JsonRejection>,
) -> Result<Json<RevocationView>, ApiError> {
    let name = CertName::parse(&name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    let name = name.as_str();
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let reason = match &body.reason {
        Some(r) => r
            .parse::<RevocationReason>()
            .map_err(|e| ApiError::invalid("reason", e.to_string()))?,
        None => RevocationReason::Unspecified,
    };
    let cert = app
        .store
        .certificate(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate {name:?} not found")))?;
    let version = pick_version(&app, &cert, body.version).await?;
    check_reissue(&cert, &version, body.reissue)?;
    let issuer = pick_issuer(&app, &cert, body.issuer.as_deref())?;
    let owner = format!("{}/revoke", app.issuance.owner());
    let now = certfleet_core::time::now();
    let until = now + CLAIM_LEASE.as_secs() as i64;
    if app.store.claim(name, &owner, now, until).await?.is_none() {
        return Err(ApiError::conflict(
            "name",
            format!(
                "an order for {name:?} is in progress; revoke once it has ended (`certfleet cert \
                 show {name}`)"
            ),
        ));
    }
    let asked = app.issuers[&issuer].revoke(&version.leaf_pem, reason).await;
    let outcome = match asked {
        Ok(outcome) => outcome,
        Err(e) => {
            release(&app, name, &owner, cert.next_due).await;
            return Err(refusal(&app, &cert, &version, &issuer, e));
        }
    };
    let at = certfleet_core::time::now();
    let recorded = record(&app, &cert, &version, &issuer, reason, outcome, at).await;
    let (replacement, retry_after) = match recorded {
        Ok(()) => replace(&app, &cert, &version, &owner, body.reissue).await,
        Err(e) => {
            release(&app, name, &owner, cert.next_due).await;
            return Err(e);
        }
    };
    let now = certfleet_core::time::now();
    let current = app.store.certificate(name).await?.unwrap_or(cert);
    Ok(Json(RevocationView {
        name: name.to_string(),
        version: version.seq,
        serial: version.serial.clone(),
        revoked_at: rfc3339(at),
        reason: reason.to_string(),
        issuer,
        already_revoked: outcome == Revocation::AlreadyRevoked,
        replacement,
        retry_after: retry_after.map(rfc3339),
        certificate: CertificateView::new(&current, now),
    }))
}

/// The version asked for (default: the current one), not revoked yet.
async fn pick_version(
    app: &App,
    cert: &Certificate,
    asked: Option<u32>,
) -> Result<Version, ApiError> {
    let name = cert.name.as_str();
    let Some(seq) = asked.or(cert.current_version) else {
        return Err(ApiError::not_found(format!(
            "certificate {name:?} has no issued version yet (status {}); there is nothing to revoke",
            cert.status.as_str()
        )));
    };
    let version = app.store.version(name, seq).await?.ok_or_else(|| {
        let latest = cert
            .current_version
            .map(|c| format!(" (its versions are numbered 1 to {c})"))
            .unwrap_or_default();
        ApiError::not_found(format!("certificate {name:?} has no version {seq}{latest}"))
    })?;
    if let Some(at) = version.revoked_at {
        let why = version
            .revocation_reason
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        return Err(ApiError::conflict(
            "version",
            format!(
                "version {seq} of {name:?} (serial {}) was already revoked at {}{why}",
                version.serial,
                rfc3339(at)
            ),
        ));
    }
    Ok(version)
}

/// `reissue` replaces the current version of a certificate certfleet renews, nothing else.
fn check_reissue(cert: &Certificate, version: &Version, reissue: bool) -> Result<(), ApiError> {
    let name = cert.name.as_str();
    if !reissue {
        return Ok(());
    }
    if !cert.auto_renewable() {
        return Err(ApiError::invalid(
            "reissue",
            format!(
                "certificate {name:?} was imported; certfleet cannot issue a replacement until it \
                 is put under ACME management (certfleet cert manage {name} --issuer ISSUER). \
                 Revoke without --reissue, or manage it first"
            ),
        ));
    }
    if cert.current_version != Some(version.seq) {
        return Err(ApiError::invalid(
            "reissue",
            format!(
                "version {} of {name:?} is not the current one (version {}); --reissue replaces \
                 the current version",
                version.seq,
                cert.current_version.unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// The configured issuer whose account asks the CA.
fn pick_issuer(app: &App, cert: &Certificate, asked: Option<&str>) -> Result<String, ApiError> {
    let name = cert.name.as_str();
    let issuer = match asked {
        Some(i) => i,
        None if cert.issuer == MANUAL_ISSUER => {
            return Err(ApiError::invalid(
                "issuer",
                format!(
                    "certificate {name:?} was imported (issuer manual): name the configured \
                     issuer whose ACME account should ask the CA to revoke it (--issuer). The CA \
                     revokes it only for the account that ordered it (or, at some CAs, an \
                     account holding valid authorizations for all its names)"
                ),
            ));
        }
        None => cert.issuer.as_str(),
    };
    if !app.issuers.contains_key(issuer) {
        let known: Vec<&str> = app.issuers.keys().map(String::as_str).collect();
        return Err(ApiError::invalid(
            "issuer",
            format!(
                "unknown issuer {issuer:?}; configured issuers: {}",
                known.join(", ")
            ),
        ));
    }
    Ok(issuer.to_string())
}

/// Why the CA did not revoke, in the CA's words, with what to do.
fn refusal(
    app: &App,
    cert: &Certificate,
    version: &Version,
    issuer: &str,
    e: AcmeError,
) -> ApiError {
    let directory = &app.issuers[issuer].config().directory_url;
    let what = format!(
        "version {} of {:?} (serial {})",
        version.seq,
        cert.name.as_str(),
        version.serial
    );
    match e {
        AcmeError::Problem(p) => {
            let hint = match p.short_type() {
                Some("unauthorized") => {
                    "; an ACME account may revoke only the certificates it ordered: revoke it \
                     with the account (or client) that ordered it, or with --issuer naming that \
                     account's issuer"
                }
                Some("malformed") if cert.issuer == MANUAL_ISSUER => {
                    "; check that this CA issued the certificate"
                }
                _ => "",
            };
            tracing::warn!(certificate = %cert.name, %issuer, problem = %p, "the CA refused a revocation");
            ApiError::ca_refused(
                "issuer",
                format!(
                    "the CA at {directory} refused to revoke {what} for issuer {issuer}: {p}{hint}"
                ),
            )
        }
        other => ApiError::issuer_unusable(format!(
            "issuer {issuer:?}: could not revoke {what}: {other}"
        )),
    }
}

/// Mark the version revoked and record the `revoked` event.
async fn record(
    app: &App,
    cert: &Certificate,
    version: &Version,
    issuer: &str,
    reason: RevocationReason,
    outcome: Revocation,
    at: UnixTime,
) -> Result<(), ApiError> {
    let name = cert.name.as_str();
    app.store
        .mark_revoked(name, version.seq, at, reason)
        .await?;
    let before = match outcome {
        Revocation::AlreadyRevoked => " (the CA had already revoked it)",
        Revocation::Revoked => "",
    };
    let current = if cert.current_version == Some(version.seq) {
        " current"
    } else {
        ""
    };
    let message = format!(
        "revoked{current} version {} serial {} at the CA, reason {reason}, with the account of \
         issuer {issuer}{before}",
        version.seq, version.serial
    );
    tracing::warn!(certificate = name, "{message}");
    let details = EventDetails {
        version: Some(version.seq),
        serial: Some(version.serial.clone()),
        not_after: Some(version.not_after),
        issuer: Some(issuer.to_string()),
        reason: Some(reason.to_string()),
        ..EventDetails::default()
    };
    app.store
        .record_event(&NewEvent::about(name, EventKind::Revoked, message).with(details))
        .await?;
    Ok(())
}

/// End the revocation's claim: a revoked current version of a renewed certificate is due now
/// (and started at once with `reissue`); otherwise the schedule stays as it was.
async fn replace(
    app: &App,
    cert: &Certificate,
    version: &Version,
    owner: &str,
    reissue: bool,
) -> (Replacement, Option<UnixTime>) {
    let name = cert.name.as_str();
    let renews = cert.auto_renewable() && cert.current_version == Some(version.seq);
    if !renews {
        release(app, name, owner, cert.next_due).await;
        return (Replacement::None, None);
    }
    let now = certfleet_core::time::now();
    // The CA's Retry-After still holds for the replacement's order.
    if let Some(at) = cert.retry_after.filter(|at| *at > now) {
        release(app, name, owner, Some(at)).await;
        return (Replacement::NotBefore, Some(at));
    }
    release(app, name, owner, Some(now)).await;
    if !reissue {
        app.issuance.poke();
        return (Replacement::Scheduled, None);
    }
    match app
        .issuance
        .start(name, Trigger::Requested { force: false })
        .await
    {
        Ok(Started::Started | Started::Busy) => (Replacement::Started, None),
        Ok(Started::NotBefore(at)) => (Replacement::NotBefore, Some(at)),
        Err(e) => {
            tracing::warn!(certificate = name, error = %e, "could not start the replacement; the scheduler will");
            app.issuance.poke();
            (Replacement::Scheduled, None)
        }
    }
}

/// Release the revocation's claim, setting when the certificate is due next.
async fn release(app: &App, name: &str, owner: &str, next_due: Option<UnixTime>) {
    if let Err(e) = app.store.release_claim(name, owner, next_due).await {
        tracing::warn!(certificate = name, error = %e, "could not release the revocation's claim");
    }
}
