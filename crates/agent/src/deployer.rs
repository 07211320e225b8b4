//! One deployment: for each target that takes the certificate, write the files (all or
//! nothing), run the check hook, run the reload hook, and handshake with the verify endpoint
//! until the new serial is served. Any failure puts the previous files back and reloads again,
//! so the server goes on serving the old certificate; the report says what failed.

use certfleet_core::DeploymentReport;
use certfleet_deploy::probe::{Wait, sni_for, wait_for_serial};
use certfleet_deploy::{Bundle, HookEnv, HookOutcome, run_hook};

use crate::config::TargetSettings;

/// The result of deploying to one target.
struct Outcome {
    verified: bool,
    served_serial: Option<String>,
    hook: Option<HookOutcome>,
    error: Option<String>,
    rolled_back: bool,
    /// Why nothing was reloaded or verified although the files are in place.
    not_running: Option<String>,
}

/// Deploy `bundle` to every target in `targets` and sum it up in one report; the second value
/// says why nothing was verified when a web server was not running (not a failure).
pub async fn deploy(
    bundle: &Bundle,
    targets: &[&TargetSettings],
) -> (DeploymentReport, Option<String>) {
    let mut not_running = None;
    let mut report = DeploymentReport {
        certificate: bundle.name.clone(),
        version: bundle.version,
        serial: bundle.serial.clone(),
        verified: true,
        served_serial: None,
        hook_status: None,
        hook_output: None,
        error: None,
        rolled_back: false,
    };
    for target in targets {
        let outcome = deploy_one(bundle, target).await;
        report.verified &= outcome.verified;
        if outcome.not_running.is_some() {
            not_running = outcome.not_running.clone();
        }
        if report.served_serial.is_none() || outcome.error.is_some() {
            report.served_serial = outcome.served_serial.or(report.served_serial);
        }
        if let Some(hook) = outcome.hook.filter(|_| report.error.is_none()) {
            report.hook_status = hook.status;
            report.hook_output = Some(hook.output);
        }
        if report.error.is_none() {
            report.error = outcome.error;
            report.rolled_back = outcome.rolled_back;
        }
    }
    (report.bounded(), not_running)
}

async fn deploy_one(bundle: &Bundle, t: &TargetSettings) -> Outcome {
    let location = t.target.location(&bundle.name);
    let fail = |error: String,
                hook: Option<HookOutcome>,
                rolled_back: bool,
                served: Option<String>| Outcome {
        verified: false,
        served_serial: served,
        hook,
        error: Some(error),
        rolled_back,
        not_running: None,
    };
    let deployment = match t.target.deploy(bundle).await {
        Ok(d) => d,
        Err(e) => return fail(format!("writing {location}: {e}"), None, false, None),
    };
    let env = HookEnv {
        name: bundle.name.clone(),
        domains: bundle.domains.clone(),
        dir: deployment.dir.clone(),
        serial: bundle.serial.clone(),
        version: bundle.version,
    };
    let mut last_hook = None;
    if let Some(check) = &t.check {
        let out = run_hook(check, &env).await;
        if !out.success {
            let rolled = rollback(t, &bundle.name, None, &env).await;
            return fail(format!("check {}", out.summary()), Some(out), rolled, None);
        }
        last_hook = Some(out);
    }
    if !listening(&t.verify).await {
        // A node at boot (`agent --once` before the web server starts): the files are in place
        // and the server will read them when it starts; there is nothing to reload or verify.
        return Outcome {
            verified: false,
            served_serial: None,
            hook: last_hook,
            error: None,
            rolled_back: false,
            not_running: Some(format!(
                "files in place at {location}; nothing listens on {}, so nothing was reloaded or verified",
                t.verify
            )),
        };
    }
    if let Some(reload) = &t.reload {
        let out = run_hook(reload, &env).await;
        if !out.success {
            let rolled = rollback(t, &bundle.name, Some(reload), &env).await;
            return fail(format!("reload {}", out.summary()), Some(out), rolled, None);
        }
        last_hook = Some(out);
    }
    let sni = bundle
        .domains
        .first()
        .map(|d| sni_for(d))
        .unwrap_or_else(|| "localhost".to_string());
    match wait_for_serial(&t.verify, &sni, &bundle.serial, t.verify_timeout).await {
        Wait::Served(after) => {
            tracing::info!(
                certificate = %bundle.name,
                serial = %bundle.serial,
                endpoint = %t.verify,
                after_ms = after.as_millis() as u64,
                "the new certificate is served"
            );
            Outcome {
                verified: true,
                served_serial: Some(bundle.serial.clone()),
                hook: last_hook,
                error: None,
                rolled_back: false,
                not_running: None,
            }
        }
        Wait::TimedOut {
            last_serial,
            last_error,
        } => {
            let seen = match (&last_serial, &last_error) {
                (_, Some(e)) => format!("the last handshake failed: {e}"),
                (Some(s), None) => format!("it still serves serial {s}"),
                (None, None) => "no handshake succeeded".to_string(),
            };
            let error = format!(
                "{} does not serve serial {} within {} s of the reload; {seen}",
                t.verify,
                bundle.serial,
                t.verify_timeout.as_secs()
            );
            let rolled = rollback(t, &bundle.name, t.reload.as_ref(), &env).await;
            fail(error, last_hook, rolled, last_serial)
        }
    }
}

/// Whether something accepts TCP connections on `endpoint` (refused means the web server is
/// not running; anything else is left to the handshakes to judge).
async fn listening(endpoint: &str) -> bool {
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(endpoint),
    )
    .await
    {
        Ok(Err(e)) => e.kind() != std::io::ErrorKind::ConnectionRefused,
        _ => true,
    }
}

/// Put the previous files back and, when the server was (or may have been) reloaded with the
/// new ones, reload it again. Returns whether files were put back.
async fn rollback(
    t: &TargetSettings,
    certificate: &str,
    reload: Option<&certfleet_deploy::HookCommand>,
    env: &HookEnv,
) -> bool {
    let restored = match t.target.rollback(certificate).await {
        Ok(restored) => restored,
        Err(e) => {
            tracing::error!(certificate, error = %e, "could not put the previous files back");
            false
        }
    };
    if restored {
        tracing::warn!(certificate, location = %t.target.location(certificate), "put the previous files back");
        if let Some(reload) = reload {
            let out = run_hook(reload, env).await;
            if !out.success {
                tracing::warn!(certificate, hook = %out.summary(), "reload after the rollback failed too");
            }
        }
    }
    restored
}
