//! certfleet's notifiers: every event the store records can reach people through a
//! [`Notifier`] — a [`webhook`] (JSON with a `text` field, which Slack, Rocket.Chat and
//! Mattermost accept, plus structured fields) or [`smtp`] mail (one per event or a digest).
//!
//! The [`Dispatcher`] gives each notifier its own bounded queue and worker: submitting an event
//! never waits, a receiver that fails or hangs delays only its own queue (retried with
//! backoff, each attempt bounded by a timeout), and what a full queue drops is logged. Which
//! events a notifier gets is its [`Filter`]: event kinds and a minimum [`Severity`].
//!
//! Notifications carry the event's message and structured details, never a private key,
//! token or password; webhook URLs and SMTP passwords are secrets too and never reach a log
//! line (`Debug` redacts them, errors name the notifier instead).
//!
//! Configuration (`[[notifiers]]` in the server's config file) is in [`config`].
#![warn(missing_docs)]

pub mod config;
pub mod dispatch;
pub mod smtp;
pub mod webhook;

use async_trait::async_trait;
use certfleet_core::{Event, EventDetails, EventKind, Severity};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use config::{NotifierSection, build};
pub use dispatch::{Dispatcher, Route};

/// What can go wrong while notifying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The receiver could not be reached or did not answer in time (worth retrying).
    #[error("{notifier}: {reason}")]
    Unreachable {
        /// The notifier's name.
        notifier: String,
        /// Why (never the URL or a password).
        reason: String,
    },
    /// The receiver answered with a failure status or refused the mail.
    #[error("{notifier}: the receiver refused: {reason}")]
    Refused {
        /// The notifier's name.
        notifier: String,
        /// What it said.
        reason: String,
        /// Whether trying again later may help (5xx, 429, a transient SMTP code).
        retryable: bool,
    },
    /// The configuration is not usable.
    #[error("{field}: {message}")]
    Config {
        /// The config field (`notifiers[1].url`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl NotifyError {
    /// Whether the same delivery may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Unreachable { .. } => true,
            NotifyError::Refused { retryable, .. } => *retryable,
            NotifyError::Config { .. } => false,
        }
    }
}

/// A delivery target. Implementations make one attempt per call; retries, timeouts and
/// queueing are the [`Dispatcher`]'s.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// The name used in logs and errors (`notifiers[0]` unless configured).
    fn name(&self) -> &str;

    /// Deliver `batch` (one event, or several for a digest) in one attempt.
    async fn deliver(&self, batch: &[Notification]) -> Result<(), NotifyError>;
}

/// Which events a notifier receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these kinds (empty: every kind).
    pub kinds: Vec<EventKind>,
    /// Only events at least this severe.
    pub min_severity: Option<Severity>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn accepts(&self, event: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.min_severity.is_none_or(|min| event.severity() >= min)
    }
}

/// One event as receivers see it (the webhook's JSON body, a mail's content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// One line for people and chat (`[certfleet] www renewed: ...`).
    pub text: String,
    /// The event kind (`renewed`, `renewal_failed`, `expiring`, ...).
    pub event: EventKind,
    /// `info`, `warning` or `error`.
    pub severity: Severity,
    /// The certificate, if the event is about one.
    pub certificate: Option<String>,
    /// The event's message.
    pub message: String,
    /// When it happened (RFC 3339).
    pub at: String,
    /// The event's id in the log (`certfleet events`).
    pub id: i64,
    /// Structured detail: version, serial, not_after, failure_streak, next_attempt, threshold.
    pub details: EventDetails,
}

impl Notification {
    /// Build from a stored event.
    pub fn from_event(event: &Event) -> Self {
        let severity = event.severity();
        let subject = match &event.certificate {
            Some(name) => format!("{name} {}", event.kind.as_str().replace('_', " ")),
            None => event.kind.as_str().replace('_', " "),
        };
        let mark = match severity {
            Severity::Info => "",
            Severity::Warning => "warning: ",
            Severity::Error => "ERROR: ",
        };
        Self {
            text: format!("[certfleet] {mark}{subject}: {}", event.message),
            event: event.kind,
            severity,
            certificate: event.certificate.clone(),
            message: event.message.clone(),
            at: rfc3339(event.at),
            id: event.id,
            details: event.details.clone(),
        }
    }
}

/// RFC 3339 UTC text for Unix seconds.
pub(crate) fn rfc3339(t: i64) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&Rfc3339).ok())
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            id: 7,
            at: 1_800_000_000,
            certificate: Some("www".into()),
            kind,
            message: "issued version 2".into(),
            details: EventDetails::default(),
        }
    }

    #[test]
    fn filters_by_kind_and_severity() {
        let all = Filter::default();
        assert!(all.accepts(&event(EventKind::Issued)));
        let failures = Filter {
            kinds: vec![],
            min_severity: Some(Severity::Warning),
        };
        assert!(!failures.accepts(&event(EventKind::Issued)));
        assert!(failures.accepts(&event(EventKind::RenewalFailed)));
        let kinds = Filter {
            kinds: vec![EventKind::Renewed],
            min_severity: None,
        };
        assert!(kinds.accepts(&event(EventKind::Renewed)));
        assert!(!kinds.accepts(&event(EventKind::Issued)));
    }

    #[test]
    fn notifications_have_a_text_line_and_fields() {
        let n = Notification::from_event(&event(EventKind::RenewalFailed));
        assert_eq!(
            n.text,
            "[certfleet] ERROR: www renewal failed: issued version 2"
        );
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(json["event"], "renewal_failed");
        assert_eq!(json["severity"], "error");
        assert_eq!(json["at"], "2027-01-15T08:00:00Z");
        assert_eq!(json["details"], serde_json::json!({}));
    }
}
