//! [`SolverRegistry`]: the solvers of the config, built once at start-up (connecting to
//! Redis for a mirrored `http-01`), each wrapped in [`Recorded`] so that its presentations are
//! in the store before they are published; and the [`SolverSet`] of each order.

use std::collections::BTreeMap;
use std::sync::Arc;

use certfleet_core::{ChallengeKind, DnsName, Solver, SolverRules, SolverSet, Store};
use certfleet_solvers::dns::Dns01Solver;
use certfleet_solvers::mirror::RedisMirror;
use certfleet_solvers::recorded::Recorded;
use certfleet_solvers::self_check::SelfCheck;
use certfleet_solvers::tls_alpn::{TlsAlpn01Solver, TlsAlpnResponder};
use certfleet_solvers::webroot::WebrootSolver;
use certfleet_solvers::{Http01Solver, LiveTokens};

use crate::solvers::{SolverPlan, solver_name_for};

/// The solvers built at start-up, by name (each records its presentations in the store).
pub struct SolverRegistry {
    solvers: BTreeMap<String, Arc<dyn Solver>>,
    kinds: BTreeMap<String, ChallengeKind>,
    /// What the HTTP-01 responder of this process serves.
    pub live: Arc<LiveTokens>,
    /// What the TLS-ALPN-01 listener serves.
    pub tls_alpn: Arc<TlsAlpnResponder>,
}

impl SolverRegistry {
    /// Build every planned solver (connecting to Redis if mirrored); `wrap_http01` wraps each
    /// HTTP-01 solver (the server waits there for agents' confirmations, `fleet::http01`).
    pub async fn build(
        plans: &BTreeMap<String, SolverPlan>,
        store: &Arc<dyn Store>,
        wrap_http01: &dyn Fn(Arc<dyn Solver>) -> Arc<dyn Solver>,
    ) -> Result<Self, String> {
        let live = LiveTokens::new();
        let tls_alpn = TlsAlpnResponder::new();
        let mut solvers: BTreeMap<String, Arc<dyn Solver>> = BTreeMap::new();
        let mut kinds = BTreeMap::new();
        for (name, plan) in plans {
            let solver: Arc<dyn Solver> = match plan {
                SolverPlan::Http01(p) => {
                    let mut s =
                        Http01Solver::new(store.clone(), p.token_ttl).with_live(live.clone());
                    if let Some(r) = &p.redis {
                        let m = RedisMirror::connect(r.clone())
                            .await
                            .map_err(|e| format!("solver {name}: {e}"))?;
                        s = s.with_mirror(m);
                    }
                    if let Some((urls, timeout)) = &p.self_check {
                        s = s.with_self_check(
                            SelfCheck::new("self_check", urls.clone(), *timeout)
                                .map_err(|e| e.to_string())?,
                        );
                    }
                    wrap_http01(Arc::new(s))
                }
                SolverPlan::TlsAlpn01 => Arc::new(TlsAlpn01Solver::new(tls_alpn.clone())),
                // Written into a document root: no agent confirms these (their tokens are
                // not in the store), so the fleet's HTTP-01 wait does not wrap it.
                SolverPlan::Webroot(path) => Arc::new(WebrootSolver::new(name.clone(), path)),
                SolverPlan::Dns01 {
                    provider,
                    propagation,
                } => Arc::new(Dns01Solver::new(
                    name.clone(),
                    provider.clone(),
                    propagation.clone(),
                )),
            };
            kinds.insert(name.clone(), plan.kind());
            solvers.insert(name.clone(), Arc::new(Recorded::new(solver, store.clone())));
        }
        Ok(Self {
            solvers,
            kinds,
            live,
            tls_alpn,
        })
    }

    /// A registry of ready-made solvers by name (tests and embedders that bring their own;
    /// name an HTTP-01 solver `http-01` to make it the default for that challenge type).
    pub fn with_solvers(solvers: BTreeMap<String, Arc<dyn Solver>>) -> Self {
        let kinds = solvers.iter().map(|(n, s)| (n.clone(), s.kind())).collect();
        Self {
            solvers,
            kinds,
            live: LiveTokens::new(),
            tls_alpn: TlsAlpnResponder::new(),
        }
    }

    /// Solvers by name.
    pub fn solvers(&self) -> &BTreeMap<String, Arc<dyn Solver>> {
        &self.solvers
    }

    /// The solvers for an order of `names`, or the error naming what is missing.
    pub fn set_for(
        &self,
        rules: &SolverRules,
        kind: ChallengeKind,
        names: &[DnsName],
    ) -> Result<SolverSet, String> {
        let mut set = SolverSet::default();
        for n in names {
            let solver = solver_name_for(rules, kind, n, &self.kinds)
                .ok_or_else(|| format!("no {kind} solver is configured for {n}"))?;
            let s = self
                .solvers
                .get(&solver)
                .ok_or_else(|| format!("solver {solver:?} for {n} is no longer configured"))?;
            set.insert(n.clone(), s.clone());
        }
        Ok(set)
    }
}
