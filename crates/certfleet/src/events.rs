//! `certfleet events`: the event log, filtered by certificate, kind and time.

use certfleet_core::{Event, EventKind};
use certfleet_server::views::rfc3339;
use clap::Args;

use crate::cert::Connection;
use crate::{CliError, print_json};

/// Seconds per unit of a `--since` duration.
const UNITS: [(char, i64); 5] = [
    ('s', 1),
    ('m', 60),
    ('h', 3600),
    ('d', 86_400),
    ('w', 604_800),
];

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  certfleet events --since 2h\n  certfleet events --cert www \
--kind renewed --kind renewal_failed --since 2026-11-01T00:00:00Z\n\nKinds: created, \
changed, deleted, cancelled, issuance_started, issued, renewed, failed, renewal_failed, \
order_pending, order_abandoned, policy_warning, expiring, imported, revoked, account_created, \
account_updated, account_reregistered, deployed, deploy_failed, served_mismatch, labels_changed, \
token_created, token_revoked (docs/api.md says what each means)."
)]
pub struct EventsArgs {
    /// Only events about this certificate.
    #[arg(long, value_name = "NAME")]
    cert: Option<String>,
    /// Only events since T: an RFC 3339 time (2026-11-29T10:00:00Z) or a duration before now
    /// (90s, 30m, 2h, 7d, 1w, 1h30m).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only events of this kind; repeatable.
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// At most this many (the newest), 1 to 1000.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: u32,
    #[command(flatten)]
    conn: Connection,
}

pub async fn run(args: EventsArgs, data_dir: &std::path::Path, json: bool) -> Result<(), CliError> {
    let mut query = vec![format!("limit={}", args.limit)];
    if let Some(name) = &args.cert {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(usage(format!("--cert {name:?} is not a certificate name")));
        }
        query.push(format!("certificate={name}"));
    }
    for kind in &args.kinds {
        kind.parse::<EventKind>()
            .map_err(|e| usage(format!("--kind: {e}")))?;
    }
    if !args.kinds.is_empty() {
        query.push(format!("kind={}", args.kinds.join(",")));
    }
    if let Some(since) = &args.since {
        let at = parse_since(since, certfleet_core::time::now())
            .map_err(|e| usage(format!("--since: {e}")))?;
        query.push(format!("since={at}"));
    }
    let api = args.conn.connect(data_dir)?;
    let events: Vec<Event> = api
        .get(&format!("/api/v1/events?{}", query.join("&")))
        .await?;
    if json {
        return print_json(&events);
    }
    print!("{}", render(&events));
    Ok(())
}

fn usage(message: String) -> CliError {
    CliError::with_code(crate::exit::USAGE, message).kind("usage")
}

/// `--since`: RFC 3339 or a duration before `now` (a bare number is refused: its unit is
/// missing).
pub fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    if let Some(secs) = parse_duration(text) {
        return Ok(now - secs);
    }
    // A bare number is most likely a duration without its unit, not seconds since 1970.
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{text:?} has no unit: write {text}s, {text}m, {text}h or {text}d (a duration \
             before now), or an RFC 3339 time (2026-11-29T10:00:00Z)"
        ));
    }
    certfleet_server::views::parse_time(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time (2026-11-29T10:00:00Z) nor a duration (90s, 30m, 2h, 7d, 1w)")
    })
}

/// `1h30m` → 5400; `None` unless the whole text is number-unit pairs.
fn parse_duration(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (_, unit) = UNITS.iter().find(|(u, _)| *u == c)?;
        let n: i64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(*unit)?)?;
        number.clear();
    }
    (number.is_empty() && !text.is_empty()).then_some(total)
}

/// Oldest first, like a log.
fn render(events: &[Event]) -> String {
    let cert_width = events
        .iter()
        .map(|e| e.certificate.as_deref().unwrap_or("-").len())
        .max()
        .unwrap_or(0)
        .max("CERTIFICATE".len());
    let kind_width = events
        .iter()
        .map(|e| e.kind.as_str().len())
        .max()
        .unwrap_or(0)
        .max("KIND".len());
    let mut out = format!(
        "{:<20}  {:<cert_width$}  {:<kind_width$}  MESSAGE\n",
        "AT (UTC)", "CERTIFICATE", "KIND"
    );
    for e in events.iter().rev() {
        let at = rfc3339(e.at).replace('T', " ").replace('Z', "");
        out.push_str(&format!(
            "{at:<20}  {:<cert_width$}  {:<kind_width$}  {}\n",
            e.certificate.as_deref().unwrap_or("-"),
            e.kind.as_str(),
            e.message.replace(['\n', '\r'], " ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        assert_eq!(parse_since("2h", 10_000).unwrap(), 10_000 - 7200);
        assert_eq!(parse_since("1h30m", 10_000).unwrap(), 10_000 - 5400);
        assert_eq!(
            parse_since("7d", 1_000_000).unwrap(),
            1_000_000 - 7 * 86_400
        );
        assert_eq!(
            parse_since("2026-11-29T10:00:00Z", 0).unwrap(),
            1_795_946_400
        );
        for bad in ["", "2x", "h", "yesterday", "2h3"] {
            let e = parse_since(bad, 0).unwrap_err();
            assert!(e.contains("neither an RFC 3339 time"), "{bad}: {e}");
        }
        let e = parse_since("30", 0).unwrap_err();
        assert!(e.starts_with("\"30\" has no unit: write 30s, 30m"), "{e}");
    }
}
