//! The HTTP-01 responder over a real socket, fed from a real (SQLite) store.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use certfleet_core::{
    CertName, ChallengeKind, DnsName, Http01Challenge, KeyKind, NewCertificate, PendingChallenge,
    Secret, Solver, Source, Store,
};
use certfleet_solvers::live::sync_from_store;
use certfleet_solvers::{Http01Solver, LiveTokens, responder};
use certfleet_store::{Sealer, SqliteStore};

const LIVE: &str = "LiveToken_0123456789-abcdefghij";
const EXPIRED: &str = "OldToken_0123456789-abcdefghijk";
const HOST: &str = "www.example.test";

async fn serve() -> (SocketAddr, Arc<dyn Store>, Arc<LiveTokens>) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_in_memory(Sealer::from_key_bytes([7; 32])).unwrap());
    store
        .create_certificate(&NewCertificate {
            name: CertName::parse("www").unwrap(),
            domains: vec![DnsName::parse(HOST).unwrap()],
            issuer: "default".into(),
            key_kind: KeyKind::EcdsaP256,
            challenge: ChallengeKind::Http01,
            source: Source::Acme,
            solvers: Default::default(),
            profile: None,
            renew_before: None,
        })
        .await
        .unwrap();
    let now = certfleet_core::time::now();
    for (token, expires_at) in [(LIVE, now + 600), (EXPIRED, now - 1)] {
        store
            .put_challenge(&Http01Challenge {
                token: token.into(),
                host: HOST.into(),
                key_authorization: format!("{token}.thumbprint"),
                certificate: "www".into(),
                expires_at,
            })
            .await
            .unwrap();
    }
    // The responder serves from memory, loaded from the store as the server does.
    let live = LiveTokens::new();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let sync = tokio::spawn(sync_from_store(
        live.clone(),
        store.clone(),
        Duration::from_secs(3600),
        stopped,
    ));
    for _ in 0..200 {
        if !live.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sync.abort();
    assert_eq!(
        live.len(),
        1,
        "the live token (not the expired one) is loaded"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = responder::router(live.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, store, live)
}

/// Send a raw request (the target is sent exactly as given) and return (status line, body).
fn raw(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, target: &str, host: &str) -> (String, String) {
    raw(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn live_token_for_the_right_host_gets_the_key_authorization() {
    let (addr, _store, _live) = serve().await;
    let path = format!("/.well-known/acme-challenge/{LIVE}");
    let (status, body) = tokio::task::spawn_blocking(move || get(addr, &path, HOST))
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, format!("{LIVE}.thumbprint"));
    // Case and port in Host do not matter; a trailing dot neither.
    for host in [
        "WWW.Example.Test",
        "www.example.test:80",
        "www.example.test.",
    ] {
        let path = format!("/.well-known/acme-challenge/{LIVE}");
        let (status, _) = tokio::task::spawn_blocking(move || get(addr, &path, host))
            .await
            .unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{host}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_else_gets_the_same_404() {
    let (addr, _store, _live) = serve().await;
    let p = "/.well-known/acme-challenge/";
    let long = "a".repeat(129);
    let requests: Vec<String> = vec![
        format!("GET {p}{LIVE} HTTP/1.1\r\nHost: other.example.test\r\nConnection: close\r\n\r\n"),
        format!("GET {p}{LIVE} HTTP/1.1\r\nConnection: close\r\n\r\n"),
        format!("GET {p}{EXPIRED} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!(
            "GET {p}Unknown_0123456789abcdefghij HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "POST {p}{LIVE} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        format!("HEAD {p}{LIVE} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!("GET {p}{LIVE}?x=1 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!("GET {p}{LIVE}/ HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!("GET {p}../../../etc/passwd HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!(
            "GET {p}%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        ),
        format!("GET {p}..;/{LIVE} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!("GET {p}x/../{LIVE} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!(
            "GET /.well-known/acme-challenge/../acme-challenge/{LIVE} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "GET /.WELL-KNOWN/acme-challenge/{LIVE} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "GET //.well-known/acme-challenge/{LIVE} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        ),
        format!("GET {p}{long} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!("GET {p}short HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!("GET {p} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/v1/certificates HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        format!(
            "GET {p}{}%41 HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n",
            &LIVE[..LIVE.len() - 1]
        ),
    ];
    let results = tokio::task::spawn_blocking(move || {
        requests
            .iter()
            .map(|r| (r.clone(), raw(addr, r)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (request, (status, body)) in results {
        let first_line = request.lines().next().unwrap().to_string();
        if first_line.starts_with("HEAD") {
            assert!(status.starts_with("HTTP/1.1 404"), "{first_line}: {status}");
            continue;
        }
        // Requests hyper itself refuses (none here) would not reach us; all of these do.
        assert!(status.starts_with("HTTP/1.1 404"), "{first_line}: {status}");
        assert_eq!(body, "not found\n", "{first_line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn solver_publishes_and_withdraws() {
    let (addr, store, live) = serve().await;
    let solver = Http01Solver::new(store.clone(), Duration::from_secs(60)).with_live(live);
    let token = "Solver_Token_0123456789abcdef";
    let challenge = PendingChallenge {
        kind: ChallengeKind::Http01,
        identifier: "www.example.test".into(),
        token: token.into(),
        key_authorization: Secret::new(format!("{token}.thumb")),
        certificate: "www".into(),
        wildcard: false,
    };
    solver
        .present(std::slice::from_ref(&challenge))
        .await
        .unwrap();
    let path = format!("/.well-known/acme-challenge/{token}");
    let p = path.clone();
    let (status, body) = tokio::task::spawn_blocking(move || get(addr, &p, HOST))
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, format!("{token}.thumb"));
    solver.cleanup(&[challenge]).await.unwrap();
    let (status, _) = tokio::task::spawn_blocking(move || get(addr, &path, HOST))
        .await
        .unwrap();
    assert!(status.starts_with("HTTP/1.1 404"), "withdrawn: {status}");
}
