//! Validation of a certificate declaration, shared by the config file and the REST API, so
//! both refuse the same things with the same messages (naming the field). Every invalid field
//! is reported, not only the first.

use std::collections::BTreeMap;

use certfleet_acme::{Acme, AcmeError};
use certfleet_core::policy::RenewBefore;
use certfleet_core::{CertName, ChallengeKind, DnsName, KeyKind, SolverRules};

use crate::config::{
    CertificateSettings, ConfigError, ConfigErrors, DEFAULT_ISSUER, Errors, IssuerSettings,
    MAX_NAMES_PER_CERTIFICATE, err,
};

/// What a request to declare a certificate carries, before validation.
#[derive(Debug, Clone, Default)]
pub struct CertificateRequest<'a> {
    /// Name.
    pub name: &'a str,
    /// Names.
    pub domains: &'a [String],
    /// Issuer.
    pub issuer: Option<&'a str>,
    /// Key kind.
    pub key: Option<&'a str>,
    /// Challenge.
    pub challenge: Option<&'a str>,
    /// Solver for names no rule matches.
    pub solver: Option<&'a str>,
    /// Solver per identifier or `.suffix`.
    pub solvers: Option<&'a BTreeMap<String, String>>,
    /// ACME profile.
    pub profile: Option<&'a str>,
    /// `renew_before` as written.
    pub renew_before: Option<&'a str>,
}

/// Longest profile name accepted.
pub const MAX_PROFILE_LEN: usize = 64;

/// A profile name: 1 to 64 letters, digits, '-', '_' or '.'.
pub fn check_profile_name(profile: &str) -> Result<(), String> {
    let ok = !profile.is_empty()
        && profile.len() <= MAX_PROFILE_LEN
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{profile:?} is not a profile name: use 1 to {MAX_PROFILE_LEN} letters, digits, '-', '_' or '.' (such as shortlived)"
        ))
    }
}

/// Why a profile could not be confirmed with the CA.
#[derive(Debug)]
pub enum ProfileCheck {
    /// The CA does not offer it (the message names the ones it offers).
    Refused(String),
    /// The CA could not be asked.
    Unreachable(AcmeError),
}

/// Check `profile` against the CA's `meta.profiles` (draft-aaron-acme-profiles).
pub async fn check_profile(acme: &dyn Acme, profile: &str) -> Result<(), ProfileCheck> {
    let offered = acme
        .profiles()
        .await
        .map_err(ProfileCheck::Unreachable)?
        .unwrap_or_default();
    if offered.iter().any(|p| p == profile) {
        return Ok(());
    }
    Err(ProfileCheck::Refused(if offered.is_empty() {
        format!("profile {profile:?}: the CA offers no ACME profiles")
    } else {
        format!(
            "unknown profile {profile:?}; the CA offers: {}",
            offered.join(", ")
        )
    }))
}

/// Validate a certificate declaration from any source; `prefix` is prepended to field names.
/// `solvers` lists the configured solvers and their challenge types. Every invalid field is
/// reported.
pub fn validate_certificate(
    prefix: &str,
    req: &CertificateRequest<'_>,
    issuers: &BTreeMap<String, IssuerSettings>,
    solvers: &BTreeMap<String, ChallengeKind>,
) -> Result<CertificateSettings, ConfigErrors> {
    let f = |name: &str| format!("{prefix}{name}");
    let mut errors = Errors::default();
    let name = errors.check(CertName::parse(req.name).map_err(|e| err(f("name"), e.to_string())));
    if req.domains.is_empty() {
        errors.check::<()>(Err(err(
            f("domains"),
            "at least one domain name is required",
        )));
    }
    if req.domains.len() > MAX_NAMES_PER_CERTIFICATE {
        errors.check::<()>(Err(err(
            f("domains"),
            format!(
                "{} names; a certificate holds at most {MAX_NAMES_PER_CERTIFICATE}",
                req.domains.len()
            ),
        )));
    }
    let default = errors.check(choose_default(&f, req, solvers));
    let mut domains: Vec<DnsName> = Vec::with_capacity(req.domains.len());
    for (i, raw) in req.domains.iter().enumerate() {
        let field = f(&format!("domains[{i}]"));
        let Some(name) = errors.check(DnsName::parse(raw).map_err(|e| err(&field, e.to_string())))
        else {
            continue;
        };
        if let Some(first) = domains.iter().position(|d| *d == name) {
            errors.check::<()>(Err(err(
                &field,
                format!(
                    "{raw} is listed twice (also as domains[{first}], {})",
                    domains[first]
                ),
            )));
        } else {
            domains.push(name);
        }
    }
    let rules = errors.check(check_rules(&f, req.solvers, &domains, solvers));
    let (challenge, rules) = match (default, rules) {
        (Some((challenge, default_solver)), Some(rules)) => {
            let rules = SolverRules {
                default: default_solver,
                rules,
            };
            for e in solver_errors(&f, &rules, challenge, req.domains, &domains, solvers) {
                errors.check::<()>(Err(e));
            }
            (challenge, rules)
        }
        _ => (ChallengeKind::default(), SolverRules::default()),
    };
    let issuer = req.issuer.unwrap_or(DEFAULT_ISSUER);
    if !issuers.contains_key(issuer) {
        errors.check::<()>(Err(err(
            f("issuer"),
            unknown_issuer(issuer, issuers.keys()),
        )));
    }
    let key = match req.key {
        Some(k) => errors.check(
            k.parse::<KeyKind>()
                .map_err(|e| err(f("key"), e.to_string())),
        ),
        None => Some(KeyKind::default()),
    };
    if let Some(profile) = req.profile {
        errors.check(check_profile_name(profile).map_err(|m| err(f("profile"), m)));
    }
    let renew_before = match req.renew_before {
        Some(text) => errors.check(
            text.parse::<RenewBefore>()
                .map_err(|e| err(f("renew_before"), e.to_string())),
        ),
        None => None,
    };
    errors.finish(|| CertificateSettings {
        name: name.expect("checked"),
        domains,
        issuer: issuer.to_string(),
        key: key.expect("checked"),
        challenge,
        labels: None,
        solvers: rules,
        profile: req.profile.map(str::to_string),
        renew_before,
        local: None,
    })
}

/// For a certificate that is to be renewed over ACME from now on (`cert manage`, `cert
/// import --issuer`): every name must have a solver, and a wildcard one that can prove it
/// (dns-01). Errors name `domains[i]`; empty when every name can be proved.
pub(crate) fn unprovable(
    rules: &SolverRules,
    challenge: ChallengeKind,
    domains: &[DnsName],
    solvers: &BTreeMap<String, ChallengeKind>,
) -> Vec<ConfigError> {
    let raw: Vec<String> = domains.iter().map(ToString::to_string).collect();
    solver_errors(&|f| f.to_string(), rules, challenge, &raw, domains, solvers)
}

/// Every name must have a solver, and a wildcard a solver that can prove it (dns-01).
/// `raw` are the names as given, to find each parsed name's field index.
fn solver_errors(
    f: &dyn Fn(&str) -> String,
    rules: &SolverRules,
    challenge: ChallengeKind,
    raw: &[String],
    domains: &[DnsName],
    solvers: &BTreeMap<String, ChallengeKind>,
) -> Vec<ConfigError> {
    let index_of = |name: &DnsName| {
        raw.iter()
            .position(|r| DnsName::parse(r).is_ok_and(|p| p == *name))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for name in domains {
        let field = f(&format!("domains[{}]", index_of(name)));
        let Some(solver) = crate::solvers::solver_name_for(rules, challenge, name, solvers) else {
            out.push(err(field, format!("no solver is configured for {name}")));
            continue;
        };
        // A solver whose section failed validation was reported with its section.
        let Some(&kind) = solvers.get(&solver) else {
            continue;
        };
        if name.is_wildcard() && !kind.supports_wildcards() {
            let field = match rules.rule_for(name) {
                Some((pattern, _)) => f(&format!("solvers.{pattern:?}")),
                None => field,
            };
            out.push(err(
                field,
                format!(
                    "{name} is a wildcard, which only dns-01 can prove; solver {solver:?} answers {kind}"
                ),
            ));
        }
    }
    out
}

/// The certificate's challenge type and default solver from `challenge` and `solver`.
fn choose_default(
    f: &dyn Fn(&str) -> String,
    req: &CertificateRequest<'_>,
    solvers: &BTreeMap<String, ChallengeKind>,
) -> Result<(ChallengeKind, Option<String>), ConfigError> {
    let challenge = req
        .challenge
        .map(|c| {
            c.parse::<ChallengeKind>()
                .map_err(|e| err(f("challenge"), e))
        })
        .transpose()?;
    if let Some(name) = req.solver {
        let kind = *solvers
            .get(name)
            .ok_or_else(|| err(f("solver"), unknown_solver(name, solvers)))?;
        if let Some(c) = challenge.filter(|c| *c != kind) {
            return Err(err(
                f("challenge"),
                format!("solver {name:?} answers {kind}, not {c}"),
            ));
        }
        return Ok((kind, Some(name.to_string())));
    }
    let kind = challenge.unwrap_or_default();
    if crate::solvers::default_for_kind(kind, solvers).is_none() {
        let dns: Vec<&str> = solvers
            .iter()
            .filter(|(_, k)| **k == ChallengeKind::Dns01)
            .map(|(n, _)| n.as_str())
            .collect();
        let why = match kind {
            ChallengeKind::Dns01 if dns.len() > 1 => format!(
                "several dns-01 solvers are configured ({}); name one with `solver`",
                dns.join(", ")
            ),
            ChallengeKind::TlsAlpn01 => {
                "tls-alpn-01 needs a listener: set [server] tls_alpn01_listen or --tls-alpn-listen"
                    .to_string()
            }
            _ => format!("no {kind} solver is configured; add one under [[solvers]]"),
        };
        return Err(err(f("challenge"), why));
    }
    Ok((kind, None))
}

fn unknown_solver(name: &str, solvers: &BTreeMap<String, ChallengeKind>) -> String {
    let known: Vec<&str> = solvers.keys().map(String::as_str).collect();
    format!(
        "unknown solver {name:?}; configured solvers: {}",
        known.join(", ")
    )
}

/// Check `solvers = { pattern = name }`: patterns are one of the certificate's names or a
/// `.suffix` covering at least one of them; names are configured solvers.
fn check_rules(
    f: &dyn Fn(&str) -> String,
    rules: Option<&BTreeMap<String, String>>,
    domains: &[DnsName],
    solvers: &BTreeMap<String, ChallengeKind>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (pattern, solver) in rules.into_iter().flatten() {
        let field = f(&format!("solvers.{pattern:?}"));
        if !solvers.contains_key(solver) {
            return Err(err(field, unknown_solver(solver, solvers)));
        }
        let key = match pattern.strip_prefix('.') {
            Some(suffix) => {
                let parsed = DnsName::parse(suffix).map_err(|e| err(&field, e.to_string()))?;
                let probe = SolverRules {
                    default: None,
                    rules: [(format!(".{parsed}"), String::new())]
                        .into_iter()
                        .collect(),
                };
                if !domains.iter().any(|d| probe.rule_for(d).is_some()) {
                    return Err(err(
                        field,
                        format!("the suffix .{parsed} covers none of the certificate's names"),
                    ));
                }
                format!(".{parsed}")
            }
            None => {
                let parsed = DnsName::parse(pattern).map_err(|e| err(&field, e.to_string()))?;
                if !domains.contains(&parsed) {
                    return Err(err(
                        field,
                        format!(
                            "{parsed} is not one of the certificate's names (use .{parsed} for a suffix)"
                        ),
                    ));
                }
                parsed.to_string()
            }
        };
        out.insert(key, solver.clone());
    }
    Ok(out)
}

/// The message for an issuer name that is not configured, listing the ones that are
/// (or saying there are none, as on a server without `[issuers]`).
pub(crate) fn unknown_issuer<'a>(issuer: &str, known: impl Iterator<Item = &'a String>) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    if known.is_empty() {
        format!(
            "unknown issuer {issuer:?}; no issuers are configured (add one under [issuers] in the config)"
        )
    } else {
        format!(
            "unknown issuer {issuer:?}; configured issuers: {}",
            known.join(", ")
        )
    }
}
