//! The `exec` provider: your own commands publish and withdraw the record.
//!
//! `present` and `cleanup` are argument vectors run directly (never through a shell; nothing
//! from the CA is ever placed in the arguments). The record travels in the environment:
//!
//! | variable | example |
//! |---|---|
//! | `CERTFLEET_DNS_ACTION` | `present` or `cleanup` |
//! | `CERTFLEET_DNS_DOMAIN` | `example.com` (the identifier, without `*.`) |
//! | `CERTFLEET_DNS_RECORD_NAME` | `_acme-challenge.example.com.` (fully qualified, final dot) |
//! | `CERTFLEET_DNS_RECORD_VALUE` | the 43-character TXT value |
//!
//! Exit status 0 means done. Anything else fails with the status and the last lines of the
//! command's standard error. Each run is bounded by `timeout`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;

use super::{DnsProvider, TxtRecord};
use crate::error::Error;

/// Default bound on one command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of standard error quoted in an error.
const STDERR_LINES: usize = 5;

/// Settings of an `exec` provider.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// Program and arguments that add the record.
    pub present: Vec<String>,
    /// Program and arguments that remove it.
    pub cleanup: Vec<String>,
    /// Bound on one run.
    pub timeout: Duration,
}

/// The provider.
pub struct Exec {
    settings: ExecSettings,
}

impl Exec {
    /// Check the settings (fields named under `prefix`) and build the provider.
    pub fn new(prefix: &str, settings: ExecSettings) -> Result<Self, Error> {
        for (field, argv) in [
            ("present", &settings.present),
            ("cleanup", &settings.cleanup),
        ] {
            let Some(program) = argv.first() else {
                return Err(Error::config(
                    format!("{prefix}{field}"),
                    "needs a program, as an array such as [\"/usr/local/bin/dns-hook\", \"add\"]",
                ));
            };
            let path = PathBuf::from(program);
            if path.is_absolute() && !path.is_file() {
                return Err(Error::config(
                    format!("{prefix}{field}"),
                    format!("{program} does not exist"),
                ));
            }
        }
        Ok(Self { settings })
    }

    async fn run(&self, action: &str, argv: &[String], record: &TxtRecord) -> Result<(), Error> {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("CERTFLEET_DNS_ACTION", action)
            .env("CERTFLEET_DNS_DOMAIN", &record.domain)
            .env("CERTFLEET_DNS_RECORD_NAME", format!("{}.", record.name))
            .env("CERTFLEET_DNS_RECORD_VALUE", &record.value)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Exec(format!("{action}: cannot run {}: {e}", argv[0])))?;
        let output = tokio::time::timeout(self.settings.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                Error::Exec(format!(
                    "{action}: {} did not finish within {} s (killed)",
                    argv[0],
                    self.settings.timeout.as_secs()
                ))
            })?
            .map_err(|e| Error::Exec(format!("{action}: waiting for {}: {e}", argv[0])))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ");
        Err(Error::Exec(format!(
            "{action}: {} for {} exited with {}{}",
            argv[0],
            record.name,
            output.status,
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        )))
    }
}

#[async_trait]
impl DnsProvider for Exec {
    fn kind(&self) -> &'static str {
        "exec"
    }

    async fn present(&self, record: &TxtRecord) -> Result<(), Error> {
        self.run("present", &self.settings.present, record).await
    }

    async fn cleanup(&self, record: &TxtRecord) -> Result<(), Error> {
        self.run("cleanup", &self.settings.cleanup, record).await
    }
}
