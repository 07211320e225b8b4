//! [`CleanupOnDrop`]: withdraws published challenge responses when an order is cancelled
//! (its future dropped) before it could withdraw them itself.
//!
//! Successful and failed orders withdraw their responses in line; this guard covers
//! cancellation. If no runtime is left to run the cleanup (the process is exiting), the
//! responses stay recorded in the store and the next start withdraws them.

use certfleet_core::{PendingChallenge, SolverSet};

/// Armed with the responses of one order; disarm once they are withdrawn in line.
pub struct CleanupOnDrop {
    pending: Option<(SolverSet, Vec<PendingChallenge>)>,
}

impl CleanupOnDrop {
    /// Guard the responses `challenges` published through `solvers`.
    pub fn new(solvers: &SolverSet, challenges: &[PendingChallenge]) -> Self {
        Self {
            pending: Some((solvers.clone(), challenges.to_vec())),
        }
    }

    /// The order withdraws its responses itself.
    pub fn disarm(mut self) {
        self.pending = None;
    }
}

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        let Some((solvers, challenges)) = self.pending.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = solvers.cleanup(&challenges).await {
                        tracing::warn!(error = %e, "could not withdraw the responses of a cancelled order");
                    }
                });
            }
            Err(_) => tracing::warn!(
                "an order was cancelled outside a runtime; its responses are withdrawn at the next start"
            ),
        }
    }
}
