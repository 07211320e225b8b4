//! The TOML configuration file and the flags that stand in for it.
//!
//! The whole file is parsed and validated before anything starts; every error names the
//! field (`issuers.default.directory`, `certificates[2].domains[0]`). Without a file, the
//! flags of `certfleet server` describe one issuer called `default`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certfleet_core::policy::RenewBefore;
use certfleet_core::{CertName, ChallengeKind, DnsName, KeyKind};

pub use crate::validate::{CertificateRequest, validate_certificate};
use serde::Deserialize;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Name of the issuer the flags describe.
pub const DEFAULT_ISSUER: &str = "default";
/// Where the REST API listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8555";
/// Where the HTTP-01 responder listens by default (port 80 needs privileges; put a proxy or
/// a port forward in front, or run with `--http01-listen 0.0.0.0:80`).
pub const DEFAULT_HTTP01_LISTEN: &str = "127.0.0.1:8080";
/// Orders in flight at once, by default.
pub const DEFAULT_MAX_CONCURRENT_ORDERS: usize = 16;
/// Most names in one certificate (Let's Encrypt's limit).
pub const MAX_NAMES_PER_CERTIFICATE: usize = 100;
/// Default bound on one request to a CA.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default bound on waiting for an order.
pub const DEFAULT_ORDER_TIMEOUT_SECS: u64 = 120;
/// Default lifetime of a published HTTP-01 response.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;

/// A configuration error, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the field (or the file name for syntax errors).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// The config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`
    #[serde(default)]
    pub server: ServerSection,
    /// `[issuers.NAME]`
    #[serde(default)]
    pub issuers: BTreeMap<String, IssuerSection>,
    /// `[[solvers]]`
    #[serde(default)]
    pub solvers: Vec<SolverSection>,
    /// `[[certificates]]`
    #[serde(default)]
    pub certificates: Vec<CertificateSection>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// REST API address.
    pub listen: Option<String>,
    /// HTTP-01 responder address.
    pub http01_listen: Option<String>,
    /// Orders in flight at once.
    pub max_concurrent_orders: Option<usize>,
}

/// `[issuers.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    /// ACME directory URL.
    pub directory: String,
    /// Account contacts, `mailto:` URLs.
    #[serde(default)]
    pub contacts: Vec<String>,
    /// Extra PEM trust roots for the CA's HTTPS endpoint.
    #[serde(default)]
    pub ca_roots: Vec<PathBuf>,
    /// External account binding.
    pub eab: Option<EabSection>,
    /// Bound on one request, seconds.
    pub request_timeout_secs: Option<u64>,
    /// Bound on waiting for an order, seconds.
    pub order_timeout_secs: Option<u64>,
    /// Issuer common name of the top certificate of the preferred chain (RFC 8555 §7.4.2).
    pub preferred_chain: Option<String>,
    /// ACME profile for certificates that name none (checked against `meta.profiles`).
    pub profile: Option<String>,
}

/// `eab = { key_id = "...", hmac_key = "..." }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EabSection {
    /// Key identifier from the CA.
    pub key_id: String,
    /// HMAC key from the CA, base64url.
    pub hmac_key: String,
}

/// `[[solvers]]`, selected by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum SolverSection {
    /// The built-in HTTP-01 responder.
    #[serde(rename = "http-01")]
    Http01 {
        /// Lifetime of a published response, seconds.
        token_ttl_secs: Option<u64>,
    },
}

/// `[[certificates]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// Short name.
    pub name: String,
    /// DNS names.
    pub domains: Vec<String>,
    /// Issuer name (default `default`).
    pub issuer: Option<String>,
    /// Key kind.
    pub key: Option<String>,
    /// Challenge type.
    pub challenge: Option<String>,
    /// ACME profile.
    pub profile: Option<String>,
    /// When to renew: a duration before expiry (`7d`) or a share of the lifetime (`30%`).
    pub renew_before: Option<String>,
}

/// Flags of `certfleet server` that override or replace the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--listen`
    pub listen: Option<String>,
    /// `--http01-listen`
    pub http01_listen: Option<String>,
    /// `--directory`
    pub directory: Option<String>,
    /// `--ca-root`
    pub ca_roots: Vec<PathBuf>,
    /// `--contact`
    pub contacts: Vec<String>,
    /// `--max-concurrent-orders`
    pub max_concurrent_orders: Option<usize>,
    /// `--preferred-chain`
    pub preferred_chain: Option<String>,
}

/// A validated issuer.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// Name.
    pub name: String,
    /// Directory URL.
    pub directory: String,
    /// Contacts.
    pub contacts: Vec<String>,
    /// Extra roots.
    pub ca_roots: Vec<PathBuf>,
    /// EAB.
    pub eab: Option<EabSection>,
    /// Request timeout, seconds.
    pub request_timeout_secs: u64,
    /// Order timeout, seconds.
    pub order_timeout_secs: u64,
    /// Preferred chain (issuer CN of the top certificate).
    pub preferred_chain: Option<String>,
    /// Default ACME profile.
    pub profile: Option<String>,
}

/// A validated certificate declaration.
#[derive(Debug, Clone)]
pub struct CertificateSettings {
    /// Name.
    pub name: CertName,
    /// Names.
    pub domains: Vec<DnsName>,
    /// Issuer.
    pub issuer: String,
    /// Key kind.
    pub key: KeyKind,
    /// Challenge.
    pub challenge: ChallengeKind,
    /// ACME profile.
    pub profile: Option<String>,
    /// When to renew instead of the lifetime rule.
    pub renew_before: Option<RenewBefore>,
}

/// Everything the server needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// REST API address.
    pub listen: SocketAddr,
    /// HTTP-01 responder address.
    pub http01_listen: SocketAddr,
    /// Orders in flight at once.
    pub max_concurrent_orders: usize,
    /// Issuers by name.
    pub issuers: BTreeMap<String, IssuerSettings>,
    /// HTTP-01 token lifetime, seconds.
    pub token_ttl_secs: u64,
    /// Certificates declared in the file.
    pub certificates: Vec<CertificateSettings>,
}

/// Read and parse a config file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| err(&name, e.to_string()))?;
    toml::from_str(&text).map_err(|e| err(&name, e.to_string().trim_end().to_string()))
}

/// The default data directory: `$CERTFLEET_DATA_DIR`, else `/var/lib/certfleet` for root and
/// `~/.local/share/certfleet` for others.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CERTFLEET_DATA_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home {
        Some(home) if !is_root() => home.join(".local/share/certfleet"),
        _ => PathBuf::from("/var/lib/certfleet"),
    }
}

fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })
}

impl FileConfig {
    /// Merge the flags and validate everything.
    pub fn resolve(self, flags: Overrides) -> Result<Settings, ConfigError> {
        let listen = flags
            .listen
            .clone()
            .or(self.server.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let http01 = flags
            .http01_listen
            .clone()
            .or(self.server.http01_listen)
            .unwrap_or_else(|| DEFAULT_HTTP01_LISTEN.into());
        let max = flags
            .max_concurrent_orders
            .or(self.server.max_concurrent_orders)
            .unwrap_or(DEFAULT_MAX_CONCURRENT_ORDERS);
        if max == 0 {
            return Err(err("server.max_concurrent_orders", "must be at least 1"));
        }
        let issuers = resolve_issuers(self.issuers, &flags)?;
        let token_ttl_secs = resolve_solvers(&self.solvers)?;
        let certificates = self
            .certificates
            .iter()
            .enumerate()
            .map(|(i, c)| resolve_certificate(i, c, &issuers))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique_names(&certificates)?;
        Ok(Settings {
            data_dir: flags
                .data_dir
                .clone()
                .or(self.server.data_dir)
                .unwrap_or_else(default_data_dir),
            listen: parse_addr("server.listen", &listen)?,
            http01_listen: parse_addr("server.http01_listen", &http01)?,
            max_concurrent_orders: max,
            issuers,
            token_ttl_secs,
            certificates,
        })
    }
}

fn parse_addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        err(
            field,
            format!("{value:?} is not an address:port such as 127.0.0.1:8555 or [::1]:8555"),
        )
    })
}

fn resolve_issuers(
    mut issuers: BTreeMap<String, IssuerSection>,
    flags: &Overrides,
) -> Result<BTreeMap<String, IssuerSettings>, ConfigError> {
    let flags_given = flags.directory.is_some()
        || !flags.ca_roots.is_empty()
        || !flags.contacts.is_empty()
        || flags.preferred_chain.is_some();
    if flags_given || issuers.is_empty() {
        let entry = issuers
            .entry(DEFAULT_ISSUER.to_string())
            .or_insert_with(|| IssuerSection {
                directory: LETS_ENCRYPT_DIRECTORY.into(),
                contacts: Vec::new(),
                ca_roots: Vec::new(),
                eab: None,
                request_timeout_secs: None,
                order_timeout_secs: None,
                preferred_chain: None,
                profile: None,
            });
        if let Some(dir) = &flags.directory {
            entry.directory = dir.clone();
        }
        entry.ca_roots.extend(flags.ca_roots.iter().cloned());
        entry.contacts.extend(flags.contacts.iter().cloned());
        if let Some(chain) = &flags.preferred_chain {
            entry.preferred_chain = Some(chain.clone());
        }
    }
    issuers
        .into_iter()
        .map(|(name, section)| {
            let settings = resolve_issuer(&name, section)?;
            Ok((name, settings))
        })
        .collect()
}

fn resolve_issuer(name: &str, s: IssuerSection) -> Result<IssuerSettings, ConfigError> {
    let field = |f: &str| format!("issuers.{name}.{f}");
    if CertName::parse(name).is_err() {
        return Err(err(
            format!("issuers.{name}"),
            "issuer names use lowercase letters, digits, '-', '_' and '.'",
        ));
    }
    check_url(&field("directory"), &s.directory)?;
    for (i, contact) in s.contacts.iter().enumerate() {
        check_contact(&format!("{}[{i}]", field("contacts")), contact)?;
    }
    for (i, root) in s.ca_roots.iter().enumerate() {
        check_root_file(&format!("{}[{i}]", field("ca_roots")), root)?;
    }
    if let Some(eab) = &s.eab {
        if eab.key_id.trim().is_empty() {
            return Err(err(field("eab.key_id"), "must not be empty"));
        }
        let trimmed = eab.hmac_key.trim_end_matches('=');
        let ok = !trimmed.is_empty()
            && trimmed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(err(
                field("eab.hmac_key"),
                "must be the base64url key the CA gave you",
            ));
        }
    }
    if let Some(chain) = &s.preferred_chain
        && (chain.trim().is_empty() || chain.trim() != chain)
    {
        return Err(err(
            field("preferred_chain"),
            format!(
                "{chain:?} must be the issuer common name of the chain's top certificate, \
                 such as \"ISRG Root X1\", without surrounding spaces"
            ),
        ));
    }
    if let Some(profile) = &s.profile {
        crate::validate::check_profile_name(profile).map_err(|m| err(field("profile"), m))?;
    }
    let timeout = |f: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(err(field(f), "must be at least 1 second")),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    Ok(IssuerSettings {
        name: name.to_string(),
        request_timeout_secs: timeout(
            "request_timeout_secs",
            s.request_timeout_secs,
            DEFAULT_REQUEST_TIMEOUT_SECS,
        )?,
        order_timeout_secs: timeout(
            "order_timeout_secs",
            s.order_timeout_secs,
            DEFAULT_ORDER_TIMEOUT_SECS,
        )?,
        directory: s.directory,
        contacts: s.contacts,
        ca_roots: s.ca_roots,
        eab: s.eab,
        preferred_chain: s.preferred_chain,
        profile: s.profile,
    })
}

/// An ACME directory must be an https URL (RFC 8555 §6.1).
pub fn check_url(field: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        err(
            field,
            format!("{url:?} is not an https:// URL (ACME requires HTTPS)"),
        )
    })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        return Err(err(field, format!("{url:?} is not a valid URL")));
    }
    Ok(())
}

fn check_contact(field: &str, contact: &str) -> Result<(), ConfigError> {
    let Some(addr) = contact.strip_prefix("mailto:") else {
        return Err(err(
            field,
            format!("{contact:?} must be a mailto: URL, such as mailto:ops@example.com"),
        ));
    };
    let valid = addr
        .split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && DnsName::parse(domain).is_ok())
        && !addr.contains([',', ' ']);
    if valid {
        Ok(())
    } else {
        Err(err(
            field,
            format!("{addr:?} is not a single e-mail address"),
        ))
    }
}

fn check_root_file(field: &str, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(field, format!("{}: {e}", path.display())))?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(err(
            field,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(())
}

fn resolve_solvers(solvers: &[SolverSection]) -> Result<u64, ConfigError> {
    let mut ttl = DEFAULT_TOKEN_TTL_SECS;
    let mut seen = false;
    for (i, s) in solvers.iter().enumerate() {
        match s {
            SolverSection::Http01 { token_ttl_secs } => {
                if seen {
                    return Err(err(format!("solvers[{i}]"), "http-01 is configured twice"));
                }
                seen = true;
                match token_ttl_secs {
                    Some(0) => {
                        return Err(err(
                            format!("solvers[{i}].token_ttl_secs"),
                            "must be at least 1",
                        ));
                    }
                    Some(v) => ttl = *v,
                    None => {}
                }
            }
        }
    }
    Ok(ttl)
}

fn resolve_certificate(
    i: usize,
    c: &CertificateSection,
    issuers: &BTreeMap<String, IssuerSettings>,
) -> Result<CertificateSettings, ConfigError> {
    let req = CertificateRequest {
        name: &c.name,
        domains: &c.domains,
        issuer: c.issuer.as_deref(),
        key: c.key.as_deref(),
        challenge: c.challenge.as_deref(),
        profile: c.profile.as_deref(),
        renew_before: c.renew_before.as_deref(),
    };
    validate_certificate(&format!("certificates[{i}]."), &req, issuers)
}

fn check_unique_names(certs: &[CertificateSettings]) -> Result<(), ConfigError> {
    for (i, c) in certs.iter().enumerate() {
        if certs[..i].iter().any(|o| o.name == c.name) {
            return Err(err(
                format!("certificates[{i}].name"),
                format!("{:?} is declared twice", c.name.as_str()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Settings, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| err("file", e.to_string()))?;
        file.resolve(Overrides::default())
    }

    #[test]
    fn empty_config_uses_lets_encrypt() {
        let s = resolve("").unwrap();
        assert_eq!(s.issuers[DEFAULT_ISSUER].directory, LETS_ENCRYPT_DIRECTORY);
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            (
                "[issuers.le]\ndirectory = \"http://x\"",
                "issuers.le.directory",
            ),
            (
                "[issuers.le]\ndirectory = \"https://x/d\"\ncontacts = [\"ops@x.com\"]",
                "issuers.le.contacts[0]",
            ),
            (
                "[[certificates]]\nname = \"w\"\ndomains = [\"ok.example.com\", \"a..b\"]",
                "certificates[0].domains[1]",
            ),
            (
                "[[certificates]]\nname = \"w\"\ndomains = [\"*.example.com\"]",
                "certificates[0].domains[0]",
            ),
            (
                "[[certificates]]\nname = \"w\"\ndomains = [\"a.example.com\"]\nissuer = \"nope\"",
                "certificates[0].issuer",
            ),
            (
                "[[certificates]]\nname = \"w\"\ndomains = [\"a.example.com\"]\nkey = \"dsa\"",
                "certificates[0].key",
            ),
            (
                "[[certificates]]\nname = \"W W\"\ndomains = [\"a.example.com\"]",
                "certificates[0].name",
            ),
            (
                "[server]\nmax_concurrent_orders = 0",
                "server.max_concurrent_orders",
            ),
            (
                "[issuers.le]\ndirectory = \"https://x/d\"\npreferred_chain = \" \"",
                "issuers.le.preferred_chain",
            ),
            (
                "[issuers.le]\ndirectory = \"https://x/d\"\nprofile = \"short lived\"",
                "issuers.le.profile",
            ),
        ];
        for (text, field) in cases {
            let e = resolve(text).expect_err(text);
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<FileConfig>("[server]\nlisten_addr = \"x\"").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = toml::from_str::<FileConfig>("[[solvers]]\ntype = \"dns-99\"").unwrap_err();
        assert!(e.to_string().contains("dns-99"), "{e}");
    }
}
