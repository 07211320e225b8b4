//! The HTTP-01 responder: `GET /.well-known/acme-challenge/<token>` from memory.
//!
//! The path is matched on the raw request target, never decoded or normalised, so
//! `..`, `%2e%2e`, `..;/` and friends simply do not match. The token is validated
//! (`^[A-Za-z0-9_-]{16,128}$`) before any lookup, and the lookup is in [`LiveTokens`], which the
//! solver and a periodic reload keep in sync with the store and the Redis mirror: no request
//! reaches a database. Only a token live for the request's Host gets its key authorization;
//! every other request (other paths, methods, hosts, expired tokens) gets the same 404, so
//! nothing can be learned by probing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use certfleet_core::validate_token;

use crate::live::LiveTokens;

/// The path prefix of RFC 8555 §8.3.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
const NOT_FOUND_BODY: &str = "not found\n";

/// The responder as a router (every path goes to one handler).
pub fn router(live: Arc<LiveTokens>) -> Router {
    Router::new().fallback(respond).with_state(live)
}

async fn respond(State(live): State<Arc<LiveTokens>>, request: Request) -> Response {
    let Some((token, host)) = parse_request(&request) else {
        return not_found();
    };
    match live.lookup(token, &host, certfleet_core::time::now()) {
        Some(body) => {
            tracing::debug!(%host, "served an HTTP-01 response");
            let mut rsp = Response::new(Body::from(body));
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            rsp
        }
        None => not_found(),
    }
}

/// `(token, host)` if the request is a well-formed challenge request.
fn parse_request(request: &Request) -> Option<(&str, String)> {
    if request.method() != Method::GET || request.uri().query().is_some() {
        return None;
    }
    let token = request.uri().path().strip_prefix(CHALLENGE_PREFIX)?;
    validate_token(token).ok()?;
    let host = request_host(request)?;
    Some((token, host))
}

/// The Host header (or the absolute-form authority), lowercase, without port or final dot.
fn request_host(request: &Request) -> Option<String> {
    let raw = match request.headers().get(header::HOST) {
        Some(v) => v.to_str().ok()?,
        None => request.uri().host()?,
    };
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => raw,
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

fn not_found() -> Response {
    let mut rsp = Response::new(Body::from(NOT_FOUND_BODY));
    *rsp.status_mut() = StatusCode::NOT_FOUND;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    rsp
}
