//! When a certificate version gets an `expiring` event: the thresholds before its notAfter
//! ([`thresholds`]) and which of them is due at a given moment ([`due`]). Pure functions;
//! the server's expiry watcher sleeps until the next one and records each once per version.
//!
//! The thresholds are [`DEFAULT_THRESHOLD_DAYS`] (14, 7, 3 and 1 days before notAfter) where
//! they fall inside the lifetime, plus, for short certificates (a lifetime under
//! [`SHORT_LIFETIME`]), the moment when 1/[`SHORT_FRACTION`] of the lifetime is left — a
//! 6-day certificate gets `3d`, `1d` and (coinciding with `1d`, so once) nothing more; a
//! 120-second one gets only `1/6`, 20 seconds before it expires.

use serde::{Deserialize, Serialize};

use crate::time::{DAY, UnixTime};

/// Days before notAfter at which an `expiring` event is recorded.
pub const DEFAULT_THRESHOLD_DAYS: [u32; 4] = [14, 7, 3, 1];
/// Lifetimes below this are short: they also get the fractional threshold.
pub const SHORT_LIFETIME: i64 = 10 * DAY;
/// A short certificate is reported when 1/`SHORT_FRACTION` of its lifetime is left.
pub const SHORT_FRACTION: i64 = 6;
/// The label of the fractional threshold.
pub const FRACTION_LABEL: &str = "1/6";

/// One expiry threshold of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    /// `14d`, `7d`, `3d`, `1d` or [`FRACTION_LABEL`].
    pub label: String,
    /// Seconds before notAfter.
    pub before_expiry: i64,
    /// When it is crossed (notAfter − `before_expiry`), Unix seconds.
    pub at: UnixTime,
}

/// The thresholds of a version valid from `not_before` to `not_after`, earliest first.
/// Only thresholds strictly inside the lifetime count (a 5-day certificate has no `7d`).
pub fn thresholds(not_before: UnixTime, not_after: UnixTime, days: &[u32]) -> Vec<Threshold> {
    let lifetime = not_after - not_before;
    if lifetime <= 0 {
        return Vec::new();
    }
    let mut out: Vec<Threshold> = days
        .iter()
        .map(|d| (format!("{d}d"), i64::from(*d) * DAY))
        .filter(|(_, before)| *before > 0 && *before < lifetime)
        .map(|(label, before_expiry)| Threshold {
            label,
            before_expiry,
            at: not_after - before_expiry,
        })
        .collect();
    let fraction = lifetime / SHORT_FRACTION;
    if lifetime < SHORT_LIFETIME && fraction > 0 && !out.iter().any(|t| t.before_expiry == fraction)
    {
        out.push(Threshold {
            label: FRACTION_LABEL.to_string(),
            before_expiry: fraction,
            at: not_after - fraction,
        });
    }
    out.sort_by_key(|t| t.at);
    out.dedup_by_key(|t| t.at);
    out
}

/// A current version as the expiry watcher sees it (`Store::expiry_watch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryWatch {
    /// Certificate name.
    pub certificate: String,
    /// Version number.
    pub version: u32,
    /// notBefore, Unix seconds.
    pub not_before: UnixTime,
    /// notAfter, Unix seconds.
    pub not_after: UnixTime,
    /// Labels of the thresholds already recorded for this version.
    pub recorded: Vec<String>,
}

/// What [`due`] found for one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// The threshold to report now: the latest one crossed and not yet recorded.
    pub alert: Option<Threshold>,
    /// Earlier thresholds crossed but never recorded (the server was down): recorded without
    /// an event, so one late start does not send a burst of stale alerts.
    pub passed: Vec<String>,
    /// When the next unrecorded threshold is crossed, if any is left.
    pub next_at: Option<UnixTime>,
}

/// Which threshold of `watch` is due at `now`. Nothing is due once the version has expired.
pub fn due(watch: &ExpiryWatch, days: &[u32], now: UnixTime) -> Due {
    if now >= watch.not_after {
        return Due::default();
    }
    let open: Vec<Threshold> = thresholds(watch.not_before, watch.not_after, days)
        .into_iter()
        .filter(|t| !watch.recorded.contains(&t.label))
        .collect();
    let (mut crossed, later): (Vec<Threshold>, Vec<Threshold>) =
        open.into_iter().partition(|t| t.at <= now);
    let alert = crossed.pop();
    Due {
        alert,
        passed: crossed.into_iter().map(|t| t.label).collect(),
        next_at: later.first().map(|t| t.at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ts: &[Threshold]) -> Vec<&str> {
        ts.iter().map(|t| t.label.as_str()).collect()
    }

    #[test]
    fn ninety_days_get_the_four_day_thresholds() {
        let ts = thresholds(0, 90 * DAY, &DEFAULT_THRESHOLD_DAYS);
        assert_eq!(labels(&ts), ["14d", "7d", "3d", "1d"]);
        assert_eq!(ts[0].at, 76 * DAY);
        assert_eq!(ts[3].at, 89 * DAY);
    }

    #[test]
    fn short_certificates_also_get_a_sixth_of_their_lifetime() {
        let ts = thresholds(1000, 1120, &DEFAULT_THRESHOLD_DAYS);
        assert_eq!(labels(&ts), ["1/6"]);
        assert_eq!((ts[0].before_expiry, ts[0].at), (20, 1100));
        // Six days: 3d and 1d fit; a sixth of six days is one day, recorded once.
        assert_eq!(
            labels(&thresholds(0, 6 * DAY, &DEFAULT_THRESHOLD_DAYS)),
            ["3d", "1d"]
        );
        // Two days: 1d fits, and 8 hours is the sixth.
        let ts = thresholds(0, 2 * DAY, &DEFAULT_THRESHOLD_DAYS);
        assert_eq!(labels(&ts), ["1d", "1/6"]);
        assert_eq!(ts[1].before_expiry, DAY / 3);
        // Ten days and more are not short.
        assert_eq!(
            labels(&thresholds(0, 10 * DAY, &DEFAULT_THRESHOLD_DAYS)),
            ["7d", "3d", "1d"]
        );
        assert!(thresholds(5, 5, &DEFAULT_THRESHOLD_DAYS).is_empty());
    }

    #[test]
    fn due_reports_the_latest_crossed_threshold_once() {
        let mut watch = ExpiryWatch {
            certificate: "www".into(),
            version: 1,
            not_before: 0,
            not_after: 90 * DAY,
            recorded: vec![],
        };
        let days = DEFAULT_THRESHOLD_DAYS;
        let before = due(&watch, &days, 70 * DAY);
        assert_eq!(before.alert, None);
        assert_eq!(before.next_at, Some(76 * DAY));

        let at_14 = due(&watch, &days, 76 * DAY);
        assert_eq!(at_14.alert.unwrap().label, "14d");
        assert!(at_14.passed.is_empty());
        assert_eq!(at_14.next_at, Some(83 * DAY));

        // Started late, with 2 days left: one alert (3d), 14d and 7d recorded silently.
        let late = due(&watch, &days, 88 * DAY);
        assert_eq!(late.alert.unwrap().label, "3d");
        assert_eq!(late.passed, ["14d", "7d"]);
        assert_eq!(late.next_at, Some(89 * DAY));

        watch.recorded = vec!["14d".into(), "7d".into(), "3d".into()];
        let again = due(&watch, &days, 88 * DAY);
        assert_eq!(again.alert, None, "recorded thresholds are not due again");
        assert_eq!(again.next_at, Some(89 * DAY));

        assert_eq!(due(&watch, &days, 90 * DAY), Due::default(), "expired");
    }
}
