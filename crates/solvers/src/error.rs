//! [`Error`]: everything that can go wrong while publishing, checking or withdrawing a
//! challenge response. Converted to [`certfleet_core::SolverError`] at the [`Solver`] boundary,
//! keeping the message (which names the server, provider or command) and the source.
//!
//! [`Solver`]: certfleet_core::Solver

use certfleet_core::{ChallengeKind, SolverError, StoreError};

/// A solver or DNS provider failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A DNS server could not be reached or sent something unreadable.
    #[error("DNS server {server}: {message}")]
    Dns {
        /// `address:port` of the server.
        server: String,
        /// What happened.
        message: String,
    },
    /// A DNS server answered an update with an error code (RFC 2136 §2.2, RFC 8945 §5.3).
    #[error("DNS server {server} refused the update of {name}: {rcode}{detail}")]
    UpdateRefused {
        /// `address:port` of the server.
        server: String,
        /// The record name.
        name: String,
        /// The response code (`NOTAUTH`, `REFUSED`, ...).
        rcode: String,
        /// The TSIG error and a hint, if any.
        detail: String,
    },
    /// Some authoritative servers never showed the record before the timeout.
    #[error(
        "TXT record {name} was not visible on {lagging} after {waited_secs} s (visible on: {visible})"
    )]
    NotPropagated {
        /// The record name.
        name: String,
        /// Servers that never showed the value, comma-separated.
        lagging: String,
        /// Servers that did, comma-separated (or `none`).
        visible: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// A provider's HTTP API failed or refused the request.
    #[error("{provider} API: {message}")]
    Api {
        /// Provider type (`cloudflare`, `route53`, `acme-dns`).
        provider: &'static str,
        /// What happened (method, URL path, status, the provider's own message).
        message: String,
    },
    /// An exec provider's command failed.
    #[error("exec provider: {0}")]
    Exec(String),
    /// The Redis mirror failed.
    #[error("Redis mirror: {0}")]
    Redis(String),
    /// The responders listed in `self_check` did not serve a response in time.
    #[error("self-check: {0}")]
    SelfCheck(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Invalid settings (named by field).
    #[error("{field}: {message}")]
    Config {
        /// The field, as in the config file (`solvers[1].tsig_secret`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Building a TLS-ALPN-01 certificate or TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
}

impl Error {
    /// A configuration error naming `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Wrap into the core error of a `kind` solver.
    pub fn into_solver_error(self, kind: ChallengeKind) -> SolverError {
        SolverError {
            kind,
            message: self.to_string(),
            source: Some(Box::new(self)),
        }
    }
}
