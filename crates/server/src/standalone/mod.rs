//! `certfleet run --once`: one machine, no server, driven by cron or a systemd timer.
//!
//! [`run_once`] takes the data directory's lock (one actor: a running server or another run
//! makes it stop at once), opens the same store, issuers and solvers as `certfleet server`,
//! declares the certificates of the config file, and then runs the **same renewal engine**:
//! [`scheduler::pass`](crate::scheduler::pass) claims what is due and
//! [`Issuance`] runs each attempt through [`crate::renewal`] — ARI windows, the lifetime
//! rule, Retry-After, resumed orders and backoff all apply. Certificates whose last attempt
//! failed are tried again at every run (as certbot does), unless the CA asked to wait. The
//! file is the whole truth: a certificate of the store that it no longer declares is held
//! aside for the run (neither ordered, deployed nor reported; its versions stay). When
//! nothing is left due, each certificate with a `dir` gets its files written with the atomic
//! writer of `cert export` ([`deploy`]); when they changed — or the last deploy command for
//! the current serial failed — its `deploy` command runs. Events are recorded as in the
//! server, expiry thresholds crossed since the last run included, and handed to the
//! configured notifiers, which get a bounded moment to deliver before the process exits.
//!
//! HTTP-01 is answered on `http01_listen` by the built-in responder (bound only when
//! something is due and a certificate uses it), or written into a web server's document root
//! by a `type = "webroot"` solver.

pub mod deploy;
pub mod settings;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certfleet_core::time::Clock;
use certfleet_core::{CertificateStatus, Event, EventKind, EventListener, Solver, Store};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{build_issuance, build_issuers, declare_configured, open_store};
use crate::clock::TokioClock;
use crate::config::Settings;
use crate::datadir::{DataDir, DataDirLock, LockError};
use crate::issuance::{CLAIM_LEASE, Issuance};
use crate::registry::SolverRegistry;
use crate::solvers::{HTTP01, TLS_ALPN01, solver_name_for};
use crate::views::rfc3339;
use crate::{ServerError, scheduler};

pub use deploy::DeployRun;
pub use settings::LocalDeploy;

/// Bound on the scheduler passes of one run (each claims what is due and waits for it).
const MAX_PASSES: usize = 64;
/// How long certificates the file no longer declares are held aside: longer than any run.
const SET_ASIDE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long notifiers get to deliver the run's events before the process exits.
pub const NOTIFY_GRACE: Duration = Duration::from_secs(10);

/// What one run did, per certificate that had something to say (empty: nothing was due).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    /// Certificates issued, renewed, deployed or failing, by name.
    pub certificates: Vec<CertificateRun>,
}

impl RunReport {
    /// Whether anything failed (the process then exits non-zero).
    pub fn failed(&self) -> bool {
        self.certificates.iter().any(CertificateRun::failed)
    }

    /// Whether nothing happened at all (the process then says nothing).
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    fn entry(&mut self, name: &str) -> &mut CertificateRun {
        if let Some(i) = self.certificates.iter().position(|c| c.name == name) {
            return &mut self.certificates[i];
        }
        self.certificates.push(CertificateRun {
            name: name.to_string(),
            ..CertificateRun::default()
        });
        self.certificates.last_mut().expect("just pushed")
    }
}

/// One certificate in a [`RunReport`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct CertificateRun {
    /// Certificate name.
    pub name: String,
    /// A version issued in this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued: Option<IssuedRun>,
    /// Why it has no usable version or its renewal failed (the CA's words).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When certfleet tries again (RFC 3339), with an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// Notes that are not failures (a settings warning, an order the CA is still working on).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The files and the deploy command, when something was written or run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployRun>,
}

impl CertificateRun {
    /// Whether this certificate failed in this run (issuance, files or deploy command).
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.deploy.as_ref().is_some_and(|d| d.error.is_some())
    }
}

/// A version issued in this run.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedRun {
    /// Version number.
    pub version: u32,
    /// Serial, lowercase hex.
    pub serial: String,
    /// notAfter (RFC 3339).
    pub not_after: String,
    /// Whether it replaced a version (a renewal) or was the first.
    pub renewed: bool,
}

/// Collects the events of this run and hands them to the notifiers.
struct RunListener {
    events: Mutex<Vec<Event>>,
    dispatcher: Mutex<Option<certfleet_notify::Dispatcher>>,
}

impl EventListener for RunListener {
    fn event_recorded(&self, event: &Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event.clone());
        }
        if let Ok(dispatcher) = self.dispatcher.lock()
            && let Some(d) = dispatcher.as_ref()
        {
            d.submit(event);
        }
    }
}

/// Listeners bound for this run, stopped at its end.
struct Responders {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Responders {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// Take the data directory's lock; another holder is named.
fn lock(data: &DataDir) -> Result<DataDirLock, ServerError> {
    data.lock().map_err(|e| match e {
        LockError::Held { pid, .. } => ServerError::Startup(format!(
            "data directory {} is in use by another certfleet process{} (a running `certfleet \
             server`, or another `run --once`); nothing was done. Let it finish, or give this \
             run its own --data-dir",
            data.root().display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )),
        other => ServerError::Startup(other.to_string()),
    })
}

/// Issue or renew what is due, write the files, run the deploy commands; see the module
/// docs. An error here means the run could not start (lock, store, configuration, a
/// listener); what failed per certificate is in the report.
pub async fn run_once(settings: Settings) -> Result<RunReport, ServerError> {
    let data = DataDir::new(&settings.data_dir);
    data.create().map_err(|e| {
        ServerError::Startup(format!(
            "creating data directory {}: {e}",
            settings.data_dir.display()
        ))
    })?;
    let _lock = lock(&data)?;
    let store = open_store(&data)?;
    let routes = certfleet_notify::build(&settings.notifiers).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ServerError::Startup(format!("notifiers: {}", text.join("; ")))
    })?;
    let listener = Arc::new(RunListener {
        events: Mutex::new(Vec::new()),
        dispatcher: Mutex::new(Some(certfleet_notify::Dispatcher::start(routes))),
    });
    store.set_event_listener(listener.clone());
    let issuers = build_issuers(&settings, &store)?;
    let same = |solver: Arc<dyn Solver>| solver;
    let solvers = Arc::new(
        SolverRegistry::build(&settings.solvers, &store, &same)
            .await
            .map_err(ServerError::Startup)?,
    );
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let issuance = build_issuance(&store, &issuers, &solvers, &settings, &clock);
    store.release_all_claims(clock.now()).await?;
    certfleet_solvers::recorded::finish_cleanup(&store, solvers.solvers()).await;
    declare_configured(&store, &issuers, &settings).await?;
    let declared: BTreeSet<String> = settings
        .certificates
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    let aside = set_aside(&store, &issuance, &declared, clock.now()).await?;
    retry_failed(&store, &issuance, &declared, clock.now()).await?;
    let responders = bind_responders(&settings, &store, &solvers, clock.now()).await?;
    let passes = run_passes(&issuance).await;
    if let Some(r) = responders {
        r.stop().await;
    }
    let restored = put_back(&store, &issuance, aside).await;
    passes?;
    restored?;
    // Expiry thresholds crossed since the last run (`expiring` events, as the server's
    // watcher records them), so notifiers hear of a certificate whose renewals keep failing.
    crate::expiry::pass(store.as_ref(), &settings.expiry_alert_days, clock.now()).await?;
    let mut report = RunReport::default();
    let events = listener
        .events
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    from_events(&mut report, &events, &declared);
    check_unusable(&mut report, &store, &settings, clock.now()).await?;
    for c in &settings.certificates {
        if let Some(local) = &c.local {
            deploy::deploy(&mut report, store.as_ref(), c.name.as_str(), local).await;
        }
    }
    let dispatcher = listener.dispatcher.lock().ok().and_then(|mut d| d.take());
    if let Some(d) = dispatcher.filter(|d| !d.is_empty())
        && !d.finish(NOTIFY_GRACE).await
    {
        tracing::warn!(
            "some notifications were not delivered within {} s",
            NOTIFY_GRACE.as_secs()
        );
    }
    Ok(report)
}

/// The certificates the runs keep in the data directory, as `certfleet cert ls` shows a
/// server's (`certfleet run --list`). Changes nothing; needs the data directory's lock, so a
/// running server (or run) is named instead.
///
/// # Errors
/// [`ServerError::Startup`] when no run has used the data directory yet, when it is in use,
/// or when the store cannot be opened (the key-encryption key).
pub async fn list(settings: &Settings) -> Result<Vec<crate::views::CertificateView>, ServerError> {
    let data = DataDir::new(&settings.data_dir);
    if !data.db_path().exists() {
        return Err(ServerError::Startup(format!(
            "no run has used data directory {} yet: there is nothing to list",
            data.root().display()
        )));
    }
    let _lock = data.lock().map_err(|e| match e {
        LockError::Held { pid, .. } => ServerError::Startup(format!(
            "data directory {} is in use by another certfleet process{}; when a `certfleet \
             server` runs there, `certfleet cert ls` lists its certificates",
            data.root().display(),
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )),
        other => ServerError::Startup(other.to_string()),
    })?;
    let store = open_store(&data)?;
    let now = certfleet_core::time::now();
    Ok(store
        .certificates()
        .await?
        .iter()
        .map(|c| crate::views::CertificateView::new(c, now))
        .collect())
}

/// Certificates of the store that the file no longer declares, held aside for the run with
/// when each was due: the file is the whole truth for `run --once`, so they are neither
/// ordered nor deployed (their versions and keys stay stored, and a server on this data
/// directory would renew them as before).
struct Aside(Vec<(String, Option<certfleet_core::time::UnixTime>)>);

/// Claim every auto-renewed certificate the file does not declare, for longer than a run
/// lasts, so that no scheduler pass picks it; [`put_back`] releases them. A run that is
/// killed leaves the claims to the next start's `release_all_claims`.
async fn set_aside(
    store: &Arc<dyn Store>,
    issuance: &Issuance,
    declared: &BTreeSet<String>,
    now: certfleet_core::time::UnixTime,
) -> Result<Aside, ServerError> {
    let until = now + SET_ASIDE.as_secs() as i64;
    let mut aside = Vec::new();
    for cert in store.certificates().await? {
        let name = cert.name.as_str();
        if declared.contains(name) || !cert.auto_renewable() {
            continue;
        }
        if store
            .claim(name, issuance.owner(), now, until)
            .await?
            .is_some()
        {
            tracing::info!(
                certificate = name,
                "not in the config file: left alone by run --once"
            );
            aside.push((name.to_string(), cert.next_due));
        }
    }
    Ok(Aside(aside))
}

/// Release what [`set_aside`] claimed, each due when it was before.
async fn put_back(
    store: &Arc<dyn Store>,
    issuance: &Issuance,
    aside: Aside,
) -> Result<(), ServerError> {
    for (name, next_due) in aside.0 {
        store
            .release_claim(&name, issuance.owner(), next_due)
            .await?;
    }
    Ok(())
}

/// Certificates whose last attempt failed are due at every run, unless the CA asked to wait.
async fn retry_failed(
    store: &Arc<dyn Store>,
    issuance: &Issuance,
    declared: &BTreeSet<String>,
    now: certfleet_core::time::UnixTime,
) -> Result<(), ServerError> {
    let owner = issuance.owner();
    for cert in store.certificates().await? {
        if !declared.contains(cert.name.as_str()) {
            continue;
        }
        let waiting = cert.retry_after.is_some_and(|at| at > now);
        let later = cert.next_due.is_some_and(|at| at > now);
        if cert.auto_renewable() && cert.status == CertificateStatus::Failed && later && !waiting {
            let name = cert.name.as_str();
            let until = now + CLAIM_LEASE.as_secs() as i64;
            if store.claim(name, owner, now, until).await?.is_some() {
                store.release_claim(name, owner, Some(now)).await?;
            }
        }
    }
    Ok(())
}

/// Pass after pass of the scheduler until nothing is due and nothing runs.
async fn run_passes(issuance: &Arc<Issuance>) -> Result<(), ServerError> {
    for _ in 0..MAX_PASSES {
        let pass = scheduler::pass(issuance).await?;
        issuance.idle().await;
        let now = issuance.clock.now();
        if pass.started == 0 && pass.next_due.is_none_or(|due| due > now) {
            return Ok(());
        }
    }
    tracing::warn!("stopping after {MAX_PASSES} scheduler passes with work still due");
    Ok(())
}

/// Bind the built-in HTTP-01 (and TLS-ALPN-01) responders when a certificate that is due
/// (a changed declaration makes it due at once) uses them; nothing is bound when nothing is due, or when
/// the due certificates use a webroot or DNS-01.
async fn bind_responders(
    settings: &Settings,
    store: &Arc<dyn Store>,
    solvers: &Arc<SolverRegistry>,
    now: certfleet_core::time::UnixTime,
) -> Result<Option<Responders>, ServerError> {
    let kinds = settings.solver_kinds();
    let mut used = std::collections::BTreeSet::new();
    for cert in store.certificates().await? {
        let due = cert.auto_renewable() && cert.next_due.is_some_and(|at| at <= now);
        if !due {
            continue;
        }
        for name in &cert.domains {
            if let Some(s) = solver_name_for(&cert.solvers, cert.challenge, name, &kinds) {
                used.insert(s);
            }
        }
    }
    if !used.contains(HTTP01) && !used.contains(TLS_ALPN01) {
        return Ok(None);
    }
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    if used.contains(HTTP01) {
        let listener = bind(settings.http01_listen, "server.http01_listen").await?;
        let router = certfleet_solvers::responder::router(solvers.live.clone());
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "the HTTP-01 responder failed");
            }
        }));
    }
    if let (true, Some(addr)) = (used.contains(TLS_ALPN01), settings.tls_alpn01_listen) {
        let listener = bind(addr, "server.tls_alpn01_listen").await?;
        let responder = solvers.tls_alpn.clone();
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = certfleet_solvers::tls_alpn::serve(listener, responder, stopped).await {
                tracing::error!(error = %e, "the TLS-ALPN-01 responder failed");
            }
        }));
    }
    Ok(Some(Responders { stop, tasks }))
}

async fn bind(addr: SocketAddr, field: &str) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        ServerError::Startup(format!(
            "{field}: cannot listen on {addr} to answer the CA's challenges: {e}"
        ))
    })
}

/// What the run's events say of the declared certificates: versions issued, attempts that
/// failed, notes.
fn from_events(report: &mut RunReport, events: &[Event], declared: &BTreeSet<String>) {
    for e in events {
        let Some(name) = e.certificate.as_deref().filter(|n| declared.contains(*n)) else {
            continue;
        };
        match e.kind {
            EventKind::Issued | EventKind::Renewed => {
                let entry = report.entry(name);
                entry.issued = Some(IssuedRun {
                    version: e.details.version.unwrap_or_default(),
                    serial: e.details.serial.clone().unwrap_or_default(),
                    not_after: e.details.not_after.map(rfc3339).unwrap_or_default(),
                    renewed: e.kind == EventKind::Renewed,
                });
                entry.error = None;
                entry.next_attempt = None;
            }
            EventKind::Failed | EventKind::RenewalFailed => {
                let entry = report.entry(name);
                entry.error = Some(e.message.clone());
                entry.next_attempt = e.details.next_attempt.map(rfc3339);
            }
            EventKind::OrderPending
            | EventKind::PolicyWarning
            | EventKind::OrderAbandoned
            | EventKind::Expiring => {
                report.entry(name).notes.push(e.message.clone());
            }
            _ => {}
        }
    }
}

/// Configured certificates with nothing usable after the run, and failing ones the CA asked
/// to leave alone for now, are failures of the run too.
async fn check_unusable(
    report: &mut RunReport,
    store: &Arc<dyn Store>,
    settings: &Settings,
    now: certfleet_core::time::UnixTime,
) -> Result<(), ServerError> {
    for c in &settings.certificates {
        let Some(cert) = store.certificate(c.name.as_str()).await? else {
            continue;
        };
        let name = cert.name.as_str();
        let failing = cert.status == CertificateStatus::Failed;
        let missing = cert.current_version.is_none();
        let known = report
            .certificates
            .iter()
            .any(|r| r.name == name && r.error.is_some());
        if known || !(failing || missing) {
            continue;
        }
        let why = cert
            .last_error
            .clone()
            .unwrap_or_else(|| "no certificate issued yet".to_string());
        let entry = report.entry(name);
        entry.error = Some(match cert.retry_after.filter(|at| *at > now) {
            Some(at) => format!(
                "{why} (not retried before {}: the CA asked to wait)",
                rfc3339(at)
            ),
            None => why,
        });
        entry.next_attempt = cert.next_due.map(rfc3339);
    }
    Ok(())
}
