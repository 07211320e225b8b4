//! `certfleet import-certbot`: move an existing certbot installation over without re-issuing.
//!
//! Each lineage — `renewal/NAME.conf` with the files it names, or a bare `live/NAME/` — is read
//! here, on the machine that holds the files, and sent to the server's import route: names,
//! key and current files become version 1, checked like any `cert import`. The renewal
//! configuration's `server` (the ACME directory) is matched against the server's configured
//! issuers: a match is renewed by that issuer from now on; otherwise the certificate is
//! imported as `manual` and the report says which directory had no issuer. A lineage that
//! cannot be read or is refused is reported and skipped; the rest are imported. certfleet
//! only reads the certbot tree, never writes to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use certfleet_server::views::{CertificateView, ImportCertificate, IssuerView};
use clap::Args;
use serde::Serialize;

use crate::cert::Connection;
use crate::client::Api;
use crate::{CliError, print_json};

/// Where certbot keeps its files by default.
pub const DEFAULT_DIR: &str = "/etc/letsencrypt";

#[derive(Debug, Args)]
#[command(
    after_help = "Each lineage keeps its name (the directory name under live/). Lineages \
whose renewal configuration names an ACME server that matches a configured issuer's directory \
are renewed by that issuer from now on; others are imported as manual certificates (put them \
under management later with `certfleet cert manage NAME --issuer ISSUER`). Stop certbot's \
timer or cron job once the import is done, so that only one of them renews.\n\nExit status: 0 \
when every lineage was imported (or already was), 1 when any was skipped."
)]
pub struct ImportCertbotArgs {
    /// certbot's configuration directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// PEM file with roots to trust besides the server's system roots (a private ACME CA).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Import expired lineages too.
    #[arg(long)]
    allow_expired: bool,
    #[command(flatten)]
    conn: Connection,
}

/// One lineage's outcome.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// The lineage (directory name under `live/`).
    pub lineage: String,
    /// `imported`, `exists` or `skipped`.
    pub result: &'static str,
    /// The ACME directory of its renewal configuration.
    pub server: Option<String>,
    /// The configured issuer that renews it, if one matched.
    pub issuer: Option<String>,
    /// Its names, once imported.
    pub domains: Vec<String>,
    /// What happened, for people.
    pub detail: String,
}

/// What a renewal configuration says (`key = value` lines, `[renewalparams]` section).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RenewalConf {
    /// Top-level keys: `cert`, `privkey`, `chain`, `fullchain`, `archive_dir`, `version`.
    pub files: BTreeMap<String, String>,
    /// `[renewalparams]`: `server`, `key_type`, `authenticator`, ...
    pub params: BTreeMap<String, String>,
}

/// Parse certbot's renewal configuration (ConfigObj syntax, as certbot writes it).
pub fn parse_renewal_conf(text: &str) -> RenewalConf {
    let mut conf = RenewalConf::default();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        match section.as_str() {
            "" => conf.files.insert(key, value),
            "renewalparams" => conf.params.insert(key, value),
            _ => None,
        };
    }
    conf
}

pub async fn run(args: ImportCertbotArgs, data_dir: &Path, json: bool) -> Result<(), CliError> {
    let lineages = lineages(&args.dir)?;
    let ca_pem = match &args.ca_file {
        Some(path) => crate::manual::read_pem("--ca-file", path)?,
        None => String::new(),
    };
    let tree = Tree {
        dir: args.dir.clone(),
        allow_expired: args.allow_expired,
        ca_pem,
    };
    let api = args.conn.connect(data_dir)?;
    let issuers: Vec<IssuerView> = api.get("/api/v1/issuers").await?;
    let mut outcomes = Vec::new();
    for lineage in lineages {
        outcomes.push(import_one(&api, &tree, &issuers, &lineage).await);
    }
    if json {
        print_json(&outcomes)?;
    } else {
        print!("{}", report(&outcomes));
    }
    let skipped = outcomes.iter().filter(|o| o.result == "skipped").count();
    if skipped > 0 {
        let rest = if skipped == outcomes.len() {
            "nothing was imported".to_string()
        } else {
            format!("the other {} were imported", outcomes.len() - skipped)
        };
        return Err(CliError::failure(format!(
            "{skipped} of {} lineage(s) skipped (see above); {rest}",
            outcomes.len()
        ))
        .kind("partial-import"));
    }
    Ok(())
}

/// The lineage names: every `renewal/*.conf` and every directory under `live/`.
fn lineages(dir: &Path) -> Result<Vec<String>, CliError> {
    let (renewal, live) = (dir.join("renewal"), dir.join("live"));
    if !renewal.is_dir() && !live.is_dir() {
        return Err(CliError::failure(format!(
            "--dir {}: no certbot installation there (neither renewal/ nor live/ exists)",
            dir.display()
        )));
    }
    let mut names = BTreeSet::new();
    let list = |path: &Path| -> Result<Vec<std::fs::DirEntry>, CliError> {
        match std::fs::read_dir(path) {
            Ok(entries) => Ok(entries.filter_map(Result::ok).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(CliError::failure(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    };
    for entry in list(&renewal)? {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".conf") {
            names.insert(name.to_string());
        }
    }
    for entry in list(&live)? {
        if entry.path().is_dir() {
            names.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names.into_iter().collect())
}

/// What every lineage's import shares.
struct Tree {
    dir: PathBuf,
    allow_expired: bool,
    ca_pem: String,
}

async fn import_one(api: &Api, args: &Tree, issuers: &[IssuerView], lineage: &str) -> Outcome {
    let mut outcome = Outcome {
        lineage: lineage.to_string(),
        result: "skipped",
        server: None,
        issuer: None,
        domains: Vec::new(),
        detail: String::new(),
    };
    if certfleet_core::CertName::parse(lineage).is_err() {
        outcome.detail = format!(
            "{lineage:?} is not usable as a certificate name (lowercase letters, digits, '-', '_', '.')"
        );
        return outcome;
    }
    let conf_path = args.dir.join("renewal").join(format!("{lineage}.conf"));
    let conf = match std::fs::read_to_string(&conf_path) {
        Ok(text) => Some(parse_renewal_conf(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            outcome.detail = format!("cannot read {}: {e}", conf_path.display());
            return outcome;
        }
    };
    outcome.server = conf.as_ref().and_then(|c| c.params.get("server").cloned());
    outcome.issuer = outcome.server.as_deref().and_then(|server| {
        issuers
            .iter()
            .find(|i| same_url(&i.directory, server))
            .map(|i| i.name.clone())
    });
    let file = |key: &str, default: &str| -> PathBuf {
        conf.as_ref()
            .and_then(|c| c.files.get(key))
            .map(PathBuf::from)
            .unwrap_or_else(|| args.dir.join("live").join(lineage).join(default))
    };
    let read = |what: &str, path: PathBuf| {
        std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
    };
    let files = (|| {
        Ok::<_, String>((
            read("certificate", file("cert", "cert.pem"))?,
            read("private key", file("privkey", "privkey.pem"))?,
            read("chain", file("chain", "chain.pem"))?,
        ))
    })();
    let (cert_pem, key_pem, chain_pem) = match files {
        Ok(f) => f,
        Err(e) => {
            outcome.detail = e;
            return outcome;
        }
    };
    let body = ImportCertificate {
        cert_pem,
        key_pem,
        chain_pem,
        ca_pem: args.ca_pem.clone(),
        allow_expired: args.allow_expired,
        issuer: outcome.issuer.clone(),
    };
    let path = format!("{}/import", crate::cert::cert_path(lineage));
    let existing: Result<CertificateView, CliError> =
        api.get(&crate::cert::cert_path(lineage)).await;
    if existing.is_ok() {
        outcome.result = "exists";
        outcome.detail = "a certificate of this name exists already; left as it is".to_string();
        return outcome;
    }
    match api.post::<_, CertificateView>(&path, Some(&body)).await {
        Ok(view) => {
            outcome.result = "imported";
            outcome.domains = view.domains.clone();
            outcome.detail = match (&outcome.issuer, &outcome.server) {
                (Some(issuer), _) => format!(
                    "version {} renewed by issuer {issuer}",
                    view.version.unwrap_or(1)
                ),
                (None, Some(server)) => format!(
                    "manual: its server {server} matches no configured issuer (certfleet cert manage {lineage} --issuer ISSUER)"
                ),
                (None, None) => format!(
                    "manual: no renewal configuration (certfleet cert manage {lineage} --issuer ISSUER)"
                ),
            };
        }
        Err(e) => {
            outcome.detail = e
                .relabel("cert_pem", "cert.pem")
                .relabel("key_pem", "privkey.pem")
                .relabel("chain_pem", "chain.pem")
                .to_string()
        }
    }
    outcome
}

/// Directory URLs compare without a trailing slash.
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn report(outcomes: &[Outcome]) -> String {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.lineage.clone(),
                o.result.to_string(),
                if o.domains.is_empty() {
                    "-".into()
                } else {
                    o.domains.join(",")
                },
                o.detail.clone(),
            ]
        })
        .collect();
    // Details are whole sentences: the last column is printed uncut.
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([8])
                .max()
                .unwrap_or(8)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(
        &["LINEAGE", "RESULT", "DOMAINS", "DETAIL"]
            .map(String::from)
            .to_vec(),
    )
    .chain(rows.iter())
    {
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_conf_as_certbot_writes_it() {
        let text = "# renew_before_expiry = 30 days\nversion = 2.1.0\n\
            archive_dir = /etc/letsencrypt/archive/a.example.test\n\
            cert = /etc/letsencrypt/live/a.example.test/cert.pem\n\
            privkey = /etc/letsencrypt/live/a.example.test/privkey.pem\n\n\
            # Options used in the renewal process\n[renewalparams]\n\
            account = 93802e5f038e60534304d1228f819c39\n\
            server = https://acme-v02.api.letsencrypt.org/directory\nkey_type = ecdsa\n";
        let conf = parse_renewal_conf(text);
        assert_eq!(
            conf.files["cert"],
            "/etc/letsencrypt/live/a.example.test/cert.pem"
        );
        assert_eq!(conf.files["version"], "2.1.0");
        assert_eq!(
            conf.params["server"],
            "https://acme-v02.api.letsencrypt.org/directory"
        );
        assert_eq!(conf.params["key_type"], "ecdsa");
        assert!(!conf.files.contains_key("account"));
        assert!(same_url("https://x/dir/", "https://x/dir"));
    }
}
