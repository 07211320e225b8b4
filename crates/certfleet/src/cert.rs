//! `certfleet cert ...`: the certificate commands.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use certfleet_server::views::{AddCertificate, BundleView, CertificateDetail, CertificateView};
use clap::{Args, Subcommand};

use crate::client::Api;
use crate::{CliError, exit, export, table};

/// First interval between status checks while waiting; grows by half up to [`WAIT_POLL_MAX`].
const WAIT_POLL_FIRST: Duration = Duration::from_millis(10);
/// Longest interval between status checks while waiting.
const WAIT_POLL_MAX: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct Connection {
    /// URL of the server's REST API (default: from the data directory's server.json).
    #[arg(long, global = true, env = "CERTFLEET_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Admin API token (default: the data directory's admin-token).
    #[arg(
        long,
        global = true,
        env = "CERTFLEET_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Declare a certificate and start issuing it.
    #[command(
        after_help = "Example:\n  certfleet cert add www --domain www.example.com --domain example.com --wait"
    )]
    Add {
        /// Short name: lowercase letters, digits, '-', '_', '.'.
        name: String,
        /// DNS name to include; repeat for more (wildcards need dns-01).
        #[arg(
            long = "domain",
            short = 'd',
            value_name = "NAME",
            required = true,
            allow_hyphen_values = true
        )]
        domains: Vec<String>,
        /// Issuer from the configuration [default: default].
        #[arg(long)]
        issuer: Option<String>,
        /// Key kind for every version.
        #[arg(long, value_name = "KIND", value_parser = ["ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072", "rsa4096"])]
        key: Option<String>,
        /// When to renew: a duration before expiry (7d, 12h, 90m) or the share of the lifetime
        /// left (30%) [default: the CA's ARI window, else when a third of the lifetime is left,
        /// a half for lifetimes under 10 days].
        #[arg(long, value_name = "DURATION|PERCENT", allow_hyphen_values = true)]
        renew_before: Option<String>,
        /// ACME profile to order with, as the CA names it (shortlived, tlsserver); checked
        /// against the CA's directory [default: the issuer's].
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        /// Wait until the certificate is issued or issuance failed.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        timeout: u64,
        #[command(flatten)]
        conn: Connection,
    },
    /// List certificates with days left.
    Ls {
        /// Print JSON (an array of certificates, see docs/api.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one certificate with its versions and chains.
    Show {
        /// Certificate name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Issue a new version now.
    #[command(
        after_help = "When the CA answered an earlier request with Retry-After (say, a rate limit), \
renew refuses until that time has passed, as the scheduler does; --force sends the order anyway."
    )]
    Renew {
        /// Certificate name.
        name: String,
        /// Send the order even though the CA asked (Retry-After) to wait; the CA may refuse
        /// it again and a new Retry-After is then stored.
        #[arg(long)]
        force: bool,
        /// Wait until the new version is issued or issuance failed.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 600, value_name = "SECS")]
        timeout: u64,
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove a certificate and all its versions (keys included).
    Rm {
        /// Certificate name.
        name: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Write the current version as cert.pem, chain.pem, fullchain.pem, privkey.pem, bundle.pem.
    Export {
        /// Certificate name.
        name: String,
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(cmd: CertCommand, data_dir: PathBuf) -> Result<(), CliError> {
    let connect = |c: Connection| Api::connect(c.server, c.token, &data_dir);
    match cmd {
        CertCommand::Add {
            name,
            domains,
            issuer,
            key,
            renew_before,
            profile,
            wait,
            timeout,
            conn,
        } => {
            let api = connect(conn)?;
            let body = AddCertificate {
                name: name.clone(),
                domains,
                issuer,
                key,
                challenge: None,
                profile,
                renew_before,
            };
            let view: CertificateView = api.post("/api/v1/certificates", Some(&body)).await?;
            eprintln!(
                "{}: declared for {}; issuing",
                view.name,
                view.domains.join(", ")
            );
            if wait {
                wait_settled(&api, &name, None, timeout).await?;
            }
            Ok(())
        }
        CertCommand::Ls { json, conn } => {
            let certs: Vec<CertificateView> = connect(conn)?.get("/api/v1/certificates").await?;
            if json {
                print_json(&certs)
            } else {
                print!("{}", list_table(&certs));
                Ok(())
            }
        }
        CertCommand::Show { name, json, conn } => {
            let detail: CertificateDetail = connect(conn)?.get(&cert_path(&name)).await?;
            if json {
                print_json(&detail)
            } else {
                print!("{}", show_text(&detail));
                Ok(())
            }
        }
        CertCommand::Renew {
            name,
            force,
            wait,
            timeout,
            conn,
        } => {
            let api = connect(conn)?;
            let before: CertificateView = api.get(&cert_path(&name)).await?;
            let force = if force { "?force=true" } else { "" };
            let _: CertificateView = api
                .post(&format!("{}/renew{force}", cert_path(&name)), None::<&()>)
                .await?;
            eprintln!("{name}: renewal started");
            if wait {
                wait_settled(&api, &name, before.version, timeout).await?;
            }
            Ok(())
        }
        CertCommand::Rm { name, conn } => {
            connect(conn)?.delete(&cert_path(&name)).await?;
            eprintln!("{name}: removed");
            Ok(())
        }
        CertCommand::Export { name, dir, conn } => {
            let bundle: BundleView = connect(conn)?
                .get(&format!("{}/bundle", cert_path(&name)))
                .await?;
            let files = export::write_bundle(&dir, &bundle)
                .map_err(|e| CliError::failure(format!("writing into {}: {e}", dir.display())))?;
            eprintln!(
                "{name}: version {} (serial {}) written to {}: {}",
                bundle.version,
                bundle.serial,
                dir.display(),
                files.join(", ")
            );
            Ok(())
        }
    }
}

fn cert_path(name: &str) -> String {
    // Names are validated by the server; refuse path characters here so the URL stays ours.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("/api/v1/certificates/{safe}")
}

async fn wait_settled(
    api: &Api,
    name: &str,
    old_version: Option<u32>,
    timeout: u64,
) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut interval = WAIT_POLL_FIRST;
    loop {
        let view: CertificateView = api.get(&cert_path(name)).await?;
        match view.status.as_str() {
            "valid" if view.version != old_version => {
                eprintln!(
                    "{name}: issued version {} valid until {}",
                    view.version.unwrap_or_default(),
                    view.not_after.as_deref().unwrap_or("?")
                );
                return Ok(());
            }
            "failed" => {
                return Err(CliError::with_code(
                    exit::ISSUANCE_FAILED,
                    format!(
                        "{name}: issuance failed: {}",
                        view.last_error.unwrap_or_default()
                    ),
                ));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(CliError::with_code(
                exit::TIMEOUT,
                format!(
                    "{name}: still {} after {timeout} s; it goes on in the background",
                    view.status
                ),
            ));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 3 / 2).min(WAIT_POLL_MAX);
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::failure(e.to_string()))?;
    println!("{text}");
    Ok(())
}

fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..16).unwrap_or(rfc3339).replace('T', " ")
}

pub fn list_table(certs: &[CertificateView]) -> String {
    let header = [
        "NAME",
        "DOMAINS",
        "ISSUER",
        "NOT AFTER",
        "DAYS LEFT",
        "AUTO-RENEW",
        "STATUS",
        "NEXT",
        "LAST ERROR",
    ];
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.domains.join(","),
                c.issuer.clone(),
                c.not_after
                    .as_deref()
                    .map(short_time)
                    .unwrap_or_else(|| "-".into()),
                c.days_left
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                if c.auto_renew { "yes" } else { "no" }.into(),
                c.status.clone(),
                next_column(c),
                c.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table::render(&header, &rows)
}

/// When certfleet looks at a certificate next, for the NEXT column.
fn next_column(c: &CertificateView) -> String {
    if c.in_progress {
        return "now".into();
    }
    match (&c.next_attempt, &c.retry_after) {
        (_, Some(ra)) => format!("{} (CA asked)", short_time(ra)),
        (Some(next), None) => short_time(next),
        (None, None) => "-".into(),
    }
}

fn show_text(d: &CertificateDetail) -> String {
    let c = &d.certificate;
    let mut out = format!(
        "Name:        {}\nDomains:     {}\nIssuer:      {}\nKey:         {}\nChallenge:   {}\nStatus:      {}\nAuto-renew:  {}\nNot after:   {}\nDays left:   {}\n",
        c.name,
        c.domains.join(", "),
        c.issuer,
        c.key,
        c.challenge,
        c.status,
        if c.auto_renew { "yes" } else { "no" },
        c.not_after.as_deref().unwrap_or("-"),
        c.days_left
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(e) = &c.last_error {
        out.push_str(&format!("Last error:  {e}\n"));
    }
    let optional = [
        (
            "Failures:",
            (c.failure_streak > 0).then(|| format!("{} in a row", c.failure_streak)),
        ),
        (
            "Next:",
            c.in_progress
                .then(|| "now (an attempt is running)".to_string())
                .or_else(|| c.next_attempt.clone()),
        ),
        (
            "Not before:",
            c.retry_after
                .clone()
                .map(|t| format!("{t} (the CA's Retry-After)")),
        ),
        ("Profile:", c.profile.clone()),
        (
            "Renew:",
            c.renew_before
                .as_deref()
                .map(|r| match r.strip_suffix('%') {
                    Some(p) => format!("when {p}% of the lifetime is left"),
                    None => format!("{r} before expiry"),
                }),
        ),
        (
            "ARI window:",
            c.ari_window
                .as_ref()
                .map(|w| format!("{} .. {}", w.start, w.end)),
        ),
        (
            "Order:",
            c.order_url.clone().map(|u| format!("{u} (in flight)")),
        ),
    ];
    for (label, value) in optional {
        if let Some(value) = value {
            out.push_str(&format!("{label:<12} {value}\n"));
        }
    }
    for v in &d.versions {
        out.push_str(&format!(
            "\nVersion {}{}\n  Serial:      {}\n  Valid:       {} .. {}\n  Key:         {}\n  Issued at:   {}\n",
            v.version,
            if v.current { " (current)" } else { "" },
            v.serial,
            v.not_before,
            v.not_after,
            v.key,
            v.issued_at
        ));
        if let Some(root) = &v.root {
            out.push_str(&format!("  Root:        {root}\n"));
        }
        for (i, entry) in v.chain.iter().enumerate() {
            let role = if i == 0 { "Leaf" } else { "Chain" };
            out.push_str(&format!(
                "  {role:<12} {} (issued by {})\n",
                entry.subject, entry.issuer
            ));
        }
    }
    out
}
