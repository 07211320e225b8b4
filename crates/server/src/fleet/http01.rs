//! HTTP-01 across the fleet (DESIGN.md §4, "Any node answers any challenge").
//!
//! When a load balancer may send the CA's validation request to any web server, every agent
//! entitled to the certificate that answers HTTP-01 must serve the token before the CA is told
//! "ready". [`FleetHttp01`] wraps the HTTP-01 solver: [`Solver::present`] publishes the
//! responses (agents learn them through their watch), then waits until each such agent has
//! confirmed, by a self-check through its web server, every token; after the timeout it fails
//! with the names of the agents that did not confirm. Cleanup withdraws the responses (and with
//! them the confirmations) on success, failure and cancellation alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use certfleet_core::{ChallengeKind, PendingChallenge, Solver, SolverError, Store, TokenRecord};

use super::entitled_agents;

/// Default bound on waiting for every agent to confirm.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);
/// First interval between looks at the confirmations; grows to [`CONFIRM_POLL_MAX`].
const CONFIRM_POLL_FIRST: Duration = Duration::from_millis(20);
/// Longest interval between looks at the confirmations.
const CONFIRM_POLL_MAX: Duration = Duration::from_millis(250);

/// An HTTP-01 solver that also waits for the fleet's confirmations.
pub struct FleetHttp01 {
    inner: Arc<dyn Solver>,
    store: Arc<dyn Store>,
    timeout: Duration,
}

impl FleetHttp01 {
    /// Wrap `inner` (which publishes the responses into `store`).
    pub fn new(inner: Arc<dyn Solver>, store: Arc<dyn Store>, timeout: Duration) -> Self {
        Self {
            inner,
            store,
            timeout,
        }
    }

    fn error(&self, message: String) -> SolverError {
        SolverError {
            kind: ChallengeKind::Http01,
            message,
            source: None,
        }
    }

    /// Agents that must confirm: live agent tokens entitled to the certificate that said they
    /// answer HTTP-01.
    async fn confirming_agents(&self, certificate: &str) -> Result<Vec<TokenRecord>, SolverError> {
        let store_err = |e| self.error(format!("reading the fleet: {e}"));
        let Some(cert) = self
            .store
            .certificate(certificate)
            .await
            .map_err(store_err)?
        else {
            return Ok(Vec::new());
        };
        let tokens = self.store.tokens().await.map_err(store_err)?;
        Ok(entitled_agents(&cert, &tokens)
            .into_iter()
            .filter(|t| t.serves_http01)
            .cloned()
            .collect())
    }

    /// `(agent, identifiers it has not confirmed)` for every agent still missing a token.
    async fn missing(
        &self,
        agents: &[TokenRecord],
        challenges: &[PendingChallenge],
    ) -> Result<Vec<(String, Vec<String>)>, SolverError> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for c in challenges {
            let confirmed = self
                .store
                .challenge_confirmations(&c.token)
                .await
                .map_err(|e| self.error(format!("reading confirmations: {e}")))?;
            for agent in agents.iter().filter(|a| !confirmed.contains(&a.name)) {
                match out.iter_mut().find(|(name, _)| *name == agent.name) {
                    Some((_, ids)) => ids.push(c.identifier.clone()),
                    None => out.push((agent.name.clone(), vec![c.identifier.clone()])),
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Solver for FleetHttp01 {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Http01
    }

    async fn present(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        self.inner.present(challenges).await?;
        // Withdraw the responses if waiting fails or is cancelled: the issuer cleans up only
        // after a successful present.
        let mut guard = Withdraw {
            inner: Some(self.inner.clone()),
            challenges: challenges.to_vec(),
        };
        let result = self.wait_for_confirmations(challenges).await;
        match &result {
            Ok(()) => guard.inner = None,
            Err(_) => {
                let inner = guard.inner.take();
                if let Some(Err(e)) = match inner {
                    Some(inner) => Some(inner.cleanup(challenges).await),
                    None => None,
                } {
                    tracing::warn!(error = %e, "could not withdraw HTTP-01 responses");
                }
            }
        }
        result
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        self.inner.cleanup(challenges).await
    }
}

/// Withdraws the responses when dropped armed (the waiting future was cancelled).
struct Withdraw {
    inner: Option<Arc<dyn Solver>>,
    challenges: Vec<PendingChallenge>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let challenges = std::mem::take(&mut self.challenges);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = inner.cleanup(&challenges).await {
                        tracing::warn!(error = %e, "could not withdraw HTTP-01 responses after a cancellation");
                    }
                });
            }
        }
    }
}

impl FleetHttp01 {
    /// Wait until every agent that must confirm did, or the timeout passes.
    async fn wait_for_confirmations(
        &self,
        challenges: &[PendingChallenge],
    ) -> Result<(), SolverError> {
        let Some(certificate) = challenges.first().map(|c| c.certificate.clone()) else {
            return Ok(());
        };
        let agents = self.confirming_agents(&certificate).await?;
        if agents.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut interval = CONFIRM_POLL_FIRST;
        loop {
            let missing = self.missing(&agents, challenges).await?;
            if missing.is_empty() {
                tracing::info!(
                    certificate,
                    agents = agents.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "every agent confirmed the HTTP-01 responses"
                );
                return Ok(());
            }
            if started.elapsed() >= self.timeout {
                let who: Vec<String> = missing
                    .iter()
                    .map(|(agent, ids)| format!("{agent} ({})", ids.join(", ")))
                    .collect();
                return Err(self.error(format!(
                    "not every agent serving {certificate} confirmed its HTTP-01 responses within {} s; missing: {}",
                    self.timeout.as_secs(),
                    who.join("; ")
                )));
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 3 / 2).min(CONFIRM_POLL_MAX);
        }
    }
}
