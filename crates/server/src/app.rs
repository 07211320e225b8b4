//! Start-up of the control plane: data directory, key-encryption key, store, issuers,
//! solvers, listeners; then serving until told to stop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use certfleet_acme::issuer::Eab;
use certfleet_acme::{AcmeIssuer, IssuerConfig};
use certfleet_core::{
    CertificateStatus, ChallengeKind, EventKind, NewCertificate, Secret, Source, Store,
};
use certfleet_solvers::live::{DEFAULT_SYNC_INTERVAL, sync_from_store};
use certfleet_store::{Sealer, SqliteStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{IssuerSettings, Settings};
use crate::datadir::{DataDir, ServerInfo};
use crate::issuance::Issuance;
use crate::registry::SolverRegistry;
use crate::{ServerError, api};

/// How often expired HTTP-01 responses are purged from the store.
pub const CHALLENGE_PURGE_INTERVAL: Duration = Duration::from_secs(600);
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
    /// Where the TLS-ALPN-01 responder listens, if it does.
    pub tls_alpn_addr: Option<SocketAddr>,
    /// The admin token.
    pub admin_token: String,
    /// The shared state.
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop listening and wait for the servers to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
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
    let solvers = Arc::new(
        SolverRegistry::build(&settings.solvers, &store)
            .await
            .map_err(ServerError::Startup)?,
    );
    let issuance = Arc::new(Issuance::new(
        store.clone(),
        issuers.clone(),
        solvers.clone(),
        settings.max_concurrent_orders,
    ));
    let app = Arc::new(App {
        store: store.clone(),
        issuers,
        issuer_settings: settings.issuers.clone(),
        issuance,
        admin_token: admin_token.clone(),
        solver_kinds: settings.solver_kinds(),
        solvers: solvers.clone(),
    });
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

    declare_configured(&app, &settings).await?;
    // Withdraw what a killed predecessor left published, before any new order starts.
    certfleet_solvers::recorded::finish_cleanup(&store, solvers.solvers()).await;
    resume_unsettled(&app).await?;

    let (stop, stopped) = watch::channel(false);
    let mut tasks = vec![
        serve(api_listener, api::router(app.clone()), stopped.clone()),
        serve(
            http01_listener,
            certfleet_solvers::responder::router(solvers.live.clone()),
            stopped.clone(),
        ),
        tokio::spawn(purge_challenges(store.clone(), stopped.clone())),
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
    data.write_server_info(&ServerInfo {
        api: format!("http://{api_addr}"),
        http01: http01_addr.to_string(),
        pid: std::process::id(),
    })
    .map_err(|e| ServerError::io(format!("writing {}", data.server_info_path().display()), e))?;
    tracing::info!(%api_addr, %http01_addr, data_dir = %settings.data_dir.display(), "certfleet server is running");
    for issuer in app.issuers.values() {
        tokio::spawn(check_issuer(issuer.clone()));
    }
    Ok(Running {
        api_addr,
        http01_addr,
        tls_alpn_addr,
        admin_token,
        app,
        stop,
        tasks,
    })
}

fn open_store(data: &DataDir) -> Result<Arc<dyn Store>, ServerError> {
    let env = std::env::var(KEK_ENV).ok();
    let (sealer, created) = Sealer::from_env_or_file(env.as_deref(), &data.kek_path())
        .map_err(|e| ServerError::Startup(format!("key-encryption key: {e}")))?;
    if created {
        tracing::warn!(
            path = %data.kek_path().display(),
            "created a new key-encryption key (mode 0600); back it up: without it the stored private keys cannot be read"
        );
    }
    let store = SqliteStore::open(&data.db_path(), sealer)
        .map_err(|e| ServerError::Startup(format!("opening {}: {e}", data.db_path().display())))?;
    Ok(Arc::new(store))
}

fn build_issuers(
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
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        // Small JSON answers and challenge responses: send them without Nagle delays.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "a listener failed");
        }
    })
}

/// Create the certificates the config file declares and that the store lacks.
async fn declare_configured(app: &Arc<App>, settings: &Settings) -> Result<(), ServerError> {
    for c in &settings.certificates {
        if let Some(existing) = app.store.certificate(c.name.as_str()).await? {
            if existing.domains != c.domains
                || existing.issuer != c.issuer
                || existing.key_kind != c.key
                || existing.solvers != c.solvers
            {
                tracing::warn!(
                    certificate = %c.name,
                    "the config file declares this certificate differently from the store; the stored one is kept (remove it with `certfleet cert rm` to re-declare)"
                );
            }
            continue;
        }
        let new = NewCertificate {
            name: c.name.clone(),
            domains: c.domains.clone(),
            issuer: c.issuer.clone(),
            key_kind: c.key,
            challenge: c.challenge,
            source: Source::Acme,
            solvers: c.solvers.clone(),
        };
        app.store.create_certificate(&new).await?;
        app.store
            .append_event(
                Some(c.name.as_str()),
                EventKind::Created,
                "declared in the config file",
            )
            .await?;
    }
    Ok(())
}

/// Start orders for certificates that never got one or whose order a stop interrupted.
async fn resume_unsettled(app: &Arc<App>) -> Result<(), ServerError> {
    for cert in app.store.certificates().await? {
        let unsettled = matches!(
            cert.status,
            CertificateStatus::Pending | CertificateStatus::Issuing
        );
        if unsettled && cert.auto_renewable() {
            app.issuance.start(cert.name.as_str()).await?;
        }
    }
    Ok(())
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

async fn check_issuer(issuer: Arc<AcmeIssuer>) {
    let name = issuer.config().name.clone();
    match issuer.account_url().await {
        Ok(url) => tracing::info!(issuer = %name, account = %url, "ACME account ready"),
        Err(e) => {
            tracing::warn!(issuer = %name, error = %e, "issuer is not usable yet; certificates for it will fail until it is")
        }
    }
}
