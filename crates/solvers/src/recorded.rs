//! Cleanup that always happens: [`Recorded`] writes every presentation to the store before the
//! solver publishes it and forgets it only once the solver withdrew it; at start-up
//! [`finish_cleanup`] withdraws whatever a killed server left recorded (TXT records, tokens).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use certfleet_core::{
    ChallengeKind, PendingChallenge, PresentedChallenge, Solver, SolverError, Store,
};

/// A solver whose presentations are recorded in the store.
pub struct Recorded {
    inner: Arc<dyn Solver>,
    store: Arc<dyn Store>,
}

impl Recorded {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn Solver>, store: Arc<dyn Store>) -> Self {
        Self { inner, store }
    }
}

fn store_error(kind: ChallengeKind, what: &str, e: certfleet_core::StoreError) -> SolverError {
    SolverError {
        kind,
        message: format!("{what}: {e}"),
        source: Some(Box::new(e)),
    }
}

#[async_trait]
impl Solver for Recorded {
    fn kind(&self) -> ChallengeKind {
        self.inner.kind()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn present(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let now = certfleet_core::time::now();
        let records: Vec<PresentedChallenge> = challenges
            .iter()
            .map(|c| PresentedChallenge {
                solver: self.inner.name().to_string(),
                challenge: c.clone(),
                presented_at: now,
            })
            .collect();
        self.store
            .record_presented(&records)
            .await
            .map_err(|e| store_error(self.kind(), "recording the presentation", e))?;
        self.inner.present(challenges).await
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        self.inner.cleanup(challenges).await?;
        let tokens: Vec<String> = challenges.iter().map(|c| c.token.clone()).collect();
        self.store
            .forget_presented(self.inner.name(), &tokens)
            .await
            .map_err(|e| store_error(self.kind(), "forgetting the presentation", e))
    }
}

/// Withdraw every presentation still recorded (call before any order starts). A
/// presentation whose solver is no longer configured, or whose cleanup fails, stays recorded
/// for the next start and is logged. Returns how many were withdrawn.
pub async fn finish_cleanup(
    store: &Arc<dyn Store>,
    solvers: &BTreeMap<String, Arc<dyn Solver>>,
) -> usize {
    let left = match store.presented_challenges().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the presentations left by the last run");
            return 0;
        }
    };
    let mut by_solver: BTreeMap<String, Vec<PendingChallenge>> = BTreeMap::new();
    for p in left {
        by_solver.entry(p.solver).or_default().push(p.challenge);
    }
    let mut done = 0;
    for (name, challenges) in by_solver {
        let Some(solver) = solvers.get(&name) else {
            tracing::warn!(solver = %name, count = challenges.len(), "responses left by the last run belong to a solver that is no longer configured; they stay recorded");
            continue;
        };
        let tokens: Vec<String> = challenges.iter().map(|c| c.token.clone()).collect();
        match solver.cleanup(&challenges).await {
            Ok(()) => {
                if let Err(e) = store.forget_presented(&name, &tokens).await {
                    tracing::warn!(solver = %name, error = %e, "withdrew responses left by the last run but could not forget them");
                }
                tracing::info!(solver = %name, count = challenges.len(), "withdrew challenge responses left by the last run");
                done += challenges.len();
            }
            Err(e) => {
                tracing::warn!(solver = %name, error = %e, "could not withdraw responses left by the last run; will retry at the next start")
            }
        }
    }
    done
}
