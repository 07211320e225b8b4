//! certfleet's agent: runs on each web server, pulls the certificates its token is entitled
//! to, deploys them atomically, reloads the server, and counts a deployment as done only when
//! a TLS handshake shows the new serial (DESIGN.md §4, "Deploy means served").
//!
//! - [`config`]: the agent's TOML file (server, trust, targets, HTTP-01).
//! - [`transport`] and [`pin`]: HTTPS to the server, trusting a CA file or a pinned
//!   fingerprint; plain HTTP only on loopback.
//! - [`run`] (in `sync`): a full sync at start, then a long-poll watch on the server's
//!   revision; jittered backoff while the server is unreachable (the deployed files stay as
//!   they are), and a full resync on reconnect. `once` syncs, deploys and returns.
//! - `deployer`: per certificate and target: write the files, run the check and reload hooks,
//!   verify the served serial by handshake; on any failure put the previous files back, reload
//!   again, and report the failure.
//! - `http01`: answers the fleet's pending HTTP-01 tokens on a local responder or in a
//!   webroot, checks they are served through the web server, and confirms them to the server.
//! - `state`: what was verified, kept in the state directory across restarts.
#![warn(missing_docs)]

pub mod config;
mod deployer;
mod http01;
pub mod pin;
mod state;
mod sync;
pub mod transport;

pub use config::AgentConfig;
pub use sync::{Summary, run};

/// Why the agent (or one of its steps) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The configuration is invalid; the message names the field.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached (network, TLS, pinned fingerprint, timeout).
    #[error("cannot reach the certfleet server at {server}: {reason}")]
    Unreachable {
        /// The server's URL.
        server: String,
        /// Why.
        reason: String,
    },
    /// The server's TLS certificate is not the one trusted (a pinned fingerprint that does
    /// not match); retrying does not help.
    #[error("refusing the certfleet server at {server}: {reason}")]
    Untrusted {
        /// The server's URL.
        server: String,
        /// What was presented and what was expected.
        reason: String,
    },
    /// The server answered with an error.
    #[error("the server refused the request (HTTP {status}): {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The problem document's detail.
        detail: String,
    },
    /// The server's answer could not be understood.
    #[error("{0}")]
    Protocol(String),
    /// A local file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A deploy step failed.
    #[error(transparent)]
    Deploy(#[from] certfleet_deploy::DeployError),
}

impl AgentError {
    /// Whether retrying later may help (the server is unreachable or busy).
    pub fn is_transient(&self) -> bool {
        match self {
            AgentError::Unreachable { .. } => true,
            AgentError::Refused { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
