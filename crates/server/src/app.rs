//! Start-up of the control plane: data directory, key-encryption key, store, issuers,
//! solvers, listeners; then serving until told to stop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use certfleet_acme::Acme;
use certfleet_acme::issuer::Eab;
use certfleet_acme::{AcmeIssuer, IssuerConfig};
use certfleet_core::time::Clock;
use certfleet_core::{
    Certificate, ChallengeKind, EventKind, Labels, NewCertificate, Secret, Solver, Source, Store,
};
use certfleet_solvers::live::{DEFAULT_SYNC_INTERVAL, sync_from_store};
use certfleet_store::{Sealer, SqliteStore};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::TokioClock;
use crate::config::{IssuerSettings, Settings};
use crate::datadir::{DataDir, DataDirLock, ServerInfo};
use crate::fleet::Fleet;
use crate::fleet::http01::FleetHttp01;
use crate::issuance::Issuance;
use crate::registry::SolverRegistry;
use crate::{ServerError, api, scheduler, tls};

/// How often expired HTTP-01 responses are purged from the store.
pub const CHALLENGE_PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// How long start-up waits for the issuers' accounts (loaded, checked with the CA, contacts
/// brought in line) before serving; slower CAs are waited for in the background.
pub const ACCOUNT_CHECK_AT_START: Duration = Duration::from_secs(15);
/// Environment variable holding the key-encryption key (base64 of 32 bytes) instead of a file.
pub const KEK_ENV: &str = "CERTFLEET_KEK";

/// Shared state of the API handlers.
pub struct App {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Issuers by name.
    pub issuers: BTreeMap<String, Arc<AcmeIssuer>>,
    /// Their settings.
    pub issuer_settings: BTreeMap<String, IssuerSettings>,
    /// Background orders.
    pub issuance: Arc<Issuance>,
    /// The admin bearer token.
    pub admin_token: String,
    /// Names of the certificates the config file declares (they cannot be removed by the API:
    /// the next start would declare them again).
    pub declared: std::collections::BTreeSet<String>,
    /// The config file, for messages.
    pub config_file: Option<std::path::PathBuf>,
    /// Agents' watch and the stop signal of long-polls.
    pub fleet: Arc<Fleet>,
    /// Challenge types by solver name (for validating requests).
    pub solver_kinds: BTreeMap<String, ChallengeKind>,
    /// The solvers.
    pub solvers: Arc<SolverRegistry>,
}

/// A running server (see [`start`]).
pub struct Running {
    /// Where the REST API listens.
    pub api_addr: SocketAddr,
    /// Where the HTTP-01 responder listens.
    pub http01_addr: SocketAddr,
    /// Where the REST API listens over TLS, if it does.
    pub tls_addr: Option<SocketAddr>,
    /// The fingerprint clients pin for the TLS listener.
    pub tls_fingerprint: Option<String>,
    /// Where the TLS-ALPN-01 responder listens, if it does.
    pub tls_alpn_addr: Option<SocketAddr>,
    /// The admin token.
    pub admin_token: String,
    /// The shared state.
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    data: DataDir,
    _lock: DataDirLock,
}

impl Running {
    /// Stop listening, wait for the servers to finish, remove `api.sock` and `server.json`,
    /// and release the data directory's lock.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.data.remove_runtime_files();
    }

    /// Wait until one of the servers ends (it should not, unless stopped).
    pub async fn wait(mut self) {
        if let Some(first) = self.tasks.first_mut() {
            let _ = first.await;
        }
    }
}

/// Open everything, bind both listeners and start serving.
pub async fn start(settings: Settings) -> Result<Running, ServerError> {
    let data = DataDir::new(&settings.data_dir);
    data.create().map_err(|e| {
        ServerError::io(
            format!("creating data directory {}", settings.data_dir.display()),
            e,
        )
    })?;
    let lock = data
        .lock()
        .map_err(|e| ServerError::Startup(e.to_string()))?;
    let store = open_store(&data)?;
    let (admin_token, created) = data
        .load_or_create_token()
        .map_err(|e| ServerError::io(format!("reading {}", data.token_path().display()), e))?;
    if created {
        // Printed once, to the terminal only: tokens never go to the log.
        println!(
            "Created the admin API token (shown once; also stored in {} with mode 0600):\n{admin_token}",
            data.token_path().display()
        );
    }
    let issuers = build_issuers(&settings, &store)?;
    for c in settings.certificates.iter().filter(|c| c.local.is_some()) {
        tracing::warn!(
            certificate = %c.name,
            "dir and deploy are used by `certfleet run --once` only; `certfleet server` hands \
             certificates to agents (or `certfleet cert export`)"
        );
    }
    let confirm_timeout = Duration::from_secs(settings.http01_confirm_timeout_secs);
    let fleet_store = store.clone();
    // HTTP-01 across the fleet: the CA hears "ready" only once every entitled agent confirmed.
    let wrap_http01 = move |http01: Arc<dyn Solver>| -> Arc<dyn Solver> {
        Arc::new(FleetHttp01::new(
            http01,
            fleet_store.clone(),
            confirm_timeout,
        ))
    };
    let solvers = Arc::new(
        SolverRegistry::build(&settings.solvers, &store, &wrap_http01)
            .await
            .map_err(ServerError::Startup)?,
    );
    let (stop, stopped) = watch::channel(false);
    let (fleet, revision_task) = Fleet::start(&store, stopped.clone()).await?;
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let issuance = build_issuance(&store, &issuers, &solvers, &settings, &clock);
    let app = Arc::new(App {
        store: store.clone(),
        issuers,
        issuer_settings: settings.issuers.clone(),
        issuance,
        admin_token: admin_token.clone(),
        declared: settings
            .certificates
            .iter()
            .map(|c| c.name.to_string())
            .collect(),
        config_file: settings.config_file.clone(),
        fleet,
        solver_kinds: settings.solver_kinds(),
        solvers: solvers.clone(),
    });
    let expiry_wake = Arc::new(tokio::sync::Notify::new());
    let routes = certfleet_notify::build(&settings.notifiers).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ServerError::Startup(format!("notifiers: {}", text.join("; ")))
    })?;
    if !routes.is_empty() {
        tracing::info!(count = routes.len(), "notifiers configured");
    }
    store.set_event_listener(Arc::new(crate::alerts::EventFanout::new(
        certfleet_notify::Dispatcher::start(routes),
        expiry_wake.clone(),
    )));
    let api_listener = bind(settings.listen, "REST API (--listen)").await?;
    let http01_listener = bind(
        settings.http01_listen,
        "HTTP-01 responder (--http01-listen)",
    )
    .await?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|e| ServerError::io("reading the API address", e))?;
    let http01_addr = http01_listener
        .local_addr()
        .map_err(|e| ServerError::io("reading the responder address", e))?;
    let tls_alpn_listener = match settings.tls_alpn01_listen {
        Some(addr) => Some(bind(addr, "TLS-ALPN-01 responder (--tls-alpn-listen)").await?),
        None => None,
    };
    let tls_alpn_addr = tls_alpn_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()
        .map_err(|e| ServerError::io("reading the TLS-ALPN-01 address", e))?;

    let unix_listener = bind_socket(&data)?;
    let tls = match settings.tls_listen {
        Some(addr) => {
            let setup = tls::setup(&data, &settings.tls)?;
            let listener = bind(addr, "REST API over TLS (--tls-listen)").await?;
            Some((setup, listener))
        }
        None => None,
    };

    check_issuers(&app).await;
    // One server per data directory: claims left by an earlier run died with it.
    let released = store.release_all_claims(clock.now()).await?;
    if released > 0 {
        tracing::info!(
            count = released,
            "resuming certificates an earlier run was working on"
        );
    }
    // Withdraw what a killed predecessor left published, before any new order starts.
    certfleet_solvers::recorded::finish_cleanup(&store, solvers.solvers()).await;
    declare_configured(&app.store, &app.issuers, &settings).await?;

    let mut tasks = vec![
        scheduler::spawn(app.issuance.clone(), stopped.clone()),
        serve(api_listener, api::router(app.clone()), stopped.clone()),
        serve_unix(unix_listener, api::router(app.clone()), stopped.clone()),
        serve(
            http01_listener,
            certfleet_solvers::responder::router(solvers.live.clone()),
            stopped.clone(),
        ),
        tokio::spawn(purge_challenges(store.clone(), stopped.clone())),
        tokio::spawn(crate::expiry::run(
            store.clone(),
            settings.expiry_alert_days.clone(),
            expiry_wake,
            stopped.clone(),
        )),
        revision_task,
        tokio::spawn(sync_from_store(
            solvers.live.clone(),
            store.clone(),
            DEFAULT_SYNC_INTERVAL,
            stopped.clone(),
        )),
    ];
    if let Some(listener) = tls_alpn_listener {
        let responder = solvers.tls_alpn.clone();
        let stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = certfleet_solvers::tls_alpn::serve(listener, responder, stopped).await {
                tracing::error!(error = %e, "the TLS-ALPN-01 responder failed");
            }
        }));
    }
    let (mut tls_addr, mut tls_fingerprint) = (None, None);
    if let Some((setup, listener)) = tls {
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::io("reading the TLS API address", e))?;
        let listener = tls::TlsListener::new(listener, setup.config.clone())
            .map_err(|e| ServerError::io("starting the TLS listener", e))?;
        tasks.push(serve_any(
            listener,
            api::router(app.clone()),
            stopped.clone(),
        ));
        // Not a secret: printed so that an operator can pin it on agents.
        let trust = match &setup.ca_file {
            Some(ca) => format!(" (or trust the CA file {})", ca.display()),
            None => String::new(),
        };
        println!(
            "REST API over TLS at https://{addr}; clients pin the fingerprint {}{trust}",
            setup.fingerprint
        );
        tracing::info!(%addr, fingerprint = %setup.fingerprint, "REST API over TLS is listening");
        tls_addr = Some(addr);
        tls_fingerprint = Some(setup.fingerprint);
    }
    data.write_server_info(&ServerInfo {
        api: format!("http://{api_addr}"),
        http01: http01_addr.to_string(),
        pid: std::process::id(),
        tls_api: tls_addr.map(|a| format!("https://{a}")),
        tls_fingerprint: tls_fingerprint.clone(),
    })
    .map_err(|e| ServerError::io(format!("writing {}", data.server_info_path().display()), e))?;
    tracing::info!(%api_addr, %http01_addr, data_dir = %settings.data_dir.display(), "certfleet server is running");
    Ok(Running {
        api_addr,
        http01_addr,
        tls_addr,
        tls_fingerprint,
        tls_alpn_addr,
        admin_token,
        app,
        stop,
        tasks,
        data,
        _lock: lock,
    })
}

/// Bind the API's Unix socket in the data directory (mode 0600). A socket file left by a
/// server that was killed is replaced: holding the data directory's lock proves it is stale.
fn bind_socket(data: &DataDir) -> Result<UnixListener, ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let path = data.socket_path();
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed a stale API socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ServerError::io(format!("removing {}", path.display()), e)),
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| ServerError::io(format!("binding the API socket {}", path.display()), e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ServerError::io(format!("setting the mode of {}", path.display()), e))?;
    Ok(listener)
}

fn serve_unix(
    listener: UnixListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "the API socket failed");
        }
    })
}

pub(crate) fn open_store(data: &DataDir) -> Result<Arc<dyn Store>, ServerError> {
    let env = std::env::var(KEK_ENV).ok();
    let kek_source = match env {
        Some(_) => format!(
            "the key-encryption key from {KEK_ENV} (set in the environment, it takes precedence over the file {})",
            data.kek_path().display()
        ),
        None => format!("the key-encryption key in {}", data.kek_path().display()),
    };
    let (sealer, created) =
        Sealer::from_env_or_file(env.as_deref(), &data.kek_path()).map_err(|e| match env {
            Some(_) => ServerError::Startup(format!("{KEK_ENV}: {e}")),
            None => ServerError::Startup(e.to_string()),
        })?;
    if created {
        tracing::warn!(
            path = %data.kek_path().display(),
            "created a new key-encryption key (mode 0600); back it up: without it the stored private keys cannot be read"
        );
    }
    let db = data.db_path();
    let store = SqliteStore::open(&db, sealer).map_err(|e| match e {
        certfleet_core::StoreError::Unseal(_) => {
            let fix = if env.is_some() {
                format!("set {KEK_ENV} to the key the store was written with, or unset it to use the kek file")
            } else {
                format!("restore the kek file that belongs to this database from your backup, or set {KEK_ENV} to that key")
            };
            ServerError::Startup(format!(
                "{kek_source} is not the one {} was written with.\nNothing was read or changed. To fix it: {fix}.",
                db.display()
            ))
        }
        other => ServerError::Startup(format!("opening {}: {other}", db.display())),
    })?;
    Ok(Arc::new(store))
}

pub(crate) fn build_issuers(
    settings: &Settings,
    store: &Arc<dyn Store>,
) -> Result<BTreeMap<String, Arc<AcmeIssuer>>, ServerError> {
    let mut out = BTreeMap::new();
    for (name, s) in &settings.issuers {
        let config = IssuerConfig {
            name: name.clone(),
            directory_url: s.directory.clone(),
            contacts: s.contacts.clone(),
            ca_roots: s.ca_roots.clone(),
            eab: s.eab.as_ref().map(|e| Eab {
                key_id: e.key_id.clone(),
                hmac_key: Secret::new(e.hmac_key.clone()),
            }),
            request_timeout: Duration::from_secs(s.request_timeout_secs),
            order_timeout: Duration::from_secs(s.order_timeout_secs),
            preferred_chain: s.preferred_chain.clone(),
            default_profile: s.profile.clone(),
        };
        let issuer = AcmeIssuer::new(config, store.clone())
            .map_err(|e| ServerError::Startup(format!("issuers.{name}: {e}")))?;
        out.insert(name.clone(), Arc::new(issuer));
    }
    Ok(out)
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::io(format!("binding the {what} to {addr}"), e))
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    // Small JSON answers and challenge responses: send them without Nagle delays.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    serve_any(listener, router, stopped)
}

fn serve_any<L>(
    listener: L,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "a listener failed");
        }
    })
}

/// The renewal engine over the configured issuers and solvers, bounded by
/// `max_concurrent_orders`, claiming as this process ([`claim_owner`]).
pub(crate) fn build_issuance(
    store: &Arc<dyn Store>,
    issuers: &BTreeMap<String, Arc<AcmeIssuer>>,
    solvers: &Arc<SolverRegistry>,
    settings: &Settings,
    clock: &Arc<dyn Clock>,
) -> Arc<Issuance> {
    let acmes: BTreeMap<String, Arc<dyn Acme>> = issuers
        .iter()
        .map(|(name, issuer)| (name.clone(), issuer.clone() as Arc<dyn Acme>))
        .collect();
    Arc::new(Issuance::new(
        store.clone(),
        acmes,
        solvers.clone(),
        settings.max_concurrent_orders,
        clock.clone(),
        claim_owner(),
    ))
}

/// Create the certificates the config file declares and that the store lacks; bring stored
/// ones in line with an edited file. A real change (the set of names, key kind, issuer,
/// challenge) updates the declaration and makes the certificate due now, so the scheduler
/// orders a new version (the current version stays valid and exportable until the new one
/// exists).
pub(crate) async fn declare_configured(
    store: &Arc<dyn Store>,
    issuers: &BTreeMap<String, Arc<AcmeIssuer>>,
    settings: &Settings,
) -> Result<(), ServerError> {
    for (name, issuer) in &settings.issuers {
        if let Some(profile) = &issuer.profile {
            let field = format!("issuers.{name}.profile");
            check_profile_at_start(issuers, name, profile, &field).await?;
        }
    }
    for (i, c) in settings.certificates.iter().enumerate() {
        if let Some(profile) = &c.profile {
            let field = format!("certificates[{i}].profile");
            check_profile_at_start(issuers, &c.issuer, profile, &field).await?;
        }
        let declared = NewCertificate {
            name: c.name.clone(),
            domains: c.domains.clone(),
            issuer: c.issuer.clone(),
            key_kind: c.key,
            challenge: c.challenge,
            source: Source::Acme,
            solvers: c.solvers.clone(),
            profile: c.profile.clone(),
            renew_before: c.renew_before,
        };
        let name = c.name.as_str();
        match store.certificate(name).await? {
            None => {
                store.create_certificate(&declared).await?;
                store
                    .append_event(
                        Some(name),
                        EventKind::Created,
                        "declared in the config file",
                    )
                    .await?;
                apply_configured_labels(store, c, &Labels::new()).await?;
            }
            Some(stored) if !stored.auto_renewable() => {
                // An imported certificate of the same name: the file cannot make certfleet
                // renew what a person manages. Leave it as it is and say how to hand it over,
                // instead of leaving it stuck as "pending".
                let message = format!(
                    "certificates[{i}] declares {name:?}, which is an imported (manual) \
                     certificate here; certfleet leaves it as it is. Put it under ACME with \
                     `certfleet cert manage {name} --issuer {}` (the file's declaration applies \
                     from the next start), or give this entry another name",
                    c.issuer
                );
                tracing::warn!(certificate = name, "{message}");
                store
                    .append_event(Some(name), EventKind::PolicyWarning, &message)
                    .await?;
            }
            Some(stored) => {
                apply_configured_labels(store, c, &stored.labels).await?;
                let Some(change) = declaration_change(&stored, &declared) else {
                    continue;
                };
                let message = format!("the config file changed its declaration: {change}");
                tracing::info!(certificate = name, "{message}");
                // Due now: the scheduler orders a new version when what a version is issued
                // for changed (the renewal engine sees the mismatch), else plans again.
                store.update_declaration(name, &declared).await?;
                store
                    .append_event(Some(name), EventKind::Changed, &message)
                    .await?;
            }
        }
    }
    Ok(())
}

/// How `declared` differs from what is stored, in words; names compare as sets.
fn declaration_change(stored: &Certificate, declared: &NewCertificate) -> Option<String> {
    let mut parts = Vec::new();
    let added: Vec<&str> = declared
        .domains
        .iter()
        .filter(|d| !stored.domains.contains(d))
        .map(|d| d.as_str())
        .collect();
    let removed: Vec<&str> = stored
        .domains
        .iter()
        .filter(|d| !declared.domains.contains(d))
        .map(|d| d.as_str())
        .collect();
    if !added.is_empty() {
        parts.push(format!("names added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("names removed: {}", removed.join(", ")));
    }
    if stored.key_kind != declared.key_kind {
        parts.push(format!("key {} → {}", stored.key_kind, declared.key_kind));
    }
    if stored.issuer != declared.issuer {
        parts.push(format!("issuer {} → {}", stored.issuer, declared.issuer));
    }
    if stored.challenge != declared.challenge {
        parts.push(format!(
            "challenge {} → {}",
            stored.challenge, declared.challenge
        ));
    }
    if stored.solvers != declared.solvers {
        parts.push("solvers changed".to_string());
    }
    if stored.profile != declared.profile {
        let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "(issuer's)".into());
        parts.push(format!(
            "profile {} → {}",
            show(&stored.profile),
            show(&declared.profile)
        ));
    }
    if stored.renew_before != declared.renew_before {
        let show = |r: &Option<certfleet_core::policy::RenewBefore>| {
            r.map(|r| r.to_string())
                .unwrap_or_else(|| "(default)".into())
        };
        parts.push(format!(
            "renew_before {} → {}",
            show(&stored.renew_before),
            show(&declared.renew_before)
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Give a declared certificate the labels its declaration sets, if they differ.
async fn apply_configured_labels(
    store: &Arc<dyn Store>,
    c: &crate::config::CertificateSettings,
    current: &Labels,
) -> Result<(), ServerError> {
    let Some(labels) = c.labels.as_ref().filter(|l| *l != current) else {
        return Ok(());
    };
    store.set_labels(c.name.as_str(), labels).await?;
    store
        .append_event(
            Some(c.name.as_str()),
            EventKind::LabelsChanged,
            &format!("labels set to {{{labels}}} by the config file"),
        )
        .await?;
    Ok(())
}

/// A name for this process in claims: host, PID and a random part.
pub(crate) fn claim_owner() -> String {
    let mut random = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut random);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}/{}/{suffix}", host.trim(), std::process::id())
}

/// Refuse a declared profile the issuer's CA does not offer (when the CA can be asked).
async fn check_profile_at_start(
    issuers: &BTreeMap<String, Arc<AcmeIssuer>>,
    issuer: &str,
    profile: &str,
    field: &str,
) -> Result<(), ServerError> {
    let Some(acme) = issuers.get(issuer) else {
        return Ok(());
    };
    match crate::validate::check_profile(acme.as_ref(), profile).await {
        Ok(()) => Ok(()),
        Err(crate::validate::ProfileCheck::Refused(message)) => {
            Err(ServerError::Startup(format!("{field}: {message}")))
        }
        Err(crate::validate::ProfileCheck::Unreachable(e)) => {
            tracing::warn!(field, profile, error = %e, "cannot check the profile with the CA now; it is checked again when ordering");
            Ok(())
        }
    }
}

async fn purge_challenges(store: Arc<dyn Store>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(CHALLENGE_PURGE_INTERVAL) => {}
        }
        match store.purge_challenges(certfleet_core::time::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "purged expired HTTP-01 responses"),
            Err(e) => tracing::warn!(error = %e, "purging expired HTTP-01 responses failed"),
        }
    }
}

/// Before serving: load every issuer's account, check it with the CA and send an account
/// update where the configured contacts changed (RFC 8555 §7.3.2).
async fn check_issuers(app: &Arc<App>) {
    let mut checks = tokio::task::JoinSet::new();
    for issuer in app.issuers.values() {
        checks.spawn(check_issuer(issuer.clone()));
    }
    let all = async { while checks.join_next().await.is_some() {} };
    if tokio::time::timeout(ACCOUNT_CHECK_AT_START, all)
        .await
        .is_err()
    {
        tracing::warn!(
            "some issuers did not answer within {} s; serving while their accounts are checked",
            ACCOUNT_CHECK_AT_START.as_secs()
        );
        checks.detach_all();
    }
}

async fn check_issuer(issuer: Arc<AcmeIssuer>) {
    let name = issuer.config().name.clone();
    match issuer.account_url().await {
        Ok(url) => tracing::info!(issuer = %name, account = %url, "ACME account ready"),
        Err(e) => {
            tracing::warn!(issuer = %name, error = %e, "issuer is not usable yet; certificates for it will fail until it is")
        }
    }
}
