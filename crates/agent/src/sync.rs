//! The agent's loop: full sync, deploy what changed, report; then watch the server's revision
//! with a long-poll and do it again. While the server is unreachable the deployed files stay as
//! they are and the agent retries with jittered exponential backoff; on reconnect it syncs in
//! full. Idle, it wakes only when a long-poll returns (at most every `watch_timeout_secs`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use certfleet_core::fleet::{AgentCertificate, AgentReport, AgentState, ChallengeConfirmation};
use certfleet_core::{DeploymentReport, Secret};
use certfleet_deploy::Bundle;
use serde::Deserialize;

use crate::AgentError;
use crate::config::AgentConfig;
use crate::deployer;
use crate::http01::Http01;
use crate::state::{self, CertState, LocalState};
use crate::transport::ServerClient;

/// Bound on an ordinary request to the server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time a long-poll request gets beyond its wait.
const WATCH_MARGIN: Duration = Duration::from_secs(30);
/// First backoff after a failure.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest backoff.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Attempts of the first sync with `once` before giving up.
const ONCE_ATTEMPTS: u32 = 3;

/// What a pass (or an `once` run) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Certificates deployed and verified in this run.
    pub deployed: Vec<String>,
    /// Certificates already in place and verified.
    pub up_to_date: Vec<String>,
    /// Certificates whose deployment failed, with why.
    pub failed: Vec<(String, String)>,
    /// Certificates written but not verified because the web server is not running, with why.
    pub unverified: Vec<(String, String)>,
}

/// The bundle route's answer.
#[derive(Deserialize)]
struct WireBundle {
    name: String,
    domains: Vec<String>,
    version: u32,
    serial: String,
    cert_pem: String,
    chain_pem: String,
    key_pem: String,
}

struct Agent {
    config: AgentConfig,
    client: ServerClient,
    local: LocalState,
    http01: Option<Http01>,
    /// When a deployment of a serial last failed, so it is retried at most once per watch.
    failed_at: HashMap<String, (String, Instant)>,
    /// Reports not yet accepted by the server, by certificate.
    pending: BTreeMap<String, DeploymentReport>,
    /// What the server was last told, by certificate (serial, verified).
    told: HashMap<String, (String, bool, Option<String>)>,
    /// Whether a report reached the server since start (the first one says the agent exists,
    /// whether it answers HTTP-01 and how its clock is set, even with nothing to deploy).
    introduced: bool,
}

/// Run the agent. With `once`: one full sync and deployment, then return what was done;
/// otherwise run until the process is stopped (errors are logged and retried).
pub async fn run(config: AgentConfig, once: bool) -> Result<Summary, AgentError> {
    let client = ServerClient::new(&config.server, config.token.clone(), &config.trust)?;
    let dir = config.state_dir.clone();
    let local = tokio::task::spawn_blocking(move || state::load(&dir))
        .await
        .map_err(|e| AgentError::Protocol(e.to_string()))?;
    let http01 = match (&config.http01, once) {
        (Some(settings), false) => Some(Http01::start(settings.clone()).await?),
        _ => None,
    };
    if let Some(addr) = http01.as_ref().and_then(|h| h.local_addr) {
        tracing::info!(%addr, "HTTP-01 responder listening");
    }
    let mut agent = Agent {
        config,
        client,
        local,
        http01,
        failed_at: HashMap::new(),
        pending: BTreeMap::new(),
        told: HashMap::new(),
        introduced: false,
    };
    if once {
        return agent.once().await;
    }
    agent.forever().await
}

impl Agent {
    async fn once(&mut self) -> Result<Summary, AgentError> {
        let mut attempt = 0;
        let state = loop {
            attempt += 1;
            match self.fetch_state(None).await {
                Ok(s) => break s,
                Err(e) if e.is_transient() && attempt < ONCE_ATTEMPTS => {
                    tracing::warn!(error = %e, "server not reachable; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let summary = self.apply(&state).await?;
        self.flush_reports().await?;
        Ok(summary)
    }

    async fn forever(&mut self) -> Result<Summary, AgentError> {
        let mut failures = 0u32;
        loop {
            let mut revision = match self.fetch_state(None).await {
                Ok(state) => {
                    failures = 0;
                    tracing::info!(server = %self.client.base(), certificates = state.certificates.len(), "synced with the server");
                    self.apply_logged(&state).await;
                    state.revision
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(failures);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot sync; the deployed files stay as they are");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            loop {
                match self.fetch_state(Some(revision)).await {
                    Ok(state) => {
                        revision = state.revision;
                        self.apply_logged(&state).await;
                    }
                    Err(e) => {
                        failures += 1;
                        let wait = backoff(failures);
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "lost the server; will sync in full when it is back");
                        tokio::time::sleep(wait).await;
                        break;
                    }
                }
            }
        }
    }

    async fn fetch_state(&self, since: Option<u64>) -> Result<AgentState, AgentError> {
        match since {
            None => {
                self.client
                    .get("/api/v1/agent/state", REQUEST_TIMEOUT)
                    .await
            }
            Some(rev) => {
                let wait = self.config.watch_timeout;
                let path = format!("/api/v1/agent/state?since={rev}&wait={}", wait.as_secs());
                self.client.get(&path, wait + WATCH_MARGIN).await
            }
        }
    }

    async fn apply_logged(&mut self, state: &AgentState) {
        match self.apply(state).await {
            Ok(summary) => {
                for (name, why) in &summary.failed {
                    tracing::error!(certificate = %name, error = %why, "deployment failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not apply the server's state"),
        }
        if let Err(e) = self.flush_reports().await {
            tracing::warn!(error = %e, "could not send reports; will retry");
        }
    }

    /// Answer HTTP-01 tokens, then deploy every certificate whose verified serial differs.
    async fn apply(&mut self, state: &AgentState) -> Result<Summary, AgentError> {
        self.answer_challenges(state).await;
        let mut summary = Summary::default();
        for cert in &state.certificates {
            self.apply_one(cert, &mut summary).await?;
        }
        Ok(summary)
    }

    async fn apply_one(
        &mut self,
        cert: &AgentCertificate,
        summary: &mut Summary,
    ) -> Result<(), AgentError> {
        let Some(serial) = cert.serial.clone() else {
            return Ok(());
        };
        let name = cert.name.clone();
        let targets: Vec<_> = self
            .config
            .targets
            .iter()
            .filter(|t| t.covers(&name))
            .collect();
        if targets.is_empty() {
            let error = "no [[targets]] section of this agent takes this certificate".to_string();
            self.queue(&name, failed_report(cert, &serial, &error));
            summary.failed.push((name, error));
            return Ok(());
        }
        let local = self.local.certificates.get(&name).cloned();
        if local
            .as_ref()
            .is_some_and(|l| l.serial == serial && l.verified)
        {
            let l = local.expect("checked above");
            self.queue(&name, verified_report(&name, &l));
            summary.up_to_date.push(name);
            return Ok(());
        }
        let recently_failed = self.failed_at.get(&name).is_some_and(|(failed, at)| {
            *failed == serial && at.elapsed() < self.config.watch_timeout
        });
        if recently_failed {
            return Ok(());
        }
        let bundle = self.bundle(&name).await?;
        tracing::info!(certificate = %name, version = bundle.version, serial = %bundle.serial, "deploying");
        let (report, not_running) = deployer::deploy(&bundle, &targets).await;
        let entry = CertState {
            version: bundle.version,
            serial: bundle.serial.clone(),
            verified: report.verified,
            error: report.error.clone(),
        };
        if report.verified {
            self.failed_at.remove(&name);
            summary.deployed.push(name.clone());
        } else if let (Some(why), None) = (not_running, &report.error) {
            self.failed_at
                .insert(name.clone(), (bundle.serial.clone(), Instant::now()));
            summary.unverified.push((name.clone(), why));
        } else {
            self.failed_at
                .insert(name.clone(), (bundle.serial.clone(), Instant::now()));
            let why = report
                .error
                .clone()
                .unwrap_or_else(|| "not verified".into());
            summary.failed.push((name.clone(), why));
        }
        self.local.certificates.insert(name.clone(), entry);
        self.save_state().await?;
        self.queue(&name, report);
        Ok(())
    }

    async fn bundle(&self, name: &str) -> Result<Bundle, AgentError> {
        let wire: WireBundle = self
            .client
            .get(
                &format!("/api/v1/certificates/{name}/bundle"),
                REQUEST_TIMEOUT,
            )
            .await?;
        if wire.name != name {
            return Err(AgentError::Protocol(format!(
                "asked for the bundle of {name:?}, got {:?}",
                wire.name
            )));
        }
        Ok(Bundle {
            name: wire.name,
            domains: wire.domains,
            version: wire.version,
            serial: wire.serial,
            cert_pem: wire.cert_pem,
            chain_pem: wire.chain_pem,
            key_pem: Secret::new(wire.key_pem),
        })
    }

    async fn save_state(&self) -> Result<(), AgentError> {
        let (dir, local) = (self.config.state_dir.clone(), self.local.clone());
        tokio::task::spawn_blocking(move || state::save(&dir, &local))
            .await
            .map_err(|e| AgentError::Protocol(e.to_string()))?
    }

    /// Queue a report unless the server was already told exactly this.
    fn queue(&mut self, name: &str, report: DeploymentReport) {
        let key = (report.serial.clone(), report.verified, report.error.clone());
        if self.told.get(name) == Some(&key) {
            return;
        }
        self.pending.insert(name.to_string(), report);
    }

    async fn flush_reports(&mut self) -> Result<(), AgentError> {
        if self.pending.is_empty() && self.introduced {
            return Ok(());
        }
        let reports: Vec<DeploymentReport> = self.pending.values().cloned().collect();
        let body = AgentReport {
            agent_time_ms: now_ms(),
            serves_http01: self.config.http01.is_some(),
            certificates: reports.clone(),
        };
        self.client
            .post("/api/v1/agent/report", &body, REQUEST_TIMEOUT)
            .await?;
        self.introduced = true;
        for r in reports {
            self.told.insert(
                r.certificate.clone(),
                (r.serial.clone(), r.verified, r.error.clone()),
            );
            self.pending.remove(&r.certificate);
        }
        Ok(())
    }

    async fn answer_challenges(&mut self, state: &AgentState) {
        let Some(http01) = self.http01.as_mut() else {
            return;
        };
        let fresh = http01.update(&state.challenges).await;
        if fresh.is_empty() {
            return;
        }
        let body = ChallengeConfirmation { tokens: fresh };
        match self
            .client
            .post("/api/v1/agent/confirm", &body, REQUEST_TIMEOUT)
            .await
        {
            Ok(answer) => {
                let confirmed = serde_json::from_slice::<ConfirmedWire>(&answer)
                    .map(|c| c.confirmed)
                    .unwrap_or_default();
                tracing::info!(
                    count = confirmed.len(),
                    "confirmed HTTP-01 responses to the server"
                );
                http01.confirmed(&confirmed);
            }
            Err(e) => tracing::warn!(error = %e, "could not confirm HTTP-01 responses"),
        }
    }
}

#[derive(Deserialize)]
struct ConfirmedWire {
    confirmed: Vec<String>,
}

fn verified_report(name: &str, l: &CertState) -> DeploymentReport {
    DeploymentReport {
        certificate: name.to_string(),
        version: l.version,
        serial: l.serial.clone(),
        verified: true,
        served_serial: Some(l.serial.clone()),
        hook_status: None,
        hook_output: None,
        error: None,
        rolled_back: false,
    }
}

fn failed_report(cert: &AgentCertificate, serial: &str, error: &str) -> DeploymentReport {
    DeploymentReport {
        certificate: cert.name.clone(),
        version: cert.version.unwrap_or_default(),
        serial: serial.to_string(),
        verified: false,
        served_serial: None,
        hook_status: None,
        hook_output: None,
        error: Some(error.to_string()),
        rolled_back: false,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Exponential backoff from [`BACKOFF_FIRST`] to [`BACKOFF_MAX`], with "equal jitter": a
/// random point in the upper half, so that a fleet does not come back in lockstep.
fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(10));
    let ceiling = exp.min(BACKOFF_MAX);
    let half = ceiling / 2;
    half + half.mul_f64(jitter())
}

/// A number in [0, 1) from the standard library's randomly seeded hasher.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for n in 1..20 {
            let d = backoff(n);
            assert!(d <= BACKOFF_MAX, "{n}: {d:?}");
            let ceiling = BACKOFF_FIRST
                .saturating_mul(1 << (n - 1).min(10))
                .min(BACKOFF_MAX);
            assert!(d >= ceiling / 2, "{n}: {d:?}");
        }
        let samples: std::collections::HashSet<_> = (0..20).map(|_| backoff(6)).collect();
        assert!(samples.len() > 1, "jittered");
    }
}
