//! The [`Solver`] plug-in trait: something that makes a challenge response visible to the CA.
//!
//! certfleet publishes every response for every challenge of an order in one call
//! ([`Solver::present`]), tells the CA all of them are ready, and withdraws them afterwards
//! ([`Solver::cleanup`]) whether the order succeeded or not.

use std::fmt;

use async_trait::async_trait;

use crate::challenge::ChallengeKind;
use crate::secret::Secret;

/// One challenge the CA gave us, with our response to it.
#[derive(Clone)]
pub struct PendingChallenge {
    /// Challenge type.
    pub kind: ChallengeKind,
    /// The DNS name being proven (without `*.` for wildcards).
    pub identifier: String,
    /// The CA's token (validated before it gets here).
    pub token: String,
    /// `token.thumbprint` (HTTP-01 body); DNS-01 and TLS-ALPN-01 derive their values from it.
    pub key_authorization: Secret,
    /// The certificate being issued.
    pub certificate: String,
    /// Whether the identifier was requested as a wildcard (`*.identifier`, RFC 8555 §7.1.3).
    pub wildcard: bool,
}

impl PendingChallenge {
    /// The identifier as it was requested: `*.example.com` for a wildcard authorization.
    pub fn requested_name(&self) -> String {
        if self.wildcard {
            format!("*.{}", self.identifier)
        } else {
            self.identifier.clone()
        }
    }
}

impl fmt::Debug for PendingChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingChallenge")
            .field("kind", &self.kind)
            .field("identifier", &self.identifier)
            .field("certificate", &self.certificate)
            .field("wildcard", &self.wildcard)
            .finish_non_exhaustive()
    }
}

impl SolverError {
    /// An error of a `kind` solver with `message` and no underlying error.
    pub fn new(kind: ChallengeKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }
}

/// A solver failed to publish or withdraw a response.
#[derive(Debug, thiserror::Error)]
#[error("{kind} solver: {message}")]
pub struct SolverError {
    /// Challenge type of the solver.
    pub kind: ChallengeKind,
    /// What went wrong.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Publishes challenge responses where the CA will look for them.
#[async_trait]
pub trait Solver: Send + Sync {
    /// The challenge type this solver answers.
    fn kind(&self) -> ChallengeKind;

    /// The solver's name in the configuration (`[[solvers]] name`); presentations are
    /// recorded under it so that a restarted server finds the solver that must clean up.
    fn name(&self) -> &str {
        self.kind().as_str()
    }

    /// Make every response visible; returns once the CA can see them.
    async fn present(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError>;

    /// Withdraw the responses (called on success, failure and cancellation alike).
    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError>;
}
