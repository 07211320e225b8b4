//! DNS-01 (RFC 8555 §8.4): a TXT record `_acme-challenge.<name>` holding
//! `base64url(SHA-256(key authorization))`, published by a [`DnsProvider`] and confirmed on
//! every authoritative server by the [`propagation`] check before the CA is told "ready".
//!
//! One module per provider: [`rfc2136`] (dynamic update with TSIG: BIND, Knot, PowerDNS),
//! [`acme_dns`] (the acme-dns HTTP API behind a CNAME), [`exec`] (your commands),
//! [`cloudflare`] and [`route53`] (their HTTP APIs). [`Dns01Solver`] turns any provider into a
//! [`Solver`]. To add a provider: a module here implementing [`DnsProvider`], a variant in the
//! server's `SolverSection`, and a line where the server builds providers.

pub mod acme_dns;
pub mod cloudflare;
pub mod exec;
pub mod propagation;
pub mod rfc2136;
pub mod route53;
pub mod sigv4;
pub mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use certfleet_core::{ChallengeKind, PendingChallenge, Solver, SolverError};

use crate::error::Error;
pub use propagation::{Propagation, PropagationSettings};

/// The label DNS-01 records live under (RFC 8555 §8.4).
pub const CHALLENGE_LABEL: &str = "_acme-challenge";

/// One TXT record to publish or withdraw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtRecord {
    /// The identifier being proven, without `*.` (`example.com`).
    pub domain: String,
    /// Where the record goes, lowercase, no final dot: `_acme-challenge.example.com`, or the
    /// target of a CNAME found there.
    pub name: String,
    /// The record's value (43 base64url characters).
    pub value: String,
}

/// The TXT value for a key authorization: `base64url(SHA-256(key_authorization))`.
pub fn txt_value(key_authorization: &str) -> String {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Something that can add and remove TXT records in a zone.
///
/// `present` and `cleanup` are the required abilities; the rest have defaults. A provider
/// that publishes elsewhere than the CNAME target of `_acme-challenge` (acme-dns) says so with
/// [`DnsProvider::follows_cname`].
#[async_trait]
pub trait DnsProvider: Send + Sync {
    /// The provider type as in the config (`rfc2136`, `cloudflare`, ...).
    fn kind(&self) -> &'static str;

    /// Add `record` (other TXT values at the same name stay: a wildcard and its apex share
    /// one name).
    async fn present(&self, record: &TxtRecord) -> Result<(), Error>;

    /// Remove exactly `record` (its name and value); absent records are not an error.
    async fn cleanup(&self, record: &TxtRecord) -> Result<(), Error>;

    /// Whether records go to the target of a CNAME at `_acme-challenge.<domain>` (true for
    /// providers that write zones; acme-dns writes its own subdomain).
    fn follows_cname(&self) -> bool {
        true
    }

    /// Add several records; by default one after the other.
    async fn present_all(&self, records: &[TxtRecord]) -> Result<(), Error> {
        for r in records {
            self.present(r).await?;
        }
        Ok(())
    }

    /// Remove several records; every one is tried, the first failure is returned.
    async fn cleanup_all(&self, records: &[TxtRecord]) -> Result<(), Error> {
        let mut first = None;
        for r in records {
            if let Err(e) = self.cleanup(r).await {
                tracing::warn!(provider = self.kind(), name = %r.name, error = %e, "DNS cleanup failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A DNS-01 [`Solver`]: a provider plus the propagation check.
pub struct Dns01Solver {
    name: String,
    provider: Arc<dyn DnsProvider>,
    propagation: Propagation,
}

impl Dns01Solver {
    /// A solver called `name` (as in `[[solvers]] name`).
    pub fn new(
        name: impl Into<String>,
        provider: Arc<dyn DnsProvider>,
        propagation: Propagation,
    ) -> Self {
        Self {
            name: name.into(),
            provider,
            propagation,
        }
    }

    /// The records for `challenges`, each at `_acme-challenge.<identifier>` or where a CNAME
    /// there points.
    pub async fn records(&self, challenges: &[PendingChallenge]) -> Result<Vec<TxtRecord>, Error> {
        let mut out = Vec::with_capacity(challenges.len());
        for c in challenges {
            let domain = c.identifier.to_ascii_lowercase();
            let label = format!("{CHALLENGE_LABEL}.{domain}");
            let name = if self.provider.follows_cname() {
                self.propagation.follow_cname(&label).await?
            } else {
                label
            };
            out.push(TxtRecord {
                domain,
                name,
                value: txt_value(c.key_authorization.expose()),
            });
        }
        Ok(out)
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn DnsProvider> {
        &self.provider
    }
}

fn solver_error(e: Error) -> SolverError {
    e.into_solver_error(ChallengeKind::Dns01)
}

#[async_trait]
impl Solver for Dns01Solver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Dns01
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn present(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let records = self.records(challenges).await.map_err(solver_error)?;
        self.provider
            .present_all(&records)
            .await
            .map_err(solver_error)?;
        let lookups: Vec<(String, String)> = if self.provider.follows_cname() {
            records
                .iter()
                .map(|r| (r.name.clone(), r.value.clone()))
                .collect()
        } else {
            // The provider wrote elsewhere; check through the CNAME at the usual label.
            let mut out = Vec::new();
            for r in &records {
                let label = format!("{CHALLENGE_LABEL}.{}", r.domain);
                let name = self
                    .propagation
                    .follow_cname(&label)
                    .await
                    .map_err(solver_error)?;
                out.push((name, r.value.clone()));
            }
            out
        };
        self.propagation
            .wait_visible(&lookups)
            .await
            .map_err(solver_error)
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let records = self.records(challenges).await.map_err(solver_error)?;
        self.provider
            .cleanup_all(&records)
            .await
            .map_err(solver_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_value_matches_rfc_8555_example_shape() {
        // SHA-256 of "abc" is ba7816bf...; base64url without padding is 43 characters.
        assert_eq!(
            txt_value("abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
