//! Start-up of the control plane: data directory, key-encryption key, store, issuers,
//! solvers, listeners; then serving until told to stop.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use certfleet_acme::Acme;
use certfleet_acme::issuer::Eab;
use certfleet_acme::{AcmeIssuer, IssuerConfig};
use certfleet_core::time::Clock;
use certfleet_core::{ChallengeKind, EventKind, NewCertificate, Secret, Solver, Source, Store};
use certfleet_solvers::Http01Solver;
use certfleet_store::{Sealer, SqliteStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::TokioClock;
use crate::config::{IssuerSettings, Settings};
use crate::datadir::{DataDir, ServerInfo};
use crate::issuance::Issuance;
use crate::{ServerError, api, scheduler};

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
}

/// A running server (see [`start`]).
pub struct Running {
    /// Where the REST API listens.
    pub api_addr: SocketAddr,
    /// Where the HTTP-01 responder listens.
    pub http01_addr: SocketAddr,
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
    let token_ttl = Duration::from_secs(settings.token_ttl_secs);
    let mut solvers: HashMap<ChallengeKind, Arc<dyn Solver>> = HashMap::new();
    solvers.insert(
        ChallengeKind::Http01,
        Arc::new(Http01Solver::new(store.clone(), token_ttl)),
    );
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let acmes: BTreeMap<String, Arc<dyn Acme>> = issuers
        .iter()
        .map(|(name, issuer)| (name.clone(), issuer.clone() as Arc<dyn Acme>))
        .collect();
    let issuance = Arc::new(Issuance::new(
        store.clone(),
        acmes,
        solvers,
        settings.max_concurrent_orders,
        clock.clone(),
        claim_owner(),
    ));
    let app = Arc::new(App {
        store: store.clone(),
        issuers,
        issuer_settings: settings.issuers.clone(),
        issuance,
        admin_token: admin_token.clone(),
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

    check_issuers(&app).await;
    declare_configured(&app, &settings).await?;
    // One server per data directory: claims left by an earlier run died with it.
    let released = store.release_all_claims(clock.now()).await?;
    if released > 0 {
        tracing::info!(
            count = released,
            "resuming certificates an earlier run was working on"
        );
    }

    let (stop, stopped) = watch::channel(false);
    let tasks = vec![
        scheduler::spawn(app.issuance.clone(), stopped.clone()),
        serve(api_listener, api::router(app.clone()), stopped.clone()),
        serve(
            http01_listener,
            certfleet_solvers::responder::router(store.clone()),
            stopped.clone(),
        ),
        tokio::spawn(purge_challenges(store.clone(), stopped.clone())),
    ];
    data.write_server_info(&ServerInfo {
        api: format!("http://{api_addr}"),
        http01: http01_addr.to_string(),
        pid: std::process::id(),
    })
    .map_err(|e| ServerError::io(format!("writing {}", data.server_info_path().display()), e))?;
    tracing::info!(%api_addr, %http01_addr, data_dir = %settings.data_dir.display(), "certfleet server is running");
    Ok(Running {
        api_addr,
        http01_addr,
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
            {
                tracing::warn!(
                    certificate = %c.name,
                    "the config file declares this certificate differently from the store; the stored one is kept (remove it with `certfleet cert rm` to re-declare)"
                );
            }
            continue;
        }
        if let Some(profile) = &c.profile {
            check_profile_at_start(app, &c.issuer, profile, c.name.as_str()).await?;
        }
        let new = NewCertificate {
            name: c.name.clone(),
            domains: c.domains.clone(),
            issuer: c.issuer.clone(),
            key_kind: c.key,
            challenge: c.challenge,
            source: Source::Acme,
            profile: c.profile.clone(),
            renew_before: c.renew_before,
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

/// A name for this process in claims: host, PID and a random part.
fn claim_owner() -> String {
    let mut random = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut random);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}/{}/{suffix}", host.trim(), std::process::id())
}

/// Refuse a declared profile the issuer's CA does not offer (when the CA can be asked).
async fn check_profile_at_start(
    app: &Arc<App>,
    issuer: &str,
    profile: &str,
    certificate: &str,
) -> Result<(), ServerError> {
    let Some(acme) = app.issuers.get(issuer) else {
        return Ok(());
    };
    match crate::validate::check_profile(acme.as_ref(), profile).await {
        Ok(()) => Ok(()),
        Err(crate::validate::ProfileCheck::Refused(message)) => Err(ServerError::Startup(format!(
            "certificate {certificate:?}: {message}"
        ))),
        Err(crate::validate::ProfileCheck::Unreachable(e)) => {
            tracing::warn!(certificate, profile, error = %e, "cannot check the profile with the CA now; it is checked again when ordering");
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
