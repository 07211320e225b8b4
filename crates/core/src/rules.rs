//! Which solver proves which identifier: [`SolverRules`] (what a certificate declares) and
//! [`SolverSet`] (the solvers of one order, one per identifier), plus [`PresentedChallenge`],
//! the record of a published response that must be withdrawn even after a crash.
//!
//! A certificate names a default solver and, optionally, a solver per identifier
//! (`*.example.com`, `www.example.com`) or per domain suffix (`.example.org` matches
//! `example.org` and every name under it). An exact identifier wins over a suffix; a longer
//! suffix wins over a shorter one; names no rule matches use the default.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::challenge::ChallengeKind;
use crate::name::DnsName;
use crate::solver::{PendingChallenge, Solver, SolverError};
use crate::time::UnixTime;

/// A certificate's choice of solvers (stored with the certificate).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolverRules {
    /// Solver for names no rule matches; `None` means the solver of the certificate's
    /// challenge type (the built-in `http-01` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Pattern → solver name. A pattern is an identifier (`www.example.com`,
    /// `*.example.com`) or a suffix starting with a dot (`.example.com`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, String>,
}

impl SolverRules {
    /// Whether nothing was chosen (the challenge type's solver proves every name).
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.rules.is_empty()
    }

    /// The solver named for `name` by a rule or the default; `None` when neither applies.
    pub fn solver_for(&self, name: &DnsName) -> Option<&str> {
        self.rule_for(name)
            .map(|(_, solver)| solver)
            .or(self.default.as_deref())
    }

    /// The rule (pattern, solver) that matches `name`, if any.
    pub fn rule_for(&self, name: &DnsName) -> Option<(&str, &str)> {
        if let Some((pattern, solver)) = self.rules.get_key_value(name.as_str()) {
            return Some((pattern, solver));
        }
        self.rules
            .iter()
            .filter(|(pattern, _)| suffix_matches(pattern, name))
            .max_by_key(|(pattern, _)| pattern.len())
            .map(|(p, s)| (p.as_str(), s.as_str()))
    }
}

/// Whether the suffix pattern `.example.com` covers `name` (the name itself, a name below it,
/// or a wildcard below it).
fn suffix_matches(pattern: &str, name: &DnsName) -> bool {
    let Some(suffix) = pattern.strip_prefix('.') else {
        return false;
    };
    let name = name.as_str();
    name == suffix
        || name
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.'))
}

/// Challenges that one solver answers.
type Group<'a> = (&'a Arc<dyn Solver>, Vec<PendingChallenge>);

/// The solvers of one order: one per identifier.
#[derive(Clone, Default)]
pub struct SolverSet {
    entries: Vec<(DnsName, Arc<dyn Solver>)>,
}

impl fmt::Debug for SolverSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(n, s)| (n.as_str(), s.name())))
            .finish()
    }
}

impl SolverSet {
    /// One solver for every name.
    pub fn single(names: &[DnsName], solver: Arc<dyn Solver>) -> Self {
        Self {
            entries: names.iter().map(|n| (n.clone(), solver.clone())).collect(),
        }
    }

    /// Add (or replace) the solver of `name`.
    pub fn insert(&mut self, name: DnsName, solver: Arc<dyn Solver>) {
        self.entries.retain(|(n, _)| *n != name);
        self.entries.push((name, solver));
    }

    /// The solver of an identifier as the CA names it in an authorization (RFC 8555 §7.1.4:
    /// without `*.`, with the `wildcard` flag).
    pub fn solver_for(&self, identifier: &str, wildcard: bool) -> Option<&Arc<dyn Solver>> {
        let wanted = if wildcard {
            format!("*.{identifier}")
        } else {
            identifier.to_string()
        };
        self.entries
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(&wanted))
            .map(|(_, s)| s)
    }

    /// The challenge type that proves an identifier, if it has a solver.
    pub fn kind_for(&self, identifier: &str, wildcard: bool) -> Option<ChallengeKind> {
        self.solver_for(identifier, wildcard).map(|s| s.kind())
    }

    /// Challenges grouped by their solver, in first-seen order. A challenge without a solver
    /// is an error naming its identifier.
    fn groups<'a>(
        &'a self,
        challenges: &[PendingChallenge],
    ) -> Result<Vec<Group<'a>>, SolverError> {
        let mut groups: Vec<Group<'a>> = Vec::new();
        for c in challenges {
            let solver = self.solver_for(&c.identifier, c.wildcard).ok_or_else(|| {
                SolverError::new(
                    c.kind,
                    format!("no solver is configured for {}", c.requested_name()),
                )
            })?;
            match groups.iter_mut().find(|(s, _)| Arc::ptr_eq(s, solver)) {
                Some((_, list)) => list.push(c.clone()),
                None => groups.push((solver, vec![c.clone()])),
            }
        }
        Ok(groups)
    }

    /// Present every challenge through its solver, solvers one after the other (each returns
    /// once the CA can see its responses): HTTP-01 and TLS-ALPN-01 first, which are quick,
    /// then DNS-01, which waits for propagation. Stops at the first failure; the caller still
    /// calls [`SolverSet::cleanup`] for all of them.
    pub async fn present(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let mut groups = self.groups(challenges)?;
        groups.sort_by_key(|(s, _)| s.kind() == ChallengeKind::Dns01);
        for (solver, group) in groups {
            solver.present(&group).await?;
        }
        Ok(())
    }

    /// Withdraw every challenge through its solver; every solver is asked even if one fails,
    /// and the first failure is returned.
    pub async fn cleanup(&self, challenges: &[PendingChallenge]) -> Result<(), SolverError> {
        let mut first = None;
        for (solver, group) in self.groups(challenges)? {
            if let Err(e) = solver.cleanup(&group).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A response that was (or was about to be) published, recorded in the store *before* the
/// solver publishes it, and forgotten only after the solver withdrew it. A server that
/// restarts withdraws whatever is still recorded.
#[derive(Debug, Clone)]
pub struct PresentedChallenge {
    /// Name of the solver that published it.
    pub solver: String,
    /// The challenge and our response.
    pub challenge: PendingChallenge,
    /// When it was recorded.
    pub presented_at: UnixTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }

    #[test]
    fn exact_beats_suffix_and_longer_suffix_wins() {
        let rules = SolverRules {
            default: Some("web".into()),
            rules: [
                ("*.example.com", "dns"),
                (".example.com", "zone"),
                (".shop.example.com", "shop"),
                ("api.example.com", "alpn"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        };
        let cases = [
            ("*.example.com", "dns"),
            ("example.com", "zone"),
            ("www.example.com", "zone"),
            ("api.example.com", "alpn"),
            ("a.shop.example.com", "shop"),
            ("*.shop.example.com", "shop"),
            ("notexample.com", "web"),
            ("example.org", "web"),
        ];
        for (n, want) in cases {
            assert_eq!(rules.solver_for(&name(n)), Some(want), "{n}");
        }
        assert_eq!(SolverRules::default().solver_for(&name("a.b.c")), None);
    }
}
