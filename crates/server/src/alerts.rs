//! [`EventFanout`]: the store's event listener in the server. Every recorded event — whoever
//! records it: issuance, imports, the expiry watcher, revocation, account changes — goes to
//! the notifiers' queues ([`certfleet_notify::Dispatcher`]), and a stored version wakes the
//! expiry watcher ([`crate::expiry`]) so its thresholds are watched at once.

use std::sync::Arc;

use certfleet_core::{Event, EventKind, EventListener};
use certfleet_notify::Dispatcher;
use tokio::sync::Notify;

/// Hands events to the notifiers and wakes the expiry watcher; never waits.
pub struct EventFanout {
    dispatcher: Dispatcher,
    expiry_wake: Arc<Notify>,
}

impl EventFanout {
    /// Fan out to `dispatcher`, waking `expiry_wake` when a version is stored.
    pub fn new(dispatcher: Dispatcher, expiry_wake: Arc<Notify>) -> Self {
        Self {
            dispatcher,
            expiry_wake,
        }
    }
}

impl EventListener for EventFanout {
    fn event_recorded(&self, event: &Event) {
        if matches!(
            event.kind,
            EventKind::Issued | EventKind::Renewed | EventKind::Imported
        ) {
            self.expiry_wake.notify_one();
        }
        self.dispatcher.submit(event);
    }
}
