//! The CLI's path to a server on another machine: `--server https://HOST:PORT` with
//! `--server-ca-file` or `--server-pin` (the fingerprint `certfleet server info` prints), through the agent's
//! transport. Plain `http://` is accepted for loopback addresses only.

use std::path::PathBuf;

pub use certfleet_agent::transport::{HttpClient, Trust};

use crate::CliError;

/// How to trust an https:// server, from `--server-ca-file` and `--server-pin`.
pub fn trust(ca_file: Option<PathBuf>, pin: Option<String>) -> Result<Trust, CliError> {
    match (ca_file, pin) {
        (Some(_), Some(_)) => Err(CliError::failure(
            "--server-ca-file and --server-pin: give one of them, not both",
        )),
        (Some(ca), None) => Ok(Trust::CaFile(ca)),
        (None, Some(pin)) => certfleet_agent::pin::Fingerprint::parse(&pin)
            .map(Trust::Pin)
            .map_err(|e| CliError::failure(format!("--server-pin: {e}"))),
        (None, None) => Ok(Trust::System),
    }
}

/// Check `--server` (https://, or http:// to loopback).
pub fn check_url(url: &str) -> Result<String, CliError> {
    certfleet_agent::transport::check_server_url(url)
        .map_err(|e| CliError::failure(format!("--server: {e}")))
}

/// The HTTP client for `trust`.
pub fn client(trust: &Trust) -> Result<HttpClient, CliError> {
    certfleet_agent::transport::http_client(trust).map_err(|e| CliError::failure(e.to_string()))
}

/// A connection error in one line, naming a pinned-fingerprint mismatch plainly.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    certfleet_agent::transport::describe_error(err)
}
