//! [`Http01Solver`]: HTTP-01 responses (RFC 8555 §8.3) kept in the store, in this node's
//! [`LiveTokens`], and optionally mirrored to Redis and confirmed by a self-check.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certfleet_core::{
    ChallengeKind, Http01Challenge, PendingChallenge, Solver, SolverError, Store,
};

use crate::error::Error;
use crate::live::LiveTokens;
use crate::mirror::RedisMirror;
use crate::self_check::SelfCheck;

/// How long a published response stays servable if cleanup never runs (a crash, say).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Publishes HTTP-01 key authorizations for the responder(s) to serve.
pub struct Http01Solver {
    store: Arc<dyn Store>,
    ttl: Duration,
    live: Arc<LiveTokens>,
    mirror: Option<RedisMirror>,
    self_check: Option<SelfCheck>,
}

impl Http01Solver {
    /// A solver writing to `store`; responses expire after `ttl`.
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            live: LiveTokens::new(),
            mirror: None,
            self_check: None,
        }
    }

    /// Also serve from (and withdraw from) `live`, the memory of this process's responder.
    pub fn with_live(mut self, live: Arc<LiveTokens>) -> Self {
        self.live = live;
        self
    }

    /// Also mirror every response to Redis.
    pub fn with_mirror(mut self, mirror: RedisMirror) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// Return from `present` only once these responders serve the responses.
    pub fn with_self_check(mut self, check: SelfCheck) -> Self {
        self.self_check = Some(check);
        self
    }

    /// The in-memory responses of this process.
    pub fn live(&self) -> &Arc<LiveTokens> {
        &self.live
    }
}

fn solver_error(e: impl Into<Error>) -> SolverError {
    e.into().into_solver_error(ChallengeKind::Http01)
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
                .map_err(solver_error)?;
            self.live.insert(&record);
            if let Some(m) = &self.mirror {
                m.publish(&record).await.map_err(solver_error)?;
            }
        }
        if let Some(check) = &self.self_check {
            check.wait(challenges).await.map_err(solver_error)?;
        }
        Ok(())
    }

    async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let tokens: Vec<String> = challenges.iter().map(|c| c.token.clone()).collect();
        let stored = self.store.remove_challenges(&tokens).await;
        self.live.remove(&tokens);
        let mirrored = match &self.mirror {
            Some(m) => m.withdraw(&tokens).await,
            None => Ok(()),
        };
        stored.map_err(solver_error)?;
        mirrored.map_err(solver_error)
    }
}
