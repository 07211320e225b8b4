//! [`Acme`]: the small trait in front of a CA that certfleet's renewal engine talks to.
//!
//! [`AcmeIssuer`](crate::AcmeIssuer) implements it over instant-acme and is tested against
//! real Pebble; the engine's simulation tests implement it with a fake CA that can fail,
//! rate-limit, answer ARI windows and hang, in simulated time.

use async_trait::async_trait;
use certfleet_core::policy::AriWindow;
use certfleet_core::time::UnixTime;
use certfleet_core::{DnsName, KeyKind, Secret, SolverSet, StoreError};

use crate::error::AcmeError;
use crate::issuer::Issued;

/// What to order.
#[derive(Debug, Clone, Copy)]
pub struct OrderRequest<'a> {
    /// The certificate's name (for the solver, logs and the observer).
    pub certificate: &'a str,
    /// The identifiers.
    pub names: &'a [DnsName],
    /// Kind of the fresh key.
    pub key_kind: KeyKind,
    /// ACME profile; `None`: the issuer's default, if any.
    pub profile: Option<&'a str>,
    /// Leaf PEM of the version this order replaces: sent as ARI `replaces` (RFC 9773 §5)
    /// when the CA supports it.
    pub replaces: Option<&'a str>,
    /// An order already at the CA to continue instead of creating one.
    pub resume: Option<Resume<'a>>,
}

/// An order created earlier (before a restart, a timeout or a failure) to continue.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    /// The order URL.
    pub order_url: &'a str,
    /// The key whose CSR finalized it, if it got that far (kept by
    /// [`OrderObserver::key_generated`]).
    pub key_pem: Option<&'a Secret>,
}

/// Why an order attempt ended without a certificate, and what it left behind.
#[derive(Debug)]
pub struct OrderFailure {
    /// What went wrong.
    pub error: AcmeError,
    /// The CA's Retry-After, as a time (clamped to a day): send nothing before it.
    pub retry_after: Option<UnixTime>,
    /// The order to resume next time; `None` when it is gone or useless (a new order follows).
    pub order_url: Option<String>,
    /// Orders given up during the attempt (still alive at the CA, but not to be continued).
    pub abandoned: Vec<String>,
}

impl std::fmt::Display for OrderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The CA's renewal information for a certificate (RFC 9773 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalInfo {
    /// The suggested window.
    pub window: AriWindow,
    /// The CA's Retry-After, seconds from now, if it sent one.
    pub retry_after: Option<i64>,
    /// Why the window is what it is, if the CA says.
    pub explanation_url: Option<String>,
}

/// Told about an order as it progresses, so it can be resumed after a crash.
#[async_trait]
pub trait OrderObserver: Send + Sync {
    /// The CA created an order at `url` (called before any other request for it).
    async fn order_created(&self, url: &str);

    /// A key was generated for the order at `url`; it must be kept (sealed) before finalize
    /// sends its CSR, or a finalized order's certificate could never be used. An error stops
    /// the order before finalize.
    async fn key_generated(&self, url: &str, key_pem: &Secret) -> Result<(), StoreError>;
}

/// A CA as the renewal engine sees it.
#[async_trait]
pub trait Acme: Send + Sync {
    /// The profiles the CA offers (`meta.profiles`), `None` when it has no profiles
    /// extension.
    async fn profiles(&self) -> Result<Option<Vec<String>>, AcmeError>;

    /// The CA's renewal window for the certificate whose leaf is `leaf_pem`; `Ok(None)` when
    /// the CA offers no ARI.
    async fn renewal_info(&self, leaf_pem: &str) -> Result<Option<RenewalInfo>, AcmeError>;

    /// Order (or resume) a certificate, proving control of each name with its solver in
    /// `solvers`.
    async fn order(
        &self,
        request: &OrderRequest<'_>,
        solvers: &SolverSet,
        observer: &dyn OrderObserver,
    ) -> Result<Issued, OrderFailure>;
}
