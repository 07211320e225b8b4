//! `certfleet`: the control plane (`certfleet server`) and the CLI that talks to it.

mod cert;
mod client;
mod dns;
mod export;
mod responder;
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
2 usage error, 3 server unreachable or token refused, 4 issuance failed (--wait), 5 timed out (--wait).";

#[derive(Debug, Parser)]
#[command(
    name = "certfleet",
    version,
    about = "Keeps every TLS certificate of a fleet valid, deployed and visible",
    long_about = "certfleet issues and renews certificates over ACME (RFC 8555) with any CA, keeps \
them in an encrypted store and shows what expires when.\n\nStart the control plane with \
`certfleet server`, then manage certificates with `certfleet cert ...` on the same machine (the \
CLI finds the server and its admin token in the data directory) or from anywhere with \
--server and --token.",
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
    /// Manage certificates (add, ls, show, renew, rm, export).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Answer HTTP-01 challenges on another node from the control plane's Redis mirror.
    Responder(responder::ResponderArgs),
    /// DNS-01 helpers (acme-dns registration).
    #[command(subcommand)]
    Dns(dns::DnsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
            Command::Responder(args) => responder::run(args).await,
            Command::Dns(cmd) => dns::run(cmd).await,
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
