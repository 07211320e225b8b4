//! `certfleet dns ...`: DNS-01 helpers. `dns acme-dns register` creates acme-dns accounts,
//! stores them in the credentials file the `acme-dns` solver reads, and prints the CNAME each
//! domain's owner must create.

use std::path::PathBuf;
use std::time::Duration;

use certfleet_core::DnsName;
use certfleet_solvers::api_client::ApiClient;
use certfleet_solvers::dns::acme_dns::{self, read_accounts};
use clap::Subcommand;

use crate::CliError;

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// The acme-dns provider.
    #[command(subcommand, name = "acme-dns")]
    AcmeDns(AcmeDnsCommand),
}

#[derive(Debug, Subcommand)]
pub enum AcmeDnsCommand {
    /// Register an account per domain and print the CNAME records to create.
    #[command(
        after_help = "Example:\n  certfleet dns acme-dns register --api https://auth.example.org \
--domain example.com --credentials /etc/certfleet/acme-dns.json\nthen create, in the example.com zone:\n  \
_acme-challenge.example.com. CNAME <uuid>.auth.example.org.\nand point a solver at the same file:\n  \
[[solvers]]\n  type = \"acme-dns\"\n  api_url = \"https://auth.example.org\"\n  credentials_file = \"/etc/certfleet/acme-dns.json\"\n\n\
A domain already in the file keeps its account (its CNAME is printed again)."
    )]
    Register {
        /// Base URL of the acme-dns API.
        #[arg(long, value_name = "URL")]
        api: String,
        /// Domain to register (without `*.`: a wildcard uses its base name); repeatable.
        #[arg(long = "domain", short = 'd', required = true, value_name = "NAME")]
        domains: Vec<String>,
        /// Credentials file (JSON, created with mode 0600).
        #[arg(long, value_name = "FILE")]
        credentials: PathBuf,
        /// Network allowed to update the record (CIDR); repeatable [default: any].
        #[arg(long = "allow-from", value_name = "CIDR")]
        allow_from: Vec<String>,
    },
}

/// Run `certfleet dns ...`; with `json`, the CNAMEs print as `[{"domain", "name", "cname"}]`.
pub async fn run(cmd: DnsCommand, json: bool) -> Result<(), CliError> {
    let DnsCommand::AcmeDns(AcmeDnsCommand::Register {
        api,
        domains,
        credentials,
        allow_from,
    }) = cmd;
    let mut names = Vec::new();
    for d in &domains {
        let n = DnsName::parse(d).map_err(|e| CliError::with_code(2, format!("--domain: {e}")))?;
        names.push(n.base().to_string());
    }
    let mut accounts = read_accounts(&credentials).map_err(|e| CliError::failure(e.to_string()))?;
    let client =
        ApiClient::new(Duration::from_secs(30)).map_err(|e| CliError::failure(e.to_string()))?;
    let mut changed = false;
    for name in &names {
        if accounts.contains_key(name) {
            continue;
        }
        let account = acme_dns::register(&client, &api, &allow_from)
            .await
            .map_err(|e| CliError::failure(e.to_string()))?;
        accounts.insert(name.clone(), account);
        changed = true;
    }
    if changed {
        let text =
            serde_json::to_vec_pretty(&accounts).map_err(|e| CliError::failure(e.to_string()))?;
        certfleet_server::fsutil::write_atomic(&credentials, &text, 0o600)
            .map_err(|e| CliError::failure(format!("writing {}: {e}", credentials.display())))?;
    }
    let rows: Vec<(String, String, String)> = names
        .iter()
        .map(|n| {
            let target = accounts[n].fulldomain.trim_end_matches('.').to_string();
            (n.clone(), format!("_acme-challenge.{n}"), target)
        })
        .collect();
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|(d, n, c)| serde_json::json!({"domain": d, "name": n, "cname": c}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else {
        eprintln!(
            "Create these records in each domain's zone (accounts saved in {}):",
            credentials.display()
        );
        for (_, n, c) in rows {
            println!("{n}. CNAME {c}.");
        }
    }
    Ok(())
}
