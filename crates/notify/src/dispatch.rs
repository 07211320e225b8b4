//! [`Dispatcher`]: one bounded queue and one worker per notifier, so that delivering never
//! delays the code that records events and one bad receiver never delays another.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use certfleet_core::Event;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{Filter, Notification, Notifier, NotifyError};

/// Notifications waiting per notifier; beyond this new ones are dropped (and logged).
pub const QUEUE_CAPACITY: usize = 256;
/// Wait before the first retry; doubles each time up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// A notifier with its filter and delivery policy.
pub struct Route {
    /// Where to deliver.
    pub notifier: Arc<dyn Notifier>,
    /// What it receives.
    pub filter: Filter,
    /// Gather events for this long and deliver them together (a digest); `None`: one by one.
    pub digest: Option<Duration>,
    /// Attempts per delivery, at least 1.
    pub max_attempts: u32,
    /// Bound on one attempt.
    pub timeout: Duration,
}

struct Queue {
    name: String,
    filter: Filter,
    tx: mpsc::Sender<Notification>,
}

/// Fans events out to the notifiers' queues. Workers run on the runtime that called
/// [`Dispatcher::start`] and end when the dispatcher is dropped (after finishing what they hold).
pub struct Dispatcher {
    queues: Vec<Queue>,
    dropped: AtomicU64,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Dispatcher {
    /// Start one worker per route.
    pub fn start(routes: Vec<Route>) -> Self {
        let mut workers = Vec::with_capacity(routes.len());
        let queues = routes
            .into_iter()
            .map(|route| {
                let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                let queue = Queue {
                    name: route.notifier.name().to_string(),
                    filter: route.filter.clone(),
                    tx,
                };
                workers.push(tokio::spawn(worker(route, rx)));
                queue
            })
            .collect();
        Self {
            queues,
            dropped: AtomicU64::new(0),
            workers,
        }
    }

    /// Stop taking events and wait, at most `within`, for every worker to deliver what it
    /// holds (digests are sent at once); for a process about to exit (`certfleet run
    /// --once`). Returns whether everything was delivered or given up in time.
    pub async fn finish(self, within: Duration) -> bool {
        let Self {
            queues, workers, ..
        } = self;
        drop(queues);
        let all = async {
            for worker in workers {
                let _ = worker.await;
            }
        };
        tokio::time::timeout(within, all).await.is_ok()
    }

    /// Notifications dropped so far because a queue was full or its worker had stopped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many notifiers there are.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Queue `event` for every notifier whose filter accepts it. Never waits: a full queue
    /// drops the notification and says so in the log.
    pub fn submit(&self, event: &Event) {
        let mut notification = None;
        for queue in &self.queues {
            if !queue.filter.accepts(event) {
                continue;
            }
            let n = notification
                .get_or_insert_with(|| Notification::from_event(event))
                .clone();
            let sent = queue.tx.try_send(n);
            if sent.is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            match sent {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(
                    notifier = %queue.name,
                    event_id = event.id,
                    kind = event.kind.as_str(),
                    certificate = event.certificate.as_deref().unwrap_or("-"),
                    capacity = QUEUE_CAPACITY,
                    "notification dropped: the notifier's queue is full (its receiver is failing or slow)"
                ),
                Err(mpsc::error::TrySendError::Closed(_)) => tracing::warn!(
                    notifier = %queue.name,
                    event_id = event.id,
                    "notification dropped: the notifier has stopped"
                ),
            }
        }
    }
}

async fn worker(route: Route, mut rx: mpsc::Receiver<Notification>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        if let Some(window) = route.digest {
            let deadline = Instant::now() + window;
            while let Ok(Some(next)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                batch.push(next);
            }
        }
        deliver(&route, &batch).await;
    }
}

/// Try up to `max_attempts` times with exponential backoff; log the outcome.
async fn deliver(route: &Route, batch: &[Notification]) {
    let name = route.notifier.name();
    let ids: Vec<i64> = batch.iter().map(|n| n.id).collect();
    let mut delay = FIRST_RETRY_DELAY;
    let attempts = route.max_attempts.max(1);
    for attempt in 1..=attempts {
        let result = match tokio::time::timeout(route.timeout, route.notifier.deliver(batch)).await
        {
            Ok(result) => result,
            Err(_) => Err(NotifyError::Unreachable {
                notifier: name.to_string(),
                reason: format!("no answer within {} s", route.timeout.as_secs_f32()),
            }),
        };
        match result {
            Ok(()) => {
                tracing::debug!(notifier = name, events = ?ids, attempt, "notification delivered");
                return;
            }
            Err(e) if e.is_retryable() && attempt < attempts => {
                tracing::info!(notifier = name, events = ?ids, attempt, error = %e, retry_in_secs = delay.as_secs(), "notification failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(e) => {
                tracing::warn!(notifier = name, events = ?ids, attempt, error = %e, "notification given up");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use certfleet_core::{EventDetails, EventKind};

    use super::*;

    /// Fails `failures` times, then records what it gets.
    struct Flaky {
        failures: Mutex<u32>,
        got: Mutex<Vec<Vec<i64>>>,
    }

    #[async_trait]
    impl Notifier for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn deliver(&self, batch: &[Notification]) -> Result<(), NotifyError> {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(NotifyError::Refused {
                    notifier: "flaky".into(),
                    reason: "HTTP 503".into(),
                    retryable: true,
                });
            }
            self.got
                .lock()
                .unwrap()
                .push(batch.iter().map(|n| n.id).collect());
            Ok(())
        }
    }

    fn event(id: i64, kind: EventKind) -> Event {
        Event {
            id,
            at: 0,
            certificate: Some("www".into()),
            kind,
            message: String::new(),
            details: EventDetails::default(),
        }
    }

    async fn until_delivered(flaky: &Flaky, batches: usize) -> Vec<Vec<i64>> {
        for _ in 0..400 {
            let got = flaky.got.lock().unwrap().clone();
            if got.len() >= batches {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("not delivered: {:?}", flaky.got.lock().unwrap());
    }

    /// Never answers.
    struct Hangs(Mutex<u32>);

    #[async_trait]
    impl Notifier for Hangs {
        fn name(&self) -> &str {
            "hangs"
        }
        async fn deliver(&self, _: &[Notification]) -> Result<(), NotifyError> {
            *self.0.lock().unwrap() += 1;
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_hanging_receiver_fills_its_queue_and_the_rest_is_dropped_without_waiting() {
        let hangs = Arc::new(Hangs(Mutex::new(0)));
        let dispatcher = Dispatcher::start(vec![Route {
            notifier: hangs.clone(),
            filter: Filter::default(),
            digest: None,
            max_attempts: 1,
            timeout: Duration::from_secs(3600),
        }]);
        dispatcher.submit(&event(0, EventKind::Issued));
        for _ in 0..200 {
            if *hangs.0.lock().unwrap() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *hangs.0.lock().unwrap(),
            1,
            "the first one is being delivered"
        );
        for id in 1..=(QUEUE_CAPACITY as i64 + 50) {
            dispatcher.submit(&event(id, EventKind::Issued));
        }
        assert_eq!(dispatcher.dropped(), 50, "the queue holds {QUEUE_CAPACITY}");
    }

    #[tokio::test]
    async fn retries_then_delivers_filtered_events_and_digests() {
        let flaky = Arc::new(Flaky {
            failures: Mutex::new(2),
            got: Mutex::new(vec![]),
        });
        let digest = Arc::new(Flaky {
            failures: Mutex::new(0),
            got: Mutex::new(vec![]),
        });
        let dispatcher = Dispatcher::start(vec![
            Route {
                notifier: flaky.clone(),
                filter: Filter {
                    kinds: vec![EventKind::Renewed],
                    min_severity: None,
                },
                digest: None,
                max_attempts: 3,
                timeout: Duration::from_secs(5),
            },
            Route {
                notifier: digest.clone(),
                filter: Filter::default(),
                digest: Some(Duration::from_millis(500)),
                max_attempts: 1,
                timeout: Duration::from_secs(5),
            },
        ]);
        dispatcher.submit(&event(1, EventKind::Issued));
        dispatcher.submit(&event(2, EventKind::Renewed));
        assert_eq!(
            until_delivered(&flaky, 1).await,
            [vec![2]],
            "after two retries"
        );
        assert_eq!(
            until_delivered(&digest, 1).await,
            [vec![1, 2]],
            "one digest"
        );
    }
}
