//! The files and the deploy command of one certificate in `certfleet run --once`.
//!
//! The current version is written into `dir` with the deploy crate's atomic writer (the one
//! `certfleet cert export` and agents use): certbot's `cert.pem`, `chain.pem`,
//! `fullchain.pem`, `privkey.pem`, plus `bundle.pem`; all renamed into place together, owner,
//! group and mode kept or set. Files already in place are left alone. The `deploy` command
//! then runs — as an argv list, never through a shell, with `CERTFLEET_NAME`,
//! `CERTFLEET_DOMAINS`, `CERTFLEET_DIR`, `CERTFLEET_SERIAL`, `CERTFLEET_VERSION` and certbot's
//! `RENEWED_LINEAGE` and `RENEWED_DOMAINS` in its environment — when the files changed, or
//! when the last deploy of the current serial did not succeed (a failed command is run again
//! at the next run). Each outcome is recorded as a `deployed` or `deploy_failed` event.

use std::path::PathBuf;

use certfleet_core::{EventDetails, EventKind, EventQuery, NewEvent, Store};
use certfleet_deploy::hooks::{HookCommand, HookEnv, run_hook};
use certfleet_deploy::{Bundle, DeployError, FileTarget};
use serde::Serialize;

use super::{LocalDeploy, RunReport};

/// What happened to a certificate's files and deploy command.
#[derive(Debug, Clone, Serialize)]
pub struct DeployRun {
    /// The directory.
    pub dir: PathBuf,
    /// The version deployed.
    pub version: u32,
    /// Its serial.
    pub serial: String,
    /// Whether the files changed.
    pub files_changed: bool,
    /// The deploy command, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Its exit status, when it ran and exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    /// The end of its output, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Why writing the files or the command failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Write the current version of `name` into its directory and run its deploy command when
/// needed; what happened goes into `report` (nothing when everything was already in place).
pub(crate) async fn deploy(
    report: &mut RunReport,
    store: &dyn Store,
    name: &str,
    local: &LocalDeploy,
) {
    match prepare(store, name).await {
        Ok(Some(bundle)) => {
            if let Some(run) = deploy_bundle(store, bundle, local).await {
                report.entry(name).deploy = Some(run);
            }
        }
        Ok(None) => {}
        Err(e) => {
            let entry = report.entry(name);
            if entry.error.is_none() {
                entry.error = Some(format!("reading the current version from the store: {e}"));
            }
        }
    }
}

/// The current version's files, `None` without one.
async fn prepare(
    store: &dyn Store,
    name: &str,
) -> Result<Option<Bundle>, certfleet_core::StoreError> {
    let Some(cert) = store.certificate(name).await? else {
        return Ok(None);
    };
    let Some(seq) = cert.current_version else {
        return Ok(None);
    };
    let Some(version) = store.version(name, seq).await? else {
        return Ok(None);
    };
    let key = store.version_key(name, seq).await?;
    Ok(Some(Bundle {
        name: name.to_string(),
        domains: cert.domains.iter().map(ToString::to_string).collect(),
        version: seq,
        serial: version.serial,
        cert_pem: version.leaf_pem,
        chain_pem: version.chain_pem,
        key_pem: key,
    }))
}

/// Whether the deploy command already succeeded for `serial`.
async fn deployed_before(store: &dyn Store, name: &str, serial: &str) -> bool {
    let query = EventQuery {
        certificate: Some(name.to_string()),
        kinds: vec![EventKind::Deployed, EventKind::DeployFailed],
        since: None,
        limit: 1,
    };
    match store.query_events(&query).await {
        Ok(events) => events.first().is_some_and(|e| {
            e.kind == EventKind::Deployed && e.details.serial.as_deref() == Some(serial)
        }),
        Err(e) => {
            tracing::warn!(certificate = name, error = %e, "could not read the last deployment");
            false
        }
    }
}

async fn deploy_bundle(
    store: &dyn Store,
    bundle: Bundle,
    local: &LocalDeploy,
) -> Option<DeployRun> {
    let name = bundle.name.clone();
    let mut run = DeployRun {
        dir: local.dir.clone(),
        version: bundle.version,
        serial: bundle.serial.clone(),
        files_changed: false,
        command: None,
        status: None,
        output: None,
        error: None,
    };
    let mut target = FileTarget::new("");
    target.ownership = local.ownership;
    target.keep_previous = false;
    let (dir, owned) = (local.dir.clone(), bundle.clone());
    let written = tokio::task::spawn_blocking(move || target.write_into(&dir, &owned))
        .await
        .map_err(|e| DeployError::Task(e.to_string()))
        .and_then(|r| r);
    match written {
        Ok(report) => run.files_changed = report.changed,
        Err(e) => {
            run.error = Some(format!(
                "writing the files into {}: {e}",
                local.dir.display()
            ));
            record(
                store,
                &bundle,
                EventKind::DeployFailed,
                run.error.clone().unwrap_or_default(),
            )
            .await;
            return Some(run);
        }
    }
    let Some(argv) = &local.command else {
        if run.files_changed {
            let message = format!("run --once wrote the files to {}", local.dir.display());
            record(store, &bundle, EventKind::Deployed, message).await;
            return Some(run);
        }
        return None;
    };
    if !run.files_changed && deployed_before(store, &name, &bundle.serial).await {
        return None;
    }
    let hook = HookCommand {
        argv: argv.clone(),
        timeout: local.timeout,
    };
    let env = HookEnv {
        name: name.clone(),
        domains: bundle.domains.clone(),
        dir: Some(local.dir.clone()),
        serial: bundle.serial.clone(),
        version: bundle.version,
    };
    let outcome = run_hook(&hook, &env).await;
    run.command = Some(argv.clone());
    run.status = outcome.status;
    run.output = Some(outcome.output.clone()).filter(|o| !o.trim().is_empty());
    if outcome.success {
        let message = format!(
            "run --once wrote the files to {} and the deploy command {:?} succeeded",
            local.dir.display(),
            outcome.command
        );
        record(store, &bundle, EventKind::Deployed, message).await;
    } else {
        let message = format!(
            "run --once wrote the files to {}; the deploy command {}",
            local.dir.display(),
            outcome.summary()
        );
        run.error = Some(format!("the deploy command {}", outcome.summary()));
        record(store, &bundle, EventKind::DeployFailed, message).await;
    }
    Some(run)
}

async fn record(store: &dyn Store, bundle: &Bundle, kind: EventKind, message: String) {
    let details = EventDetails {
        version: Some(bundle.version),
        serial: Some(bundle.serial.clone()),
        ..EventDetails::default()
    };
    let event = NewEvent::about(&bundle.name, kind, message).with(details);
    if let Err(e) = store.record_event(&event).await {
        tracing::warn!(certificate = %bundle.name, error = %e, "could not record the deployment");
    }
}
