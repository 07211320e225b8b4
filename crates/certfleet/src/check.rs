//! `certfleet check HOST[:PORT]`: what an endpoint really serves, whether it is trusted and
//! valid, and whether it is certfleet's current version of a certificate covering the name.

use std::path::PathBuf;
use std::time::Duration;

use certfleet_core::time::{self, DAY};
use certfleet_deploy::probe;
use certfleet_server::views::{CertificateDetail, CertificateView, rfc3339};
use clap::Args;
use serde::Serialize;

use crate::client::Api;
use crate::{CliError, exit};

/// Exit codes of `check`, worst first when several apply.
pub mod code {
    /// No TLS handshake (connection refused, timeout, handshake failure).
    pub const UNREACHABLE: u8 = super::exit::UNREACHABLE;
    /// The certificate has expired or is not valid yet.
    pub const EXPIRED: u8 = 6;
    /// The chain does not verify, or the certificate does not cover the name.
    pub const UNTRUSTED: u8 = 7;
    /// certfleet's current version covering the name has another serial.
    pub const MISMATCH: u8 = 8;
    /// It expires within --warn-days.
    pub const EXPIRING: u8 = 9;
}

const HELP: &str = "Connects, completes a TLS handshake and shows what is really served: subject, \
names, issuer, serial, not-after and days left, whether the chain verifies against the system \
roots (or --ca-file) for the name, and whether the serial is certfleet's current version of a \
certificate covering the name (when a certfleet server is reachable: the data directory's, or \
--server).\n\n\
Exit codes: 0 ok; 3 unreachable (no handshake); 6 expired or not yet valid; 7 chain does not \
verify or wrong name; 8 serves another serial than certfleet's current version; 9 expires within \
--warn-days; 1 invalid input; 2 usage. When several apply, the first in this order wins.\n\n\
Example:\n  certfleet check www.example.com\n  certfleet check 127.0.0.1:8443 --servername www.example.test --ca-file root.pem --json";

/// `certfleet check`.
#[derive(Debug, Args)]
#[command(after_help = HELP)]
pub struct CheckArgs {
    /// HOST or HOST:PORT ([IPv6]:PORT); the port defaults to 443.
    target: String,
    /// Name to send as SNI and to verify [default: HOST].
    #[arg(long, value_name = "NAME")]
    servername: Option<String>,
    /// Verify the chain against the CA certificates in this PEM file instead of the system roots.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Warn (exit 9) when fewer days than this are left.
    #[arg(long, default_value_t = 14, value_name = "DAYS")]
    warn_days: i64,
    /// Bound on the connection and handshake, seconds.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    timeout: u64,
    /// certfleet server to compare with [default: the data directory's].
    #[arg(long, env = "CERTFLEET_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Token for --server (a viewer token is enough).
    #[arg(
        long,
        env = "CERTFLEET_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// With an https:// --server: trust this CA file for the certfleet server.
    #[arg(long, env = "CERTFLEET_CA_FILE", value_name = "FILE")]
    server_ca_file: Option<PathBuf>,
    /// With an https:// --server: pin this fingerprint for the certfleet server.
    #[arg(long, env = "CERTFLEET_PIN", value_name = "SHA256")]
    server_pin: Option<String>,
}

/// What `check --json` prints.
#[derive(Debug, Serialize)]
struct Report {
    endpoint: String,
    server_name: String,
    protocol: String,
    subject: String,
    names: Vec<String>,
    issuer: String,
    serial: String,
    sha256: String,
    not_before: String,
    not_after: String,
    days_left: i64,
    chain: ChainResult,
    certfleet: Managed,
    result: &'static str,
    exit_code: u8,
}

#[derive(Debug, Serialize)]
struct ChainResult {
    verified: bool,
    against: String,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Managed {
    /// `match`, `mismatch`, `unmanaged` or `unknown`.
    status: &'static str,
    certificate: Option<String>,
    version: Option<u32>,
    serial: Option<String>,
    detail: String,
}

/// Run `certfleet check`.
pub async fn run(args: CheckArgs, data_dir: PathBuf, json: bool) -> Result<(), CliError> {
    let (host, endpoint) = split_target(&args.target)?;
    let server_name = args.servername.clone().unwrap_or(host);
    let roots = probe::roots(args.ca_file.as_deref())
        .map_err(|e| CliError::failure(format!("--ca-file: {e}")))?;
    let served =
        match probe::fetch(&endpoint, &server_name, Duration::from_secs(args.timeout)).await {
            Ok(s) => s,
            Err(e) => {
                let message = format!("{endpoint}: {e}");
                if json {
                    let json = serde_json::json!({
                        "endpoint": endpoint, "server_name": server_name, "result": "unreachable",
                        "error": e.to_string(), "exit_code": code::UNREACHABLE,
                    });
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json).unwrap_or_default()
                    );
                }
                return Err(CliError::with_code(code::UNREACHABLE, message));
            }
        };
    let leaf = &served.leaf;
    let now = time::now();
    let days_left = (leaf.not_after - now).div_euclid(DAY);
    let chain = match probe::verify(&served, &server_name, roots) {
        Ok(()) => ChainResult {
            verified: true,
            against: against(&args),
            error: None,
        },
        Err(e) => ChainResult {
            verified: false,
            against: against(&args),
            error: Some(e),
        },
    };
    let managed = compare(&args, &data_dir, &server_name, &leaf.serial).await;
    let expired = now > leaf.not_after || now < leaf.not_before;
    let (result, exit_code) = if expired {
        ("expired", code::EXPIRED)
    } else if !chain.verified {
        ("untrusted", code::UNTRUSTED)
    } else if managed.status == "mismatch" {
        ("mismatch", code::MISMATCH)
    } else if days_left < args.warn_days {
        ("expiring", code::EXPIRING)
    } else {
        ("ok", 0)
    };
    let report = Report {
        endpoint,
        server_name,
        protocol: served.protocol.clone(),
        subject: leaf.subject.clone(),
        names: leaf.dns_names.clone(),
        issuer: leaf.issuer.clone(),
        serial: leaf.serial.clone(),
        sha256: leaf.sha256.clone(),
        not_before: rfc3339(leaf.not_before),
        not_after: rfc3339(leaf.not_after),
        days_left,
        chain,
        certfleet: managed,
        result,
        exit_code,
    };
    if json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::failure(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", text(&report, args.warn_days));
    }
    if exit_code == 0 {
        Ok(())
    } else {
        Err(CliError::with_code(
            exit_code,
            summary(&report, args.warn_days),
        ))
    }
}

fn against(args: &CheckArgs) -> String {
    match &args.ca_file {
        Some(f) => format!("CA file {}", f.display()),
        None => "the system roots".into(),
    }
}

/// `(host, host:port)` from `HOST`, `HOST:PORT` or `[V6]:PORT`.
fn split_target(target: &str) -> Result<(String, String), CliError> {
    let bad = || {
        CliError::failure(format!(
            "{target:?} is not HOST or HOST:PORT (for IPv6: [::1]:443)"
        ))
    };
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if after.is_empty() => 443,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), format!("[{host}]:{port}")));
    }
    let (host, port) = match target.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse::<u16>().map_err(|_| bad())?),
        Some(_) => return Err(bad()),
        None => (target, 443),
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(bad());
    }
    Ok((host.to_string(), format!("{host}:{port}")))
}

/// Compare with certfleet's current version of a certificate covering `name`.
async fn compare(
    args: &CheckArgs,
    data_dir: &std::path::Path,
    name: &str,
    serial: &str,
) -> Managed {
    let unknown = |detail: String| Managed {
        status: "unknown",
        certificate: None,
        version: None,
        serial: None,
        detail,
    };
    let trust = match crate::remote::trust(args.server_ca_file.clone(), args.server_pin.clone()) {
        Ok(t) => t,
        Err(e) => return unknown(format!("not compared: {e}")),
    };
    let target = crate::client::Target {
        server: args.server.clone(),
        token: args.token.clone(),
    };
    let api = match Api::connect(target, &trust, data_dir) {
        Ok(api) => api,
        Err(e) => return unknown(format!("not compared with certfleet: {e}")),
    };
    let certs: Vec<CertificateView> = match api.get("/api/v1/certificates").await {
        Ok(c) => c,
        Err(e) => return unknown(format!("not compared with certfleet: {e}")),
    };
    let covering: Vec<&CertificateView> = certs
        .iter()
        .filter(|c| c.domains.iter().any(|d| covers(d, name)))
        .collect();
    if covering.is_empty() {
        return Managed {
            status: "unmanaged",
            certificate: None,
            version: None,
            serial: None,
            detail: format!("no certificate in certfleet covers {name}"),
        };
    }
    let mut first_current = None;
    for cert in covering {
        let detail: CertificateDetail = match api
            .get(&format!("/api/v1/certificates/{}", cert.name))
            .await
        {
            Ok(d) => d,
            Err(e) => return unknown(format!("not compared with certfleet: {e}")),
        };
        let Some(current) = detail.versions.iter().find(|v| v.current) else {
            continue;
        };
        if current.serial == serial {
            return Managed {
                status: "match",
                certificate: Some(cert.name.clone()),
                version: Some(current.version),
                serial: Some(current.serial.clone()),
                detail: format!(
                    "the current version of {} (version {})",
                    cert.name, current.version
                ),
            };
        }
        first_current.get_or_insert((cert.name.clone(), current.version, current.serial.clone()));
    }
    match first_current {
        Some((cert, version, current)) => Managed {
            status: "mismatch",
            detail: format!(
                "certfleet's current version of {cert} is version {version}, serial {current}; the endpoint serves serial {serial}"
            ),
            certificate: Some(cert),
            version: Some(version),
            serial: Some(current),
        },
        None => Managed {
            status: "unmanaged",
            certificate: None,
            version: None,
            serial: None,
            detail: format!("certificates covering {name} have no issued version yet"),
        },
    }
}

/// Whether certificate name `pattern` (maybe `*.example.com`) covers `name`.
fn covers(pattern: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(base) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => pattern == name,
    }
}

fn text(r: &Report, warn_days: i64) -> String {
    let chain = if r.chain.verified {
        format!("verifies against {} for {}", r.chain.against, r.server_name)
    } else {
        format!(
            "does NOT verify against {}: {}",
            r.chain.against,
            r.chain.error.as_deref().unwrap_or("unknown reason")
        )
    };
    format!(
        "Endpoint:    {} (SNI {}, {})\nSubject:     {}\nNames:       {}\nIssuer:      {}\nSerial:      {}\nSHA-256:     {}\nNot after:   {} ({} days left)\nChain:       {}\ncertfleet:   {}\nResult:      {}\n",
        r.endpoint,
        r.server_name,
        r.protocol,
        r.subject,
        r.names.join(", "),
        r.issuer,
        r.serial,
        r.sha256,
        r.not_after,
        r.days_left,
        chain,
        r.certfleet.detail,
        summary(r, warn_days)
    )
}

fn summary(r: &Report, warn_days: i64) -> String {
    match r.result {
        "ok" => "OK".into(),
        "expired" => format!("EXPIRED or not yet valid (not after {})", r.not_after),
        "untrusted" => format!(
            "NOT TRUSTED: {}",
            r.chain
                .error
                .as_deref()
                .unwrap_or("the chain does not verify")
        ),
        "mismatch" => format!("MISMATCH: {}", r.certfleet.detail),
        _ => format!(
            "EXPIRING: {} days left (warning below {warn_days})",
            r.days_left
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split() {
        assert_eq!(split_target("a.example").unwrap().1, "a.example:443");
        assert_eq!(
            split_target("127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), "127.0.0.1:8443".into())
        );
        assert_eq!(
            split_target("[::1]:8443").unwrap(),
            ("::1".into(), "[::1]:8443".into())
        );
        assert!(split_target("a.example:http").is_err());
        assert!(split_target("::1").is_err());
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "www.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("www.example.com", "WWW.example.com"));
    }
}
