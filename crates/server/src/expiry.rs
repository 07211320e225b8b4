//! The expiry watcher: a task that sleeps until the next expiry threshold of any current
//! version ([`certfleet_core::expiry`]), records that threshold once per version in the store
//! and appends an `expiring` event — which notifiers pick up like any other event.
//!
//! It does not poll every certificate on a fixed beat: after each pass it sleeps until the
//! earliest threshold still ahead, and is woken early when a version is stored (issued,
//! renewed, imported) so a new, shorter-lived certificate is watched at once. A pass is also
//! run at least every [`MAX_SLEEP`] as a safety net (clock jumps, versions stored by another
//! replica). Thresholds are recorded with `Store::record_expiry_threshold`, which says yes once
//! per version even with several replicas watching.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certfleet_core::expiry::{FRACTION_LABEL, Threshold, due};
use certfleet_core::time::{self, DAY, UnixTime};
use certfleet_core::{EventDetails, EventKind, ExpiryWatch, NewEvent, Store, StoreError};
use tokio::sync::{Notify, watch};

use crate::views::rfc3339;

/// Longest sleep between two passes.
pub const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// Wait after a pass that failed (the store was unavailable).
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(60);
/// Slack added to a sleep so the threshold has passed when the task wakes.
const WAKE_SLACK: Duration = Duration::from_millis(50);

/// Run the watcher until `stopped` turns true; `wake` makes it look again at once. `days`
/// are the thresholds in days before notAfter (`[server] expiry_alert_days`).
pub async fn run(
    store: Arc<dyn Store>,
    days: Vec<u32>,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let pause = match pass(store.as_ref(), &days, time::now()).await {
            Ok(next) => until(next),
            Err(e) => {
                tracing::warn!(error = %e, "the expiry watcher could not read the store");
                RETRY_AFTER_ERROR
            }
        };
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// How long to sleep until `next` (Unix seconds), at most [`MAX_SLEEP`].
fn until(next: Option<UnixTime>) -> Duration {
    let Some(next) = next else {
        return MAX_SLEEP;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let target = Duration::from_secs(next.max(0) as u64);
    target
        .saturating_sub(now)
        .saturating_add(WAKE_SLACK)
        .min(MAX_SLEEP)
}

/// Record what is due at `now` with thresholds `days` before notAfter; returns when the
/// next threshold is crossed.
pub async fn pass(
    store: &dyn Store,
    days: &[u32],
    now: UnixTime,
) -> Result<Option<UnixTime>, StoreError> {
    let mut next: Option<UnixTime> = None;
    for watch in store.expiry_watch().await? {
        let found = due(&watch, days, now);
        for label in &found.passed {
            store
                .record_expiry_threshold(&watch.certificate, watch.version, label)
                .await?;
        }
        if let Some(threshold) = found.alert {
            alert(store, &watch, &threshold, now).await?;
        }
        next = match (next, found.next_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

async fn alert(
    store: &dyn Store,
    watch: &ExpiryWatch,
    threshold: &Threshold,
    now: UnixTime,
) -> Result<(), StoreError> {
    let first = store
        .record_expiry_threshold(&watch.certificate, watch.version, &threshold.label)
        .await?;
    if !first {
        return Ok(());
    }
    let which = if threshold.label == FRACTION_LABEL {
        format!("{FRACTION_LABEL} of its lifetime left")
    } else {
        format!("{} before expiry", threshold.label)
    };
    let message = format!(
        "version {} expires in {} (at {}); threshold: {which}",
        watch.version,
        human(watch.not_after - now),
        rfc3339(watch.not_after)
    );
    tracing::info!(certificate = %watch.certificate, "{message}");
    let details = EventDetails {
        version: Some(watch.version),
        not_after: Some(watch.not_after),
        threshold: Some(threshold.label.clone()),
        ..EventDetails::default()
    };
    store
        .record_event(
            &NewEvent::about(&watch.certificate, EventKind::Expiring, message).with(details),
        )
        .await?;
    Ok(())
}

/// `6 days 23 h`, `5 h 10 min`, `42 s`.
fn human(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m) = (secs / DAY, secs % DAY / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min {} s", secs % 60),
        (0, h, m) => format!("{h} h {m} min"),
        (1, h, _) => format!("1 day {h} h"),
        (d, h, _) => format!("{d} days {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(42), "42 s");
        assert_eq!(human(125), "2 min 5 s");
        assert_eq!(human(5 * 3600 + 600), "5 h 10 min");
        assert_eq!(human(DAY + 7200), "1 day 2 h");
        assert_eq!(human(6 * DAY + 23 * 3600), "6 days 23 h");
    }

    #[tokio::test]
    async fn a_pass_records_each_threshold_once_and_says_when_to_look_again() {
        use certfleet_core::{EventKind, EventQuery};
        use certfleet_store::{Sealer, SqliteStore, suite};
        let store = SqliteStore::open_in_memory(Sealer::from_key_bytes([7; 32])).unwrap();
        store
            .create_certificate(&suite::new_certificate("www", &["www.example.test"]))
            .await
            .unwrap();
        let now = time::now();
        // 90 days from 80 days ago: 10 days left, so 14d is crossed and 7d is next.
        let version = suite::new_version("aa", now - 80 * DAY);
        let not_after = version.not_after;
        store.add_version("www", version).await.unwrap();
        let days = [14, 7];
        let next = pass(&store, &days, now).await.unwrap();
        assert_eq!(next, Some(not_after - 7 * DAY));
        assert_eq!(pass(&store, &days, now).await.unwrap(), next, "nothing new");
        let expiring = EventQuery {
            kinds: vec![EventKind::Expiring],
            ..EventQuery::default()
        };
        let events = store.query_events(&expiring).await.unwrap();
        assert_eq!(events.len(), 1, "once: {events:?}");
        assert_eq!(events[0].details.threshold.as_deref(), Some("14d"));
        assert!(
            events[0]
                .message
                .starts_with("version 1 expires in 10 days 0 h"),
            "{}",
            events[0].message
        );

        // Later, past 7d: one more event; then nothing is left to wait for.
        let later = not_after - 6 * DAY;
        assert_eq!(pass(&store, &days, later).await.unwrap(), None);
        assert_eq!(store.query_events(&expiring).await.unwrap().len(), 2);
    }

    #[test]
    fn sleeps_are_bounded() {
        assert_eq!(until(None), MAX_SLEEP);
        assert_eq!(until(Some(i64::MAX / 2)), MAX_SLEEP);
        assert!(until(Some(0)) <= WAKE_SLACK);
    }
}
