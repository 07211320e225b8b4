//! `certfleet`: the control plane (`certfleet server`) and the CLI that talks to it.

mod cert;
mod check;
mod client;
mod export;
mod fleet_cli;
mod remote;
mod server;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, documented in `--help`.
pub mod exit {
    /// The command failed (invalid input, refused by the server, I/O error).
    pub const FAILURE: u8 = 1;
    /// The server could not be reached or refused the token.
    pub const UNREACHABLE: u8 = 3;
    /// `--wait`: issuance finished and failed.
    pub const ISSUANCE_FAILED: u8 = 4;
    /// `--wait`: gave up waiting.
    pub const TIMEOUT: u8 = 5;
}

const EXIT_CODES: &str = "Exit codes: 0 success, 1 failure (invalid input, refused by the server), \
2 usage error, 3 server unreachable or token refused, 4 issuance failed (--wait), 5 timed out (--wait); \
`check` adds 6-9 (see `certfleet check --help`).";

#[derive(Debug, Parser)]
#[command(
    name = "certfleet",
    version,
    about = "Keeps every TLS certificate of a fleet valid, deployed and visible",
    long_about = "certfleet issues and renews certificates over ACME (RFC 8555) with any CA, keeps \
them in an encrypted store and shows what expires when.\n\nStart the control plane with \
`certfleet server`, then manage certificates with `certfleet cert ...` on the same machine (the \
CLI finds the server and its admin token in the data directory) or from anywhere with \
--server https://HOST:PORT, --token and --pin. On each web server, `certfleet agent` deploys the \
certificates and proves by TLS handshake that they are served; `certfleet check HOST` shows what \
any endpoint serves.",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Data directory of the server (SQLite store, key-encryption key, admin token).
    /// Default: /var/lib/certfleet for root, ~/.local/share/certfleet otherwise.
    #[arg(long, global = true, env = "CERTFLEET_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: REST API, HTTP-01 responder and background issuance.
    Server(server::ServerArgs),
    /// Manage certificates (add, ls, show, label, renew, rm, export).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Run the agent on a web server (--config F [--once]), or list agents and manage their
    /// tokens (ls, token).
    Agent(fleet_cli::AgentArgs),
    /// Manage API tokens of any role (admin, viewer, agent).
    #[command(subcommand)]
    Token(fleet_cli::TokenCommand),
    /// Show what an endpoint really serves, and whether it is valid, trusted and current.
    Check(check::CheckArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The agent is small and mostly idle: one thread keeps its memory and wake-ups low.
    let mut builder = match &cli.command {
        Command::Agent(args) if args.runs_agent() => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let data_dir = cli.data_dir;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server::run(args, data_dir).await,
            Command::Cert(cmd) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                cert::run(cmd, dir).await
            }
            Command::Agent(args) if args.runs_agent() => {
                init_logs();
                fleet_cli::run_agent(args).await
            }
            Command::Agent(args) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                fleet_cli::run_agent_command(args, dir).await
            }
            Command::Token(cmd) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                fleet_cli::run_token(cmd, dir).await
            }
            Command::Check(args) => {
                let dir = data_dir.unwrap_or_else(certfleet_server::config::default_data_dir);
                check::run(args, dir).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code)
        }
    }
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
    message: String,
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
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
