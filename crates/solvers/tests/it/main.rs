//! Integration tests of the solvers against real services: Knot (RFC 2136 + TSIG, propagation,
//! exec), Redis (the mirror), wrk (responder under load), a rustls client (TLS-ALPN-01) and
//! local HTTP servers checking the documented contracts of acme-dns, Cloudflare and Route 53.

mod contracts;
mod dns;
mod mirror;
mod responder;
mod tls_alpn;
mod wrk;

use certfleet_core::{ChallengeKind, PendingChallenge, Secret};

/// A pending DNS-01 challenge for `identifier` with key authorization `ka`.
pub fn dns_challenge(identifier: &str, ka: &str, wildcard: bool) -> PendingChallenge {
    PendingChallenge {
        kind: ChallengeKind::Dns01,
        identifier: identifier.to_string(),
        token: format!("tok_{}", ka.replace('.', "_")),
        key_authorization: Secret::new(ka),
        certificate: "test".into(),
        wildcard,
    }
}
