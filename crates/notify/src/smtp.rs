//! [`SmtpNotifier`]: mail through a relay with the `lettre` crate — STARTTLS (default),
//! TLS from the first byte, or plain SMTP on a trusted network; AUTH with a user and a password
//! that never leaves the notifier (`Debug` redacts it; lettre's logging is off).
//!
//! One mail per event, or one digest per batch when the dispatcher gathers events
//! (`digest_secs`). The subject is the event's one-line text; the body adds the structured
//! fields a person needs to act (version, serial, notAfter, streak, threshold).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use certfleet_core::Secret;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::{Notification, Notifier, NotifyError};
use certfleet_core::text::error_chain;

/// Longest subject line, in characters.
const MAX_SUBJECT: usize = 150;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, required (RFC 3207); port 587 by default.
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS", RFC 8314); port 465 by default.
    Tls,
    /// No TLS at all, for a relay on the same host; port 25 by default. No AUTH then.
    None,
}

impl TlsMode {
    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        }
    }
}

/// What an [`SmtpNotifier`] needs.
pub struct SmtpSettings {
    /// Name for logs.
    pub name: String,
    /// Relay host name (checked against its certificate).
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// Connection protection.
    pub tls: TlsMode,
    /// User and password for AUTH.
    pub credentials: Option<(String, Secret)>,
    /// Extra trust roots for the relay's certificate (PEM files).
    pub ca_roots: Vec<PathBuf>,
    /// Sender.
    pub from: Mailbox,
    /// Recipients.
    pub to: Vec<Mailbox>,
    /// Bound on one SMTP session.
    pub timeout: Duration,
}

/// A mail relay.
pub struct SmtpNotifier {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("name", &self.name)
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// Prepare the transport (nothing is sent until the first delivery); `field` names the
    /// config entry in errors.
    pub fn new(s: SmtpSettings, field: &str) -> Result<Self, NotifyError> {
        let config = |message: String| NotifyError::Config {
            field: field.to_string(),
            message,
        };
        let mut params = TlsParameters::builder(s.host.clone());
        for (i, path) in s.ca_roots.iter().enumerate() {
            let pem = std::fs::read(path).map_err(|e| NotifyError::Config {
                field: format!("{field}.ca_roots[{i}]"),
                message: format!("{}: {e}", path.display()),
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| NotifyError::Config {
                field: format!("{field}.ca_roots[{i}]"),
                message: format!("{}: not a PEM certificate: {e}", path.display()),
            })?;
            params = params.add_root_certificate(cert);
        }
        let tls = match s.tls {
            TlsMode::None => Tls::None,
            mode => {
                let params = params
                    .build_rustls()
                    .map_err(|e| config(format!("TLS set-up: {e}")))?;
                if mode == TlsMode::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .tls(tls)
            .timeout(Some(s.timeout));
        if let Some((user, password)) = s.credentials {
            builder = builder.credentials(Credentials::new(user, password.expose().to_string()));
        }
        Ok(Self {
            name: s.name,
            transport: builder.build(),
            from: s.from,
            to: s.to,
        })
    }

    fn message(&self, batch: &[Notification]) -> Result<Message, NotifyError> {
        let subject = match batch {
            [one] => one.text.clone(),
            many => digest_subject(many),
        };
        let subject: String = subject.chars().take(MAX_SUBJECT).collect();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder.body(body(batch)).map_err(|e| NotifyError::Refused {
            notifier: self.name.clone(),
            reason: format!("building the mail: {e}"),
            retryable: false,
        })
    }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, batch: &[Notification]) -> Result<(), NotifyError> {
        let message = self.message(batch)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(NotifyError::Refused {
                notifier: self.name.clone(),
                reason: e.to_string(),
                retryable: false,
            }),
            Err(e) if e.is_transient() => Err(NotifyError::Refused {
                notifier: self.name.clone(),
                reason: e.to_string(),
                retryable: true,
            }),
            Err(e) => Err(NotifyError::Unreachable {
                notifier: self.name.clone(),
                reason: error_chain(&e),
            }),
        }
    }
}

/// `[certfleet] 3 events: 2 issued, 1 expiring`.
fn digest_subject(batch: &[Notification]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for n in batch {
        let kind = n.event.as_str();
        match counts.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, c)) => *c += 1,
            None => counts.push((kind, 1)),
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, c)| format!("{c} {}", k.replace('_', " ")))
        .collect();
    format!("[certfleet] {} events: {}", batch.len(), parts.join(", "))
}

/// Each event's line and fields, separated by blank lines.
fn body(batch: &[Notification]) -> String {
    let mut out = String::new();
    for n in batch {
        out.push_str(&n.text);
        out.push_str("\n\n");
        let mut field = |label: &str, value: String| {
            out.push_str(&format!("  {label:<16}{value}\n"));
        };
        field("event:", n.event.as_str().to_string());
        field("severity:", n.severity.as_str().to_string());
        if let Some(c) = &n.certificate {
            field("certificate:", c.clone());
        }
        field("at:", n.at.clone());
        let d = &n.details;
        if let Some(v) = d.version {
            field("version:", v.to_string());
        }
        if let Some(v) = &d.serial {
            field("serial:", v.clone());
        }
        if let Some(v) = d.not_after {
            field("not after:", crate::rfc3339(v));
        }
        if let Some(v) = d.failure_streak {
            field("failure streak:", v.to_string());
        }
        if let Some(v) = d.next_attempt {
            field("next attempt:", crate::rfc3339(v));
        }
        if let Some(v) = &d.threshold {
            field("threshold:", v.clone());
        }
        if let Some(v) = &d.issuer {
            field("issuer:", v.clone());
        }
        field("event id:", n.id.to_string());
        out.push('\n');
    }
    out.push_str("-- \ncertfleet (certfleet events --since 1d shows the log)\n");
    out
}
