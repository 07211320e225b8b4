//! The `[[solvers]]` of the config file: parsed ([`SolverSection`], selected by `type`),
//! validated with field-named errors (`solvers[1].tsig_secret`) into [`SolverPlan`]s before
//! anything starts, and built once at start-up into the
//! [`SolverRegistry`](crate::registry::SolverRegistry) the issuance uses.
//!
//! There is always a solver called `http-01` (the built-in responder; a `type = "http-01"`
//! section tunes it), and one called `tls-alpn-01` when `[server] tls_alpn01_listen` is set.
//! DNS-01 solvers are named by `name` (default: their type).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certfleet_core::{ChallengeKind, DnsName, Secret, SolverRules};
use certfleet_solvers::api_client::ApiClient;
use certfleet_solvers::dns::DnsProvider;
use certfleet_solvers::dns::acme_dns::{AcmeDns, AcmeDnsSettings};
use certfleet_solvers::dns::cloudflare::{self, Cloudflare, CloudflareSettings};
use certfleet_solvers::dns::exec::{self, Exec, ExecSettings};
use certfleet_solvers::dns::propagation::{self, Propagation, PropagationSettings};
use certfleet_solvers::dns::rfc2136::{self, Rfc2136, Rfc2136Settings, Tsig};
use certfleet_solvers::dns::route53::{self, Route53, Route53Settings};
use certfleet_solvers::dns::sigv4::Credentials;
use certfleet_solvers::mirror::{self, RedisSettings};
use certfleet_solvers::self_check::{self, SelfCheck};
use serde::Deserialize;

use crate::config::{ConfigError, DEFAULT_TOKEN_TTL_SECS, err};

/// Name of the built-in HTTP-01 solver.
pub const HTTP01: &str = "http-01";
/// Name of the built-in TLS-ALPN-01 solver.
pub const TLS_ALPN01: &str = "tls-alpn-01";

/// `propagation = { ... }` of a DNS solver.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropagationSection {
    /// Authoritative servers to poll (`address:port`); default: discovered.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Recursive resolvers for discovery and CNAMEs; default: /etc/resolv.conf.
    #[serde(default)]
    pub resolvers: Vec<String>,
    /// Port of discovered authoritative servers (default 53).
    pub authoritative_port: Option<u16>,
    /// Time between polls, milliseconds (default 2000).
    pub interval_ms: Option<u64>,
    /// Bound on waiting, seconds (default 120).
    pub timeout_secs: Option<u64>,
    /// Skip the check.
    #[serde(default)]
    pub disabled: bool,
}

/// `redis = { ... }` of the http-01 solver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSection {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Key prefix (default `certfleet:acme-challenge:`).
    pub prefix: Option<String>,
    /// Key lifetime, seconds (default: the token TTL).
    pub ttl_secs: Option<u64>,
}

/// `[[solvers]]`, selected by `type`. `Debug` shows the type and name only: sections hold
/// secrets (TSIG secrets, API tokens, AWS keys).
#[derive(Clone, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum SolverSection {
    /// The built-in HTTP-01 responder.
    #[serde(rename = "http-01")]
    Http01 {
        /// Lifetime of a published response, seconds.
        token_ttl_secs: Option<u64>,
        /// Mirror responses to Redis.
        redis: Option<RedisSection>,
        /// Responders that must serve a response before the CA is told (base URLs).
        #[serde(default)]
        self_check: Vec<String>,
        /// Bound on the self-check, seconds.
        self_check_timeout_secs: Option<u64>,
    },
    /// The built-in TLS-ALPN-01 responder (needs `[server] tls_alpn01_listen`).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01 {},
    /// RFC 2136 dynamic update with TSIG.
    #[serde(rename = "rfc2136")]
    Rfc2136 {
        /// Solver name.
        name: Option<String>,
        /// Primary server, `address:port`.
        server: String,
        /// Zone (default: found by SOA query).
        zone: Option<String>,
        /// TSIG key name.
        tsig_key: Option<String>,
        /// `hmac-sha256` (default), `hmac-sha384`, `hmac-sha512`.
        tsig_algorithm: Option<String>,
        /// TSIG secret, base64.
        tsig_secret: Option<String>,
        /// File holding the TSIG secret.
        tsig_secret_file: Option<PathBuf>,
        /// Record TTL, seconds.
        ttl: Option<u32>,
        /// Bound on one exchange, seconds.
        timeout_secs: Option<u64>,
        /// The propagation check.
        propagation: Option<PropagationSection>,
    },
    /// The acme-dns API.
    #[serde(rename = "acme-dns")]
    AcmeDns {
        /// Solver name.
        name: Option<String>,
        /// API base URL.
        api_url: String,
        /// Accounts file written by `certfleet dns acme-dns register`.
        credentials_file: PathBuf,
        /// The propagation check.
        propagation: Option<PropagationSection>,
    },
    /// Your own commands.
    #[serde(rename = "exec")]
    Exec {
        /// Solver name.
        name: Option<String>,
        /// Program and arguments that add the record.
        present: Vec<String>,
        /// Program and arguments that remove it.
        cleanup: Vec<String>,
        /// Bound on one run, seconds.
        timeout_secs: Option<u64>,
        /// The propagation check.
        propagation: Option<PropagationSection>,
    },
    /// Cloudflare's API.
    #[serde(rename = "cloudflare")]
    Cloudflare {
        /// Solver name.
        name: Option<String>,
        /// API token (default: `$CLOUDFLARE_API_TOKEN`).
        api_token: Option<String>,
        /// Zone id (default: looked up by name).
        zone_id: Option<String>,
        /// API base URL.
        api_url: Option<String>,
        /// The propagation check.
        propagation: Option<PropagationSection>,
    },
    /// HTTP-01 through a running web server: responses written into its document root
    /// (`<path>/.well-known/acme-challenge/<token>`), as certbot's `--webroot` does.
    #[serde(rename = "webroot")]
    Webroot {
        /// Solver name (default `webroot`); certificates pick it with `solver`.
        name: Option<String>,
        /// The document root the web server serves for every name it proves.
        path: PathBuf,
    },
    /// Amazon Route 53.
    #[serde(rename = "route53")]
    Route53 {
        /// Solver name.
        name: Option<String>,
        /// Hosted zone id.
        hosted_zone_id: String,
        /// Access key id (default: `$AWS_ACCESS_KEY_ID`).
        access_key_id: Option<String>,
        /// Secret access key (default: `$AWS_SECRET_ACCESS_KEY`).
        secret_access_key: Option<String>,
        /// Session token (default: `$AWS_SESSION_TOKEN`).
        session_token: Option<String>,
        /// API base URL.
        api_url: Option<String>,
        /// Record TTL, seconds.
        ttl: Option<u32>,
        /// The propagation check.
        propagation: Option<PropagationSection>,
    },
}

/// A validated HTTP-01 setup.
#[derive(Debug, Clone)]
pub struct Http01Plan {
    /// Token lifetime.
    pub token_ttl: Duration,
    /// Redis mirror.
    pub redis: Option<RedisSettings>,
    /// Self-check URLs and bound.
    pub self_check: Option<(Vec<String>, Duration)>,
}

/// A validated solver, ready to build.
#[derive(Clone)]
pub enum SolverPlan {
    /// The HTTP-01 responder.
    Http01(Http01Plan),
    /// The TLS-ALPN-01 responder.
    TlsAlpn01,
    /// A DNS-01 provider with its propagation check.
    Dns01 {
        /// The provider.
        provider: Arc<dyn DnsProvider>,
        /// The check.
        propagation: Propagation,
    },
    /// HTTP-01 responses written into this document root.
    Webroot(PathBuf),
}

impl fmt::Debug for SolverPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SolverPlan::Http01(p) => f.debug_tuple("Http01").field(p).finish(),
            SolverPlan::TlsAlpn01 => f.write_str("TlsAlpn01"),
            SolverPlan::Dns01 { provider, .. } => write!(f, "Dns01({})", provider.kind()),
            SolverPlan::Webroot(path) => f.debug_tuple("Webroot").field(path).finish(),
        }
    }
}

impl SolverPlan {
    /// The challenge type.
    pub fn kind(&self) -> ChallengeKind {
        match self {
            SolverPlan::Http01(_) | SolverPlan::Webroot(_) => ChallengeKind::Http01,
            SolverPlan::TlsAlpn01 => ChallengeKind::TlsAlpn01,
            SolverPlan::Dns01 { .. } => ChallengeKind::Dns01,
        }
    }
}

fn from_solver_error(e: certfleet_solvers::Error) -> ConfigError {
    match e {
        certfleet_solvers::Error::Config { field, message } => err(field, message),
        other => err("solvers", other.to_string()),
    }
}

fn secs(field: String, v: Option<u64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        Some(0) => Err(err(field, "must be at least 1")),
        Some(v) => Ok(Duration::from_secs(v)),
        None => Ok(default),
    }
}

fn addr(field: String, a: &str, default_port: u16) -> Result<SocketAddr, ConfigError> {
    a.parse::<SocketAddr>()
        .or_else(|_| {
            a.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, default_port))
        })
        .map_err(|_| {
            err(
                field,
                format!("{a:?} is not an address such as 127.0.0.1:53 or [::1]:53"),
            )
        })
}

fn addrs(field: &str, list: &[String], default_port: u16) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| addr(format!("{field}[{i}]"), a, default_port))
        .collect()
}

fn propagation_plan(
    prefix: &str,
    p: Option<&PropagationSection>,
) -> Result<Propagation, ConfigError> {
    let p = p.cloned().unwrap_or_default();
    let f = |name: &str| format!("{prefix}propagation.{name}");
    let interval = match p.interval_ms {
        Some(0) => return Err(err(f("interval_ms"), "must be at least 1")),
        Some(ms) => Duration::from_millis(ms),
        None => propagation::DEFAULT_INTERVAL,
    };
    Ok(Propagation::new(PropagationSettings {
        nameservers: addrs(&f("nameservers"), &p.nameservers, 53)?,
        resolvers: addrs(&f("resolvers"), &p.resolvers, 53)?,
        authoritative_port: p
            .authoritative_port
            .unwrap_or(propagation::DEFAULT_AUTHORITATIVE_PORT),
        interval,
        timeout: secs(
            f("timeout_secs"),
            p.timeout_secs,
            propagation::DEFAULT_TIMEOUT,
        )?,
        query_timeout: propagation::DEFAULT_QUERY_TIMEOUT,
        disabled: p.disabled,
    }))
}

fn env_or(value: &Option<String>, env: &str) -> Option<String> {
    value
        .clone()
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

fn http01_plan(
    prefix: &str,
    ttl: Option<u64>,
    redis: &Option<RedisSection>,
    check: &[String],
    check_timeout: Option<u64>,
) -> Result<Http01Plan, ConfigError> {
    let token_ttl = secs(
        format!("{prefix}token_ttl_secs"),
        ttl,
        Duration::from_secs(DEFAULT_TOKEN_TTL_SECS),
    )?;
    let redis = match redis {
        Some(r) => {
            let prefix_value = r
                .prefix
                .clone()
                .unwrap_or_else(|| mirror::DEFAULT_PREFIX.to_string());
            mirror::check_prefix(&format!("{prefix}redis.prefix"), &prefix_value)
                .map_err(from_solver_error)?;
            if !(r.url.starts_with("redis://") || r.url.starts_with("unix://")) {
                return Err(err(
                    format!("{prefix}redis.url"),
                    format!("{:?} is not a redis:// URL", mirror::redact(&r.url)),
                ));
            }
            Some(RedisSettings {
                url: r.url.clone(),
                prefix: prefix_value,
                ttl: secs(format!("{prefix}redis.ttl_secs"), r.ttl_secs, token_ttl)?,
            })
        }
        None => None,
    };
    let self_check = if check.is_empty() {
        None
    } else {
        let timeout = secs(
            format!("{prefix}self_check_timeout_secs"),
            check_timeout,
            self_check::DEFAULT_TIMEOUT,
        )?;
        SelfCheck::new(&format!("{prefix}self_check"), check.to_vec(), timeout)
            .map_err(from_solver_error)?;
        Some((check.to_vec(), timeout))
    };
    Ok(Http01Plan {
        token_ttl,
        redis,
        self_check,
    })
}

/// Validate every `[[solvers]]` entry; returns plans by name (always with `http-01`, and with
/// `tls-alpn-01` when `tls_alpn` listens).
pub fn resolve(
    sections: &[SolverSection],
    tls_alpn: bool,
) -> (BTreeMap<String, SolverPlan>, Vec<ConfigError>) {
    let mut plans: BTreeMap<String, SolverPlan> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut http01_seen = false;
    for (i, s) in sections.iter().enumerate() {
        if matches!(s, SolverSection::Http01 { .. }) {
            if http01_seen {
                errors.push(err(format!("solvers[{i}]"), "http-01 is configured twice"));
                continue;
            }
            http01_seen = true;
        }
        let prefix = format!("solvers[{i}].");
        let (name, plan) = match resolve_one(&prefix, s, tls_alpn) {
            Ok(Some(resolved)) => resolved,
            Ok(None) => continue,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Err(e) = check_name(&prefix, &name) {
            errors.push(e);
            continue;
        }
        if matches!(plan, SolverPlan::Dns01 { .. } | SolverPlan::Webroot(_))
            && [HTTP01, TLS_ALPN01].contains(&name.as_str())
        {
            errors.push(err(
                format!("{prefix}name"),
                format!("{name:?} is the name of the built-in solver; choose another"),
            ));
            continue;
        }
        if plans.insert(name.clone(), plan).is_some() {
            errors.push(err(
                format!("{prefix}name"),
                format!("solver {name:?} is configured twice; give each a distinct name"),
            ));
        }
    }
    plans.entry(HTTP01.to_string()).or_insert_with(|| {
        SolverPlan::Http01(Http01Plan {
            token_ttl: Duration::from_secs(DEFAULT_TOKEN_TTL_SECS),
            redis: None,
            self_check: None,
        })
    });
    if tls_alpn {
        plans.insert(TLS_ALPN01.to_string(), SolverPlan::TlsAlpn01);
    }
    (plans, errors)
}

impl std::fmt::Debug for SolverSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match declared_kind(self) {
            Some((name, kind)) => f
                .debug_struct("SolverSection")
                .field("name", &name)
                .field("kind", &kind)
                .finish_non_exhaustive(),
            None => f.write_str("SolverSection"),
        }
    }
}

/// The name and challenge type a section declares, whether or not it is valid (so that a
/// certificate naming a solver whose section has an error is not also told it is unknown).
pub fn declared_kind(s: &SolverSection) -> Option<(String, ChallengeKind)> {
    let dns = |name: &Option<String>, default: &str| {
        Some((
            name.clone().unwrap_or_else(|| default.to_string()),
            ChallengeKind::Dns01,
        ))
    };
    match s {
        SolverSection::Http01 { .. } => Some((HTTP01.to_string(), ChallengeKind::Http01)),
        SolverSection::TlsAlpn01 {} => Some((TLS_ALPN01.to_string(), ChallengeKind::TlsAlpn01)),
        SolverSection::Rfc2136 { name, .. } => dns(name, "rfc2136"),
        SolverSection::AcmeDns { name, .. } => dns(name, "acme-dns"),
        SolverSection::Exec { name, .. } => dns(name, "exec"),
        SolverSection::Cloudflare { name, .. } => dns(name, "cloudflare"),
        SolverSection::Route53 { name, .. } => dns(name, "route53"),
        SolverSection::Webroot { name, .. } => Some((
            name.clone().unwrap_or_else(|| "webroot".to_string()),
            ChallengeKind::Http01,
        )),
    }
}

/// One `[[solvers]]` section as a plan; `None` for a section that only switches a built-in
/// solver on (`tls-alpn-01`, whose listener the server section gives).
fn resolve_one(
    prefix: &str,
    s: &SolverSection,
    tls_alpn: bool,
) -> Result<Option<(String, SolverPlan)>, ConfigError> {
    let client = || {
        ApiClient::new(certfleet_solvers::api_client::DEFAULT_TIMEOUT).map_err(from_solver_error)
    };
    let prefix = prefix.to_string();
    let resolved = match s {
        SolverSection::Http01 {
            token_ttl_secs,
            redis,
            self_check,
            self_check_timeout_secs,
        } => (
            HTTP01.to_string(),
            SolverPlan::Http01(http01_plan(
                &prefix,
                *token_ttl_secs,
                redis,
                self_check,
                *self_check_timeout_secs,
            )?),
        ),
        SolverSection::TlsAlpn01 {} => {
            if !tls_alpn {
                return Err(err(
                    "server.tls_alpn01_listen",
                    "the tls-alpn-01 solver needs a listener: set tls_alpn01_listen (or --tls-alpn-listen)",
                ));
            }
            return Ok(None);
        }
        SolverSection::Rfc2136 {
            name,
            server,
            zone,
            tsig_key,
            tsig_algorithm,
            tsig_secret,
            tsig_secret_file,
            ttl,
            timeout_secs,
            propagation,
        } => {
            let server = addr(format!("{prefix}server"), server, 53)?;
            let secret = match (tsig_secret, tsig_secret_file) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("{prefix}tsig_secret_file"),
                        "give tsig_secret or tsig_secret_file, not both",
                    ));
                }
                (Some(s), None) => Some(s.clone()),
                (None, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| {
                            err(
                                format!("{prefix}tsig_secret_file"),
                                format!("{}: {e}", path.display()),
                            )
                        })?
                        .trim()
                        .to_string(),
                ),
                (None, None) => None,
            };
            let tsig = match (tsig_key, secret) {
                (Some(key), Some(secret)) => Some(Tsig {
                    name: key.clone(),
                    algorithm: tsig_algorithm
                        .clone()
                        .unwrap_or_else(|| "hmac-sha256".into()),
                    secret: Secret::new(secret),
                }),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(err(
                        format!("{prefix}tsig_secret"),
                        "tsig_key is set but no tsig_secret or tsig_secret_file",
                    ));
                }
                (None, Some(_)) => {
                    return Err(err(
                        format!("{prefix}tsig_key"),
                        "a TSIG secret is set but no tsig_key (the key's name)",
                    ));
                }
            };
            let settings = Rfc2136Settings {
                server,
                zone: zone.clone(),
                tsig,
                ttl: ttl.unwrap_or(rfc2136::DEFAULT_TTL),
                timeout: secs(
                    format!("{prefix}timeout_secs"),
                    *timeout_secs,
                    rfc2136::DEFAULT_TIMEOUT,
                )?,
            };
            let provider = Rfc2136::new(&prefix, settings).map_err(from_solver_error)?;
            (
                name.clone().unwrap_or_else(|| "rfc2136".into()),
                dns(Arc::new(provider), &prefix, propagation.as_ref())?,
            )
        }
        SolverSection::AcmeDns {
            name,
            api_url,
            credentials_file,
            propagation,
        } => {
            let settings = AcmeDnsSettings {
                api_url: api_url.clone(),
                credentials_file: credentials_file.clone(),
            };
            let provider =
                AcmeDns::new(&prefix, &settings, client()?).map_err(from_solver_error)?;
            (
                name.clone().unwrap_or_else(|| "acme-dns".into()),
                dns(Arc::new(provider), &prefix, propagation.as_ref())?,
            )
        }
        SolverSection::Exec {
            name,
            present,
            cleanup,
            timeout_secs,
            propagation,
        } => {
            let settings = ExecSettings {
                present: present.clone(),
                cleanup: cleanup.clone(),
                timeout: secs(
                    format!("{prefix}timeout_secs"),
                    *timeout_secs,
                    exec::DEFAULT_TIMEOUT,
                )?,
            };
            let provider = Exec::new(&prefix, settings).map_err(from_solver_error)?;
            (
                name.clone().unwrap_or_else(|| "exec".into()),
                dns(Arc::new(provider), &prefix, propagation.as_ref())?,
            )
        }
        SolverSection::Cloudflare {
            name,
            api_token,
            zone_id,
            api_url,
            propagation,
        } => {
            let token = env_or(api_token, cloudflare::TOKEN_ENV).unwrap_or_default();
            let settings = CloudflareSettings {
                api_url: api_url
                    .clone()
                    .unwrap_or_else(|| cloudflare::DEFAULT_API_URL.into()),
                api_token: Secret::new(token),
                zone_id: zone_id.clone(),
            };
            let provider =
                Cloudflare::new(&prefix, settings, client()?).map_err(from_solver_error)?;
            (
                name.clone().unwrap_or_else(|| "cloudflare".into()),
                dns(Arc::new(provider), &prefix, propagation.as_ref())?,
            )
        }
        SolverSection::Webroot { name, path } => {
            if !path.is_absolute() {
                return Err(err(
                    format!("{prefix}path"),
                    format!(
                        "{:?} is not an absolute path; give the web server's document root, \
                         such as /var/www/html",
                        path.display().to_string()
                    ),
                ));
            }
            if path.exists() && !path.is_dir() {
                return Err(err(
                    format!("{prefix}path"),
                    format!("{} exists and is not a directory", path.display()),
                ));
            }
            (
                name.clone().unwrap_or_else(|| "webroot".into()),
                SolverPlan::Webroot(path.clone()),
            )
        }
        SolverSection::Route53 {
            name,
            hosted_zone_id,
            access_key_id,
            secret_access_key,
            session_token,
            api_url,
            ttl,
            propagation,
        } => {
            let credentials = Credentials {
                access_key_id: env_or(access_key_id, "AWS_ACCESS_KEY_ID").unwrap_or_default(),
                secret_access_key: Secret::new(
                    env_or(secret_access_key, "AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
                ),
                session_token: env_or(session_token, "AWS_SESSION_TOKEN").map(Secret::new),
            };
            let settings = Route53Settings {
                api_url: api_url
                    .clone()
                    .unwrap_or_else(|| route53::DEFAULT_API_URL.into()),
                hosted_zone_id: hosted_zone_id.clone(),
                credentials,
                ttl: ttl.unwrap_or(route53::DEFAULT_TTL),
                change_poll: route53::CHANGE_POLL,
            };
            let provider = Route53::new(&prefix, settings, client()?).map_err(from_solver_error)?;
            (
                name.clone().unwrap_or_else(|| "route53".into()),
                dns(Arc::new(provider), &prefix, propagation.as_ref())?,
            )
        }
    };
    Ok(Some(resolved))
}

fn dns(
    provider: Arc<dyn DnsProvider>,
    prefix: &str,
    p: Option<&PropagationSection>,
) -> Result<SolverPlan, ConfigError> {
    Ok(SolverPlan::Dns01 {
        provider,
        propagation: propagation_plan(prefix, p)?,
    })
}

fn check_name(prefix: &str, name: &str) -> Result<(), ConfigError> {
    certfleet_core::CertName::parse(name)
        .map(|_| ())
        .map_err(|_| {
            err(
                format!("{prefix}name"),
                format!("{name:?}: solver names use lowercase letters, digits, '-', '_' and '.'"),
            )
        })
}

/// The solver that proves `name` for a certificate with `rules` and default challenge `kind`.
pub fn solver_name_for(
    rules: &SolverRules,
    kind: ChallengeKind,
    name: &DnsName,
    kinds: &BTreeMap<String, ChallengeKind>,
) -> Option<String> {
    if let Some(s) = rules.solver_for(name) {
        return Some(s.to_string());
    }
    default_for_kind(kind, kinds)
}

/// The solver used for a challenge type when a certificate names none: the built-in one, or
/// the only DNS-01 solver.
pub fn default_for_kind(
    kind: ChallengeKind,
    kinds: &BTreeMap<String, ChallengeKind>,
) -> Option<String> {
    match kind {
        ChallengeKind::Http01 => Some(HTTP01.to_string()),
        ChallengeKind::TlsAlpn01 => kinds
            .contains_key(TLS_ALPN01)
            .then(|| TLS_ALPN01.to_string()),
        ChallengeKind::Dns01 => {
            let dns: Vec<&String> = kinds
                .iter()
                .filter(|(_, k)| **k == ChallengeKind::Dns01)
                .map(|(n, _)| n)
                .collect();
            (dns.len() == 1).then(|| dns[0].clone())
        }
    }
}

/// Challenge types by solver name, for validation.
pub fn kinds(plans: &BTreeMap<String, SolverPlan>) -> BTreeMap<String, ChallengeKind> {
    plans.iter().map(|(n, p)| (n.clone(), p.kind())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Overrides, Settings};

    const KNOT: &str = "[[solvers]]\nname = \"knot\"\ntype = \"rfc2136\"\nserver = \"127.0.0.1:5353\"\n\
                        tsig_key = \"k\"\ntsig_secret = \"c2VjcmV0\"\n";

    fn resolve(text: &str, tls_alpn: bool) -> Result<Settings, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| err("file", e.to_string()))?;
        file.resolve(Overrides {
            tls_alpn_listen: tls_alpn.then(|| "127.0.0.1:0".to_string()),
            ..Overrides::default()
        })
        .map_err(|mut e| e.0.remove(0))
    }

    fn cert(extra: &str) -> String {
        format!(
            "[[certificates]]\nname = \"w\"\ndomains = [\"example.com\", \"*.example.com\"]\n{extra}\n"
        )
    }

    #[test]
    fn solver_errors_name_the_field() {
        let cases: Vec<(String, bool, &str)> = vec![
            (cert(""), false, "certificates[0].domains[1]"),
            (cert("challenge = \"tls-alpn-01\""), false, "certificates[0].challenge"),
            (cert("challenge = \"dns-01\""), false, "certificates[0].challenge"),
            (format!("{KNOT}{}{}", KNOT.replace("\"knot\"", "\"knot2\""), cert("challenge = \"dns-01\"")), false, "certificates[0].challenge"),
            (format!("{KNOT}{}", cert("solver = \"nope\"")), false, "certificates[0].solver"),
            (format!("{KNOT}{}", cert("solvers = { \"*.example.com\" = \"nope\" }")), false, "certificates[0].solvers.\"*.example.com\""),
            (format!("{KNOT}{}", cert("solvers = { \"*.example.com\" = \"http-01\" }")), false, "certificates[0].solvers.\"*.example.com\""),
            (format!("{KNOT}{}", cert("solver = \"tls-alpn-01\"")), true, "certificates[0].domains[1]"),
            (format!("{KNOT}{}", cert("solver = \"knot\"\nsolvers = { \"b.example.com\" = \"knot\" }")), false, "certificates[0].solvers.\"b.example.com\""),
            (format!("{KNOT}{}", cert("solver = \"knot\"\nsolvers = { \".example.org\" = \"knot\" }")), false, "certificates[0].solvers.\".example.org\""),
            (format!("{KNOT}{}", cert("solver = \"knot\"\nchallenge = \"http-01\"")), false, "certificates[0].challenge"),
            (KNOT.replace("c2VjcmV0", "not base64!"), false, "solvers[0].tsig_secret"),
            (format!("{KNOT}tsig_algorithm = \"hmac-md5\"\n"), false, "solvers[0].tsig_algorithm"),
            (KNOT.replace("127.0.0.1:5353", "dns.example.com"), false, "solvers[0].server"),
            (KNOT.replace("tsig_secret = \"c2VjcmV0\"\n", ""), false, "solvers[0].tsig_secret"),
            (format!("{KNOT}{KNOT}"), false, "solvers[1].name"),
            ("[[solvers]]\ntype = \"tls-alpn-01\"\n".into(), false, "server.tls_alpn01_listen"),
            ("[[solvers]]\ntype = \"exec\"\npresent = []\ncleanup = [\"/bin/true\"]\n".into(), false, "solvers[0].present"),
            ("[[solvers]]\ntype = \"http-01\"\nredis = { url = \"http://x\" }\n".into(), false, "solvers[0].redis.url"),
            ("[[solvers]]\ntype = \"http-01\"\nredis = { url = \"redis://x\", prefix = \"a*\" }\n".into(), false, "solvers[0].redis.prefix"),
            ("[[solvers]]\ntype = \"http-01\"\nself_check = [\"ftp://x\"]\n".into(), false, "solvers[0].self_check[0]"),
            (format!("{KNOT}propagation = {{ nameservers = [\"ns1\"] }}\n"), false, "solvers[0].propagation.nameservers[0]"),
            (format!("{KNOT}propagation = {{ interval_ms = 0 }}\n"), false, "solvers[0].propagation.interval_ms"),
            ("[[solvers]]\ntype = \"acme-dns\"\napi_url = \"http://auth.example.org\"\ncredentials_file = \"/x\"\n".into(), false, "solvers[0].api_url"),
            ("[[solvers]]\ntype = \"cloudflare\"\napi_token = \"t\"\napi_url = \"http://api.example.org\"\n".into(), false, "solvers[0].api_url"),
            ("[[solvers]]\ntype = \"cloudflare\"\napi_token = \"t\"\nzone_id = \"../x\"\n".into(), false, "solvers[0].zone_id"),
            ("[[solvers]]\ntype = \"route53\"\nhosted_zone_id = \"Z/1\"\naccess_key_id = \"A\"\nsecret_access_key = \"S\"\n".into(), false, "solvers[0].hosted_zone_id"),
            ("[[solvers]]\ntype = \"rfc2136\"\nname = \"Bad Name\"\nserver = \"127.0.0.1\"\n".into(), false, "solvers[0].name"),
            ("[[solvers]]\ntype = \"rfc2136\"\nname = \"http-01\"\nserver = \"127.0.0.1\"\n".into(), false, "solvers[0].name"),
        ];
        for (text, tls_alpn, field) in cases {
            let e = resolve(&text, tls_alpn).expect_err(&text);
            assert_eq!(e.field, field, "{text}\n→ {e}");
        }
    }

    #[test]
    fn solvers_per_identifier_and_suffix_are_kept() {
        let text = format!(
            "{KNOT}{}",
            "[[certificates]]\nname = \"shop\"\ndomains = [\"example.com\", \"*.example.com\", \"a.example.org\"]\n\
             solvers = { \"*.example.com\" = \"knot\", \".example.org\" = \"knot\" }\n"
        );
        let s = resolve(&text, true).unwrap();
        let kinds = s.solver_kinds();
        assert_eq!(kinds["http-01"], ChallengeKind::Http01);
        assert_eq!(kinds["tls-alpn-01"], ChallengeKind::TlsAlpn01);
        assert_eq!(kinds["knot"], ChallengeKind::Dns01);
        let c = &s.certificates[0];
        assert_eq!(c.challenge, ChallengeKind::Http01);
        let names: Vec<Option<String>> = c
            .domains
            .iter()
            .map(|d| solver_name_for(&c.solvers, c.challenge, d, &kinds))
            .collect();
        assert_eq!(
            names,
            [
                Some("http-01".into()),
                Some("knot".into()),
                Some("knot".into())
            ]
        );
        // dns-01 with exactly one DNS solver picks it.
        let s = resolve(&format!("{KNOT}{}", cert("challenge = \"dns-01\"")), false).unwrap();
        let c = &s.certificates[0];
        assert_eq!(
            solver_name_for(&c.solvers, c.challenge, &c.domains[1], &s.solver_kinds()).as_deref(),
            Some("knot")
        );
    }
}
