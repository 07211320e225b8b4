//! The fleet, server side: who may call what ([`auth`]), labels, tokens and the agent list
//! ([`api`]), the routes agents use ([`agent_api`]), their JSON shapes ([`views`]), and HTTP-01
//! across the fleet ([`http01`]).
//!
//! [`Fleet`] holds what these share: the [revision](certfleet_core::Store::revision) agents
//! watch, kept current by the store's change notifications (and a slow poll for writers in other
//! processes), and the stop signal that ends long-polls when the server stops.

pub mod agent_api;
pub mod api;
pub mod auth;
pub mod http01;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use certfleet_core::{Certificate, DeploymentRecord, Store, StoreError, TokenRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::views::Deployed;

/// How often the revision is re-read from the store, for writes this process did not see.
pub const REVISION_POLL: Duration = Duration::from_secs(2);

/// State the fleet routes share.
pub struct Fleet {
    revision: watch::Sender<u64>,
    stopping: watch::Receiver<bool>,
}

impl Fleet {
    /// Start watching `store`'s revision until `stopping` turns true.
    pub async fn start(
        store: &Arc<dyn Store>,
        stopping: watch::Receiver<bool>,
    ) -> Result<(Arc<Self>, JoinHandle<()>), StoreError> {
        let (tx, _) = watch::channel(store.revision().await?);
        let notify = tx.clone();
        store.on_change(Box::new(move |revision| advance(&notify, revision)));
        let fleet = Arc::new(Self {
            revision: tx,
            stopping: stopping.clone(),
        });
        let poller = tokio::spawn(poll_revision(store.clone(), fleet.clone(), stopping));
        Ok((fleet, poller))
    }

    /// The latest revision seen.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Wait until the revision differs from `since`, the server stops, or `wait` passes.
    pub async fn wait_past(&self, since: u64, wait: Duration) {
        let mut rx = self.revision.subscribe();
        let mut stopping = self.stopping.clone();
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            if *rx.borrow_and_update() != since || *stopping.borrow() {
                return;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = stopping.changed() => return,
                _ = &mut sleep => return,
            }
        }
    }
}

fn advance(tx: &watch::Sender<u64>, revision: u64) {
    tx.send_if_modified(|current| {
        let moved = revision != *current;
        *current = revision;
        moved
    });
}

async fn poll_revision(
    store: Arc<dyn Store>,
    fleet: Arc<Fleet>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopping.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(REVISION_POLL) => {}
        }
        match store.revision().await {
            Ok(r) => advance(&fleet.revision, r),
            Err(e) => tracing::warn!(error = %e, "could not read the revision"),
        }
    }
}

/// Live agent tokens entitled to `cert`.
pub fn entitled_agents<'a>(cert: &Certificate, tokens: &'a [TokenRecord]) -> Vec<&'a TokenRecord> {
    tokens
        .iter()
        .filter(|t| t.entitled_to(&cert.labels))
        .collect()
}

/// Whether `record` shows the certificate's current serial verified.
fn in_sync(record: &DeploymentRecord, current_serial: Option<&str>) -> bool {
    record.report.verified && current_serial == Some(record.report.serial.as_str())
}

/// `agents in sync / agents entitled` for each certificate, by name.
pub async fn deployed_counts(
    store: &dyn Store,
    certs: &[Certificate],
) -> Result<HashMap<String, Deployed>, StoreError> {
    let tokens = store.tokens().await?;
    let reports = store.deployments(None).await?;
    let mut out = HashMap::new();
    for cert in certs {
        let agents = entitled_agents(cert, &tokens);
        let serial = current_serial(store, cert).await?;
        let in_sync = agents
            .iter()
            .filter(|a| {
                reports.iter().any(|r| {
                    r.agent == a.name
                        && r.report.certificate == cert.name.as_str()
                        && in_sync(r, serial.as_deref())
                })
            })
            .count();
        out.insert(
            cert.name.to_string(),
            Deployed {
                in_sync: in_sync as u32,
                entitled: agents.len() as u32,
            },
        );
    }
    Ok(out)
}

/// The serial of `cert`'s current version.
pub async fn current_serial(
    store: &dyn Store,
    cert: &Certificate,
) -> Result<Option<String>, StoreError> {
    let Some(seq) = cert.current_version else {
        return Ok(None);
    };
    Ok(store
        .versions(cert.name.as_str())
        .await?
        .into_iter()
        .find(|v| v.seq == seq)
        .map(|v| v.serial))
}

/// Fill the `deployed` field of certificate views.
pub async fn fill_deployed(
    store: &dyn Store,
    views: &mut [crate::views::CertificateView],
) -> Result<(), StoreError> {
    let certs = store.certificates().await?;
    let wanted: Vec<Certificate> = certs
        .into_iter()
        .filter(|c| views.iter().any(|v| v.name == c.name.as_str()))
        .collect();
    let counts = deployed_counts(store, &wanted).await?;
    for view in views.iter_mut() {
        if let Some(d) = counts.get(&view.name) {
            view.deployed = *d;
        }
    }
    Ok(())
}
