//! `certfleet run --once --config F`: issue or renew what is due on this machine, write the
//! files, run the deploy commands, and exit — for cron and systemd timers, without a server.

use std::path::PathBuf;

use certfleet_server::config::{self, Overrides};
use certfleet_server::standalone::{self, CertificateRun, RunReport};
use clap::Args;

use crate::{CliError, print_json};

#[derive(Debug, Args)]
#[command(
    after_help = "Quiet when nothing was due: no output, exit 0. Otherwise a line on stdout \
for each version issued or renewed and for each certificate whose files were written (with \
its deploy command's exit status), and each failure (with the CA's or the command's words) on \
stderr. Certificates taken out of the file are left alone (their versions stay stored); \
--list shows what the runs keep.\n\nExit codes: 0 nothing failed, 1 a certificate could not be \
issued or renewed, its files not written or its deploy command failed (the next run tries \
again), or the run could not start (configuration, data directory in use by a server or \
another run, a listener); 2 usage.\n\nLogs go to stderr at level warn (CERTFLEET_LOG=info for \
more). Example config and systemd units: docs/standalone.md, contrib/systemd/.\n\nExample:\n  \
certfleet run --once --config /etc/certfleet/certfleet.toml\n  \
certfleet run --list --config /etc/certfleet/certfleet.toml"
)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["once", "list"])))]
pub struct RunArgs {
    /// Do the work once and exit (`certfleet server` is the long-running mode).
    #[arg(long)]
    once: bool,
    /// Change nothing: list the certificates the runs keep in the data directory, as `cert
    /// ls` does for a server (names, expiry, days left, status, next renewal, last error;
    /// `--json` for every field).
    #[arg(long)]
    list: bool,
    /// TOML configuration file: issuers, solvers, and certificates each with its `dir` (and
    /// optionally `deploy`, `owner`, `group`, `mode`, `key_mode`).
    #[arg(long, value_name = "FILE", required = true)]
    config: PathBuf,
}

/// Default log filter of a run: quiet unless something is wrong. A failed attempt is in the
/// run's report (`error: NAME: ...`), so the engine's own warning of it is not repeated.
const RUN_LOG_FILTER: &str = "warn,certfleet_server::renewal::failed=error";

pub async fn run(args: RunArgs, data_dir: Option<PathBuf>, json: bool) -> Result<(), CliError> {
    init_logs();
    let invalid =
        |e: String| CliError::failure(format!("invalid configuration: {e}")).kind("invalid-config");
    let file = config::load_file(&args.config).map_err(|e| invalid(e.to_string()))?;
    let overrides = Overrides {
        data_dir,
        ..Overrides::default()
    };
    let mut settings = file
        .resolve(overrides)
        .map_err(|e| invalid(e.to_string()))?;
    settings.config_file = Some(args.config.clone());
    if args.list {
        let certs = standalone::list(&settings)
            .await
            .map_err(|e| CliError::failure(e.to_string()).kind("startup"))?;
        return if json {
            print_json(&certs)
        } else {
            print!("{}", crate::cert::list_table(&certs));
            Ok(())
        };
    }
    check_for_run(&settings, &args.config).map_err(invalid)?;
    let report = standalone::run_once(settings)
        .await
        .map_err(|e| CliError::failure(e.to_string()).kind("startup"))?;
    if json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    if report.failed() {
        let failed: Vec<&str> = report
            .certificates
            .iter()
            .filter(|c| c.failed())
            .map(|c| c.name.as_str())
            .collect();
        return Err(CliError::failure(format!(
            "{} certificate(s) failed: {}",
            failed.len(),
            failed.join(", ")
        ))
        .kind("run-failed"));
    }
    Ok(())
}

/// A run needs certificates, each with a directory for its files.
fn check_for_run(settings: &config::Settings, file: &std::path::Path) -> Result<(), String> {
    if settings.certificates.is_empty() {
        return Err(format!(
            "{}: no [[certificates]]: there is nothing for run --once to do",
            file.display()
        ));
    }
    let missing: Vec<String> = settings
        .certificates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.local.is_none())
        .map(|(i, c)| {
            format!(
                "certificates[{i}].dir: run --once writes the files of {:?} into a directory; \
                 set one, such as dir = \"/etc/ssl/{}\"",
                c.name.as_str(),
                c.name
            )
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("\n  "))
    }
}

fn init_logs() {
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CERTFLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(RUN_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn print_report(report: &RunReport) {
    for c in &report.certificates {
        for line in lines(c) {
            println!("{line}");
        }
        for note in &c.notes {
            eprintln!("{}: note: {note}", c.name);
        }
        if let Some(error) = &c.error {
            // A failed certificate is tried again at every run unless the CA asked to wait,
            // which the error then says itself.
            let next = if error.contains("the CA asked to wait") {
                ""
            } else {
                " (the next run tries again)"
            };
            eprintln!("error: {}: {error}{next}", c.name);
        }
        if let Some(error) = c.deploy.as_ref().and_then(|d| d.error.as_ref()) {
            eprintln!("error: {}: {error}", c.name);
        }
    }
}

/// What went well for one certificate, for people.
fn lines(c: &CertificateRun) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(i) = &c.issued {
        let what = if i.renewed { "renewed" } else { "issued" };
        out.push(format!(
            "{}: {what} version {} (serial {}), valid until {}",
            c.name, i.version, i.serial, i.not_after
        ));
    }
    if let Some(d) = c.deploy.as_ref().filter(|d| d.error.is_none()) {
        let files = if d.files_changed {
            format!(
                "files of version {} written to {}",
                d.version,
                d.dir.display()
            )
        } else {
            format!(
                "files of version {} already in {}",
                d.version,
                d.dir.display()
            )
        };
        let command = match (&d.command, d.status) {
            (Some(argv), Some(status)) => {
                format!(
                    "; deploy command `{}` exited with {status}",
                    certfleet_deploy::hooks::display_argv(argv)
                )
            }
            _ => String::new(),
        };
        out.push(format!("{}: {files}{command}", c.name));
    }
    out
}
