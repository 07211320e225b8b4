//! Events beyond the log line: structured [`EventDetails`], a [`NewEvent`] to record, the
//! [`EventQuery`] that reads them back, each event's [`Severity`], and the [`EventListener`]
//! a store tells about every event it records (notifications, the expiry watcher).
//!
//! Recording an event is one line wherever it happens:
//!
//! ```ignore
//! store.record_event(&NewEvent::about(name, EventKind::Revoked, "revoked: keyCompromise")
//!     .with(EventDetails { serial: Some(serial), ..Default::default() })).await?;
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::{Event, EventKind};
use crate::time::{DAY, UnixTime};

/// Structured detail of an event; every field is optional and only ever added to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDetails {
    /// The version the event is about (issued, renewed, imported, expiring, revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Its serial, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Its notAfter, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<UnixTime>,
    /// Failed attempts in a row (renewal_failed, failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_streak: Option<u32>,
    /// When the next attempt is planned, Unix seconds (renewal_failed, once scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<UnixTime>,
    /// The expiry threshold crossed (`14d`, `7d`, `3d`, `1d`, `1/6`), see [`crate::expiry`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// The issuer concerned (account events, imports put under management).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Why a version was revoked (`keyCompromise`, ...; RFC 5280 §5.3.1), for `revoked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl EventDetails {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// An event about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Certificate name, if about one.
    pub certificate: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// For people.
    pub message: String,
    /// For machines.
    pub details: EventDetails,
}

impl NewEvent {
    /// An event about the certificate `name`.
    pub fn about(name: &str, kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            certificate: Some(name.to_string()),
            kind,
            message: message.into(),
            details: EventDetails::default(),
        }
    }

    /// An event about no certificate (accounts, the server).
    pub fn global(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            certificate: None,
            kind,
            message: message.into(),
            details: EventDetails::default(),
        }
    }

    /// The same event with `details`.
    pub fn with(mut self, details: EventDetails) -> Self {
        self.details = details;
        self
    }
}

/// Which events to read back; every filter is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only about this certificate.
    pub certificate: Option<String>,
    /// Only of these kinds (empty: every kind).
    pub kinds: Vec<EventKind>,
    /// Only at or after this time, Unix seconds.
    pub since: Option<UnixTime>,
    /// At most this many, newest first.
    pub limit: u32,
}

impl Default for EventQuery {
    fn default() -> Self {
        Self {
            certificate: None,
            kinds: Vec::new(),
            since: None,
            limit: 100,
        }
    }
}

/// How much an event needs a person, lowest first (notifiers have a minimum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something went as planned (issued, renewed, imported).
    Info,
    /// Someone should look soon (expiring, revoked, cancelled).
    Warning,
    /// Someone should look now (a failure; expiry within a day).
    Error,
}

impl Severity {
    /// The name used in config and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Severity::Info, Severity::Warning, Severity::Error]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown severity {s:?}; use info, warning or error"))
    }
}

impl Event {
    /// How urgent this event is: failures (issuance, renewal, deployment) are errors; expiry is
    /// a warning, an error once a day or less is left; revocations, cancellations, a served
    /// certificate that differs from the deployed one, an abandoned order, a renewal setting
    /// that cannot apply and a re-registered account are warnings; the rest is info.
    pub fn severity(&self) -> Severity {
        match self.kind {
            EventKind::Failed | EventKind::RenewalFailed | EventKind::DeployFailed => {
                Severity::Error
            }
            EventKind::ServedMismatch
            | EventKind::OrderAbandoned
            | EventKind::PolicyWarning
            | EventKind::AccountReregistered => Severity::Warning,
            EventKind::Expiring => match self.details.not_after {
                Some(not_after) if not_after - self.at <= DAY => Severity::Error,
                _ => Severity::Warning,
            },
            EventKind::Revoked | EventKind::Cancelled => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

/// Told about every event a store records, right after it is stored. Called on the
/// recording task: it must return at once (queue the work, never wait on I/O).
pub trait EventListener: Send + Sync + 'static {
    /// `event` was stored.
    fn event_recorded(&self, event: &Event);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, at: UnixTime, not_after: Option<UnixTime>) -> Event {
        Event {
            id: 1,
            at,
            certificate: Some("www".into()),
            kind,
            message: String::new(),
            details: EventDetails {
                not_after,
                ..EventDetails::default()
            },
        }
    }

    #[test]
    fn severities() {
        assert_eq!(event(EventKind::Issued, 0, None).severity(), Severity::Info);
        assert_eq!(
            event(EventKind::RenewalFailed, 0, None).severity(),
            Severity::Error
        );
        let expiring = |left| event(EventKind::Expiring, 0, Some(left)).severity();
        assert_eq!(expiring(7 * DAY), Severity::Warning);
        assert_eq!(expiring(DAY), Severity::Error);
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Error);
        assert_eq!("warning".parse::<Severity>().unwrap(), Severity::Warning);
        assert!("loud".parse::<Severity>().is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), kind);
        }
        let e = "renewd".parse::<EventKind>().unwrap_err();
        assert!(e.contains("renewal_failed"), "{e}");
    }

    #[test]
    fn empty_details_serialize_to_nothing() {
        assert_eq!(
            serde_json::to_string(&EventDetails::default()).unwrap(),
            "{}"
        );
    }
}
