//! Who is calling, and what they may do.
//!
//! Every request carries `Authorization: Bearer <token>`. The admin token (from the data
//! directory) is compared in constant time; any other token is looked up by its SHA-256 hash,
//! so the store never holds a usable token. Then the route decides:
//!
//! | role   | may                                                                    |
//! |--------|------------------------------------------------------------------------|
//! | admin  | everything                                                             |
//! | viewer | `GET` anything except bundles (no key bytes) and the token list         |
//! | agent  | `/api/v1/agent/...`, and `GET .../certificates/{name}/bundle` for the certificates its selector matches |
//!
//! An agent asking for any other certificate's bundle gets exactly the 404 of a missing
//! certificate: nothing tells it the certificate exists.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use certfleet_core::{AgentSeen, Role, TokenRecord};

use crate::app::App;
use crate::problem::ApiError;

/// How stale `last_seen` may get before a request refreshes it, seconds.
const TOUCH_AFTER_SECS: i64 = 30;
/// Bytes of randomness in a token.
pub const TOKEN_BYTES: usize = 32;

/// The authenticated caller, put into request extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub enum Caller {
    /// The admin token of the data directory.
    Admin,
    /// A stored token.
    Token(TokenRecord),
}

impl Caller {
    /// The caller's role.
    pub fn role(&self) -> Role {
        match self {
            Caller::Admin => Role::Admin,
            Caller::Token(t) => t.role,
        }
    }

    /// The agent's token, if the caller is an agent.
    pub fn agent(&self) -> Option<&TokenRecord> {
        match self {
            Caller::Token(t) if t.role == Role::Agent => Some(t),
            _ => None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The agent calling, or 403 for anyone else.
pub fn require_agent(caller: &Caller) -> Result<&TokenRecord, ApiError> {
    caller
        .agent()
        .ok_or_else(|| ApiError::forbidden("only agent tokens may use the agent routes"))
}

/// SHA-256 of a token, lowercase hex (what the store keeps).
pub fn token_hash(token: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh token: `cf_` and base64url of [`TOKEN_BYTES`] random bytes.
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator failed");
    format!(
        "cf_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Middleware: authenticate, apply the role table, remember the caller.
pub async fn authenticate(
    State(app): State<Arc<App>>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let caller = match identify(&app, presented).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = permit(&app, &caller, &method, &path).await {
        return e.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

async fn identify(app: &App, presented: Option<String>) -> Result<Caller, ApiError> {
    let presented = presented.ok_or_else(ApiError::unauthorized)?;
    if constant_time_eq(presented.as_bytes(), app.admin_token.as_bytes()) {
        return Ok(Caller::Admin);
    }
    let token = app
        .store
        .token_by_hash(&token_hash(&presented))
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let now = certfleet_core::time::now();
    if token.last_seen.is_none_or(|t| now - t >= TOUCH_AFTER_SECS) {
        let seen = AgentSeen {
            at: now,
            clock_offset_ms: None,
            serves_http01: None,
        };
        if let Err(e) = app.store.touch_token(&token.name, seen).await {
            tracing::warn!(token = %token.name, error = %e, "could not record last_seen");
        }
    }
    Ok(Caller::Token(token))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role table of the module docs.
async fn permit(app: &App, caller: &Caller, method: &Method, path: &str) -> Result<(), ApiError> {
    let bundle_of = bundle_name(path);
    match caller.role() {
        Role::Admin => Ok(()),
        Role::Viewer => {
            if bundle_of.is_some() {
                Err(ApiError::forbidden(
                    "viewer tokens cannot read private keys; bundles need an admin token or an entitled agent token",
                ))
            } else if method != Method::GET && method != Method::HEAD {
                Err(ApiError::forbidden("viewer tokens are read-only"))
            } else if path.starts_with("/api/v1/tokens") || path.starts_with("/api/v1/agent/") {
                Err(ApiError::forbidden(
                    "viewer tokens cannot list tokens or use the agent routes",
                ))
            } else {
                Ok(())
            }
        }
        Role::Agent => {
            if path.starts_with("/api/v1/agent/") {
                return Ok(());
            }
            match bundle_of {
                Some(name) if method == Method::GET => entitled(app, caller, name).await,
                _ => Err(ApiError::forbidden(
                    "agent tokens may use only the agent routes (/api/v1/agent/...) and the bundles of the certificates their selector matches",
                )),
            }
        }
    }
}

/// `NAME` of `/api/v1/certificates/NAME/bundle`.
fn bundle_name(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/certificates/")?
        .strip_suffix("/bundle")
        .filter(|n| !n.contains('/'))
}

/// The same 404 as a missing certificate unless the agent is entitled to `name`.
async fn entitled(app: &App, caller: &Caller, name: &str) -> Result<(), ApiError> {
    let missing = || ApiError::not_found(format!("certificate {name:?} not found"));
    let agent = caller.agent().ok_or_else(missing)?;
    match app.store.certificate(name).await? {
        Some(cert) if agent.entitled_to(&cert.labels) => Ok(()),
        _ => {
            tracing::info!(agent = %agent.name, certificate = name, "refused a bundle outside the agent's selector");
            Err(missing())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths() {
        assert_eq!(bundle_name("/api/v1/certificates/www/bundle"), Some("www"));
        assert_eq!(bundle_name("/api/v1/certificates/www"), None);
        assert_eq!(bundle_name("/api/v1/certificates/a/b/bundle"), None);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with("cf_") && a.len() == 46, "{a}");
        assert_eq!(token_hash("abc").len(), 64);
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
