//! `certfleet cert ...`: the certificate commands.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use certfleet_server::views::{AddCertificate, BundleView, CertificateDetail, CertificateView};
use clap::{Args, Subcommand};

use crate::client::{Api, Target};
use crate::{CliError, exit, export, print_json, table};

/// First interval between status checks while waiting; grows by half up to [`WAIT_POLL_MAX`].
const WAIT_POLL_FIRST: Duration = Duration::from_millis(10);
/// Longest interval between status checks while waiting.
const WAIT_POLL_MAX: Duration = Duration::from_millis(250);
/// How long `--wait` waits unless `--timeout` says otherwise, in seconds.
const DEFAULT_WAIT_SECS: u64 = 600;

#[derive(Debug, Args, Clone)]
pub struct Connection {
    /// URL of a server's REST API, such as http://127.0.0.1:8555 [env: CERTFLEET_SERVER].
    /// Without it the CLI talks to the server of the data directory over its socket.
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// API token [env: CERTFLEET_TOKEN]; required with --server. Without it the CLI uses the
    /// data directory's admin-token, and only over the local socket.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// With an https:// --server: trust the CA certificates in this PEM file (the server's
    /// tls/ca.pem).
    #[arg(long, global = true, env = "CERTFLEET_CA_FILE", value_name = "FILE")]
    server_ca_file: Option<PathBuf>,
    /// With an https:// --server: pin this SHA-256 fingerprint (`certfleet server info`).
    #[arg(long, global = true, env = "CERTFLEET_PIN", value_name = "SHA256")]
    server_pin: Option<String>,
}

impl Connection {
    /// Connect as these flags say (then the environment, then the data directory's socket).
    pub fn connect(self, data_dir: &std::path::Path) -> Result<Api, CliError> {
        let trust = crate::remote::trust(self.server_ca_file, self.server_pin)?;
        let target = Target {
            server: self.server,
            token: self.token,
        };
        Api::connect(target, &trust, data_dir)
    }
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Declare a certificate and start issuing it.
    #[command(
        after_help = "Example:\n  certfleet cert add www --domain www.example.com --domain example.com --wait"
    )]
    Add {
        /// Short name of the certificate: lowercase letters, digits, '-', '_', '.'.
        #[arg(value_name = "NAME")]
        name: String,
        /// DNS name to include; repeat for more. Unicode names are stored as A-labels
        /// (bücher.example → xn--bcher-kva.example); wildcards need dns-01.
        #[arg(
            long = "domain",
            short = 'd',
            value_name = "DOMAIN",
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
        /// Label KEY=VALUE that selects the agents receiving it (app=www); repeatable.
        #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Challenge type, answered by its solver (the only dns-01 solver, the built-in
        /// http-01 or tls-alpn-01) [default: http-01].
        #[arg(long, value_name = "TYPE", value_parser = ["http-01", "dns-01", "tls-alpn-01"])]
        challenge: Option<String>,
        /// Solver (a `[[solvers]]` name) for names no --solver-for matches.
        #[arg(long, value_name = "NAME")]
        solver: Option<String>,
        /// Solver for one identifier (`*.example.com=knot`) or a suffix
        /// (`.example.org=cloudflare`); repeatable.
        #[arg(
            long = "solver-for",
            value_name = "PATTERN=SOLVER",
            allow_hyphen_values = true
        )]
        solver_for: Vec<String>,
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
        /// How long --wait waits, in seconds [default: 600].
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// List certificates with days left (--json: an array of certificates, see docs/api.md).
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one certificate with its versions and chains.
    Show {
        /// Certificate name.
        name: String,
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
        /// How long --wait waits, in seconds [default: 600].
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Set or remove labels: KEY=VALUE sets, KEY- removes. Agents whose selector matches the
    /// new labels receive the certificate.
    #[command(after_help = "Example:\n  certfleet cert label www app=www tier=edge canary-")]
    Label {
        /// Certificate name.
        name: String,
        /// KEY=VALUE to set, KEY- to remove.
        #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
        changes: Vec<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Remove a certificate and all its versions (keys included); an order in flight is
    /// cancelled. Asks for confirmation on a terminal; elsewhere it needs --yes.
    #[command(
        after_help = "A certificate declared in the server's config file cannot be removed here: \
remove it from the file and restart the server first, or it would be declared again."
    )]
    Rm {
        /// Certificate name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Write the current version as cert.pem, chain.pem, fullchain.pem, privkey.pem, bundle.pem.
    #[command(
        after_help = "All five files are written to temporary names first and renamed \
into place only when every one is ready, so a server never sees a new certificate beside an old \
key. Replaced files keep their owner, group and mode (a key keeps its group and group-read bit, \
never bits for others); new files get 0644, keys 0600 (0640 with --group). A directory certfleet \
creates gets 0755 whatever the umask. Symbolic links in place of the files are refused.\n\n\
Example: certfleet cert export www --dir /etc/ssl/www --group www-data"
    )]
    Export {
        /// Certificate name.
        name: String,
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Owner of the files (user name or uid; needs root) [default: kept, or you].
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// Group of the files, e.g. the web server's (name or gid); keys become 0640.
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Mode of the files without the key, in octal [default: kept, or 0644].
        #[arg(long, value_name = "MODE")]
        mode: Option<String>,
        /// Mode of privkey.pem and bundle.pem, in octal, never open to others
        /// [default: kept (group-read at most), or 0600, or 0640 with --group].
        #[arg(long, value_name = "MODE")]
        key_mode: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Import a certificate bought or made elsewhere (source `manual`, not renewed); importing
    /// the same name again stores a new version.
    #[command(
        after_help = "The private key must match the certificate; the chain may come in any order (it is stored leaf-first) and must verify to a root the server trusts: the system's roots, or the roots in --ca-file (a private CA). Nothing is stored when anything is refused.\n\nExample:\n  certfleet cert import shop --cert shop.crt --key shop.key --chain intermediates.pem"
    )]
    Import {
        /// Certificate name: lowercase letters, digits, '-', '_', '.'.
        name: String,
        /// PEM file with the certificate (a full chain is accepted too).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// PEM file with its private key (PKCS#8, EC or RSA; not encrypted).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// PEM file with the intermediate certificates, in any order.
        #[arg(long, value_name = "FILE")]
        chain: Option<PathBuf>,
        /// PEM file with roots to trust besides the server's system roots (a private CA).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Import it even though it has expired.
        #[arg(long)]
        allow_expired: bool,
        /// Renew it over ACME with this configured issuer from now on (like `cert manage`).
        #[arg(long)]
        issuer: Option<String>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Revoke a version at the CA (RFC 8555 §7.6) through an issuer's ACME account; a revoked
    /// current version is replaced at once. Asks for confirmation on a terminal; elsewhere it
    /// needs --yes.
    #[command(
        after_help = "The version is marked revoked with the time and reason, and a `revoked` event is recorded. A revoked current version of a certificate certfleet renews is replaced by the scheduler at once; --reissue starts the replacement now and waits for it. An imported (manual) certificate is revoked through the account of --issuer: the CA revokes it only for the account that ordered it, and refuses otherwise (its answer is shown).

Example:
  certfleet cert revoke www --reason keyCompromise --reissue"
    )]
    Revoke {
        /// Certificate name.
        name: String,
        /// The version to revoke [default: the current one].
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        /// Why, as RFC 5280 names it [default: unspecified].
        #[arg(long, value_name = "REASON", value_parser = ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "unspecified"])]
        reason: Option<String>,
        /// Issue the replacement now and wait for it (the current version of a certificate
        /// certfleet renews).
        #[arg(long)]
        reissue: bool,
        /// The configured issuer whose account asks the CA [default: the certificate's;
        /// required for an imported certificate].
        #[arg(long)]
        issuer: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// How long --reissue waits for the new version, in seconds [default: 600].
        #[arg(long, value_name = "SECS", requires = "reissue")]
        timeout: Option<u64>,
        #[command(flatten)]
        conn: Connection,
    },
    /// Let certfleet renew an imported certificate over ACME with ISSUER from now on (the
    /// imported version stays current until then; `cert renew` renews at once).
    Manage {
        /// Certificate name.
        name: String,
        /// A configured issuer (see `certfleet server --config`).
        #[arg(long)]
        issuer: String,
        #[command(flatten)]
        conn: Connection,
    },
}

pub async fn run(cmd: CertCommand, data_dir: PathBuf, json: bool) -> Result<(), CliError> {
    let connect = |c: Connection| c.connect(&data_dir);
    match cmd {
        CertCommand::Add {
            name,
            domains,
            issuer,
            key,
            labels,
            challenge,
            solver,
            solver_for,
            renew_before,
            profile,
            wait,
            timeout,
            conn,
        } => {
            let labels = certfleet_core::Labels::parse_pairs(labels.iter().map(String::as_str))
                .map_err(|e| CliError::failure(format!("--label: {e}")))?;
            let mut solvers = std::collections::BTreeMap::new();
            for rule in &solver_for {
                let Some((pattern, solver)) = rule.split_once('=') else {
                    return Err(CliError::with_code(
                        2,
                        format!(
                            "--solver-for {rule:?}: write PATTERN=SOLVER, such as '*.example.com=knot'"
                        ),
                    ));
                };
                solvers.insert(pattern.to_string(), solver.to_string());
            }
            let api = connect(conn)?;
            let body = AddCertificate {
                name: name.clone(),
                domains,
                issuer,
                key,
                challenge,
                labels: labels.as_map().clone(),
                solver,
                solvers,
                profile,
                renew_before,
            };
            let view: CertificateView = api.post("/api/v1/certificates", Some(&body)).await?;
            if !json {
                eprintln!(
                    "{}: declared for {}; issuing",
                    view.name,
                    domain_list(&view, ", ")
                );
            }
            let view = if wait {
                wait_settled(&api, &name, (None, 0), timeout, json).await?
            } else {
                view
            };
            if json {
                print_json(&view)?;
            }
            Ok(())
        }
        CertCommand::Ls { conn } => {
            let certs: Vec<CertificateView> = connect(conn)?.get("/api/v1/certificates").await?;
            if json {
                print_json(&certs)
            } else {
                print!("{}", list_table(&certs));
                Ok(())
            }
        }
        CertCommand::Show { name, conn } => {
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
            let view: CertificateView = api
                .post(&format!("{}/renew{force}", cert_path(&name)), None::<&()>)
                .await?;
            if !json {
                let what = if before.version.is_some() {
                    "renewal"
                } else {
                    "issuance"
                };
                eprintln!("{name}: {what} started");
            }
            let view = if wait {
                let before = (before.version, before.failure_streak);
                wait_settled(&api, &name, before, timeout, json).await?
            } else {
                view
            };
            if json {
                print_json(&view)?;
            }
            Ok(())
        }
        CertCommand::Label {
            name,
            changes,
            conn,
        } => {
            let patch = label_patch(&changes)?;
            let view: CertificateView = connect(conn)?
                .patch(&format!("{}/labels", cert_path(&name)), &patch)
                .await?;
            if json {
                return print_json(&view);
            }
            let labels: Vec<String> = view
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            eprintln!(
                "{name}: labels {}; {} agent(s) entitled",
                if labels.is_empty() {
                    "(none)".to_string()
                } else {
                    labels.join(",")
                },
                view.deployed.entitled
            );
            Ok(())
        }
        CertCommand::Rm { name, yes, conn } => {
            let api = connect(conn)?;
            let detail: CertificateDetail = api.get(&cert_path(&name)).await?;
            if !yes && !confirm_removal(&detail)? {
                return Err(CliError::failure(format!("{name}: not removed")).kind("cancelled"));
            }
            api.delete(&cert_path(&name)).await?;
            if json {
                print_json(&serde_json::json!({
                    "name": name,
                    "removed": true,
                    "versions": detail.versions.len(),
                }))?;
            } else {
                eprintln!("{name}: removed with {} version(s)", detail.versions.len());
            }
            Ok(())
        }
        CertCommand::Import {
            name,
            cert,
            key,
            chain,
            ca_file,
            allow_expired,
            issuer,
            conn,
        } => {
            let files = crate::manual::ImportFiles {
                cert,
                key,
                chain,
                ca_file,
            };
            let api = connect(conn)?;
            crate::manual::import(&api, &name, &files, allow_expired, issuer, json).await
        }
        CertCommand::Revoke {
            name,
            version,
            reason,
            reissue,
            issuer,
            yes,
            timeout,
            conn,
        } => {
            let args = crate::revoke::RevokeArgs {
                name,
                version,
                reason,
                reissue,
                issuer,
                yes,
                timeout,
            };
            crate::revoke::run(&connect(conn)?, args, json).await
        }
        CertCommand::Manage { name, issuer, conn } => {
            crate::manual::manage(&connect(conn)?, &name, issuer, json).await
        }
        CertCommand::Export {
            name,
            dir,
            owner,
            group,
            mode,
            key_mode,
            conn,
        } => {
            let flags = export::OwnershipFlags {
                owner,
                group,
                mode,
                key_mode,
            };
            let ownership = flags.resolve()?;
            let bundle: BundleView = connect(conn)?
                .get(&format!("{}/bundle", cert_path(&name)))
                .await?;
            if let Some(at) = &bundle.revoked_at {
                eprintln!(
                    "warning: {name}: version {} (serial {}) was revoked at the CA at {at}: \
                     clients that check revocation refuse it; its replacement is not ready yet \
                     (certfleet cert show {name})",
                    bundle.version, bundle.serial
                );
            }
            let report = export::write_bundle(&dir, &bundle, ownership)?;
            if json {
                let files: Vec<serde_json::Value> = report
                    .files
                    .iter()
                    .map(|f| serde_json::json!({"name": f.name, "mode": format!("{:04o}", f.attrs.mode)}))
                    .collect();
                print_json(&serde_json::json!({
                    "name": name,
                    "version": bundle.version,
                    "serial": bundle.serial,
                    "dir": dir,
                    "changed": report.changed,
                    "files": files,
                }))?;
                return Ok(());
            }
            let files: Vec<String> = report
                .files
                .iter()
                .map(|f| format!("{} ({:04o})", f.name, f.attrs.mode))
                .collect();
            let verb = if report.changed {
                "written to"
            } else {
                "already in"
            };
            eprintln!(
                "{name}: version {} (serial {}) {verb} {}: {}",
                bundle.version,
                bundle.serial,
                dir.display(),
                files.join(", ")
            );
            Ok(())
        }
    }
}

/// On a terminal, ask before removing; elsewhere (scripts, pipes) refuse: removing keys
/// needs `--yes` there.
fn confirm_removal(detail: &CertificateDetail) -> Result<bool, CliError> {
    let c = &detail.certificate;
    let in_flight = if c.status == "issuing" {
        "; the order in flight is cancelled"
    } else {
        ""
    };
    crate::prompt::confirm(
        &format!(
            "Remove certificate {} ({}) with its {} version(s) and their private keys{in_flight}? [y/N] ",
            c.name,
            domain_list(c, ", "),
            detail.versions.len()
        ),
        &format!(
            "{}: not removed: removing a certificate deletes its private keys",
            c.name
        ),
    )
}

/// The names of a certificate, each with its Unicode form beside it when it has one.
fn domain_list(c: &CertificateView, sep: &str) -> String {
    c.domains
        .iter()
        .zip(
            c.domains_unicode
                .iter()
                .chain(std::iter::repeat(&String::new())),
        )
        .map(|(ascii, unicode)| {
            if unicode.is_empty() || unicode == ascii {
                ascii.clone()
            } else {
                format!("{ascii} ({unicode})")
            }
        })
        .collect::<Vec<_>>()
        .join(sep)
}

/// `KEY=VALUE` / `KEY-` arguments as a JSON merge patch (null removes).
fn label_patch(
    changes: &[String],
) -> Result<std::collections::BTreeMap<String, Option<String>>, CliError> {
    let mut patch = std::collections::BTreeMap::new();
    for change in changes {
        if let Some(key) = change.strip_suffix('-').filter(|k| !k.contains('=')) {
            certfleet_core::labels::check_key(key).map_err(|e| CliError::failure(e.to_string()))?;
            patch.insert(key.to_string(), None);
        } else {
            let (k, v) = certfleet_core::labels::parse_pair(change).map_err(|e| {
                CliError::failure(format!(
                    "{e}; use KEY=VALUE to set a label or KEY- to remove one"
                ))
            })?;
            patch.insert(k, Some(v));
        }
    }
    Ok(patch)
}

pub fn cert_path(name: &str) -> String {
    format!("/api/v1/certificates/{}", path_segment(name))
}

/// A name as one URL path segment. Names are validated by the server; characters that could
/// leave the segment (`/`, `?`, `%`, ...) become `_` here, so the URL stays ours.
pub fn path_segment(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Poll until a version newer than `before.0` is valid, or the attempt failed: the failure
/// streak grew past `before.1` and no attempt runs any more (a failure left from before the
/// request is not this attempt's).
pub(crate) async fn wait_settled(
    api: &Api,
    name: &str,
    before: (Option<u32>, u32),
    timeout: Option<u64>,
    json: bool,
) -> Result<CertificateView, CliError> {
    let (old_version, old_streak) = before;
    let timeout = timeout.unwrap_or(DEFAULT_WAIT_SECS);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut interval = WAIT_POLL_FIRST;
    loop {
        let view: CertificateView = api.get(&cert_path(name)).await?;
        match view.status.as_str() {
            "valid" if view.version != old_version => {
                if !json {
                    eprintln!(
                        "{name}: issued version {} valid until {}",
                        view.version.unwrap_or_default(),
                        view.not_after.as_deref().unwrap_or("?")
                    );
                }
                return Ok(view);
            }
            "failed" if !view.in_progress && view.failure_streak > old_streak => {
                return Err(CliError::with_code(
                    exit::ISSUANCE_FAILED,
                    format!(
                        "{name}: issuance failed: {}",
                        view.last_error.unwrap_or_default()
                    ),
                )
                .kind("issuance-failed"));
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
            )
            .kind("timeout"));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 3 / 2).min(WAIT_POLL_MAX);
    }
}

/// `2027-02-27T10:12:00Z` → `2027-02-27 10:12 UTC` (the API's times are all UTC).
fn short_time(rfc3339: &str) -> String {
    format!(
        "{} UTC",
        rfc3339.get(..16).unwrap_or(rfc3339).replace('T', " ")
    )
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
        "DEPLOYED",
        "LAST ERROR",
    ];
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                domain_list(c, ","),
                c.issuer.clone(),
                c.not_after
                    .as_deref()
                    .map(short_time)
                    .unwrap_or_else(|| "-".into()),
                c.days_left
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".into()),
                if c.auto_renew { "yes" } else { "no" }.into(),
                status_cell(c),
                next_column(c),
                deployed_cell(c),
                c.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table::render(&header, &rows)
}

/// The status, with the reason beside it when there is one.
fn status_cell(c: &CertificateView) -> String {
    match (&c.status_reason, &c.revoked_at) {
        (Some(reason), _) => format!("{} ({reason})", c.status),
        (None, Some(_)) if c.auto_renew => {
            format!("{} (current version revoked; replacing it)", c.status)
        }
        (None, Some(_)) => format!("{} (current version revoked)", c.status),
        (None, None) => c.status.clone(),
    }
}

/// `in sync/entitled`, or `-` when no agent is entitled.
fn deployed_cell(c: &CertificateView) -> String {
    if c.deployed.entitled == 0 {
        "-".into()
    } else {
        format!("{}/{}", c.deployed.in_sync, c.deployed.entitled)
    }
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
        "Name:        {}\nDomains:     {}\nIssuer:      {}\nSource:      {}\nKey:         {}\nChallenge:   {}\nStatus:      {}\nAuto-renew:  {}\nNot after:   {}\nDays left:   {}\n",
        c.name,
        domain_list(c, ", "),
        c.issuer,
        c.source,
        c.key,
        c.challenge,
        status_cell(c),
        if c.auto_renew { "yes" } else { "no" },
        c.not_after.as_deref().unwrap_or("-"),
        c.days_left
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push_str(&format!(
        "Labels:      {}\nDeployed:    {}\n",
        if labels.is_empty() {
            "-".to_string()
        } else {
            labels.join(",")
        },
        if c.deployed.entitled == 0 {
            "no agent is entitled".to_string()
        } else {
            format!(
                "{} of {} agents serve the current version",
                c.deployed.in_sync, c.deployed.entitled
            )
        }
    ));
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
        if let Some(at) = &v.revoked_at {
            let why = v
                .revocation_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            out.push_str(&format!("  Revoked:     {at}{why}\n"));
        }
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
