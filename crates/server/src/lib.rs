//! certfleet's control plane: configuration ([`config`]), the data directory of the embedded
//! default ([`datadir`]), shared input checks ([`validate`]), renewal — the [`scheduler`]
//! that claims due certificates, [`issuance`] that runs attempts within the concurrency
//! bound, the [`renewal`] engine that decides, orders and records, on a [`clock`] that tests
//! can simulate — the REST API ([`api`]) with its JSON shapes ([`views`]) and errors
//! ([`problem`]), manual certificates ([`manual`]), revocation ([`revocation`]), the ACME
//! account's life ([`accounts`]), the expiry watcher ([`expiry`]) and the event fan-out to
//! notifiers ([`alerts`]), the fleet of agents ([`fleet`]: roles, tokens, labels, the agent
//! routes, HTTP-01 across the fleet), the API over TLS ([`tls`]), the solvers of the config
//! ([`solvers`], [`registry`]), start-up ([`app`]), and `run --once` without a server
//! ([`standalone`]).
#![warn(missing_docs)]

pub mod accounts;
pub mod alerts;
pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod expiry;
pub mod fleet;
pub mod fsutil;
pub mod issuance;
pub mod manual;
pub mod problem;
pub mod registry;
pub mod renewal;
pub mod revocation;
pub mod scheduler;
pub mod solvers;
pub mod standalone;
pub mod tls;
pub mod validate;
pub mod views;

pub use app::{App, Running, start};
pub use config::{ConfigError, FileConfig, Overrides, Settings};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] certfleet_core::StoreError),
    /// Something else prevented start-up.
    #[error("{0}")]
    Startup(String),
}

impl ServerError {
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ServerError::Io {
            what: what.into(),
            source,
        }
    }
}
