//! `certfleet server`.

use std::path::PathBuf;

use certfleet_server::config::{self, Overrides};
use clap::{Args, Subcommand};

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
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    command: Option<ServerCommand>,
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
    /// Address of the TLS-ALPN-01 responder (RFC 8737); the CA must reach it on port 443 of
    /// each name. Without it there is no tls-alpn-01 solver.
    #[arg(long, value_name = "ADDR")]
    tls_alpn_listen: Option<String>,
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
    /// Address of the REST API over TLS, for agents and CLIs on other machines (e.g.
    /// 0.0.0.0:8556). The plain --listen stays on loopback.
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<String>,
    /// PEM certificate chain for --tls-listen [default: from an internal CA created in the
    /// data directory, whose fingerprint is printed and shown by `certfleet server info`].
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Extra name (DNS or IP) of the internal CA's certificate; repeatable.
    #[arg(long = "tls-name", value_name = "NAME")]
    tls_names: Vec<String>,
    /// How long HTTP-01 waits for every agent serving a name to confirm its token, seconds
    /// [default: 60].
    #[arg(long = "http01-confirm-timeout", value_name = "SECS")]
    http01_confirm_timeout: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum ServerCommand {
    /// Show the data directory, where the API listens, and the TLS fingerprint agents pin.
    Info,
}

pub async fn run(args: ServerArgs, data_dir: Option<PathBuf>, json: bool) -> Result<(), CliError> {
    if let Some(ServerCommand::Info) = args.command {
        let dir = data_dir.unwrap_or_else(config::default_data_dir);
        return info(&dir, json);
    }
    crate::init_logs();
    let file = match &args.config {
        Some(path) => config::load_file(path).map_err(|e| {
            CliError::failure(format!("invalid configuration: {e}")).kind("invalid-config")
        })?,
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
        tls_listen: args.tls_listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_names: args.tls_names,
        http01_confirm_timeout_secs: args.http01_confirm_timeout,
        tls_alpn_listen: args.tls_alpn_listen,
        preferred_chain: args.preferred_chain,
    };
    let mut settings = file.resolve(overrides).map_err(|e| {
        CliError::failure(format!("invalid configuration: {e}")).kind("invalid-config")
    })?;
    settings.config_file = args.config.clone();
    if args.check_config {
        if json {
            crate::print_json(&serde_json::json!({"valid": true}))?;
        } else {
            println!("configuration is valid");
        }
        return Ok(());
    }
    let running = certfleet_server::start(settings)
        .await
        .map_err(|e| CliError::failure(e.to_string()).kind("startup"))?;
    shutdown_signal().await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
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

/// What `server info` shows.
#[derive(Debug, serde::Serialize)]
struct Info {
    data_dir: String,
    running: bool,
    pid: Option<u32>,
    api: Option<String>,
    tls_api: Option<String>,
    tls_fingerprint: Option<String>,
    ca_file: Option<String>,
}

fn info(dir: &std::path::Path, json: bool) -> Result<(), CliError> {
    use certfleet_server::datadir::DataDir;
    let data = DataDir::new(dir);
    let server = data.read_server_info().ok();
    let running = server.as_ref().is_some_and(|s| {
        std::path::Path::new("/proc")
            .join(s.pid.to_string())
            .exists()
    });
    let ca = certfleet_server::tls::CaFiles::new(&data);
    let fingerprint = server
        .as_ref()
        .and_then(|s| s.tls_fingerprint.clone())
        .or_else(|| ca.fingerprint());
    let info = Info {
        data_dir: dir.display().to_string(),
        running,
        pid: server.as_ref().map(|s| s.pid),
        api: server.as_ref().map(|s| s.api.clone()),
        tls_api: server.as_ref().and_then(|s| s.tls_api.clone()),
        tls_fingerprint: fingerprint,
        ca_file: ca.ca().exists().then(|| ca.ca().display().to_string()),
    };
    if json {
        let text =
            serde_json::to_string_pretty(&info).map_err(|e| CliError::failure(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    let state = match (running, info.pid) {
        (true, Some(pid)) => format!("running (pid {pid})"),
        (false, Some(pid)) => format!("not running (last pid {pid})"),
        _ => "not running".into(),
    };
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("Data directory:   {}", info.data_dir);
    println!("Server:           {state}");
    println!("API:              {}", or_dash(&info.api));
    println!("API over TLS:     {}", or_dash(&info.tls_api));
    println!("TLS fingerprint:  {}", or_dash(&info.tls_fingerprint));
    println!("CA file:          {}", or_dash(&info.ca_file));
    if let Some(fp) = &info.tls_fingerprint {
        println!("\nOn agents, in agent.toml:  pin = \"{fp}\"");
    }
    Ok(())
}
