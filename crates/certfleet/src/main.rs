//! `certfleet`: the control plane (`certfleet server`) and the CLI that talks to it.

mod account;
mod cert;
mod certbot;
mod check;
mod client;
mod dns;
mod events;
mod export;
mod fleet_cli;
mod manual;
mod prompt;
mod remote;
mod responder;
mod revoke;
mod run;
mod server;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, documented in `--help`.
pub mod exit {
    /// The command failed (invalid input, refused by the server, I/O error).
    pub const FAILURE: u8 = 1;
    /// The command line was not understood (clap's own code).
    pub const USAGE: u8 = 2;
    /// The server could not be reached or refused the token.
    pub const UNREACHABLE: u8 = 3;
    /// `--wait`: issuance finished and failed.
    pub const ISSUANCE_FAILED: u8 = 4;
    /// `--wait`: gave up waiting.
    pub const TIMEOUT: u8 = 5;
}

const EXIT_CODES: &str = "Exit codes: 0 success, 1 failure (invalid input, refused by the server), \
2 usage error, 3 server not running, unreachable or token refused, 4 issuance failed (--wait), \
5 timed out (--wait); `check` adds 6-9 (see `certfleet check --help`).\n\nWith --json, results are printed as JSON on stdout and errors as a JSON \
problem object ({\"type\", \"title\", \"detail\", \"field\", \"exit_code\"}) on stderr, with the \
same exit codes.";

#[derive(Debug, Parser)]
#[command(
    name = "certfleet",
    version,
    about = "Keeps every TLS certificate of a fleet valid, deployed and visible",
    long_about = "certfleet issues and renews certificates over ACME (RFC 8555) with any CA, keeps \
them in an encrypted store and shows what expires when.\n\nStart the control plane with \
`certfleet server`, then manage certificates with `certfleet cert ...` on the same machine (the \
CLI finds the server and its admin token in the data directory) or from anywhere with \
--server https://HOST:PORT, --token and --server-pin. On each web server, `certfleet agent` deploys the \
certificates and proves by TLS handshake that they are served; `certfleet check HOST` shows what \
any endpoint serves. On a single machine without a server, `certfleet run --once --config F` \
(from a systemd timer or cron) issues, renews and deploys what is due, and exits.",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Data directory of the server (SQLite store, key-encryption key, admin token).
    /// Default: /var/lib/certfleet for root, ~/.local/share/certfleet otherwise.
    #[arg(long, global = true, env = "CERTFLEET_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Print results as JSON on stdout, and errors as a JSON problem object on stderr.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: REST API, HTTP-01 responder and background issuance.
    Server(server::ServerArgs),
    /// Manage certificates (add, ls, show, label, renew, rm, export, import, revoke, manage).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// The ACME account of each issuer: list, update contacts, roll over the key.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Show the event log: issued, renewed, renewal_failed, expiring, imported, ... (newest
    /// last; --json: newest first, as the API returns it).
    Events(events::EventsArgs),
    /// Import an existing certbot installation's lineages (names, key, current files).
    ImportCertbot(certbot::ImportCertbotArgs),
    /// Standalone, for cron and systemd timers: issue or renew what is due, write the files,
    /// run the deploy commands, exit (`run --once --config F`; no server needed).
    Run(run::RunArgs),
    /// Run the agent on a web server (--config F [--once]), or list agents and manage their
    /// tokens (ls, token).
    Agent(fleet_cli::AgentArgs),
    /// Manage API tokens of any role (admin, viewer, agent).
    #[command(subcommand)]
    Token(fleet_cli::TokenCommand),
    /// Show what an endpoint really serves, and whether it is valid, trusted and current.
    Check(check::CheckArgs),
    /// Answer HTTP-01 challenges on another node from the control plane's Redis mirror.
    Responder(responder::ResponderArgs),
    /// DNS-01 helpers (acme-dns registration).
    #[command(subcommand)]
    Dns(dns::DnsCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let json = cli.json;
    // The agent is small and mostly idle: one thread keeps its memory and wake-ups low.
    let mut builder = match &cli.command {
        Command::Agent(args) if args.runs_agent() => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return report(
                &CliError::failure(format!("cannot start the async runtime: {e}")),
                json,
            );
        }
    };
    let data_dir = cli.data_dir;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args, data_dir, json).await,
            Command::Cert(cmd) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                cert::run(cmd, dir, json).await
            }
            Command::Account(cmd) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                account::run(cmd, &dir, json).await
            }
            Command::Events(args) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                events::run(args, &dir, json).await
            }
            Command::ImportCertbot(args) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                certbot::run(args, &dir, json).await
            }
            Command::Agent(args) if args.runs_agent() => {
                init_logs();
                fleet_cli::run_agent(args).await
            }
            Command::Agent(args) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                fleet_cli::run_agent_command(args, dir, json).await
            }
            Command::Token(cmd) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                fleet_cli::run_token(cmd, dir, json).await
            }
            Command::Run(args) => run::run(args, data_dir, json).await,
            Command::Responder(args) => responder::run(args).await,
            Command::Dns(cmd) => dns::run(cmd, json).await,
            Command::Check(args) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                check::run(args, dir, json).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e, json),
    }
}

/// Print `e` on stderr (as a JSON problem with `--json`) and turn it into the exit code.
fn report(e: &CliError, json: bool) -> ExitCode {
    if json {
        eprintln!("{}", e.to_json());
    } else {
        eprintln!("error: {e}");
    }
    ExitCode::from(e.code)
}

/// clap's own errors: help and version print normally; a usage error with `--json` on the
/// command line becomes a JSON problem (exit 2).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let wants_json = std::env::args().any(|a| a == "--json");
    if !wants_json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit();
    }
    // clap's message up to the usage line: the first line and the lines that list what is
    // missing or wrong (`  --domain <DOMAIN>`).
    let text = e.to_string();
    let detail = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string();
    let detail = if detail.is_empty() {
        "usage error".to_string()
    } else {
        detail
    };
    report(
        &CliError::with_code(exit::USAGE, detail).kind("usage"),
        true,
    )
}

/// Logs to standard error, filtered by `CERTFLEET_LOG` (default `info`).
pub fn init_logs() {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CERTFLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// An error with the exit code it should produce.
#[derive(Debug)]
pub struct CliError {
    code: u8,
    kind: String,
    title: Option<Box<str>>,
    message: String,
    field: Option<String>,
    errors: Box<[certfleet_server::problem::FieldError]>,
}

impl CliError {
    /// A failure (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self::with_code(exit::FAILURE, message)
    }

    /// A failure with a specific exit code.
    pub fn with_code(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            kind: "failure".into(),
            title: None,
            message: message.into(),
            field: None,
            errors: Box::default(),
        }
    }

    /// Set the problem kind shown with `--json` (`urn:certfleet:problem:<kind>`).
    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = kind.to_string();
        self
    }

    /// The server's problem document, passed through (exit 1).
    pub fn from_problem(p: certfleet_server::problem::Problem) -> Self {
        let message = if p.errors.len() > 1 {
            let mut text = format!("{} errors:", p.errors.len());
            for e in &p.errors {
                text.push_str(&format!("\n  {}: {}", e.field, e.detail));
            }
            text
        } else {
            match &p.field {
                Some(field) => format!("{field}: {}", p.detail),
                None => p.detail.clone(),
            }
        };
        let kind = p
            .kind
            .strip_prefix(certfleet_server::problem::PROBLEM_TYPE_PREFIX)
            .unwrap_or(&p.kind)
            .to_string();
        Self {
            code: exit::FAILURE,
            kind,
            title: Some(p.title.into()),
            message,
            field: p.field,
            errors: p.errors.into(),
        }
    }

    /// When the error is about `field`, name it `label` instead (`--key /tmp/k.pem`).
    pub fn relabel(mut self, field: &str, label: &str) -> Self {
        if self.field.as_deref() == Some(field)
            && let Some(rest) = self.message.strip_prefix(&format!("{field}: "))
        {
            self.message = format!("{label}: {rest}");
        }
        self
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    fn to_json(&self) -> String {
        let title = self
            .title
            .as_deref()
            .map(str::to_string)
            .unwrap_or_else(|| {
                let words = self.kind.replace('-', " ");
                let mut chars = words.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            });
        let mut problem = serde_json::json!({
            "type": format!("{}{}", certfleet_server::problem::PROBLEM_TYPE_PREFIX, self.kind),
            "title": title,
            "detail": self.message,
            "field": self.field,
            "exit_code": self.code,
        });
        if !self.errors.is_empty() {
            problem["errors"] = serde_json::json!(self.errors);
        }
        problem.to_string()
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Print `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::failure(e.to_string()))?;
    println!("{text}");
    Ok(())
}
