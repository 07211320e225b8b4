//! Admin and viewer routes of the fleet.
//!
//! | method | path                                   | role           | what                       |
//! |--------|----------------------------------------|----------------|----------------------------|
//! | PATCH  | `/api/v1/certificates/{name}/labels`   | admin          | merge-patch labels (RFC 7396) |
//! | GET    | `/api/v1/tokens`                       | admin          | tokens, never their secret |
//! | POST   | `/api/v1/tokens`                       | admin          | create; the token is shown once |
//! | DELETE | `/api/v1/tokens/{name}`                | admin          | revoke                     |
//! | GET    | `/api/v1/agents`                       | admin, viewer  | agents and what they serve |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, patch};
use axum::{Json, Router};
use certfleet_core::{CertName, EventKind, NewToken, Role, Selector};

use super::auth::{new_token, token_hash};
use super::views::{AgentCertificateView, AgentView, CreatedToken, NewTokenRequest, TokenView};
use super::{current_serial, entitled_agents};
use crate::app::App;
use crate::problem::ApiError;
use crate::views::{CertificateView, rfc3339};

/// The routes (mounted under the API's authentication).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/certificates/{name}/labels", patch(patch_labels))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{name}", delete(revoke_token))
        .route("/api/v1/agents", get(list_agents))
}

async fn patch_labels(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Json<BTreeMap<String, Option<String>>>, JsonRejection>,
) -> Result<Json<CertificateView>, ApiError> {
    CertName::parse(&name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    let Json(patch) = body.map_err(|e| {
        ApiError::invalid(
            "body",
            format!(
                "{}; send a JSON object of label values, null to remove one",
                e.body_text()
            ),
        )
    })?;
    let cert = app
        .store
        .certificate(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate {name:?} not found")))?;
    let labels = cert
        .labels
        .patched(&patch)
        .map_err(|e| ApiError::invalid("labels", e.to_string()))?;
    if labels != cert.labels {
        app.store.set_labels(&name, &labels).await?;
        let message = format!("labels now {{{labels}}} (were {{{}}})", cert.labels);
        app.store
            .append_event(Some(&name), EventKind::LabelsChanged, &message)
            .await?;
    }
    let cert = app.store.certificate(&name).await?.unwrap_or(cert);
    let mut views = [CertificateView::new(&cert, certfleet_core::time::now())];
    super::fill_deployed(app.store.as_ref(), &mut views).await?;
    let [view] = views;
    Ok(Json(view))
}

async fn list_tokens(State(app): State<Arc<App>>) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = app.store.tokens().await?;
    Ok(Json(tokens.iter().map(TokenView::new).collect()))
}

async fn create_token(
    State(app): State<Arc<App>>,
    body: Result<Json<NewTokenRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    certfleet_core::fleet::check_token_name(&body.name)
        .map_err(|e| ApiError::invalid("name", e))?;
    let role: Role = body
        .role
        .parse()
        .map_err(|e| ApiError::invalid("role", e))?;
    let selector = match (role, body.selector.as_deref()) {
        (Role::Agent, Some(text)) => {
            Some(Selector::parse(text).map_err(|e| ApiError::invalid("selector", e.to_string()))?)
        }
        (Role::Agent, None) => {
            return Err(ApiError::invalid(
                "selector",
                "an agent token needs a selector, such as app=www: it receives only the certificates whose labels match",
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "selector",
                format!("a selector applies to agent tokens only, not to role {role}"),
            ));
        }
        (_, None) => None,
    };
    let token = new_token();
    let new = NewToken {
        name: body.name.clone(),
        role,
        selector,
        token_hash: token_hash(&token),
    };
    let record = app.store.create_token(&new).await.map_err(|e| match e {
        certfleet_core::StoreError::AlreadyExists(_) => ApiError::conflict(
            "name",
            format!(
                "a token named {:?} exists (revoked tokens keep their name)",
                body.name
            ),
        ),
        other => other.into(),
    })?;
    let message = match &record.selector {
        Some(s) => format!("{role} token {:?} created for selector {s}", record.name),
        None => format!("{role} token {:?} created", record.name),
    };
    app.store
        .append_event(None, EventKind::TokenCreated, &message)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            view: TokenView::new(&record),
            token,
        }),
    ))
}

async fn revoke_token(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !app.store.revoke_token(&name).await? {
        return Err(ApiError::not_found(format!("no live token named {name:?}")));
    }
    app.store
        .append_event(
            None,
            EventKind::TokenRevoked,
            &format!("token {name:?} revoked"),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_agents(State(app): State<Arc<App>>) -> Result<Json<Vec<AgentView>>, ApiError> {
    let tokens = app.store.tokens().await?;
    let certs = app.store.certificates().await?;
    let reports = app.store.deployments(None).await?;
    let mut serials = BTreeMap::new();
    for cert in &certs {
        serials.insert(
            cert.name.to_string(),
            current_serial(app.store.as_ref(), cert).await?,
        );
    }
    let mut out = Vec::new();
    for agent in tokens.iter().filter(|t| t.role == Role::Agent) {
        let entitled: Vec<&str> = certs
            .iter()
            .filter(|c| entitled_agents(c, std::slice::from_ref(agent)).len() == 1)
            .map(|c| c.name.as_str())
            .collect();
        let certificates: Vec<AgentCertificateView> = reports
            .iter()
            .filter(|r| r.agent == agent.name)
            .map(|r| {
                let current = serials.get(&r.report.certificate).cloned().flatten();
                AgentCertificateView {
                    certificate: r.report.certificate.clone(),
                    version: r.report.version,
                    serial: r.report.serial.clone(),
                    verified: r.report.verified,
                    in_sync: r.report.verified && current.as_deref() == Some(&r.report.serial),
                    served_serial: r.report.served_serial.clone(),
                    hook_status: r.report.hook_status,
                    hook_output: r.report.hook_output.clone(),
                    error: r.report.error.clone(),
                    rolled_back: r.report.rolled_back,
                    reported_at: rfc3339(r.reported_at),
                }
            })
            .collect();
        let in_sync = certificates
            .iter()
            .filter(|c| c.in_sync && entitled.contains(&c.certificate.as_str()))
            .count();
        out.push(AgentView {
            name: agent.name.clone(),
            selector: agent.selector.as_ref().map(ToString::to_string),
            revoked: agent.revoked_at.is_some(),
            last_seen: agent.last_seen.map(rfc3339),
            clock_offset_ms: agent.clock_offset_ms,
            serves_http01: agent.serves_http01,
            entitled: entitled.len() as u32,
            in_sync: in_sync as u32,
            certificates,
        });
    }
    Ok(Json(out))
}
