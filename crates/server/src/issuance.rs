//! [`Issuance`]: runs orders in the background, at most `max_concurrent_orders` at once and
//! never two for the same certificate.
//!
//! A request marks the certificate `issuing` before it returns, so a client that polls sees
//! either `issuing` or the outcome (`valid` / `failed` with `last_error`). The renewal
//! scheduler of a later issue calls [`Issuance::start`] the same way the API does.
//! [`Issuance::cancel`] stops an order in flight (when its certificate is removed) and waits
//! until its task has finished, so nothing is written about the certificate afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use certfleet_acme::{AcmeIssuer, OrderObserver};
use certfleet_core::{
    CertificateStatus, EventDetails, EventKind, NewEvent, NewVersion, Store, StoreError,
};
use tokio::sync::{Semaphore, watch};

use crate::registry::SolverRegistry;
use crate::views::rfc3339;

/// Background issuance.
pub struct Issuance {
    store: Arc<dyn Store>,
    issuers: BTreeMap<String, Arc<AcmeIssuer>>,
    solvers: Arc<SolverRegistry>,
    limit: Arc<Semaphore>,
    in_flight: Mutex<HashMap<String, Task>>,
}

/// One queued or running order: `cancel` asks it to stop; `done` turns true when it ended.
struct Task {
    cancel: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

/// Removes a certificate from the in-flight set and says "done" however its task ends.
struct InFlight<'a> {
    set: &'a Mutex<HashMap<String, Task>>,
    name: String,
    done: watch::Sender<bool>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.name);
        }
        let _ = self.done.send(true);
    }
}

struct RecordOrder<'a> {
    store: &'a dyn Store,
    name: &'a str,
}

#[async_trait]
impl OrderObserver for RecordOrder<'_> {
    async fn order_created(&self, url: &str) {
        if let Err(e) = self.store.set_order_url(self.name, Some(url)).await {
            tracing::warn!(certificate = self.name, error = %e, "could not record the order URL");
        }
    }
}

impl Issuance {
    /// Set up issuance over these issuers and solvers.
    pub fn new(
        store: Arc<dyn Store>,
        issuers: BTreeMap<String, Arc<AcmeIssuer>>,
        solvers: Arc<SolverRegistry>,
        max_concurrent: usize,
    ) -> Self {
        Self {
            store,
            issuers,
            solvers,
            limit: Arc::new(Semaphore::new(max_concurrent)),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an order for `name` is queued or running.
    pub fn is_in_flight(&self, name: &str) -> bool {
        self.in_flight.lock().is_ok_and(|s| s.contains_key(name))
    }

    /// Stop the order of `name`, if one is queued or running, and wait until its task has
    /// ended; returns whether there was one. Responses it published are withdrawn by the
    /// store when the certificate is removed (they belong to it).
    pub async fn cancel(&self, name: &str) -> bool {
        let done = {
            let set = self.in_flight.lock().expect("in-flight set poisoned");
            let Some(task) = set.get(name) else {
                return false;
            };
            let _ = task.cancel.send(true);
            task.done.clone()
        };
        let mut done = done;
        let _ = done.wait_for(|d| *d).await;
        true
    }

    /// Queue a new version of `name`; `false` if one is already queued or running.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<bool, StoreError> {
        let (cancel_tx, mut cancel_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        {
            let mut set = self.in_flight.lock().expect("in-flight set poisoned");
            if set.contains_key(name) {
                return Ok(false);
            }
            set.insert(
                name.to_string(),
                Task {
                    cancel: cancel_tx,
                    done: done_rx,
                },
            );
        }
        if let Err(e) = self
            .store
            .set_status(name, CertificateStatus::Issuing, None)
            .await
        {
            self.in_flight
                .lock()
                .expect("in-flight set poisoned")
                .remove(name);
            return Err(e);
        }
        let this = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            let _guard = InFlight {
                set: &this.in_flight,
                name: name.clone(),
                done: done_tx,
            };
            let work = async {
                let Ok(_permit) = this.limit.acquire().await else {
                    return;
                };
                this.run(&name).await;
            };
            tokio::select! {
                () = work => {}
                _ = cancel_rx.wait_for(|c| *c) => {
                    tracing::info!(certificate = %name, "order cancelled: the certificate is being removed");
                }
            }
        });
        Ok(true)
    }

    async fn run(&self, name: &str) {
        match self.issue(name).await {
            Ok(()) => {}
            Err(IssueFailure::Gone) => {
                tracing::info!(
                    certificate = name,
                    "certificate removed while issuing; result dropped"
                );
            }
            Err(IssueFailure::Failed(message)) => {
                tracing::warn!(certificate = name, error = %message, "issuance failed");
                let _ = self
                    .store
                    .set_status(name, CertificateStatus::Failed, Some(&message))
                    .await;
                let _ = self
                    .store
                    .record_event(&failure_event(self.store.as_ref(), name, &message).await)
                    .await;
            }
        }
    }

    async fn issue(&self, name: &str) -> Result<(), IssueFailure> {
        let cert = self
            .store
            .certificate(name)
            .await?
            .ok_or(IssueFailure::Gone)?;
        let issuer = self.issuers.get(&cert.issuer).ok_or_else(|| {
            IssueFailure::Failed(format!("issuer {:?} is no longer configured", cert.issuer))
        })?;
        let solvers = self
            .solvers
            .set_for(&cert.solvers, cert.challenge, &cert.domains)
            .map_err(IssueFailure::Failed)?;
        let started = format!(
            "ordering {} name(s) from issuer {}",
            cert.domains.len(),
            cert.issuer
        );
        self.store
            .append_event(Some(name), EventKind::IssuanceStarted, &started)
            .await?;
        let observer = RecordOrder {
            store: self.store.as_ref(),
            name,
        };
        let issued = issuer
            .issue(name, &cert.domains, cert.key_kind, &solvers, &observer)
            .await
            .map_err(|e| IssueFailure::Failed(e.to_string()))?;
        let leaf = issued.leaf().clone();
        let version = NewVersion {
            serial: leaf.serial.clone(),
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            leaf_pem: issued.chain.leaf_pem.clone(),
            chain_pem: issued.chain.chain_pem.clone(),
            key_kind: cert.key_kind,
            key_pem: issued.key_pem,
            order_url: Some(issued.order_url),
            domains: cert.domains.clone(),
            issuer: cert.issuer.clone(),
        };
        let stored = self.store.add_version(name, version).await?;
        let message = format!(
            "issued version {} serial {} valid until {}",
            stored.seq,
            stored.serial,
            rfc3339(stored.not_after)
        );
        tracing::info!(certificate = name, "{message}");
        // A version that replaces one is a renewal (the scheduler's and `cert renew`'s work).
        let kind = match stored.replaces {
            Some(_) => EventKind::Renewed,
            None => EventKind::Issued,
        };
        let details = EventDetails {
            version: Some(stored.seq),
            serial: Some(stored.serial.clone()),
            not_after: Some(stored.not_after),
            issuer: Some(cert.issuer.clone()),
            ..EventDetails::default()
        };
        self.store
            .record_event(&NewEvent::about(name, kind, message).with(details))
            .await?;
        Ok(())
    }
}

/// `renewal_failed` when a current version exists (it is still served), else `failed`; with
/// the failure streak and the next attempt the scheduler planned, if any.
async fn failure_event(store: &dyn Store, name: &str, message: &str) -> NewEvent {
    let cert = store.certificate(name).await.ok().flatten();
    let renewal = cert.as_ref().is_some_and(|c| c.current_version.is_some());
    let kind = if renewal {
        EventKind::RenewalFailed
    } else {
        EventKind::Failed
    };
    let details = EventDetails {
        version: cert.as_ref().and_then(|c| c.current_version),
        not_after: cert.as_ref().and_then(|c| c.not_after),
        failure_streak: cert.as_ref().map(|c| c.failure_streak),
        next_attempt: cert.as_ref().and_then(|c| c.next_due),
        ..EventDetails::default()
    };
    NewEvent::about(name, kind, message).with(details)
}

enum IssueFailure {
    Gone,
    Failed(String),
}

impl From<StoreError> for IssueFailure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => IssueFailure::Gone,
            other => IssueFailure::Failed(format!("store: {other}")),
        }
    }
}
