//! Benchmark baseline for `bench/responder`: the HTTP-01 responder as it was before responses
//! were served from memory — the same token and Host checks, then one SQLite lookup
//! (`Store::challenge_response`) per well-formed request. Not part of certfleet; it exists so
//! the benchmark can compare both on the same machine in the same run.
//!
//! `responder_baseline ADDR DB_DIR TOKEN HOST` serves on ADDR with one live TOKEN for HOST.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use certfleet_core::{
    CertName, ChallengeKind, DnsName, Http01Challenge, KeyKind, NewCertificate, Source, Store,
    validate_token,
};
use certfleet_store::{Sealer, SqliteStore};

const PREFIX: &str = "/.well-known/acme-challenge/";

async fn respond(State(store): State<Arc<dyn Store>>, request: Request) -> Response {
    let not_found = || {
        let mut r = Response::new(Body::from("not found\n"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    if request.method() != Method::GET || request.uri().query().is_some() {
        return not_found();
    }
    let Some(token) = request.uri().path().strip_prefix(PREFIX) else {
        return not_found();
    };
    if validate_token(token).is_err() {
        return not_found();
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase())
        .unwrap_or_default();
    match store
        .challenge_response(token, &host, certfleet_core::time::now())
        .await
    {
        Ok(Some(ka)) => Response::new(Body::from(ka)),
        _ => not_found(),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, dir, token, host] = args.as_slice() else {
        eprintln!("usage: responder_baseline ADDR DB_DIR TOKEN HOST");
        std::process::exit(2);
    };
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            &std::path::Path::new(dir).join("baseline.db"),
            Sealer::from_key_bytes([9; 32]),
        )
        .expect("store"),
    );
    store
        .create_certificate(&NewCertificate {
            name: CertName::parse("bench").unwrap(),
            domains: vec![DnsName::parse(host).unwrap()],
            issuer: "bench".into(),
            key_kind: KeyKind::EcdsaP256,
            challenge: ChallengeKind::Http01,
            source: Source::Acme,
            solvers: Default::default(),
            profile: None,
            renew_before: None,
        })
        .await
        .expect("certificate");
    store
        .put_challenge(&Http01Challenge {
            token: token.clone(),
            host: host.clone(),
            key_authorization: format!("{token}.thumbprint"),
            certificate: "bench".into(),
            expires_at: certfleet_core::time::now() + 3600,
        })
        .await
        .expect("challenge");
    let listener = tokio::net::TcpListener::bind(addr.as_str())
        .await
        .expect("bind");
    let router = Router::new().fallback(respond).with_state(store);
    axum::serve(listener, router).await.expect("serve");
}
