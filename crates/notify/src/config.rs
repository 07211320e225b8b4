//! `[[notifiers]]` in the server's config file, validated field by field, and turned into the
//! dispatcher's [`Route`]s by [`build`].
//!
//! ```toml
//! [[notifiers]]
//! type = "webhook"
//! url = "https://hooks.slack.com/services/T000/B000/XXXX"
//! events = ["renewed", "renewal_failed", "expiring"]   # default: every kind
//! min_severity = "info"                                # info (default), warning, error
//!
//! [[notifiers]]
//! type = "smtp"
//! host = "smtp.example.com"
//! username = "certfleet"
//! password_file = "/etc/certfleet/smtp-password"
//! from = "certfleet <certfleet@example.com>"
//! to = ["ops@example.com"]
//! digest_secs = 300                                    # 0 (default): one mail per event
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use certfleet_core::{EventKind, Secret, Severity};
use http::{HeaderName, HeaderValue, Uri};
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::dispatch::Route;
use crate::smtp::{SmtpNotifier, SmtpSettings, TlsMode};
use crate::webhook::WebhookNotifier;
use crate::{Filter, Notifier, NotifyError};

/// Default bound on one delivery attempt, seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Default attempts per delivery.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Longest digest window, seconds (a day).
pub const MAX_DIGEST_SECS: u64 = 86_400;

/// One `[[notifiers]]` entry, selected by `type`.
#[derive(Clone, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum NotifierSection {
    /// `type = "webhook"`
    #[serde(rename = "webhook")]
    Webhook(WebhookSection),
    /// `type = "smtp"`
    #[serde(rename = "smtp")]
    Smtp(SmtpSection),
}

impl std::fmt::Debug for NotifierSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs, headers and passwords are secrets: show only the kind and the name.
        let (kind, name) = match self {
            NotifierSection::Webhook(w) => ("webhook", &w.name),
            NotifierSection::Smtp(s) => ("smtp", &s.name),
        };
        f.debug_struct("NotifierSection")
            .field("type", &kind)
            .field("name", name)
            .finish_non_exhaustive()
    }
}

/// `type = "webhook"`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    /// Name in logs (default `notifiers[i]`).
    pub name: Option<String>,
    /// Where to POST (http or https); a secret.
    pub url: String,
    /// Extra request headers (`Authorization = "Bearer ..."`); values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra PEM trust roots for an https receiver.
    #[serde(default)]
    pub ca_roots: Vec<PathBuf>,
    /// Event kinds to send (default: all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Least severity to send (default `info`: everything).
    pub min_severity: Option<String>,
    /// Bound on one attempt, seconds.
    pub timeout_secs: Option<u64>,
    /// Attempts per notification.
    pub max_attempts: Option<u32>,
}

/// `type = "smtp"`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// Name in logs (default `notifiers[i]`).
    pub name: Option<String>,
    /// Relay host.
    pub host: String,
    /// Relay port (default by `tls`: 587, 465 or 25).
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub tls: TlsMode,
    /// AUTH user.
    pub username: Option<String>,
    /// AUTH password, inline (prefer `password_file` or `password_env`).
    pub password: Option<String>,
    /// File holding the AUTH password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the AUTH password.
    pub password_env: Option<String>,
    /// Sender (`certfleet <certfleet@example.com>`).
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Gather events this long into one mail (0: one mail per event).
    #[serde(default)]
    pub digest_secs: u64,
    /// Extra PEM trust roots for the relay.
    #[serde(default)]
    pub ca_roots: Vec<PathBuf>,
    /// Event kinds to send (default: all).
    #[serde(default)]
    pub events: Vec<String>,
    /// Least severity to send (default `info`).
    pub min_severity: Option<String>,
    /// Bound on one SMTP session, seconds.
    pub timeout_secs: Option<u64>,
    /// Attempts per mail.
    pub max_attempts: Option<u32>,
}

/// Collects every error of the section list.
#[derive(Default)]
struct Errors(Vec<NotifyError>);

impl Errors {
    fn push(&mut self, field: String, message: impl Into<String>) {
        self.0.push(NotifyError::Config {
            field,
            message: message.into(),
        });
    }
}

/// Validate every section without building anything; every error names its field.
pub fn validate(sections: &[NotifierSection]) -> Result<(), Vec<NotifyError>> {
    build(sections).map(|_| ())
}

/// Build one route per section, or every error found.
pub fn build(sections: &[NotifierSection]) -> Result<Vec<Route>, Vec<NotifyError>> {
    let mut errors = Errors::default();
    let mut routes = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        let field = format!("notifiers[{i}]");
        let name = match section {
            NotifierSection::Webhook(w) => w.name.clone(),
            NotifierSection::Smtp(s) => s.name.clone(),
        }
        .unwrap_or_else(|| field.clone());
        if names.contains(&name) {
            errors.push(format!("{field}.name"), format!("{name:?} is used twice"));
        }
        names.push(name.clone());
        let route = match section {
            NotifierSection::Webhook(w) => webhook(&field, &name, w, &mut errors),
            NotifierSection::Smtp(s) => smtp(&field, &name, s, &mut errors),
        };
        routes.extend(route);
    }
    if errors.0.is_empty() {
        Ok(routes)
    } else {
        Err(errors.0)
    }
}

/// Filter and policy fields shared by every type.
struct Common {
    filter: Filter,
    timeout: Duration,
    max_attempts: u32,
}

fn common(
    field: &str,
    events: &[String],
    min_severity: Option<&str>,
    timeout_secs: Option<u64>,
    max_attempts: Option<u32>,
    errors: &mut Errors,
) -> Common {
    let mut kinds = Vec::new();
    for (j, e) in events.iter().enumerate() {
        match e.parse::<EventKind>() {
            Ok(k) => kinds.push(k),
            Err(msg) => errors.push(format!("{field}.events[{j}]"), msg),
        }
    }
    let min_severity = min_severity.and_then(|s| {
        s.parse::<Severity>()
            .map_err(|msg| errors.push(format!("{field}.min_severity"), msg))
            .ok()
    });
    if timeout_secs == Some(0) {
        errors.push(format!("{field}.timeout_secs"), "must be at least 1 second");
    }
    if max_attempts == Some(0) {
        errors.push(format!("{field}.max_attempts"), "must be at least 1");
    }
    Common {
        filter: Filter {
            kinds,
            min_severity,
        },
        timeout: Duration::from_secs(timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1)),
        max_attempts: max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
    }
}

fn webhook(field: &str, name: &str, w: &WebhookSection, errors: &mut Errors) -> Option<Route> {
    let c = common(
        field,
        &w.events,
        w.min_severity.as_deref(),
        w.timeout_secs,
        w.max_attempts,
        errors,
    );
    // The URL is a secret (Slack's holds its token): never echo it.
    let url = w
        .url
        .parse::<Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if url.is_none() {
        errors.push(
            format!("{field}.url"),
            "is not an http:// or https:// URL with a host",
        );
    }
    let mut headers = Vec::new();
    for (key, value) in &w.headers {
        let parsed = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(value),
        );
        match parsed {
            (Ok(k), Ok(mut v)) => {
                v.set_sensitive(true);
                headers.push((k, v));
            }
            _ => errors.push(
                format!("{field}.headers.{key}"),
                "is not a valid HTTP header name and value",
            ),
        }
    }
    let notifier = WebhookNotifier::new(name, url?, headers, &w.ca_roots, field)
        .map_err(|e| errors.0.push(e))
        .ok()?;
    Some(route(Arc::new(notifier), c, None))
}

fn smtp(field: &str, name: &str, s: &SmtpSection, errors: &mut Errors) -> Option<Route> {
    let c = common(
        field,
        &s.events,
        s.min_severity.as_deref(),
        s.timeout_secs,
        s.max_attempts,
        errors,
    );
    if s.host.trim().is_empty() || s.host.contains(char::is_whitespace) {
        errors.push(format!("{field}.host"), "must be a host name");
    }
    if s.port == Some(0) {
        errors.push(format!("{field}.port"), "must be a port from 1 to 65535");
    }
    let from = mailbox(&format!("{field}.from"), &s.from, errors);
    if s.to.is_empty() {
        errors.push(format!("{field}.to"), "at least one recipient is required");
    }
    let to: Vec<Mailbox> =
        s.to.iter()
            .enumerate()
            .filter_map(|(j, t)| mailbox(&format!("{field}.to[{j}]"), t, errors))
            .collect();
    if s.digest_secs > MAX_DIGEST_SECS {
        errors.push(
            format!("{field}.digest_secs"),
            format!("at most {MAX_DIGEST_SECS} (a day)"),
        );
    }
    let credentials = credentials(field, s, errors);
    if errors.0.iter().any(|e| matches!(e, NotifyError::Config { field: f, .. } if f.starts_with(&format!("{field}.")))) {
        return None;
    }
    let settings = SmtpSettings {
        name: name.to_string(),
        host: s.host.clone(),
        port: s.port.unwrap_or(s.tls.default_port()),
        tls: s.tls,
        credentials,
        ca_roots: s.ca_roots.clone(),
        from: from?,
        to,
        timeout: c.timeout,
    };
    let notifier = SmtpNotifier::new(settings, field)
        .map_err(|e| errors.0.push(e))
        .ok()?;
    let digest = (s.digest_secs > 0).then(|| Duration::from_secs(s.digest_secs));
    Some(route(Arc::new(notifier), c, digest))
}

fn route(notifier: Arc<dyn Notifier>, c: Common, digest: Option<Duration>) -> Route {
    Route {
        notifier,
        filter: c.filter,
        digest,
        max_attempts: c.max_attempts,
        timeout: c.timeout,
    }
}

fn mailbox(field: &str, text: &str, errors: &mut Errors) -> Option<Mailbox> {
    text.parse::<Mailbox>()
        .map_err(|e| {
            errors.push(
                field.to_string(),
                format!("{text:?} is not a mail address: {e}"),
            )
        })
        .ok()
}

/// The user and password, from exactly one of `password`, `password_file`, `password_env`.
fn credentials(field: &str, s: &SmtpSection, errors: &mut Errors) -> Option<(String, Secret)> {
    let sources = [
        s.password.is_some(),
        s.password_file.is_some(),
        s.password_env.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let Some(user) = &s.username else {
        if sources > 0 {
            errors.push(format!("{field}.username"), "a password needs a username");
        }
        return None;
    };
    if s.tls == TlsMode::None {
        errors.push(
            format!("{field}.tls"),
            "\"none\" would send the password in clear text; use \"starttls\" or \"tls\"",
        );
        return None;
    }
    if sources != 1 {
        errors.push(
            format!("{field}.username"),
            "needs exactly one of password, password_file or password_env",
        );
        return None;
    }
    let password = if let Some(p) = &s.password {
        Some(p.clone())
    } else if let Some(path) = &s.password_file {
        std::fs::read_to_string(path)
            .map(|p| p.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| {
                errors.push(
                    format!("{field}.password_file"),
                    format!("{}: {e}", path.display()),
                )
            })
            .ok()
    } else {
        let var = s.password_env.as_deref().unwrap_or_default();
        std::env::var(var)
            .map_err(|_| {
                errors.push(
                    format!("{field}.password_env"),
                    format!("the environment variable {var} is not set"),
                )
            })
            .ok()
    }?;
    if password.is_empty() {
        errors.push(format!("{field}.username"), "the password is empty");
        return None;
    }
    Some((user.clone(), Secret::new(password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        notifiers: Vec<NotifierSection>,
    }

    fn fields(text: &str) -> Vec<String> {
        let file: File = toml::from_str(text).unwrap();
        match build(&file.notifiers) {
            Ok(_) => vec![],
            Err(errors) => errors
                .into_iter()
                .map(|e| match e {
                    NotifyError::Config { field, .. } => field,
                    other => other.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn good_sections_build() {
        let text = r#"
            [[notifiers]]
            type = "webhook"
            url = "https://hooks.example.test/services/T0/B0/secret"
            events = ["renewed", "expiring"]
            min_severity = "warning"
            [[notifiers]]
            type = "smtp"
            name = "mail"
            host = "smtp.example.test"
            username = "u"
            password = "p"
            from = "certfleet <certfleet@example.test>"
            to = ["ops@example.test"]
            digest_secs = 60
        "#;
        let file: File = toml::from_str(text).unwrap();
        let routes = build(&file.notifiers).unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].notifier.name(), "notifiers[0]");
        assert_eq!(routes[0].filter.min_severity, Some(Severity::Warning));
        assert_eq!(routes[1].digest, Some(Duration::from_secs(60)));
        let debug = format!("{:?}", file.notifiers);
        assert!(
            !debug.contains("secret") && !debug.contains("\"p\""),
            "{debug}"
        );
    }

    #[test]
    fn every_error_names_its_field_and_no_secret() {
        let text = r#"
            [[notifiers]]
            type = "webhook"
            url = "ftp://hooks.example.test/very-secret-token"
            events = ["renewd"]
            min_severity = "loud"
            timeout_secs = 0
            [[notifiers]]
            type = "smtp"
            host = "smtp.example.test"
            tls = "none"
            username = "u"
            password = "p"
            from = "not an address"
            to = []
        "#;
        assert_eq!(
            fields(text),
            [
                "notifiers[0].events[0]",
                "notifiers[0].min_severity",
                "notifiers[0].timeout_secs",
                "notifiers[0].url",
                "notifiers[1].from",
                "notifiers[1].to",
                "notifiers[1].tls",
            ]
        );
        let file: File = toml::from_str(text).unwrap();
        let all: String = build(&file.notifiers)
            .err()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(!all.contains("very-secret-token"), "{all}");
        let unknown = toml::from_str::<File>(
            "[[notifiers]]\ntype = \"webhook\"\nurl = \"http://x\"\nretries = 3\n",
        );
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
