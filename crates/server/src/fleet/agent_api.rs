//! The routes agents use (role `agent`).
//!
//! | method | path                     | what                                                   |
//! |--------|--------------------------|--------------------------------------------------------|
//! | GET    | `/api/v1/agent/state?since=REV&wait=SECS` | entitled certificates and HTTP-01 responses; with `since`, waits (long-poll) until the revision moves past it |
//! | POST   | `/api/v1/agent/report`   | deployment results, clock, HTTP-01 ability             |
//! | POST   | `/api/v1/agent/confirm`  | HTTP-01 tokens the agent checked it serves             |
//!
//! Bundles come from the ordinary bundle route, which an agent may read for the
//! certificates its selector matches.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use certfleet_core::fleet::{
    AgentCertificate, AgentChallenge, AgentReport, AgentState, ChallengeConfirmation,
};
use certfleet_core::{AgentSeen, DeploymentRecord, DeploymentReport, EventKind, TokenRecord};
use serde::Deserialize;

use super::auth::{Caller, require_agent};
use super::current_serial;
use super::views::Confirmed;
use crate::app::App;
use crate::problem::ApiError;

/// Longest long-poll, seconds.
pub const MAX_WAIT_SECS: u64 = 300;
/// Long-poll length when `since` is given without `wait`, seconds.
pub const DEFAULT_WAIT_SECS: u64 = 60;
/// Most certificates in one report.
pub const MAX_REPORTED: usize = 1000;
/// Most tokens in one confirmation.
pub const MAX_CONFIRMED: usize = 100;

/// The routes (mounted under the API's authentication).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/agent/state", get(state))
        .route("/api/v1/agent/report", post(report))
        .route("/api/v1/agent/confirm", post(confirm))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateQuery {
    since: Option<u64>,
    wait: Option<u64>,
}

async fn state(
    State(app): State<Arc<App>>,
    caller: Caller,
    query: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Json<AgentState>, ApiError> {
    let agent = require_agent(&caller)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    if let Some(since) = q.since {
        let wait = q.wait.unwrap_or(DEFAULT_WAIT_SECS);
        if wait > MAX_WAIT_SECS {
            return Err(ApiError::invalid(
                "wait",
                format!("{wait} s is longer than the limit of {MAX_WAIT_SECS} s"),
            ));
        }
        app.fleet.wait_past(since, Duration::from_secs(wait)).await;
    }
    Ok(Json(build_state(&app, agent).await?))
}

/// What `agent` should have now.
pub async fn build_state(app: &App, agent: &TokenRecord) -> Result<AgentState, ApiError> {
    let revision = app.fleet.revision();
    let mut certificates = Vec::new();
    let mut names = HashSet::new();
    for cert in app.store.certificates().await? {
        if !agent.entitled_to(&cert.labels) {
            continue;
        }
        names.insert(cert.name.to_string());
        certificates.push(AgentCertificate {
            name: cert.name.to_string(),
            domains: cert.domains.iter().map(ToString::to_string).collect(),
            version: cert.current_version,
            serial: current_serial(app.store.as_ref(), &cert).await?,
            not_after: cert.not_after,
        });
    }
    let now = certfleet_core::time::now();
    let challenges = app
        .store
        .live_challenges(now)
        .await?
        .into_iter()
        .filter(|c| names.contains(&c.certificate))
        .map(|c| AgentChallenge {
            token: c.token.clone(),
            host: c.host.clone(),
            key_authorization: c.key_authorization.clone(),
            certificate: c.certificate.clone(),
        })
        .collect();
    Ok(AgentState {
        agent: agent.name.clone(),
        revision,
        server_time_ms: now_ms(),
        certificates,
        challenges,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn report(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Result<Json<AgentReport>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let agent = require_agent(&caller)?;
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    if body.certificates.len() > MAX_REPORTED {
        return Err(ApiError::invalid(
            "certificates",
            format!("at most {MAX_REPORTED} certificates per report"),
        ));
    }
    let seen = AgentSeen {
        at: certfleet_core::time::now(),
        clock_offset_ms: Some(body.agent_time_ms - now_ms()),
        serves_http01: Some(body.serves_http01),
    };
    app.store.touch_token(&agent.name, seen).await?;
    for item in body.certificates {
        let item = item.bounded();
        let Some(cert) = app.store.certificate(&item.certificate).await? else {
            continue;
        };
        if !agent.entitled_to(&cert.labels) {
            continue;
        }
        let previous = app.store.record_deployment(&agent.name, &item).await?;
        let current = current_serial(app.store.as_ref(), &cert).await?;
        for (kind, message) in events_for(&agent.name, &item, previous.as_ref(), current.as_deref())
        {
            app.store
                .append_event(Some(&item.certificate), kind, &message)
                .await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The events a report gives rise to: only what changed since the previous report.
fn events_for(
    agent: &str,
    report: &DeploymentReport,
    previous: Option<&DeploymentRecord>,
    current_serial: Option<&str>,
) -> Vec<(EventKind, String)> {
    let prev = previous.map(|p| &p.report);
    let mut out = Vec::new();
    let what = format!("version {} (serial {})", report.version, report.serial);
    if report.verified && current_serial == Some(report.serial.as_str()) {
        let again = prev.is_some_and(|p| p.verified && p.serial == report.serial);
        if !again {
            out.push((
                EventKind::Deployed,
                format!("agent {agent} serves {what}, verified by TLS handshake"),
            ));
        }
    }
    if let Some(error) = &report.error {
        let again =
            prev.is_some_and(|p| p.serial == report.serial && p.error.as_ref() == Some(error));
        if !again {
            let after = if report.rolled_back {
                "; the previous files were put back"
            } else {
                ""
            };
            out.push((
                EventKind::DeployFailed,
                format!("agent {agent} could not deploy {what}: {error}{after}"),
            ));
        }
    }
    if let Some(served) = report
        .served_serial
        .as_deref()
        .filter(|s| *s != report.serial)
    {
        let again = prev.is_some_and(|p| {
            p.serial == report.serial && p.served_serial.as_deref() == Some(served)
        });
        if !again {
            out.push((
                EventKind::ServedMismatch,
                format!("agent {agent} deployed {what} but its endpoint serves serial {served}"),
            ));
        }
    }
    out
}

async fn confirm(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Result<Json<ChallengeConfirmation>, JsonRejection>,
) -> Result<Json<Confirmed>, ApiError> {
    let agent = require_agent(&caller)?;
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    if body.tokens.len() > MAX_CONFIRMED {
        return Err(ApiError::invalid(
            "tokens",
            format!("at most {MAX_CONFIRMED} tokens at once"),
        ));
    }
    let live = app
        .store
        .live_challenges(certfleet_core::time::now())
        .await?;
    let mut confirmed = Vec::new();
    for token in body.tokens {
        let Some(challenge) = live.iter().find(|c| c.token == token) else {
            continue;
        };
        let entitled = match app.store.certificate(&challenge.certificate).await? {
            Some(cert) => agent.entitled_to(&cert.labels),
            None => false,
        };
        if entitled && app.store.confirm_challenge(&token, &agent.name).await? {
            confirmed.push(token);
        }
    }
    Ok(Json(Confirmed { confirmed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        serial: &str,
        verified: bool,
        error: Option<&str>,
        served: Option<&str>,
    ) -> DeploymentReport {
        DeploymentReport {
            certificate: "www".into(),
            version: 2,
            serial: serial.into(),
            verified,
            served_serial: served.map(Into::into),
            hook_status: Some(0),
            hook_output: None,
            error: error.map(Into::into),
            rolled_back: error.is_some(),
        }
    }

    fn record(r: DeploymentReport) -> DeploymentRecord {
        DeploymentRecord {
            agent: "web-1".into(),
            report: r,
            reported_at: 0,
        }
    }

    #[test]
    fn events_only_for_changes() {
        let ok = report("0b", true, None, Some("0b"));
        let kinds = |e: Vec<(EventKind, String)>| e.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            kinds(events_for("web-1", &ok, None, Some("0b"))),
            [EventKind::Deployed]
        );
        let prev = record(ok.clone());
        assert!(events_for("web-1", &ok, Some(&prev), Some("0b")).is_empty());
        let failed = report("0c", false, Some("reload failed"), Some("0b"));
        let events = events_for("web-1", &failed, Some(&prev), Some("0c"));
        assert_eq!(
            kinds(events.clone()),
            [EventKind::DeployFailed, EventKind::ServedMismatch]
        );
        assert!(events[0].1.contains("put back"), "{}", events[0].1);
        let prev = record(failed.clone());
        assert!(events_for("web-1", &failed, Some(&prev), Some("0c")).is_empty());
    }
}
