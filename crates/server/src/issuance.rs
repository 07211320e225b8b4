//! [`Issuance`]: runs renewal attempts in the background, at most `max_concurrent_orders` at
//! once, each on a certificate claimed through the [`Store`].
//!
//! Work on a certificate starts with a claim (owner + expiry, `Store::claim` for a person's
//! request, `Store::claim_due` from the [scheduler](crate::scheduler)), so one certificate
//! never has two attempts even across replicas sharing a store. The claim is extended while
//! the attempt runs and released with the certificate's next due time when it ends; what
//! happens in between is the [renewal engine](crate::renewal). [`Issuance::cancel`] stops an
//! attempt (when its certificate is removed) and waits until its task has ended, so nothing
//! is written about the certificate afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certfleet_acme::Acme;
use certfleet_core::time::{Clock, UnixTime};
use certfleet_core::{Certificate, Store, StoreError};
use tokio::sync::{Notify, Semaphore, watch};

use crate::registry::SolverRegistry;

/// How long a claim lasts before another owner may take the certificate over; extended every
/// third of it while the attempt runs.
pub const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// Why an attempt runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The scheduler found the certificate due (it may turn out not to need an order yet).
    Scheduled,
    /// A person asked (`cert add`, `cert renew`): order now. Without `force` a stored
    /// Retry-After of the CA is respected.
    Requested {
        /// Send the order even before the CA's Retry-After.
        force: bool,
    },
}

/// What [`Issuance::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// An attempt is queued or running.
    Started,
    /// An attempt for the certificate is already queued or running (here or elsewhere).
    Busy,
    /// The CA asked not to be contacted about the certificate before this time.
    NotBefore(UnixTime),
}

/// Background renewal attempts.
pub struct Issuance {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) issuers: BTreeMap<String, Arc<dyn Acme>>,
    pub(crate) solvers: Arc<SolverRegistry>,
    pub(crate) clock: Arc<dyn Clock>,
    limit: Arc<Semaphore>,
    queued: AtomicUsize,
    in_flight: Mutex<HashMap<String, Task>>,
    owner: String,
    wake: Notify,
    /// The earliest due time reported since the scheduler last looked (`i64::MAX`: none).
    hint: AtomicI64,
}

/// One queued or running attempt: `cancel` asks it to stop; `done` turns true when it ended.
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

impl Issuance {
    /// Set up issuance over these issuers and solvers; `owner` names this process in claims.
    pub fn new(
        store: Arc<dyn Store>,
        issuers: BTreeMap<String, Arc<dyn Acme>>,
        solvers: Arc<SolverRegistry>,
        max_concurrent: usize,
        clock: Arc<dyn Clock>,
        owner: String,
    ) -> Self {
        Self {
            store,
            issuers,
            solvers,
            clock,
            limit: Arc::new(Semaphore::new(max_concurrent)),
            queued: AtomicUsize::new(0),
            in_flight: Mutex::new(HashMap::new()),
            owner,
            wake: Notify::new(),
            hint: AtomicI64::new(i64::MAX),
        }
    }

    /// The claim owner of this process.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether an attempt for `name` is queued or running in this process.
    pub fn is_in_flight(&self, name: &str) -> bool {
        self.in_flight.lock().is_ok_and(|s| s.contains_key(name))
    }

    /// Stop the attempt on `name`, if one is queued or running here, and wait until its task
    /// has ended; returns whether there was one. Responses it published are withdrawn (the
    /// order's cleanup guard, and the store when the certificate is removed).
    pub async fn cancel(&self, name: &str) -> bool {
        let mut done = {
            let set = self.in_flight.lock().expect("in-flight set poisoned");
            let Some(task) = set.get(name) else {
                return false;
            };
            let _ = task.cancel.send(true);
            task.done.clone()
        };
        let _ = done.wait_for(|d| *d).await;
        true
    }

    /// Wait until no attempt is queued or running in this process (`certfleet run --once`
    /// waits for its attempts before deploying). Looks again at least every second.
    pub async fn idle(&self) {
        loop {
            let woken = self.wake.notified();
            if self.in_flight.lock().map(|s| s.is_empty()).unwrap_or(true) {
                return;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// How many more attempts could start right now (free permits not promised to attempts
    /// already waiting for one).
    pub fn free_slots(&self) -> usize {
        self.limit
            .available_permits()
            .saturating_sub(self.queued.load(Ordering::SeqCst))
    }

    /// Wait until something changed that the scheduler should look at (an attempt ended, a
    /// certificate was declared).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Tell the scheduler that something may be due now (a certificate was declared).
    pub fn poke(&self) {
        self.poke_at(self.clock.now());
    }

    /// Tell the scheduler that a certificate is due at `at` (and that an order slot may
    /// have become free).
    pub fn poke_at(&self, at: UnixTime) {
        self.hint.fetch_min(at, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The earliest due time reported by [`Self::poke_at`] since the last call.
    pub fn take_hint(&self) -> Option<UnixTime> {
        let hint = self.hint.swap(i64::MAX, Ordering::SeqCst);
        (hint != i64::MAX).then_some(hint)
    }

    /// Claim `name` and start an attempt now (a person asked).
    pub async fn start(
        self: &Arc<Self>,
        name: &str,
        trigger: Trigger,
    ) -> Result<Started, StoreError> {
        if self.is_in_flight(name) {
            return Ok(Started::Busy);
        }
        let now = self.clock.now();
        let current = self
            .store
            .certificate(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("certificate {name:?}")))?;
        if let (Trigger::Requested { force: false }, Some(at)) = (trigger, current.retry_after)
            && at > now
        {
            return Ok(Started::NotBefore(at));
        }
        let until = now + CLAIM_LEASE.as_secs() as i64;
        let Some(cert) = self.store.claim(name, &self.owner, now, until).await? else {
            return Ok(Started::Busy);
        };
        if self.is_in_flight(name) {
            return Ok(Started::Busy);
        }
        // A person asked: it is `issuing` from now on, also while it waits for an order slot
        // (set before the attempt runs, which sets the outcome).
        self.store
            .set_status(name, certfleet_core::CertificateStatus::Issuing, None)
            .await?;
        if !self.spawn(cert, trigger) {
            return Ok(Started::Busy);
        }
        Ok(Started::Started)
    }

    /// Start an attempt on a certificate this process already claimed (the scheduler's).
    /// False if one is already running here.
    pub fn spawn(self: &Arc<Self>, cert: Certificate, trigger: Trigger) -> bool {
        let name = cert.name.to_string();
        let (cancel_tx, mut cancel_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        {
            let mut set = self.in_flight.lock().expect("in-flight set poisoned");
            if set.contains_key(&name) {
                return false;
            }
            set.insert(
                name.clone(),
                Task {
                    cancel: cancel_tx,
                    done: done_rx,
                },
            );
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _guard = InFlight {
                set: &this.in_flight,
                name: name.clone(),
                done: done_tx,
            };
            let acquired = AtomicBool::new(false);
            let work = async {
                let permit = this.limit.clone().acquire_owned().await;
                this.queued.fetch_sub(1, Ordering::SeqCst);
                acquired.store(true, Ordering::SeqCst);
                let _permit = permit.ok()?;
                Some(this.attempt_with_heartbeat(&cert, trigger).await)
            };
            let next_due = tokio::select! {
                next_due = work => match next_due {
                    Some(next_due) => next_due,
                    None => return,
                },
                _ = cancel_rx.wait_for(|c| *c) => {
                    if !acquired.load(Ordering::SeqCst) {
                        this.queued.fetch_sub(1, Ordering::SeqCst);
                    }
                    tracing::info!(certificate = %name, "order cancelled: the certificate is being removed");
                    return;
                }
            };
            match this.store.release_claim(&name, &this.owner, next_due).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(certificate = %name, "the claim was lost during the attempt")
                }
                Err(e) => {
                    tracing::warn!(certificate = %name, error = %e, "could not release the claim")
                }
            }
            drop(_guard);
            this.poke_at(next_due.unwrap_or(i64::MAX));
        });
        true
    }

    /// Run the attempt while extending the claim every third of [`CLAIM_LEASE`].
    async fn attempt_with_heartbeat(
        &self,
        cert: &Certificate,
        trigger: Trigger,
    ) -> Option<UnixTime> {
        let attempt = crate::renewal::attempt(self, cert, trigger);
        tokio::pin!(attempt);
        let period = CLAIM_LEASE / 3;
        loop {
            tokio::select! {
                next_due = &mut attempt => return next_due,
                _ = tokio::time::sleep(period) => {
                    let until = self.clock.now() + CLAIM_LEASE.as_secs() as i64;
                    if let Err(e) = self.store.extend_claim(cert.name.as_str(), &self.owner, until).await {
                        tracing::warn!(certificate = %cert.name, error = %e, "could not extend the claim");
                    }
                }
            }
        }
    }
}
