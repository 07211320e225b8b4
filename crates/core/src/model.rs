//! The nouns of certfleet (DESIGN.md §3): [`Certificate`], [`Version`], accounts
//! ([`AccountRecord`]) and [`Event`]s, plus the small enums they are made of.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::challenge::ChallengeKind;
use crate::labels::Labels;
use crate::name::DnsName;
use crate::policy::{AriWindow, RenewBefore};
use crate::rules::SolverRules;
use crate::secret::Secret;
use crate::time::UnixTime;

/// Longest certificate name.
pub const MAX_CERT_NAME_LEN: usize = 64;

/// A certificate's short name (`www`, `api-eu`): lowercase letters, digits, `-`, `_`, `.`,
/// starting with a letter or digit; it appears in URLs and directory names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CertName(String);

/// Why a certificate name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "certificate name {0:?} is not valid: use 1 to {MAX_CERT_NAME_LEN} lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
)]
pub struct CertNameError(pub String);

impl CertName {
    /// Validate a certificate name.
    pub fn parse(input: &str) -> Result<Self, CertNameError> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
        let ok = !input.is_empty()
            && input.len() <= MAX_CERT_NAME_LEN
            && input.chars().all(ok_char)
            && input.starts_with(|c: char| c.is_ascii_alphanumeric());
        if ok {
            Ok(Self(input.to_string()))
        } else {
            Err(CertNameError(input.to_string()))
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for CertName {
    type Error = CertNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CertName> for String {
    fn from(value: CertName) -> Self {
        value.0
    }
}

/// The kind of private key a certificate version gets. A fresh key is made for every version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256 (the default: small, fast, accepted everywhere).
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    /// RSA with a 2048-bit modulus.
    #[serde(rename = "rsa2048")]
    Rsa2048,
    /// RSA with a 3072-bit modulus.
    #[serde(rename = "rsa3072")]
    Rsa3072,
    /// RSA with a 4096-bit modulus.
    #[serde(rename = "rsa4096")]
    Rsa4096,
}

impl KeyKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [KeyKind; 5] = [
        KeyKind::EcdsaP256,
        KeyKind::EcdsaP384,
        KeyKind::Rsa2048,
        KeyKind::Rsa3072,
        KeyKind::Rsa4096,
    ];

    /// The name used in config, CLI and API.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ecdsa-p256",
            KeyKind::EcdsaP384 => "ecdsa-p384",
            KeyKind::Rsa2048 => "rsa2048",
            KeyKind::Rsa3072 => "rsa3072",
            KeyKind::Rsa4096 => "rsa4096",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown key kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key kind {0:?}; choose one of ecdsa-p256, ecdsa-p384, rsa2048, rsa3072, rsa4096")]
pub struct KeyKindError(pub String);

impl FromStr for KeyKind {
    type Err = KeyKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| KeyKindError(s.to_string()))
    }
}

/// The issuer name recorded for certificates and versions that were imported rather than
/// issued by a configured issuer.
pub const MANUAL_ISSUER: &str = "manual";

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Issued and renewed over ACME by certfleet.
    #[default]
    Acme,
    /// Imported by a person; certfleet watches it but cannot renew it.
    Manual,
}

impl Source {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Acme => "acme",
            Source::Manual => "manual",
        }
    }
}

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateStatus {
    /// Declared, no issuance attempted yet.
    Pending,
    /// An order is in flight.
    Issuing,
    /// The current version was issued successfully.
    Valid,
    /// The last attempt failed (see `last_error`); an older version may still be current.
    Failed,
}

impl CertificateStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Pending => "pending",
            CertificateStatus::Issuing => "issuing",
            CertificateStatus::Valid => "valid",
            CertificateStatus::Failed => "failed",
        }
    }

    /// Whether no more work is in flight.
    pub fn is_settled(self) -> bool {
        matches!(self, CertificateStatus::Valid | CertificateStatus::Failed)
    }
}

impl FromStr for CertificateStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => CertificateStatus::Pending,
            "issuing" => CertificateStatus::Issuing,
            "valid" => CertificateStatus::Valid,
            "failed" => CertificateStatus::Failed,
            other => return Err(format!("unknown certificate status {other:?}")),
        })
    }
}

/// What a caller asks for when declaring a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    /// Short name.
    pub name: CertName,
    /// DNS names, the first becomes nothing special (no CN is requested).
    pub domains: Vec<DnsName>,
    /// Name of the issuer (from config, `default` without one).
    pub issuer: String,
    /// Key kind for every version.
    pub key_kind: KeyKind,
    /// How identifiers are proven.
    pub challenge: ChallengeKind,
    /// `acme` or `manual`.
    pub source: Source,
    /// Which solver proves which name (empty: the challenge type's solver for all).
    pub solvers: SolverRules,
    /// ACME profile to order with (`shortlived`, `tlsserver`); `None`: the issuer's default.
    pub profile: Option<String>,
    /// When to renew instead of the lifetime rule.
    pub renew_before: Option<RenewBefore>,
}

/// A managed certificate (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Random, stable identifier; binds sealed keys to this certificate.
    pub id: String,
    /// Short name.
    pub name: CertName,
    /// DNS names, in the order given.
    pub domains: Vec<DnsName>,
    /// Issuer name.
    pub issuer: String,
    /// Key kind.
    pub key_kind: KeyKind,
    /// Challenge used to prove control.
    pub challenge: ChallengeKind,
    /// `acme` or `manual`.
    pub source: Source,
    /// Current status.
    pub status: CertificateStatus,
    /// Sequence number of the current version.
    pub current_version: Option<u32>,
    /// notAfter of the current version.
    pub not_after: Option<UnixTime>,
    /// Failed attempts since the last success.
    pub failure_streak: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When the scheduler should look at it next (set by the renewal scheduler).
    pub next_due: Option<UnixTime>,
    /// URL of an ACME order in flight, kept so a restart can resume instead of re-ordering.
    pub order_url: Option<String>,
    /// Creation time.
    pub created_at: UnixTime,
    /// Last change.
    pub updated_at: UnixTime,
    /// What the current version was issued for, to tell whether it still matches the
    /// declaration (`None` without a current version).
    pub current: Option<IssuedFor>,
    /// Labels (`app=www`) that select the agents which receive it.
    #[serde(default)]
    pub labels: Labels,
    /// Which solver proves which name (empty: the challenge type's solver for all).
    #[serde(default)]
    pub solvers: SolverRules,
    /// ACME profile to order with; `None`: the issuer's default.
    pub profile: Option<String>,
    /// When to renew instead of the lifetime rule.
    pub renew_before: Option<RenewBefore>,
    /// The CA asked (Retry-After) not to be sent a request for this certificate before then.
    pub retry_after: Option<UnixTime>,
    /// notBefore of the current version.
    pub not_before: Option<UnixTime>,
    /// The CA's ARI window for the current version (RFC 9773), when it offered one.
    pub ari_window: Option<AriWindow>,
    /// When to ask the CA for the ARI window again.
    pub ari_fetch_at: Option<UnixTime>,
    /// Who is working on it (a scheduler or API request of one server process).
    pub claim_owner: Option<String>,
    /// Until when the claim holds; past it, another owner may take the certificate over.
    pub claim_until: Option<UnixTime>,
    /// When the current version was revoked (RFC 8555 §7.6); such a version is renewed at once.
    #[serde(default)]
    pub current_revoked_at: Option<UnixTime>,
}

/// What a version was issued for: its names, issuer and key kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedFor {
    /// The DNS names in the certificate.
    pub domains: Vec<DnsName>,
    /// The issuer that issued it.
    pub issuer: String,
    /// Its key kind.
    pub key_kind: KeyKind,
}

impl Certificate {
    /// Whether certfleet can renew this certificate without a person.
    pub fn auto_renewable(&self) -> bool {
        self.source == Source::Acme
    }

    /// How the current version differs from the declaration (names compared as sets), in
    /// words: `names added: b.example; key ecdsa-p256 → rsa2048`. `None` when it matches or
    /// there is no current version.
    pub fn declaration_mismatch(&self) -> Option<String> {
        let current = self.current.as_ref()?;
        let mut parts = Vec::new();
        let added: Vec<&str> = self
            .domains
            .iter()
            .filter(|d| !current.domains.contains(d))
            .map(DnsName::as_str)
            .collect();
        let removed: Vec<&str> = current
            .domains
            .iter()
            .filter(|d| !self.domains.contains(d))
            .map(DnsName::as_str)
            .collect();
        if !added.is_empty() {
            parts.push(format!("names added: {}", added.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("names removed: {}", removed.join(", ")));
        }
        if current.key_kind != self.key_kind {
            parts.push(format!("key {} → {}", current.key_kind, self.key_kind));
        }
        // An imported version put under ACME management stays good until its renewal: the
        // issuer it came from is not a difference to act on.
        if current.issuer != self.issuer && current.issuer != MANUAL_ISSUER {
            parts.push(format!("issuer {} → {}", current.issuer, self.issuer));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The current version's validity, once there is one.
    pub fn lifetime(&self) -> Option<crate::policy::Lifetime> {
        Some(crate::policy::Lifetime {
            not_before: self.not_before?,
            not_after: self.not_after?,
        })
    }
}

/// A freshly issued (or imported) certificate, about to become a [`Version`].
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// notBefore.
    pub not_before: UnixTime,
    /// notAfter.
    pub not_after: UnixTime,
    /// The leaf certificate, PEM.
    pub leaf_pem: String,
    /// Intermediates, PEM, leaf-to-root order (may be empty).
    pub chain_pem: String,
    /// Kind of the private key.
    pub key_kind: KeyKind,
    /// The private key, PKCS#8 PEM; sealed by the store.
    pub key_pem: Secret,
    /// The ACME order that produced it.
    pub order_url: Option<String>,
    /// The names it was ordered for (the leaf's subjectAltNames).
    pub domains: Vec<DnsName>,
    /// The issuer that issued it.
    pub issuer: String,
}

/// certfleet's form of a serial number (RFC 5280 §4.1.2.2): the DER integer's content bytes in
/// lowercase hex, leading zero bytes dropped (`[0x00, 0x0a, 0xbc]` → `"0abc"`; zero → `"00"`).
/// The server and every agent compare serials in this form, so there is one definition.
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].iter().map(|b| format!("{b:02x}")).collect()
}

/// One issued certificate of a [`Certificate`] (its key is fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Sequence number within the certificate, from 1.
    pub seq: u32,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// notBefore.
    pub not_before: UnixTime,
    /// notAfter.
    pub not_after: UnixTime,
    /// Leaf PEM.
    pub leaf_pem: String,
    /// Chain PEM.
    pub chain_pem: String,
    /// Key kind.
    pub key_kind: KeyKind,
    /// When it was stored.
    pub issued_at: UnixTime,
    /// The ACME order URL.
    pub order_url: Option<String>,
    /// The version it replaced.
    pub replaces: Option<u32>,
    /// When it was revoked.
    pub revoked_at: Option<UnixTime>,
    /// Why it was revoked (RFC 5280 §5.3.1), when certfleet revoked it.
    #[serde(default)]
    pub revocation_reason: Option<crate::revocation::RevocationReason>,
}

/// An ACME account of one issuer at one directory; the credentials are sealed by the store.
#[derive(Debug, Clone)]
pub struct AccountRecord {
    /// Issuer name.
    pub issuer: String,
    /// ACME directory URL.
    pub directory_url: String,
    /// The account URL the CA assigned (RFC 8555 §7.3).
    pub account_url: String,
    /// Serialized credentials including the account key.
    pub credentials: Secret,
    /// Creation time.
    pub created_at: UnixTime,
    /// The contacts the CA confirmed for the account (RFC 8555 §7.3.2), `mailto:` URLs.
    pub contacts: Vec<String>,
}

/// What happened (append-only audit log that later feeds notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A certificate was declared.
    Created,
    /// An order was started.
    IssuanceStarted,
    /// A new version was stored.
    Issued,
    /// An attempt failed.
    Failed,
    /// A certificate was removed.
    Deleted,
    /// An ACME account was registered.
    AccountCreated,
    /// A certificate's declaration (names, key kind, issuer, challenge) changed.
    Changed,
    /// An order in flight was cancelled (the certificate was removed).
    Cancelled,
    /// A new version replaced a current one (`details`: version, serial, not_after).
    Renewed,
    /// An attempt to replace a current version failed (`details`: failure_streak and, once
    /// the scheduler sets it, next_attempt); the current version is still served.
    RenewalFailed,
    /// The current version crossed an expiry threshold (`details`: threshold, not_after).
    Expiring,
    /// A version was imported (`certfleet cert import`, `import-certbot`).
    Imported,
    /// A version was revoked at the CA (RFC 8555 §7.6).
    Revoked,
    /// An ACME account was updated at the CA (contacts, key rollover; RFC 8555 §7.3).
    AccountUpdated,
    /// An agent verified by TLS handshake that the current version is served.
    Deployed,
    /// An agent could not deploy a version (check, reload or verification failed).
    DeployFailed,
    /// An agent's endpoint serves another certificate than the one deployed.
    ServedMismatch,
    /// A certificate's labels changed.
    LabelsChanged,
    /// An API token was created.
    TokenCreated,
    /// An API token was revoked.
    TokenRevoked,
    /// The CA no longer knew the stored account (`accountDoesNotExist`); a new one was
    /// registered with the same settings.
    AccountReregistered,
    /// The CA is still working on an order; it is left there and resumed later.
    OrderPending,
    /// An order in flight was given up (its URL is in the message).
    OrderAbandoned,
    /// A renewal setting could not be applied (say, `renew_before` longer than the lifetime).
    PolicyWarning,
}

impl EventKind {
    /// Every kind, in the order they were added.
    pub const ALL: [EventKind; 24] = [
        EventKind::Created,
        EventKind::IssuanceStarted,
        EventKind::Issued,
        EventKind::Failed,
        EventKind::Deleted,
        EventKind::AccountCreated,
        EventKind::Changed,
        EventKind::Cancelled,
        EventKind::Renewed,
        EventKind::RenewalFailed,
        EventKind::Expiring,
        EventKind::Imported,
        EventKind::Revoked,
        EventKind::AccountUpdated,
        EventKind::Deployed,
        EventKind::DeployFailed,
        EventKind::ServedMismatch,
        EventKind::LabelsChanged,
        EventKind::TokenCreated,
        EventKind::TokenRevoked,
        EventKind::AccountReregistered,
        EventKind::OrderPending,
        EventKind::OrderAbandoned,
        EventKind::PolicyWarning,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::IssuanceStarted => "issuance_started",
            EventKind::Issued => "issued",
            EventKind::Failed => "failed",
            EventKind::Deleted => "deleted",
            EventKind::AccountCreated => "account_created",
            EventKind::Changed => "changed",
            EventKind::Cancelled => "cancelled",
            EventKind::Renewed => "renewed",
            EventKind::RenewalFailed => "renewal_failed",
            EventKind::Expiring => "expiring",
            EventKind::Imported => "imported",
            EventKind::Revoked => "revoked",
            EventKind::AccountUpdated => "account_updated",
            EventKind::Deployed => "deployed",
            EventKind::DeployFailed => "deploy_failed",
            EventKind::ServedMismatch => "served_mismatch",
            EventKind::LabelsChanged => "labels_changed",
            EventKind::TokenCreated => "token_created",
            EventKind::TokenRevoked => "token_revoked",
            EventKind::AccountReregistered => "account_reregistered",
            EventKind::OrderPending => "order_pending",
            EventKind::OrderAbandoned => "order_abandoned",
            EventKind::PolicyWarning => "policy_warning",
        }
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown event kind {s:?}; known kinds: {}",
                    known.join(", ")
                )
            })
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic id.
    pub id: i64,
    /// When.
    pub at: UnixTime,
    /// Certificate name, if about one.
    pub certificate: Option<String>,
    /// What.
    pub kind: EventKind,
    /// Human-readable detail.
    pub message: String,
    /// Structured detail (version, serial, streak, threshold, ...), for notifications and
    /// scripts; empty for the kinds that carry none.
    #[serde(default)]
    pub details: crate::event::EventDetails,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_lowercase_hex_without_leading_zero_bytes() {
        assert_eq!(serial_hex(&[0, 0x0a, 0xbc]), "0abc");
        assert_eq!(serial_hex(&[0]), "00");
        assert_eq!(serial_hex(&[0xff, 0x01]), "ff01");
    }

    #[test]
    fn cert_names() {
        assert!(CertName::parse("www").is_ok());
        assert!(CertName::parse("api-eu.v2_x").is_ok());
        for bad in ["", "-x", "Www", "a/b", "a b", &"a".repeat(65)] {
            assert!(CertName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn declaration_mismatch_compares_names_as_sets() {
        let names = |list: &[&str]| -> Vec<DnsName> {
            list.iter().map(|n| DnsName::parse(n).unwrap()).collect()
        };
        let mut cert = Certificate {
            id: "id".into(),
            name: CertName::parse("www").unwrap(),
            domains: names(&["a.example.test", "b.example.test"]),
            issuer: "default".into(),
            key_kind: KeyKind::EcdsaP256,
            challenge: ChallengeKind::Http01,
            source: Source::Acme,
            status: CertificateStatus::Valid,
            current_version: Some(1),
            not_after: Some(0),
            failure_streak: 0,
            last_error: None,
            next_due: None,
            order_url: None,
            created_at: 0,
            updated_at: 0,
            current: Some(IssuedFor {
                domains: names(&["b.example.test", "a.example.test"]),
                issuer: "default".into(),
                key_kind: KeyKind::EcdsaP256,
            }),
            labels: Labels::new(),
            solvers: SolverRules::default(),
            profile: None,
            renew_before: None,
            retry_after: None,
            not_before: None,
            ari_window: None,
            ari_fetch_at: None,
            claim_owner: None,
            claim_until: None,
            current_revoked_at: None,
        };
        assert_eq!(cert.declaration_mismatch(), None, "order does not matter");
        cert.domains.push(DnsName::parse("c.example.test").unwrap());
        cert.domains.remove(0);
        cert.key_kind = KeyKind::Rsa2048;
        assert_eq!(
            cert.declaration_mismatch().unwrap(),
            "names added: c.example.test; names removed: a.example.test; key ecdsa-p256 → rsa2048"
        );
        cert.current = None;
        assert_eq!(cert.declaration_mismatch(), None);
    }

    #[test]
    fn key_kinds_round_trip() {
        for k in KeyKind::ALL {
            assert_eq!(k.as_str().parse::<KeyKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("rsa1024".parse::<KeyKind>().is_err());
    }
}
