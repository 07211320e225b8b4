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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use certfleet_core::{ChallengeKind, DnsName, Secret, Solver, SolverError};

    use super::*;

    /// Counts the challenges it is asked to withdraw.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Solver for Counting {
        fn kind(&self) -> ChallengeKind {
            ChallengeKind::Http01
        }
        async fn present(&self, _: &[PendingChallenge]) -> Result<(), SolverError> {
            Ok(())
        }
        async fn cleanup(&self, c: &[PendingChallenge]) -> Result<(), SolverError> {
            self.0.fetch_add(c.len(), Ordering::SeqCst);
            Ok(())
        }
    }

    fn challenge() -> PendingChallenge {
        PendingChallenge {
            kind: ChallengeKind::Http01,
            identifier: "www.example.test".into(),
            token: "Cancelled_Token_0123456789".into(),
            key_authorization: Secret::new("x.y"),
            certificate: "www".into(),
            wildcard: false,
        }
    }

    #[tokio::test]
    async fn a_cancelled_order_withdraws_its_responses() {
        let solver = Arc::new(Counting::default());
        let names = [DnsName::parse("www.example.test").unwrap()];
        let set = SolverSet::single(&names, solver.clone());
        let order = async {
            let _guard = CleanupOnDrop::new(&set, &[challenge()]);
            std::future::pending::<()>().await;
        };
        // The order is cancelled: its future is dropped mid-flight.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), order).await;
        for _ in 0..100 {
            if solver.0.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            solver.0.load(Ordering::SeqCst),
            1,
            "cleanup ran for the cancelled order"
        );

        let guard = CleanupOnDrop::new(&set, &[challenge()]);
        guard.disarm();
        tokio::task::yield_now().await;
        assert_eq!(
            solver.0.load(Ordering::SeqCst),
            1,
            "a disarmed guard does nothing"
        );
    }
}
