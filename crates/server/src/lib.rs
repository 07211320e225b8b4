//! certfleet's control plane: configuration ([`config`]), the data directory of the embedded
//! default ([`datadir`]), shared input checks ([`validate`]), renewal — the [`scheduler`]
//! that claims due certificates, [`issuance`] that runs attempts within the concurrency
//! bound, the [`renewal`] engine that decides, orders and records, on a [`clock`] that tests
//! can simulate — the REST API ([`api`]) with its JSON shapes ([`views`]) and errors
//! ([`problem`]), and start-up ([`app`]).
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod fsutil;
pub mod issuance;
pub mod problem;
pub mod renewal;
pub mod scheduler;
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
