//! Validation of a certificate declaration, shared by the config file and the REST API, so
//! both refuse the same things with the same messages (naming the field).

use std::collections::BTreeMap;

use certfleet_acme::{Acme, AcmeError};
use certfleet_core::policy::RenewBefore;
use certfleet_core::{CertName, ChallengeKind, DnsName, KeyKind};

use crate::config::{
    CertificateSettings, ConfigError, DEFAULT_ISSUER, IssuerSettings, MAX_NAMES_PER_CERTIFICATE,
    err,
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
pub fn validate_certificate(
    prefix: &str,
    req: &CertificateRequest<'_>,
    issuers: &BTreeMap<String, IssuerSettings>,
) -> Result<CertificateSettings, ConfigError> {
    let f = |name: &str| format!("{prefix}{name}");
    let name = CertName::parse(req.name).map_err(|e| err(f("name"), e.to_string()))?;
    if req.domains.is_empty() {
        return Err(err(f("domains"), "at least one domain name is required"));
    }
    if req.domains.len() > MAX_NAMES_PER_CERTIFICATE {
        return Err(err(
            f("domains"),
            format!(
                "{} names; a certificate holds at most {MAX_NAMES_PER_CERTIFICATE}",
                req.domains.len()
            ),
        ));
    }
    let challenge = match req.challenge {
        Some(c) => c
            .parse::<ChallengeKind>()
            .map_err(|e| err(f("challenge"), e))?,
        None => ChallengeKind::Http01,
    };
    if challenge != ChallengeKind::Http01 {
        return Err(err(
            f("challenge"),
            format!("{challenge} is not supported yet; use http-01"),
        ));
    }
    let mut domains: Vec<DnsName> = Vec::with_capacity(req.domains.len());
    for (i, raw) in req.domains.iter().enumerate() {
        let field = f(&format!("domains[{i}]"));
        let name = DnsName::parse(raw).map_err(|e| err(&field, e.to_string()))?;
        if name.is_wildcard() && !challenge.supports_wildcards() {
            return Err(err(
                &field,
                format!("{name} is a wildcard, which only dns-01 can prove; {challenge} cannot"),
            ));
        }
        if domains.contains(&name) {
            return Err(err(&field, format!("{name} is listed twice")));
        }
        domains.push(name);
    }
    let issuer = req.issuer.unwrap_or(DEFAULT_ISSUER);
    if !issuers.contains_key(issuer) {
        let known: Vec<&str> = issuers.keys().map(String::as_str).collect();
        return Err(err(
            f("issuer"),
            format!(
                "unknown issuer {issuer:?}; configured issuers: {}",
                known.join(", ")
            ),
        ));
    }
    let key = match req.key {
        Some(k) => k
            .parse::<KeyKind>()
            .map_err(|e| err(f("key"), e.to_string()))?,
        None => KeyKind::default(),
    };
    if let Some(profile) = req.profile {
        check_profile_name(profile).map_err(|m| err(f("profile"), m))?;
    }
    let renew_before = match req.renew_before {
        Some(text) => Some(
            text.parse::<RenewBefore>()
                .map_err(|e| err(f("renew_before"), e.to_string()))?,
        ),
        None => None,
    };
    Ok(CertificateSettings {
        name,
        domains,
        issuer: issuer.to_string(),
        key,
        challenge,
        profile: req.profile.map(str::to_string),
        renew_before,
    })
}
