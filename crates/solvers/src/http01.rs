//! [`Http01Solver`]: HTTP-01 responses kept in the store (RFC 8555 §8.3).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certfleet_core::{
    ChallengeKind, Http01Challenge, PendingChallenge, Solver, SolverError, Store,
};

/// How long a published response stays servable if cleanup never runs (a crash, say).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Publishes HTTP-01 key authorizations into the store for the responder(s) to serve.
pub struct Http01Solver {
    store: Arc<dyn Store>,
    ttl: Duration,
}

impl Http01Solver {
    /// A solver writing to `store`; responses expire after `ttl`.
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self { store, ttl }
    }
}

fn store_error(message: &str, e: certfleet_core::StoreError) -> SolverError {
    SolverError {
        kind: ChallengeKind::Http01,
        message: format!("{message}: {e}"),
        source: Some(Box::new(e)),
    }
}

#[async_trait]
impl Solver for Http01Solver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Http01
    }

    async fn present(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let expires_at = certfleet_core::time::now() + self.ttl.as_secs() as i64;
        for c in challenges {
            let record = Http01Challenge {
                token: c.token.clone(),
                host: c.identifier.to_ascii_lowercase(),
                key_authorization: c.key_authorization.expose().to_string(),
                certificate: c.certificate.clone(),
                expires_at,
            };
            self.store
                .put_challenge(&record)
                .await
                .map_err(|e| store_error("publishing a response", e))?;
        }
        Ok(())
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let tokens: Vec<String> = challenges.iter().map(|c| c.token.clone()).collect();
        self.store
            .remove_challenges(&tokens)
            .await
            .map_err(|e| store_error("withdrawing responses", e))
    }
}
