//! `certfleet server`.

use std::io::IsTerminal;
use std::path::PathBuf;

use certfleet_server::config::{self, Overrides};
use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::CliError;

#[derive(Debug, Args)]
#[command(
    after_help = "Without --config, the flags describe one issuer named `default`. \
With --config, flags override the [server] section and add to the `default` issuer.\n\n\
On first run the server creates, in the data directory: certfleet.db (the store), kek (the \
key-encryption key, mode 0600; or set CERTFLEET_KEK to a base64 32-byte key) and admin-token \
(mode 0600, printed once).\n\nExample with a local Pebble test CA:\n  certfleet server \
--directory https://127.0.0.1:14000/dir --ca-root pebble-ca.pem --http01-listen 127.0.0.1:5002"
)]
pub struct ServerArgs {
    /// TOML configuration file (issuers, solvers, certificates); validated before anything starts.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the REST API [default: 127.0.0.1:8555].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Address of the HTTP-01 responder; the CA must reach it on port 80 of each name
    /// [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    http01_listen: Option<String>,
    /// ACME directory URL of the default issuer [default: Let's Encrypt production].
    #[arg(long, value_name = "URL")]
    directory: Option<String>,
    /// Extra PEM trust root for the CA's HTTPS endpoint (private CA, Pebble); repeatable.
    #[arg(long = "ca-root", value_name = "FILE")]
    ca_roots: Vec<PathBuf>,
    /// Account contact, such as mailto:ops@example.com; repeatable.
    #[arg(long = "contact", value_name = "URL")]
    contacts: Vec<String>,
    /// Prefer the CA's alternate chain whose top certificate is issued by this common name
    /// (RFC 8555 §7.4.2), such as "ISRG Root X1"; the default chain when none matches.
    #[arg(long, value_name = "ISSUER CN")]
    preferred_chain: Option<String>,
    /// Orders in flight at once [default: 16].
    #[arg(long, value_name = "N")]
    max_concurrent_orders: Option<usize>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
}

pub async fn run(args: ServerArgs, data_dir: Option<PathBuf>) -> Result<(), CliError> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CERTFLEET_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let file = match &args.config {
        Some(path) => config::load_file(path)
            .map_err(|e| CliError::failure(format!("invalid configuration: {e}")))?,
        None => config::FileConfig::default(),
    };
    let overrides = Overrides {
        data_dir,
        listen: args.listen,
        http01_listen: args.http01_listen,
        directory: args.directory,
        ca_roots: args.ca_roots,
        contacts: args.contacts,
        max_concurrent_orders: args.max_concurrent_orders,
        preferred_chain: args.preferred_chain,
    };
    let settings = file
        .resolve(overrides)
        .map_err(|e| CliError::failure(format!("invalid configuration: {e}")))?;
    if args.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    let running = certfleet_server::start(settings)
        .await
        .map_err(|e| CliError::failure(e.to_string()))?;
    shutdown_signal().await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
