//! Manual certificates: importing files a person brings (`POST .../{name}/import`) and
//! switching an imported certificate to ACME management (`POST .../{name}/manage`).
//!
//! An import is checked whole by [`certfleet_acme::import::assemble`] (key matches the leaf,
//! chain ordered and verified) before anything is stored; the key is sealed like every other
//! through `Store::add_version`. A new name becomes a certificate with source `manual` (issuer
//! [`MANUAL_ISSUER`], not renewed) — or, with `issuer`, one that issuer renews; a known manual
//! name gets a new version.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use certfleet_acme::AcmeError;
use certfleet_acme::import::{Assembled, Material, assemble};
use certfleet_core::{
    CertName, ChallengeKind, EventDetails, EventKind, MANUAL_ISSUER, NewCertificate, NewEvent,
    NewVersion, Source,
};

use crate::app::App;
use crate::problem::ApiError;
use crate::views::{CertificateView, ImportCertificate, ManageCertificate, rfc3339};

/// `POST /api/v1/certificates/{name}/import`: 201 for a new certificate, 200 for a new
/// version of a manual one.
pub async fn import(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Json<ImportCertificate>, JsonRejection>,
) -> Result<(StatusCode, Json<CertificateView>), ApiError> {
    let name = CertName::parse(&name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    if let Some(issuer) = &body.issuer {
        check_issuer(&app, issuer).await?;
    }
    let assembled = tokio::task::spawn_blocking(move || {
        let now = certfleet_core::time::now();
        assemble(&Material {
            cert_pem: &body.cert_pem,
            key_pem: &body.key_pem,
            chain_pem: &body.chain_pem,
            ca_pem: &body.ca_pem,
            allow_expired: body.allow_expired,
            now,
        })
        .map(|a| (a, body.issuer))
    })
    .await
    .map_err(ApiError::internal)?;
    let (assembled, issuer) = assembled.map_err(material_error)?;
    let existing = app.store.certificate(name.as_str()).await?;
    let created = match &existing {
        None => true,
        Some(c) if c.source == Source::Manual && !app.issuance.is_in_flight(name.as_str()) => false,
        Some(c) => {
            return Err(ApiError::conflict(
                "name",
                format!(
                    "certificate {:?} is issued over ACME by issuer {:?}; certfleet renews it \
                     itself. Import under another name, or remove it first",
                    name.as_str(),
                    c.issuer
                ),
            ));
        }
    };
    if !created {
        let serial = &assembled.leaf().serial;
        let versions = app.store.versions(name.as_str()).await?;
        if let Some(v) = versions.iter().find(|v| &v.serial == serial) {
            return Err(ApiError::conflict(
                "cert",
                format!(
                    "this certificate (serial {serial}) is already version {} of {:?}; \
                     nothing was imported",
                    v.seq,
                    name.as_str()
                ),
            ));
        }
    }
    if issuer.is_some() {
        let rules = existing
            .as_ref()
            .map(|c| c.solvers.clone())
            .unwrap_or_default();
        let challenge = existing
            .as_ref()
            .map_or(ChallengeKind::Http01, |c| c.challenge);
        check_provable(&app, &rules, challenge, &assembled.domains)?;
    }
    let version_issuer = issuer.clone().unwrap_or_else(|| MANUAL_ISSUER.to_string());
    let declaration = NewCertificate {
        name: name.clone(),
        domains: assembled.domains.clone(),
        issuer: version_issuer.clone(),
        key_kind: assembled.key_kind,
        challenge: existing
            .as_ref()
            .map_or(ChallengeKind::Http01, |c| c.challenge),
        // Manual until the version is stored: a pending ACME certificate without a version
        // would be ordered by a restart in between. `set_source` below switches it.
        source: Source::Manual,
        solvers: existing
            .as_ref()
            .map(|c| c.solvers.clone())
            .unwrap_or_default(),
        profile: existing.as_ref().and_then(|c| c.profile.clone()),
        renew_before: existing.as_ref().and_then(|c| c.renew_before),
    };
    if created {
        app.store.create_certificate(&declaration).await?;
    } else {
        app.store
            .update_declaration(name.as_str(), &declaration)
            .await?;
    }
    let seq = match store_version(&app, name.as_str(), &assembled, &version_issuer).await {
        Ok(v) => v,
        Err(e) => {
            if created {
                let _ = app.store.delete_certificate(name.as_str()).await;
            }
            return Err(e);
        }
    };
    if let Some(issuer) = &issuer {
        app.store
            .set_source(name.as_str(), Source::Acme, issuer)
            .await?;
        app.issuance.poke();
    }
    let managed = issuer
        .as_ref()
        .map(|i| format!("; renewed over ACME by issuer {i}"))
        .unwrap_or_else(|| "; manual: certfleet will not renew it".to_string());
    let managed = if assembled.skipped_names.is_empty() {
        managed
    } else {
        format!(
            "{managed}; also names {} (no CA orders such names; a renewal will not carry them)",
            assembled.skipped_names.join(", ")
        )
    };
    let message = format!(
        "imported version {} serial {} for {} valid until {} (chain verified to {}){managed}",
        seq,
        assembled.leaf().serial,
        assembled
            .domains
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        rfc3339(assembled.leaf().not_after),
        assembled.anchor,
    );
    let details = EventDetails {
        version: Some(seq),
        serial: Some(assembled.leaf().serial.clone()),
        not_after: Some(assembled.leaf().not_after),
        issuer: issuer.clone(),
        ..EventDetails::default()
    };
    app.store
        .record_event(&NewEvent::about(name.as_str(), EventKind::Imported, message).with(details))
        .await?;
    let cert = app
        .store
        .certificate(name.as_str())
        .await?
        .ok_or_else(|| ApiError::internal("an imported certificate vanished"))?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(CertificateView::new(&cert, certfleet_core::time::now())),
    ))
}

/// Store the assembled version; returns its number.
async fn store_version(
    app: &App,
    name: &str,
    a: &Assembled,
    issuer: &str,
) -> Result<u32, ApiError> {
    let leaf = a.leaf();
    let version = NewVersion {
        serial: leaf.serial.clone(),
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        leaf_pem: a.leaf_pem.clone(),
        chain_pem: a.chain_pem.clone(),
        key_kind: a.key_kind,
        key_pem: a.key_pem.clone(),
        order_url: None,
        domains: a.domains.clone(),
        issuer: issuer.to_string(),
    };
    let stored = app.store.add_version(name, version).await?;
    Ok(stored.seq)
}

/// `POST /api/v1/certificates/{name}/manage`: a manual certificate is renewed by `issuer`
/// from now on; its imported version stays current until then.
pub async fn manage(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Json<ManageCertificate>, JsonRejection>,
) -> Result<Json<CertificateView>, ApiError> {
    let name = CertName::parse(&name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let cert =
        app.store.certificate(name.as_str()).await?.ok_or_else(|| {
            ApiError::not_found(format!("certificate {:?} not found", name.as_str()))
        })?;
    if cert.source == Source::Acme {
        return Err(ApiError::conflict(
            "name",
            format!(
                "certificate {:?} is already renewed over ACME by issuer {:?}",
                name.as_str(),
                cert.issuer
            ),
        ));
    }
    check_issuer(&app, &body.issuer).await?;
    check_provable(&app, &cert.solvers, cert.challenge, &cert.domains)?;
    app.store
        .set_source(name.as_str(), Source::Acme, &body.issuer)
        .await?;
    app.issuance.poke();
    let message = format!(
        "now renewed over ACME by issuer {}; the imported version {} stays current until then",
        body.issuer,
        cert.current_version.unwrap_or_default()
    );
    let details = EventDetails {
        issuer: Some(body.issuer.clone()),
        ..EventDetails::default()
    };
    app.store
        .record_event(&NewEvent::about(name.as_str(), EventKind::Changed, message).with(details))
        .await?;
    let cert = app.store.certificate(name.as_str()).await?.unwrap_or(cert);
    Ok(Json(CertificateView::new(
        &cert,
        certfleet_core::time::now(),
    )))
}

/// A certificate renewed over ACME needs a solver for each name, and dns-01 for a wildcard.
fn check_provable(
    app: &App,
    rules: &certfleet_core::SolverRules,
    challenge: ChallengeKind,
    domains: &[certfleet_core::DnsName],
) -> Result<(), ApiError> {
    let errors = crate::validate::unprovable(rules, challenge, domains, &app.solver_kinds);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(crate::config::ConfigErrors(errors).into())
    }
}

/// The issuer must be configured and its CA usable (the account is registered or loaded).
async fn check_issuer(app: &App, issuer: &str) -> Result<(), ApiError> {
    let Some(acme) = app.issuers.get(issuer) else {
        return Err(ApiError::invalid(
            "issuer",
            crate::validate::unknown_issuer(issuer, app.issuers.keys()),
        ));
    };
    acme.account_url()
        .await
        .map_err(|e| ApiError::issuer_unusable(format!("issuer {issuer:?}: {e}")))?;
    Ok(())
}

fn material_error(e: AcmeError) -> ApiError {
    match e {
        AcmeError::Material { field, message } => ApiError::invalid(field, message),
        other => ApiError::internal(other),
    }
}
