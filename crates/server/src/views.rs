//! The JSON shapes of the REST API (and of `certfleet cert ls --json`), documented in
//! `docs/api.md`. Fields are only ever added, never renamed or removed, within `/api/v1`.

use certfleet_core::time::{UnixTime, days_left};
use certfleet_core::{Certificate, CertificateStatus, Version};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 UTC text for a Unix time.
pub fn rfc3339(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

/// A time given as RFC 3339 (`2026-11-29T10:00:00Z`) or as Unix seconds.
pub fn parse_time(text: &str) -> Result<UnixTime, String> {
    if let Ok(unix) = text.parse::<i64>() {
        return Ok(unix);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            format!("{text:?} is not an RFC 3339 time (2026-11-29T10:00:00Z) or Unix seconds: {e}")
        })
}

/// One certificate, as listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateView {
    /// Short name.
    pub name: String,
    /// DNS names as stored and sent to the CA (A-labels for internationalized names).
    pub domains: Vec<String>,
    /// The same names as people read them (`bücher.example` for `xn--bcher-kva.example`), in
    /// the order of `domains`.
    #[serde(default)]
    pub domains_unicode: Vec<String>,
    /// Issuer name.
    pub issuer: String,
    /// Key kind (`ecdsa-p256`, ...).
    pub key: String,
    /// Challenge type.
    pub challenge: String,
    /// `acme` or `manual`.
    pub source: String,
    /// `pending`, `issuing`, `valid` or `failed`. A certificate whose current version no longer
    /// matches its declaration (names, key kind, issuer) is `pending` until the new version
    /// exists; `status_reason` says why.
    pub status: String,
    /// Why the status is what it is, when that is not obvious (the declaration changed).
    #[serde(default)]
    pub status_reason: Option<String>,
    /// Whether certfleet renews it by itself.
    pub auto_renew: bool,
    /// Current version number.
    pub version: Option<u32>,
    /// notAfter of the current version (RFC 3339).
    pub not_after: Option<String>,
    /// Whole days until notAfter (negative once expired).
    pub days_left: Option<i64>,
    /// Failed attempts since the last success.
    pub failure_streak: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Labels that select the agents receiving it.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Agents that verified the current version by handshake, out of those entitled to it.
    #[serde(default)]
    pub deployed: Deployed,
    /// Which solver proves which name (`default` and `rules`; empty: the challenge type's).
    #[serde(default)]
    pub solvers: certfleet_core::SolverRules,
    /// ACME profile (`null`: the issuer's default).
    #[serde(default)]
    pub profile: Option<String>,
    /// `renew_before` (`7d`, `30%`), `null`: the CA's ARI window or the lifetime rule.
    #[serde(default)]
    pub renew_before: Option<String>,
    /// When certfleet looks at it next: the planned renewal, a retry after a failure, or the
    /// next ARI check (RFC 3339); `null` while an attempt runs or for imported certificates.
    #[serde(default)]
    pub next_attempt: Option<String>,
    /// The CA asked (Retry-After) not to be sent requests for it before this time (RFC 3339).
    #[serde(default)]
    pub retry_after: Option<String>,
    /// The CA's suggested renewal window for the current version (RFC 9773), if offered.
    #[serde(default)]
    pub ari_window: Option<WindowView>,
    /// Whether an attempt is running now.
    #[serde(default)]
    pub in_progress: bool,
    /// The ACME order in flight, kept so a restart resumes it.
    #[serde(default)]
    pub order_url: Option<String>,
    /// When the current version was revoked (RFC 3339); certfleet replaces such a version at
    /// once when it renews the certificate.
    #[serde(default)]
    pub revoked_at: Option<String>,
}

/// `agents in sync / agents entitled` of one certificate.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployed {
    /// Live agent tokens whose last report shows the current serial verified by handshake.
    pub in_sync: u32,
    /// Live agent tokens whose selector matches the certificate's labels.
    pub entitled: u32,
}

/// A time window (RFC 3339 ends).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WindowView {
    /// Start.
    pub start: String,
    /// End.
    pub end: String,
}

impl CertificateView {
    /// Build from the model at time `now`.
    pub fn new(c: &Certificate, now: UnixTime) -> Self {
        Self {
            name: c.name.to_string(),
            domains: c.domains.iter().map(ToString::to_string).collect(),
            domains_unicode: c.domains.iter().map(|d| d.to_unicode()).collect(),
            issuer: c.issuer.clone(),
            key: c.key_kind.to_string(),
            challenge: c.challenge.to_string(),
            source: c.source.as_str().into(),
            status: shown_status(c, now).into(),
            status_reason: c
                .declaration_mismatch()
                .map(|m| format!("the current version does not match the declaration ({m})")),
            auto_renew: c.auto_renewable(),
            version: c.current_version,
            not_after: c.not_after.map(rfc3339),
            days_left: c.not_after.map(|t| days_left(t, now)),
            failure_streak: c.failure_streak,
            last_error: c.last_error.clone(),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            labels: c.labels.as_map().clone(),
            deployed: Deployed::default(),
            solvers: c.solvers.clone(),
            profile: c.profile.clone(),
            renew_before: c.renew_before.map(|r| r.to_string()),
            next_attempt: c.next_due.filter(|_| c.claim_owner.is_none()).map(rfc3339),
            retry_after: c.retry_after.filter(|t| *t > now).map(rfc3339),
            ari_window: c.ari_window.map(|w| WindowView {
                start: rfc3339(w.start),
                end: rfc3339(w.end),
            }),
            in_progress: c.claim_owner.is_some(),
            order_url: c.order_url.clone(),
            revoked_at: c.current_revoked_at.map(rfc3339),
        }
    }
}

/// The status people see: `valid` becomes `expired` once the current version's notAfter has
/// passed, and `pending` while the current version does not match the declaration.
fn shown_status(c: &Certificate, now: UnixTime) -> &'static str {
    match c.status {
        CertificateStatus::Valid if c.not_after.is_some_and(|t| t <= now) => "expired",
        CertificateStatus::Valid if c.declaration_mismatch().is_some() => "pending",
        other => other.as_str(),
    }
}

/// One certificate of a chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChainEntry {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, hex.
    pub serial: String,
    /// notAfter (RFC 3339).
    pub not_after: String,
}

/// One version of a certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionView {
    /// Version number.
    pub version: u32,
    /// Whether it is the current one.
    pub current: bool,
    /// Serial, hex.
    pub serial: String,
    /// notBefore (RFC 3339).
    pub not_before: String,
    /// notAfter (RFC 3339).
    pub not_after: String,
    /// Key kind.
    pub key: String,
    /// When it was stored (RFC 3339).
    pub issued_at: String,
    /// The version it replaced.
    pub replaces: Option<u32>,
    /// When it was revoked (RFC 3339).
    pub revoked_at: Option<String>,
    /// Why it was revoked (`keyCompromise`, ...), when certfleet revoked it.
    #[serde(default)]
    pub revocation_reason: Option<String>,
    /// Leaf first, then the intermediates.
    pub chain: Vec<ChainEntry>,
    /// The root the chain leads to: the issuer DN of its top certificate.
    pub root: Option<String>,
    /// The ACME order it came from.
    #[serde(default)]
    pub order_url: Option<String>,
}

impl VersionView {
    /// Build from the model; `chain` comes from parsing the stored PEM.
    pub fn new(v: &Version, current: Option<u32>, chain: Vec<ChainEntry>) -> Self {
        Self {
            version: v.seq,
            current: current == Some(v.seq),
            serial: v.serial.clone(),
            not_before: rfc3339(v.not_before),
            not_after: rfc3339(v.not_after),
            key: v.key_kind.to_string(),
            issued_at: rfc3339(v.issued_at),
            replaces: v.replaces,
            revoked_at: v.revoked_at.map(rfc3339),
            revocation_reason: v.revocation_reason.map(|r| r.to_string()),
            root: chain.last().map(|top| top.issuer.clone()),
            order_url: v.order_url.clone(),
            chain,
        }
    }
}

/// A certificate with its versions (`GET /api/v1/certificates/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateDetail {
    /// The certificate.
    #[serde(flatten)]
    pub certificate: CertificateView,
    /// Every version, oldest first.
    pub versions: Vec<VersionView>,
}

/// The files of the current version (`GET /api/v1/certificates/{name}/bundle`).
#[derive(Clone, Serialize, Deserialize)]
pub struct BundleView {
    /// Certificate name.
    pub name: String,
    /// DNS names.
    pub domains: Vec<String>,
    /// Version number.
    pub version: u32,
    /// Serial, hex.
    pub serial: String,
    /// The leaf (certbot's `cert.pem`).
    pub cert_pem: String,
    /// The intermediates (`chain.pem`).
    pub chain_pem: String,
    /// Leaf and intermediates (`fullchain.pem`).
    pub fullchain_pem: String,
    /// The private key (`privkey.pem`).
    pub key_pem: String,
    /// When this version was revoked at the CA (RFC 3339), if it was: clients that check
    /// revocation refuse it, and its key may be compromised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl std::fmt::Debug for BundleView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleView")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

/// An issuer and its account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IssuerView {
    /// Name.
    pub name: String,
    /// ACME directory URL.
    pub directory: String,
    /// The contacts the CA holds for the account (empty until registered).
    pub contacts: Vec<String>,
    /// The account URL, once registered.
    pub account_url: Option<String>,
    /// The contacts in the configuration; the account is brought in line at start-up.
    pub configured_contacts: Vec<String>,
    /// Preferred chain (issuer common name of the top certificate), if set.
    pub preferred_chain: Option<String>,
}

/// The body of `POST /api/v1/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AddCertificate {
    /// Short name.
    pub name: String,
    /// DNS names.
    pub domains: Vec<String>,
    /// Issuer (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Key kind (default `ecdsa-p256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Challenge type (default `http-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// Labels (`{"app": "www"}`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Solver for names no rule matches (a `[[solvers]]` name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver: Option<String>,
    /// Solver per identifier (`*.example.com`) or suffix (`.example.com`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub solvers: std::collections::BTreeMap<String, String>,
    /// ACME profile (default: the issuer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// When to renew: `7d`, `12h`, `30%` (default: the CA's ARI window or the lifetime rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<String>,
}

/// The body of `POST /api/v1/certificates/{name}/import`: PEM text of the files a person
/// brings. The private key never appears in `Debug` output.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ImportCertificate {
    /// The certificate (a full chain is accepted too).
    pub cert_pem: String,
    /// Its private key: PKCS#8, SEC1 or PKCS#1 PEM.
    pub key_pem: String,
    /// Intermediates, in any order.
    #[serde(default)]
    pub chain_pem: String,
    /// Roots to trust besides the server's system roots.
    #[serde(default)]
    pub ca_pem: String,
    /// Accept an expired certificate.
    #[serde(default)]
    pub allow_expired: bool,
    /// Put it under ACME management by this issuer at once (certbot imports); without it the
    /// certificate is `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

impl std::fmt::Debug for ImportCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportCertificate")
            .field("allow_expired", &self.allow_expired)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The body of `POST /api/v1/certificates/{name}/manage`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ManageCertificate {
    /// The configured issuer that renews it from now on.
    pub issuer: String,
}
