//! The TOML configuration file and the flags that stand in for it.
//!
//! The whole file is parsed and validated before anything starts; every error names the
//! field (`issuers.default.directory`, `certificates[2].domains[0]`). Without a file, the
//! flags of `certfleet server` describe one issuer called `default`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certfleet_core::policy::RenewBefore;
use certfleet_core::{CertName, ChallengeKind, DnsName, KeyKind, Labels, SolverRules};

use crate::solvers::SolverPlan;
pub use crate::solvers::SolverSection;
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
/// Default bound on waiting for every entitled agent to confirm an HTTP-01 response.
pub const DEFAULT_HTTP01_CONFIRM_TIMEOUT_SECS: u64 = 60;

/// A configuration error, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Dotted path of the field (or the file name for syntax errors).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Every error found in one configuration, in the order found (at least one).
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} errors:", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Collects errors so that one run reports all of them.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<ConfigError>);

impl Errors {
    /// Keep `result`'s value, or remember its error and return `None`.
    pub(crate) fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// Keep every error of a result that carries several.
    pub(crate) fn check_all<T>(&mut self, result: Result<T, ConfigErrors>) -> Option<T> {
        result.map_err(|e| self.0.extend(e.0)).ok()
    }

    /// `Ok(value)` when nothing was found, else every error.
    pub(crate) fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ConfigErrors(self.0))
        }
    }
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
    /// `[[notifiers]]` (webhook, smtp), see `certfleet_notify::config`.
    #[serde(default)]
    pub notifiers: Vec<certfleet_notify::NotifierSection>,
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
    /// Days before notAfter at which an `expiring` event is recorded (default 14, 7, 3, 1).
    pub expiry_alert_days: Option<Vec<u32>>,
    /// Address of the REST API over TLS, for agents and CLIs elsewhere.
    pub tls_listen: Option<String>,
    /// PEM chain for the TLS listener (default: the internal CA's certificate).
    pub tls_cert: Option<PathBuf>,
    /// PEM key for the TLS listener.
    pub tls_key: Option<PathBuf>,
    /// Extra names of the internal CA's certificate (DNS names or IP addresses).
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// How long HTTP-01 waits for every entitled agent to confirm, seconds.
    pub http01_confirm_timeout_secs: Option<u64>,
    /// TLS-ALPN-01 responder address (none: no TLS-ALPN-01).
    pub tls_alpn01_listen: Option<String>,
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

/// `eab = { key_id = "...", hmac_key = "..." }`; `Debug` never shows the HMAC key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EabSection {
    /// Key identifier from the CA.
    pub key_id: String,
    /// HMAC key from the CA, base64url.
    pub hmac_key: String,
}

impl std::fmt::Debug for EabSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EabSection")
            .field("key_id", &self.key_id)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
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
    /// Labels that select the agents receiving it (`{ app = "www" }`).
    pub labels: Option<BTreeMap<String, String>>,
    /// Solver for names no rule in `solvers` matches.
    pub solver: Option<String>,
    /// Solver per identifier (`*.example.com`) or suffix (`.example.com`).
    #[serde(default)]
    pub solvers: BTreeMap<String, String>,
    /// ACME profile.
    pub profile: Option<String>,
    /// When to renew: a duration before expiry (`7d`) or a share of the lifetime (`30%`).
    pub renew_before: Option<String>,
    /// `certfleet run --once`: the directory the files are written to.
    pub dir: Option<PathBuf>,
    /// `run --once`: program and arguments run after the files changed.
    pub deploy: Option<Vec<String>>,
    /// `run --once`: bound on the deploy command, seconds.
    pub deploy_timeout_secs: Option<u64>,
    /// `run --once`: owner of the files (user name or uid).
    pub owner: Option<String>,
    /// `run --once`: group of the files (name or gid).
    pub group: Option<String>,
    /// `run --once`: mode of the files without the key (octal).
    pub mode: Option<String>,
    /// `run --once`: mode of the files with the key (octal).
    pub key_mode: Option<String>,
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
    /// `--tls-listen`
    pub tls_listen: Option<String>,
    /// `--tls-cert`
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`
    pub tls_key: Option<PathBuf>,
    /// `--tls-name`
    pub tls_names: Vec<String>,
    /// `--http01-confirm-timeout`
    pub http01_confirm_timeout_secs: Option<u64>,
    /// `--tls-alpn-listen`
    pub tls_alpn_listen: Option<String>,
    /// `--preferred-chain`
    pub preferred_chain: Option<String>,
}

impl Overrides {
    /// Whether the flags describe the issuer named `default` (which they then create).
    pub fn declare_default_issuer(&self) -> bool {
        self.directory.is_some()
            || !self.ca_roots.is_empty()
            || !self.contacts.is_empty()
            || self.preferred_chain.is_some()
    }
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
    /// Labels, when the declaration sets them.
    pub labels: Option<Labels>,
    /// Which solver proves which name.
    pub solvers: SolverRules,
    /// ACME profile.
    pub profile: Option<String>,
    /// When to renew instead of the lifetime rule.
    pub renew_before: Option<RenewBefore>,
    /// Where `certfleet run --once` writes the files and what it runs then (`dir`, `deploy`).
    pub local: Option<crate::standalone::LocalDeploy>,
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
    /// The config file these settings came from, if any (set by the caller that read it).
    pub config_file: Option<PathBuf>,
    /// Notifiers, validated (built at start).
    pub notifiers: Vec<certfleet_notify::NotifierSection>,
    /// Days before notAfter at which an `expiring` event is recorded.
    pub expiry_alert_days: Vec<u32>,
    /// The REST API over TLS.
    pub tls_listen: Option<SocketAddr>,
    /// Its certificate.
    pub tls: crate::tls::TlsSettings,
    /// How long HTTP-01 waits for every entitled agent to confirm.
    pub http01_confirm_timeout_secs: u64,
    /// TLS-ALPN-01 responder address.
    pub tls_alpn01_listen: Option<SocketAddr>,
    /// Every solver, validated, by name.
    pub solvers: BTreeMap<String, SolverPlan>,
}

impl Settings {
    /// Challenge types by solver name.
    pub fn solver_kinds(&self) -> BTreeMap<String, ChallengeKind> {
        crate::solvers::kinds(&self.solvers)
    }
}

/// Read and parse a config file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| err(&name, e.to_string()))?;
    certfleet_core::text::parse_toml(&text).map_err(|e| err(&name, e))
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
    /// Merge the flags and validate everything; every error is reported, each naming the
    /// field as the user wrote it (`--listen` for a flag, `server.listen` in the file).
    pub fn resolve(self, flags: Overrides) -> Result<Settings, ConfigErrors> {
        let mut errors = Errors::default();
        let listen = match &flags.listen {
            Some(v) => errors.check(parse_addr("--listen", v)),
            None => errors.check(parse_addr(
                "server.listen",
                self.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
            )),
        };
        let http01_listen = match &flags.http01_listen {
            Some(v) => errors.check(parse_addr("--http01-listen", v)),
            None => errors.check(parse_addr(
                "server.http01_listen",
                self.server
                    .http01_listen
                    .as_deref()
                    .unwrap_or(DEFAULT_HTTP01_LISTEN),
            )),
        };
        let max = match (
            flags.max_concurrent_orders,
            self.server.max_concurrent_orders,
        ) {
            (Some(v), _) => ("--max-concurrent-orders", v),
            (None, Some(v)) => ("server.max_concurrent_orders", v),
            (None, None) => ("", DEFAULT_MAX_CONCURRENT_ORDERS),
        };
        if max.1 == 0 {
            errors.check::<()>(Err(err(max.0, "must be at least 1")));
        }
        // Issuers the settings declare (the flags' `default` among them): a certificate naming
        // one that failed to resolve was reported with the issuer and is not told it is unknown.
        let mut declared_issuers: Vec<String> = self.issuers.keys().cloned().collect();
        if self.issuers.is_empty() || flags.declare_default_issuer() {
            declared_issuers.push(DEFAULT_ISSUER.to_string());
        }
        let issuers = errors
            .check_all(resolve_issuers(self.issuers, &flags))
            .unwrap_or_default();
        let tls_alpn = match (&flags.tls_alpn_listen, &self.server.tls_alpn01_listen) {
            (Some(a), _) => errors.check(parse_addr("--tls-alpn-listen", a)),
            (None, Some(a)) => errors.check(parse_addr("server.tls_alpn01_listen", a)),
            (None, None) => None,
        };
        let tls_alpn_requested =
            flags.tls_alpn_listen.is_some() || self.server.tls_alpn01_listen.is_some();
        let (solvers, solver_errors) = crate::solvers::resolve(&self.solvers, tls_alpn_requested);
        let solver_errors_found = !solver_errors.is_empty();
        for e in solver_errors {
            errors.check::<()>(Err(e));
        }
        let token_ttl_secs = match solvers.get(crate::solvers::HTTP01) {
            Some(SolverPlan::Http01(p)) => p.token_ttl.as_secs(),
            _ => DEFAULT_TOKEN_TTL_SECS,
        };
        // Certificates are checked against every declared solver, valid or not: a section
        // with an error was reported above, and naming it is no second error.
        let mut kinds = crate::solvers::kinds(&solvers);
        if solver_errors_found {
            kinds.extend(
                self.solvers
                    .iter()
                    .filter_map(crate::solvers::declared_kind),
            );
        }
        let certificates: Vec<CertificateSettings> = self
            .certificates
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let result = resolve_certificate(i, c, &issuers, &kinds).map_err(|mut e| {
                    // An issuer that is declared but invalid was reported already.
                    let issuer = c.issuer.as_deref().unwrap_or(DEFAULT_ISSUER);
                    if declared_issuers.iter().any(|d| d == issuer) && !issuers.contains_key(issuer)
                    {
                        e.0.retain(|e| !e.field.ends_with("].issuer"));
                    }
                    // An unknown one is told every declared issuer, valid or not.
                    for found in e.0.iter_mut().filter(|e| e.field.ends_with("].issuer")) {
                        found.message =
                            crate::validate::unknown_issuer(issuer, declared_issuers.iter());
                    }
                    e
                });
                match result {
                    Err(ConfigErrors(e)) if e.is_empty() => None,
                    other => errors.check_all(other),
                }
            })
            .collect();
        errors.check_all(check_unique_names(&self.certificates));
        if let Err(found) = certfleet_notify::config::validate(&self.notifiers) {
            for e in found {
                errors.check::<()>(Err(match e {
                    certfleet_notify::NotifyError::Config { field, message } => err(field, message),
                    other => err("notifiers", other.to_string()),
                }));
            }
        }
        let notifiers = self.notifiers;
        let expiry_alert_days = errors
            .check_all(check_alert_days(self.server.expiry_alert_days))
            .unwrap_or_default();
        if let Some(addr) = listen
            && !addr.ip().is_loopback()
        {
            let field = if flags.listen.is_some() {
                "--listen"
            } else {
                "server.listen"
            };
            errors.check::<()>(Err(err(
                field,
                format!(
                    "{addr} is not a loopback address; plain HTTP is allowed on loopback only. Serve agents and remote CLIs with --tls-listen (server.tls_listen)"
                ),
            )));
        }
        let tls_listen = match (&flags.tls_listen, &self.server.tls_listen) {
            (Some(a), _) => errors.check(parse_addr("--tls-listen", a)),
            (None, Some(a)) => errors.check(parse_addr("server.tls_listen", a)),
            (None, None) => None,
        };
        let tls_requested = flags.tls_listen.is_some() || self.server.tls_listen.is_some();
        let tls = crate::tls::TlsSettings {
            cert: flags.tls_cert.clone().or(self.server.tls_cert),
            key: flags.tls_key.clone().or(self.server.tls_key),
            names: [flags.tls_names.clone(), self.server.tls_names].concat(),
        };
        let tls_from_flags = flags.tls_cert.is_some()
            || flags.tls_key.is_some()
            || !flags.tls_names.is_empty()
            || flags.tls_listen.is_some();
        errors.check_all(check_tls(tls_requested, &tls, tls_from_flags));
        let confirm = flags
            .http01_confirm_timeout_secs
            .or(self.server.http01_confirm_timeout_secs)
            .unwrap_or(DEFAULT_HTTP01_CONFIRM_TIMEOUT_SECS);
        if confirm == 0 {
            let field = if flags.http01_confirm_timeout_secs.is_some() {
                "--http01-confirm-timeout"
            } else {
                "server.http01_confirm_timeout_secs"
            };
            errors.check::<()>(Err(err(field, "must be at least 1 second")));
        }
        if let (Some(flag), Some(file)) = (&flags.data_dir, &self.server.data_dir)
            && flag != file
        {
            // The flag (or CERTFLEET_DATA_DIR, which sets it) wins; say so, since the two
            // directories hold different stores, keys and accounts.
            tracing::warn!(
                used = %flag.display(),
                ignored = %file.display(),
                "--data-dir (or CERTFLEET_DATA_DIR) overrides [server] data_dir of the config file"
            );
        }
        let data_dir = flags
            .data_dir
            .clone()
            .or(self.server.data_dir)
            .unwrap_or_else(default_data_dir);
        errors.finish(|| Settings {
            data_dir,
            listen: listen.expect("checked"),
            http01_listen: http01_listen.expect("checked"),
            max_concurrent_orders: max.1,
            issuers,
            token_ttl_secs,
            certificates,
            config_file: None,
            notifiers,
            expiry_alert_days,
            tls_listen,
            tls,
            http01_confirm_timeout_secs: confirm,
            tls_alpn01_listen: tls_alpn,
            solvers,
        })
    }
}

/// Check the TLS listener's settings; `flags` says whether they came from the command line
/// (errors then name `--tls-cert`, ... rather than `server.tls_cert`). Every error is returned.
fn check_tls(
    listening: bool,
    tls: &crate::tls::TlsSettings,
    flags: bool,
) -> Result<(), ConfigErrors> {
    let name = |flag: &str, field: &str| {
        if flags {
            flag.to_string()
        } else {
            format!("server.{field}")
        }
    };
    let mut errors = Errors::default();
    match (&tls.cert, &tls.key) {
        (Some(_), None) => errors.check::<()>(Err(err(
            name("--tls-key", "tls_key"),
            "missing: a TLS certificate needs its key (--tls-key, server.tls_key)",
        ))),
        (None, Some(_)) => errors.check::<()>(Err(err(
            name("--tls-cert", "tls_cert"),
            "missing: a TLS key needs its certificate (--tls-cert, server.tls_cert)",
        ))),
        _ => None,
    };
    if !listening && (tls.cert.is_some() || !tls.names.is_empty()) {
        errors.check::<()>(Err(err(
            name("--tls-listen", "tls_listen"),
            "missing: --tls-cert and --tls-name need --tls-listen ADDR (the TLS listener's address)",
        )));
    }
    for name in &tls.names {
        let ok = name.parse::<std::net::IpAddr>().is_ok()
            || DnsName::parse(name).is_ok()
            || (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !ok {
            errors.check::<()>(Err(err(
                if flags {
                    "--tls-name"
                } else {
                    "server.tls_names"
                },
                format!("{name:?} is neither a DNS name nor an IP address"),
            )));
        }
    }
    errors.finish(|| ())
}

fn parse_addr(field: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        err(
            field,
            format!("{value:?} is not an address:port such as 127.0.0.1:8555 or [::1]:8555"),
        )
    })
}

/// Where the values of an issuer came from, so errors name a flag or a file field.
struct FieldNames {
    directory: String,
    contacts: Vec<String>,
    ca_roots: Vec<String>,
}

impl FieldNames {
    fn file(name: &str, s: &IssuerSection) -> Self {
        let indexed =
            |f: &str, n: usize| (0..n).map(|i| format!("issuers.{name}.{f}[{i}]")).collect();
        Self {
            directory: format!("issuers.{name}.directory"),
            contacts: indexed("contacts", s.contacts.len()),
            ca_roots: indexed("ca_roots", s.ca_roots.len()),
        }
    }
}

fn resolve_issuers(
    mut issuers: BTreeMap<String, IssuerSection>,
    flags: &Overrides,
) -> Result<BTreeMap<String, IssuerSettings>, ConfigErrors> {
    let mut names: BTreeMap<String, FieldNames> = issuers
        .iter()
        .map(|(name, s)| (name.clone(), FieldNames::file(name, s)))
        .collect();
    let flags_given = flags.declare_default_issuer();
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
        let fields = names
            .entry(DEFAULT_ISSUER.to_string())
            .or_insert_with(|| FieldNames::file(DEFAULT_ISSUER, entry));
        if let Some(dir) = &flags.directory {
            entry.directory = dir.clone();
            fields.directory = "--directory".into();
        }
        entry.ca_roots.extend(flags.ca_roots.iter().cloned());
        fields
            .ca_roots
            .extend(flags.ca_roots.iter().map(|_| "--ca-root".to_string()));
        entry.contacts.extend(flags.contacts.iter().cloned());
        fields
            .contacts
            .extend(flags.contacts.iter().map(|_| "--contact".to_string()));
        if let Some(chain) = &flags.preferred_chain {
            entry.preferred_chain = Some(chain.clone());
        }
    }
    let mut errors = Errors::default();
    let resolved = issuers
        .into_iter()
        .filter_map(|(name, section)| {
            let fields = &names[&name];
            let settings = errors.check_all(resolve_issuer(&name, section, fields))?;
            Some((name, settings))
        })
        .collect();
    errors.finish(|| resolved)
}

fn resolve_issuer(
    name: &str,
    s: IssuerSection,
    names: &FieldNames,
) -> Result<IssuerSettings, ConfigErrors> {
    let field = |f: &str| format!("issuers.{name}.{f}");
    let mut errors = Errors::default();
    if CertName::parse(name).is_err() {
        errors.check::<()>(Err(err(
            format!("issuers.{name}"),
            "issuer names use lowercase letters, digits, '-', '_' and '.'",
        )));
    }
    errors.check(check_url(&names.directory, &s.directory));
    for (contact, field_name) in s.contacts.iter().zip(&names.contacts) {
        errors.check(check_contact(field_name, contact));
    }
    for (root, field_name) in s.ca_roots.iter().zip(&names.ca_roots) {
        errors.check(check_root_file(field_name, root));
    }
    if let Some(eab) = &s.eab {
        if eab.key_id.trim().is_empty() {
            errors.check::<()>(Err(err(field("eab.key_id"), "must not be empty")));
        }
        let trimmed = eab.hmac_key.trim_end_matches('=');
        let ok = !trimmed.is_empty()
            && trimmed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            errors.check::<()>(Err(err(
                field("eab.hmac_key"),
                "must be the base64url key the CA gave you",
            )));
        }
    }
    if let Some(chain) = &s.preferred_chain
        && (chain.trim().is_empty() || chain.trim() != chain)
    {
        errors.check::<()>(Err(err(
            field("preferred_chain"),
            format!(
                "{chain:?} must be the issuer common name of the chain's top certificate, \
                 such as \"ISRG Root X1\", without surrounding spaces"
            ),
        )));
    }
    if let Some(profile) = &s.profile {
        errors.check(
            crate::validate::check_profile_name(profile).map_err(|m| err(field("profile"), m)),
        );
    }
    let timeout = |f: &str, v: Option<u64>, default: u64| match v {
        Some(0) => Err(err(field(f), "must be at least 1 second")),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let request_timeout_secs = errors.check(timeout(
        "request_timeout_secs",
        s.request_timeout_secs,
        DEFAULT_REQUEST_TIMEOUT_SECS,
    ));
    let order_timeout_secs = errors.check(timeout(
        "order_timeout_secs",
        s.order_timeout_secs,
        DEFAULT_ORDER_TIMEOUT_SECS,
    ));
    errors.finish(|| IssuerSettings {
        name: name.to_string(),
        request_timeout_secs: request_timeout_secs.unwrap_or_default(),
        order_timeout_secs: order_timeout_secs.unwrap_or_default(),
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

/// A contact must be a single `mailto:` address (what Let's Encrypt accepts); the error names
/// `field`.
pub fn check_contact(field: &str, contact: &str) -> Result<(), ConfigError> {
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

fn resolve_certificate(
    i: usize,
    c: &CertificateSection,
    issuers: &BTreeMap<String, IssuerSettings>,
    solvers: &BTreeMap<String, ChallengeKind>,
) -> Result<CertificateSettings, ConfigErrors> {
    let req = CertificateRequest {
        name: &c.name,
        domains: &c.domains,
        issuer: c.issuer.as_deref(),
        key: c.key.as_deref(),
        challenge: c.challenge.as_deref(),
        solver: c.solver.as_deref(),
        solvers: Some(&c.solvers),
        profile: c.profile.as_deref(),
        renew_before: c.renew_before.as_deref(),
    };
    let local = crate::standalone::settings::resolve(i, c);
    let declared = validate_certificate(&format!("certificates[{i}]."), &req, issuers, solvers);
    let mut settings = match (declared, local) {
        (Ok(mut settings), Ok(local)) => {
            settings.local = local;
            settings
        }
        (Err(mut found), Err(more)) => {
            found.0.extend(more.0);
            return Err(found);
        }
        (Err(found), Ok(_)) | (Ok(_), Err(found)) => return Err(found),
    };
    if let Some(labels) = &c.labels {
        settings.labels = Some(
            Labels::from_map(labels.clone())
                .map_err(|e| err(format!("certificates[{i}].labels"), e.to_string()))?,
        );
    }
    Ok(settings)
}

/// Most days before notAfter an expiry alert can be set at.
pub const MAX_ALERT_DAYS: u32 = 366;

fn check_alert_days(days: Option<Vec<u32>>) -> Result<Vec<u32>, ConfigErrors> {
    let field = "server.expiry_alert_days";
    let Some(days) = days else {
        return Ok(certfleet_core::expiry::DEFAULT_THRESHOLD_DAYS.to_vec());
    };
    let mut found = Vec::new();
    for (i, d) in days.iter().enumerate() {
        if !(1..=MAX_ALERT_DAYS).contains(d) {
            found.push(err(
                format!("{field}[{i}]"),
                format!("{d} is not a number of days from 1 to {MAX_ALERT_DAYS}"),
            ));
        } else if days[..i].contains(d) {
            found.push(err(format!("{field}[{i}]"), format!("{d} is listed twice")));
        }
    }
    if found.is_empty() {
        Ok(days)
    } else {
        Err(ConfigErrors(found))
    }
}

fn check_unique_names(certs: &[CertificateSection]) -> Result<(), ConfigErrors> {
    let found: Vec<ConfigError> = certs
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let first = certs[..i].iter().position(|o| o.name == c.name)?;
            Some(err(
                format!("certificates[{i}].name"),
                format!(
                    "{:?} is declared twice (first as certificates[{first}])",
                    c.name
                ),
            ))
        })
        .collect();
    // Two certificates writing the same files would overwrite each other at every run.
    let same_dir = |a: &std::path::Path, b: &std::path::Path| a.components().eq(b.components());
    let found = found
        .into_iter()
        .chain(certs.iter().enumerate().filter_map(|(i, c)| {
            let dir = c.dir.as_deref()?;
            let first = certs[..i]
                .iter()
                .position(|o| o.dir.as_deref().is_some_and(|d| same_dir(d, dir)))?;
            Some(err(
                format!("certificates[{i}].dir"),
                format!(
                    "{} is already the dir of {:?} (certificates[{first}].dir); give each \
                 certificate its own directory, or their files overwrite each other",
                    dir.display(),
                    certs[first].name
                ),
            ))
        }));
    let found: Vec<ConfigError> = found.collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Settings, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| err("file", e.to_string()))?;
        file.resolve(Overrides::default())
            .map_err(|mut e| e.0.remove(0))
    }

    #[test]
    fn an_unknown_issuer_is_told_the_declared_ones_even_when_they_have_errors() {
        let text = "[issuers.default]\ndirectory = \"not a url\"\n\
                    [[certificates]]\nname = \"w\"\ndomains = [\"a.example.com\"]\n\
                    issuer = \"nope\"\n";
        let file: FileConfig = toml::from_str(text).unwrap();
        let errors = file.resolve(Overrides::default()).unwrap_err().to_string();
        assert!(
            errors.contains(
                "certificates[0].issuer: unknown issuer \"nope\"; configured issuers: default"
            ),
            "{errors}"
        );
        assert!(!errors.contains("no issuers are configured"), "{errors}");
    }

    #[test]
    fn every_bad_alert_day_and_every_repeated_name_is_reported() {
        let text = "[server]\nexpiry_alert_days = [0, 7, 7, 400]\n\
                    [[certificates]]\nname = \"w\"\ndomains = [\"a.example.com\"]\n\
                    [[certificates]]\nname = \"w\"\ndomains = [\"b.example.com\"]\n\
                    [[certificates]]\nname = \"w\"\ndomains = [\"c.example.com\"]\n";
        let file: FileConfig = toml::from_str(text).unwrap();
        let errors = file.resolve(Overrides::default()).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "server.expiry_alert_days[0]",
            "server.expiry_alert_days[2]",
            "server.expiry_alert_days[3]",
            "certificates[1].name",
            "certificates[2].name",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn every_error_is_reported_in_one_run() {
        let text = "[server]\nlisten = \"nope\"\n[issuers.le]\ndirectory = \"http://x\"\n\
                    contacts = [\"ops@x.com\"]\n[[certificates]]\nname = \"w\"\n\
                    domains = [\"a..b\"]\nissuer = \"le\"\nkey = \"dsa\"\n";
        let file: FileConfig = toml::from_str(text).unwrap();
        let errors = file.resolve(Overrides::default()).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "server.listen",
            "issuers.le.directory",
            "issuers.le.contacts[0]",
            "certificates[0].domains[0]",
            "certificates[0].key",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
        assert!(
            errors
                .to_string()
                .starts_with(&format!("{} errors:", fields.len()))
        );
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let flags = Overrides {
            listen: Some("localhost".into()),
            http01_listen: Some("80".into()),
            directory: Some("http://ca.test/dir".into()),
            contacts: vec!["ops@example.test".into()],
            ca_roots: vec!["/nonexistent.pem".into()],
            max_concurrent_orders: Some(0),
            ..Overrides::default()
        };
        let errors = FileConfig::default().resolve(flags).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "--listen",
                "--http01-listen",
                "--max-concurrent-orders",
                "--directory",
                "--contact",
                "--ca-root"
            ]
        );
        let file: FileConfig =
            toml::from_str("[issuers.default]\ndirectory = \"https://ca.test/d\"\ncontacts = [\"mailto:a@b.test\", \"x\"]").unwrap();
        let flags = Overrides {
            contacts: vec!["y".into()],
            ..Overrides::default()
        };
        let fields: Vec<String> = file
            .resolve(flags)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["issuers.default.contacts[1]", "--contact"]);
    }

    #[test]
    fn empty_config_uses_lets_encrypt() {
        let s = resolve("").unwrap();
        assert_eq!(s.issuers[DEFAULT_ISSUER].directory, LETS_ENCRYPT_DIRECTORY);
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.expiry_alert_days, [14, 7, 3, 1]);
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
                "[server]\nexpiry_alert_days = [30, 0]",
                "server.expiry_alert_days[1]",
            ),
            (
                "[server]\nexpiry_alert_days = [7, 7]",
                "server.expiry_alert_days[1]",
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
    fn a_broken_solver_section_is_reported_without_crashing_or_cascading() {
        let text = "[[solvers]]\nname = \"knot\"\ntype = \"rfc2136\"\nserver = \"not-an-addr\"\n\
                    [[certificates]]\nname = \"w\"\ndomains = [\"a.example.com\", \"*.example.com\"]\n\
                    solvers = { \"*.example.com\" = \"knot\" }\n\
                    [[certificates]]\nname = \"v\"\ndomains = [\"b.example.com\"]\n";
        let file: FileConfig = toml::from_str(text).unwrap();
        let errors = file.resolve(Overrides::default()).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["solvers[0].server"], "{errors}");
    }

    #[test]
    fn a_certificate_naming_an_issuer_that_is_not_declared_is_refused() {
        // With [issuers.*] in the file and no flags, there is no `default` issuer.
        let text = "[issuers.le]\ndirectory = \"https://ca.test/dir\"\n\
                    [[certificates]]\nname = \"w\"\ndomains = [\"a.example.com\"]\n";
        let file: FileConfig = toml::from_str(text).unwrap();
        let errors = file.resolve(Overrides::default()).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].field, "certificates[0].issuer");
        assert!(
            errors.0[0].message.contains("unknown issuer \"default\""),
            "{errors}"
        );
    }

    #[test]
    fn tls_flag_errors_name_the_flags_and_all_are_reported() {
        let flags = Overrides {
            tls_cert: Some("/etc/x.pem".into()),
            tls_names: vec!["not a name".into()],
            ..Overrides::default()
        };
        let errors = FileConfig::default().resolve(flags).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        for want in ["--tls-key", "--tls-listen", "--tls-name"] {
            assert!(fields.contains(&want), "{want} missing: {errors}");
        }
    }

    #[test]
    fn syntax_errors_do_not_echo_the_line_that_may_hold_a_secret() {
        let text = "[issuers.z]\ndirectory = \"https://ca.test/d\"\n\
                    eab = { key_id = \"kid\", hmac_kye = \"SuperSecretHmacValue\" }\n";
        let shown = certfleet_core::text::parse_toml::<FileConfig>(text).unwrap_err();
        assert!(!shown.contains("SuperSecretHmacValue"), "{shown}");
        assert!(shown.starts_with("line 3, column "), "{shown}");
        assert!(
            shown.contains("hmac_kye"),
            "the unknown key is named: {shown}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<FileConfig>("[server]\nlisten_addr = \"x\"").unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = toml::from_str::<FileConfig>("[[solvers]]\ntype = \"dns-99\"").unwrap_err();
        assert!(e.to_string().contains("dns-99"), "{e}");
    }
}
