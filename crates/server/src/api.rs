//! The REST API under `/api/v1` (JSON in and out, bearer token on every route; roles and the
//! fleet's own routes are in [`crate::fleet`]).
//!
//! | method | path                                   | what                         |
//! |--------|----------------------------------------|------------------------------|
//! | GET    | `/api/v1/certificates`                 | list ([`CertificateView`])   |
//! | POST   | `/api/v1/certificates`                 | declare and start issuing    |
//! | GET    | `/api/v1/certificates/{name}`          | one, with versions           |
//! | DELETE | `/api/v1/certificates/{name}`          | remove                       |
//! | POST   | `/api/v1/certificates/{name}/renew`    | issue a new version now (`?force=true` ignores the CA's Retry-After) |
//! | GET    | `/api/v1/certificates/{name}/bundle`   | PEM files of the current one |
//! | POST   | `/api/v1/certificates/{name}/import`   | import files ([`crate::manual`]) |
//! | POST   | `/api/v1/certificates/{name}/manage`   | renew an import over ACME    |
//! | POST   | `/api/v1/certificates/{name}/revoke`   | revoke at the CA ([`crate::revocation`]) |
//! | GET    | `/api/v1/issuers`                      | issuers and their accounts   |
//! | *      | `/api/v1/accounts...`                  | the account's life ([`crate::accounts`]) |
//! | GET    | `/api/v1/events`                       | the event log                |

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, Router};
use certfleet_acme::inspect::ParsedChain;
use certfleet_core::{CertName, Event, EventKind, Labels, NewCertificate, Source};
use serde::Deserialize;

use crate::app::App;
use crate::config::{CertificateRequest, validate_certificate};
use crate::fleet;
use crate::issuance::{Started, Trigger};
use crate::problem::ApiError;
use crate::validate::{ProfileCheck, check_profile};
use crate::views::{
    AddCertificate, BundleView, CertificateDetail, CertificateView, ChainEntry, IssuerView,
    VersionView, rfc3339,
};

/// How long a certificate being removed is held (claimed) against the scheduler, seconds.
const REMOVAL_HOLD_SECS: i64 = 3600;

/// Most events returned by one request.
pub const MAX_EVENTS: u32 = 1000;

/// The API router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/certificates", get(list).post(add))
        .route("/api/v1/certificates/{name}", get(show).delete(remove))
        .route("/api/v1/certificates/{name}/renew", post(renew))
        .route("/api/v1/certificates/{name}/bundle", get(bundle))
        .route(
            "/api/v1/certificates/{name}/import",
            post(crate::manual::import),
        )
        .route(
            "/api/v1/certificates/{name}/manage",
            post(crate::manual::manage),
        )
        .route(
            "/api/v1/certificates/{name}/revoke",
            post(crate::revocation::revoke),
        )
        .route("/api/v1/issuers", get(issuers))
        .route("/api/v1/events", get(events))
        .merge(crate::accounts::routes())
        .merge(fleet::api::routes())
        .merge(fleet::agent_api::routes())
        .fallback(|| async { ApiError::not_found("no such API route") })
        .layer(middleware::from_fn_with_state(
            app.clone(),
            fleet::auth::authenticate,
        ))
        .with_state(app)
}

fn checked_name(name: &str) -> Result<CertName, ApiError> {
    CertName::parse(name).map_err(|e| ApiError::invalid("name", e.to_string()))
}

async fn list(State(app): State<Arc<App>>) -> Result<Json<Vec<CertificateView>>, ApiError> {
    let now = certfleet_core::time::now();
    let certs = app.store.certificates().await?;
    let mut views: Vec<CertificateView> =
        certs.iter().map(|c| CertificateView::new(c, now)).collect();
    fleet::fill_deployed(app.store.as_ref(), &mut views).await?;
    Ok(Json(views))
}

async fn add(
    State(app): State<Arc<App>>,
    body: Result<Json<AddCertificate>, JsonRejection>,
) -> Result<(StatusCode, Json<CertificateView>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let request = CertificateRequest {
        name: &body.name,
        domains: &body.domains,
        issuer: body.issuer.as_deref(),
        key: body.key.as_deref(),
        challenge: body.challenge.as_deref(),
        solver: body.solver.as_deref(),
        solvers: Some(&body.solvers),
        profile: body.profile.as_deref(),
        renew_before: body.renew_before.as_deref(),
    };
    let settings = validate_certificate("", &request, &app.issuer_settings, &app.solver_kinds)?;
    let labels = Labels::from_map(body.labels.clone())
        .map_err(|e| ApiError::invalid("labels", e.to_string()))?;
    if app
        .store
        .certificate(settings.name.as_str())
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(
            "name",
            format!("certificate {:?} already exists", settings.name.as_str()),
        ));
    }
    let issuer = &app.issuers[&settings.issuer];
    if let Err(e) = issuer.account_url().await {
        return Err(ApiError::issuer_unusable(format!(
            "issuer {:?}: {e}",
            settings.issuer
        )));
    }
    if let Some(profile) = &settings.profile {
        match check_profile(issuer.as_ref(), profile).await {
            Ok(()) => {}
            Err(ProfileCheck::Refused(message)) => {
                return Err(ApiError::invalid("profile", message));
            }
            Err(ProfileCheck::Unreachable(e)) => {
                return Err(ApiError::issuer_unusable(format!(
                    "issuer {:?}: {e}",
                    settings.issuer
                )));
            }
        }
    }
    let new = NewCertificate {
        name: settings.name,
        domains: settings.domains,
        issuer: settings.issuer,
        key_kind: settings.key,
        challenge: settings.challenge,
        source: Source::Acme,
        solvers: settings.solvers,
        profile: settings.profile,
        renew_before: settings.renew_before,
    };
    let created = app.store.create_certificate(&new).await?;
    let name = created.name.as_str();
    if !labels.is_empty() {
        app.store.set_labels(name, &labels).await?;
    }
    let message = format!(
        "declared for {}",
        new.domains
            .iter()
            .map(|d| d.for_people())
            .collect::<Vec<_>>()
            .join(", ")
    );
    app.store
        .append_event(Some(name), EventKind::Created, &message)
        .await?;
    // Start at once; should the scheduler have been quicker, it is running anyway.
    app.issuance
        .start(name, Trigger::Requested { force: false })
        .await?;
    app.issuance.poke();
    let now = certfleet_core::time::now();
    let current = app.store.certificate(name).await?.unwrap_or(created);
    Ok((
        StatusCode::CREATED,
        Json(CertificateView::new(&current, now)),
    ))
}

async fn show(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<CertificateDetail>, ApiError> {
    checked_name(&name)?;
    let cert = app
        .store
        .certificate(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate {name:?} not found")))?;
    let versions = app.store.versions(&name).await?;
    let views = versions
        .iter()
        .map(|v| {
            VersionView::new(
                v,
                cert.current_version,
                chain_entries(&v.leaf_pem, &v.chain_pem),
            )
        })
        .collect();
    let mut certificate = [CertificateView::new(&cert, certfleet_core::time::now())];
    fleet::fill_deployed(app.store.as_ref(), &mut certificate).await?;
    let [certificate] = certificate;
    Ok(Json(CertificateDetail {
        certificate,
        versions: views,
    }))
}

fn chain_entries(leaf_pem: &str, chain_pem: &str) -> Vec<ChainEntry> {
    match ParsedChain::parse(&format!("{leaf_pem}{chain_pem}")) {
        Ok(chain) => chain
            .certs
            .iter()
            .map(|c| ChainEntry {
                subject: c.subject.clone(),
                issuer: c.issuer.clone(),
                serial: c.serial.clone(),
                not_after: rfc3339(c.not_after),
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "a stored chain does not parse");
            Vec::new()
        }
    }
}

async fn remove(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    checked_name(&name)?;
    if app.declared.contains(&name) {
        let file = app
            .config_file
            .as_ref()
            .map(|f| format!(" {}", f.display()))
            .unwrap_or_default();
        return Err(ApiError::conflict(
            "name",
            format!(
                "certificate {name:?} is declared in the config file{file}; removing it here would \
                 not last (the next start declares it again): remove it from the file, restart \
                 the server, then remove it"
            ),
        ));
    }
    if app.store.certificate(&name).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "certificate {name:?} not found"
        )));
    }
    // Stop the attempt in flight, then hold the certificate (a claim moves its due time past
    // the removal, so the scheduler leaves it alone), stop whatever started in between, and
    // remove it: nothing is written about it after the `deleted` event.
    let mut cancelled = app.issuance.cancel(&name).await;
    let now = certfleet_core::time::now();
    let _ = app
        .store
        .claim(&name, app.issuance.owner(), now, now + REMOVAL_HOLD_SECS)
        .await;
    cancelled |= app.issuance.cancel(&name).await;
    if !app.store.delete_certificate(&name).await? {
        return Err(ApiError::not_found(format!(
            "certificate {name:?} not found"
        )));
    }
    let message = if cancelled {
        "removed with its versions; the order in flight was cancelled"
    } else {
        "removed with its versions"
    };
    app.store
        .append_event(Some(&name), EventKind::Deleted, message)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct RenewQuery {
    #[serde(default)]
    force: bool,
}

async fn renew(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    query: Result<Query<RenewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<CertificateView>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    checked_name(&name)?;
    let cert = app
        .store
        .certificate(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate {name:?} not found")))?;
    if !cert.auto_renewable() {
        return Err(ApiError::invalid(
            "name",
            format!(
                "certificate {name:?} was imported; certfleet cannot renew it until it is put \
                 under ACME management: certfleet cert manage {name} --issuer ISSUER"
            ),
        ));
    }
    match app
        .issuance
        .start(&name, Trigger::Requested { force: query.force })
        .await?
    {
        Started::Started => {}
        Started::Busy => {
            return Err(ApiError::conflict(
                "name",
                format!("an order for {name:?} is already in progress"),
            ));
        }
        Started::NotBefore(at) => {
            return Err(ApiError::not_before(
                at,
                format!(
                    "the CA asked (Retry-After) not to be sent requests for {name:?} before {}; \
                     certfleet tries again then by itself, or renew with force (--force) to \
                     send the order now anyway",
                    rfc3339(at)
                ),
            ));
        }
    }
    let now = certfleet_core::time::now();
    let cert = app.store.certificate(&name).await?.unwrap_or(cert);
    Ok((StatusCode::ACCEPTED, Json(CertificateView::new(&cert, now))))
}

async fn bundle(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<Json<BundleView>, ApiError> {
    checked_name(&name)?;
    let cert = app
        .store
        .certificate(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate {name:?} not found")))?;
    let Some(seq) = cert.current_version else {
        return Err(ApiError::not_found(format!(
            "certificate {name:?} has no issued version yet (status {})",
            cert.status.as_str()
        )));
    };
    let version = app
        .store
        .versions(&name)
        .await?
        .into_iter()
        .find(|v| v.seq == seq)
        .ok_or_else(|| ApiError::internal(format!("current version {seq} of {name} is missing")))?;
    let key = app.store.version_key(&name, seq).await?;
    Ok(Json(BundleView {
        name: name.clone(),
        domains: cert.domains.iter().map(ToString::to_string).collect(),
        version: seq,
        serial: version.serial.clone(),
        fullchain_pem: format!("{}{}", version.leaf_pem, version.chain_pem),
        revoked_at: version.revoked_at.map(rfc3339),
        cert_pem: version.leaf_pem,
        chain_pem: version.chain_pem,
        key_pem: key.expose().to_string(),
    }))
}

async fn issuers(State(app): State<Arc<App>>) -> Result<Json<Vec<IssuerView>>, ApiError> {
    let mut out = Vec::new();
    for (name, settings) in &app.issuer_settings {
        let account = app.store.account(name, &settings.directory).await?;
        let (account_url, contacts) = match account {
            Some(a) => (Some(a.account_url), a.contacts),
            None => (None, Vec::new()),
        };
        out.push(IssuerView {
            name: name.clone(),
            directory: settings.directory.clone(),
            contacts,
            account_url,
            configured_contacts: settings.contacts.clone(),
            preferred_chain: settings.preferred_chain.clone(),
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
struct EventParams {
    certificate: Option<String>,
    limit: Option<u32>,
    /// Comma-separated kinds.
    kind: Option<String>,
    /// RFC 3339 or Unix seconds.
    since: Option<String>,
}

async fn events(
    State(app): State<Arc<App>>,
    query: Result<Query<EventParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let kinds = q
        .kind
        .iter()
        .flat_map(|k| k.split(','))
        .filter(|k| !k.is_empty())
        .map(|k| {
            k.parse::<EventKind>()
                .map_err(|e| ApiError::invalid("kind", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let since = q
        .since
        .as_deref()
        .map(crate::views::parse_time)
        .transpose()
        .map_err(|e| ApiError::invalid("since", e))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit} is not a number of events from 1 to {MAX_EVENTS}"),
        ));
    }
    let query = certfleet_core::EventQuery {
        certificate: q.certificate,
        kinds,
        since,
        limit,
    };
    Ok(Json(app.store.query_events(&query).await?))
}
