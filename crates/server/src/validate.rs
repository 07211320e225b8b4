//! Validation of a certificate declaration, shared by the config file and the REST API, so
//! both refuse the same things with the same messages (naming the field).

use std::collections::BTreeMap;

use certfleet_core::{CertName, ChallengeKind, DnsName, KeyKind};

use crate::config::{
    CertificateSettings, ConfigErrors, DEFAULT_ISSUER, Errors, IssuerSettings,
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
}

/// Validate a certificate declaration from any source; `prefix` is prepended to field names.
/// Every invalid field is reported, not only the first.
pub fn validate_certificate(
    prefix: &str,
    req: &CertificateRequest<'_>,
    issuers: &BTreeMap<String, IssuerSettings>,
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
    let challenge = match req.challenge {
        Some(c) => errors.check(
            c.parse::<ChallengeKind>()
                .map_err(|e| err(f("challenge"), e)),
        ),
        None => Some(ChallengeKind::Http01),
    };
    if let Some(c) = challenge.filter(|c| *c != ChallengeKind::Http01) {
        errors.check::<()>(Err(err(
            f("challenge"),
            format!("{c} is not supported yet; use http-01"),
        )));
    }
    let challenge = challenge.unwrap_or_default();
    let mut domains: Vec<DnsName> = Vec::with_capacity(req.domains.len());
    for (i, raw) in req.domains.iter().enumerate() {
        let field = f(&format!("domains[{i}]"));
        let Some(name) = errors.check(DnsName::parse(raw).map_err(|e| err(&field, e.to_string())))
        else {
            continue;
        };
        if name.is_wildcard() && !challenge.supports_wildcards() {
            errors.check::<()>(Err(err(
                &field,
                format!("{name} is a wildcard, which only dns-01 can prove; {challenge} cannot"),
            )));
        } else if let Some(first) = domains.iter().position(|d| *d == name) {
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
    let issuer = req.issuer.unwrap_or(DEFAULT_ISSUER);
    if !issuers.contains_key(issuer) {
        let known: Vec<&str> = issuers.keys().map(String::as_str).collect();
        errors.check::<()>(Err(err(
            f("issuer"),
            format!(
                "unknown issuer {issuer:?}; configured issuers: {}",
                known.join(", ")
            ),
        )));
    }
    let key = match req.key {
        Some(k) => errors.check(
            k.parse::<KeyKind>()
                .map_err(|e| err(f("key"), e.to_string())),
        ),
        None => Some(KeyKind::default()),
    };
    errors.finish(|| CertificateSettings {
        name: name.expect("checked"),
        domains,
        issuer: issuer.to_string(),
        key: key.expect("checked"),
        challenge,
        labels: None,
    })
}
