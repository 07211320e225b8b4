//! Checks of structured events, event queries, the event listener, expiry thresholds and
//! switching a certificate's source.

use std::sync::{Arc, Mutex};

use certfleet_core::time;
use certfleet_core::{
    Event, EventDetails, EventKind, EventListener, EventQuery, NewEvent, Source, Store,
};

use super::{assert_recent, expect_not_found, new_certificate, new_version};

/// Events keep their details and are found by certificate, kind and time.
pub async fn event_queries(store: &dyn Store) {
    let name = "suite-event-query";
    let details = EventDetails {
        version: Some(2),
        serial: Some("0abc".into()),
        not_after: Some(1_900_000_000),
        failure_streak: Some(3),
        next_attempt: Some(1_800_000_000),
        threshold: Some("7d".into()),
        issuer: Some("default".into()),
        reason: Some("keyCompromise".into()),
    };
    let renewed = store
        .record_event(&NewEvent::about(name, EventKind::Renewed, "renewed").with(details.clone()))
        .await
        .unwrap();
    assert_recent(renewed.at, "recorded event time");
    assert_eq!(renewed.details, details);
    store
        .record_event(&NewEvent::about(name, EventKind::Expiring, "expiring"))
        .await
        .unwrap();
    store
        .record_event(&NewEvent::global(EventKind::AccountUpdated, "contacts"))
        .await
        .unwrap();

    let of = |kinds: Vec<EventKind>| EventQuery {
        certificate: Some(name.to_string()),
        kinds,
        ..EventQuery::default()
    };
    let all = store.query_events(&of(vec![])).await.unwrap();
    let kinds: Vec<EventKind> = all.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Expiring, EventKind::Renewed]);
    assert_eq!(all[1].details, details, "details round-trip");
    assert_eq!(all[1].id, renewed.id);

    let only = store
        .query_events(&of(vec![EventKind::Renewed, EventKind::Revoked]))
        .await
        .unwrap();
    assert_eq!(only.len(), 1, "kind filter");
    assert_eq!(only[0].kind, EventKind::Renewed);

    let future = EventQuery {
        since: Some(time::now() + 3600),
        ..of(vec![])
    };
    assert!(store.query_events(&future).await.unwrap().is_empty());
    let past = EventQuery {
        since: Some(time::now() - 3600),
        limit: 1,
        ..of(vec![])
    };
    assert_eq!(store.query_events(&past).await.unwrap().len(), 1, "limit");

    let global = store
        .query_events(&EventQuery {
            kinds: vec![EventKind::AccountUpdated],
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert!(global.iter().any(|e| e.certificate.is_none()));
    let legacy = store.events(Some(name), 10).await.unwrap();
    assert_eq!(legacy[1].details, details, "events() carries details too");
}

#[derive(Default)]
struct Collect(Mutex<Vec<Event>>);

impl EventListener for Collect {
    fn event_recorded(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// The listener hears every event recorded after it is set, by either method, as stored.
pub async fn event_listener(store: &dyn Store) {
    let heard = Arc::new(Collect::default());
    store.set_event_listener(heard.clone());
    let name = "suite-event-listener";
    store
        .append_event(Some(name), EventKind::Created, "plain")
        .await
        .unwrap();
    let stored = store
        .record_event(&NewEvent::about(name, EventKind::Imported, "imported"))
        .await
        .unwrap();
    let got = heard.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].kind, EventKind::Created);
    assert_eq!(got[1], stored, "the listener sees the stored event");
    store.set_event_listener(Arc::new(Collect::default()));
}

/// Current versions are watched; each threshold is recorded once per version.
pub async fn expiry_thresholds(store: &dyn Store) {
    let name = "suite-expiry";
    store
        .create_certificate(&new_certificate(name, &["expiry.example.test"]))
        .await
        .unwrap();
    let watched =
        |all: Vec<certfleet_core::ExpiryWatch>| all.into_iter().find(|w| w.certificate == name);
    assert!(
        watched(store.expiry_watch().await.unwrap()).is_none(),
        "no version, nothing to watch"
    );
    let v1 = store
        .add_version(name, new_version("e1", 1_000_000))
        .await
        .unwrap();
    let w = watched(store.expiry_watch().await.unwrap()).expect("watched");
    assert_eq!(
        (w.version, w.not_before, w.not_after),
        (v1.seq, v1.not_before, v1.not_after)
    );
    assert!(w.recorded.is_empty());

    assert!(store.record_expiry_threshold(name, 1, "14d").await.unwrap());
    assert!(
        !store.record_expiry_threshold(name, 1, "14d").await.unwrap(),
        "once"
    );
    assert!(store.record_expiry_threshold(name, 1, "1/6").await.unwrap());
    let mut recorded = watched(store.expiry_watch().await.unwrap())
        .unwrap()
        .recorded;
    recorded.sort();
    assert_eq!(recorded, ["1/6", "14d"]);

    store
        .add_version(name, new_version("e2", 2_000_000))
        .await
        .unwrap();
    let w = watched(store.expiry_watch().await.unwrap()).unwrap();
    assert_eq!(w.version, 2, "the current version is watched");
    assert!(w.recorded.is_empty(), "a new version starts afresh");
    assert!(store.record_expiry_threshold(name, 2, "14d").await.unwrap());

    expect_not_found(
        store.record_expiry_threshold(name, 9, "14d").await,
        "no such version",
    );
    expect_not_found(
        store
            .record_expiry_threshold("suite-expiry-none", 1, "1d")
            .await,
        "no such certificate",
    );
    assert!(store.delete_certificate(name).await.unwrap());
    assert!(watched(store.expiry_watch().await.unwrap()).is_none());
}

/// The source and issuer switch together; the versions stay.
pub async fn source_switch(store: &dyn Store) {
    let name = "suite-source";
    let mut new = new_certificate(name, &["www.example.test"]);
    new.source = Source::Manual;
    new.issuer = certfleet_core::MANUAL_ISSUER.to_string();
    store.create_certificate(&new).await.unwrap();
    let mut version = new_version("s1", time::now());
    version.issuer = certfleet_core::MANUAL_ISSUER.to_string();
    store.add_version(name, version).await.unwrap();
    let cert = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(cert.source, Source::Manual);
    assert!(!cert.auto_renewable());

    store
        .set_source(name, Source::Acme, "default")
        .await
        .unwrap();
    let cert = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(
        (cert.source, cert.issuer.as_str()),
        (Source::Acme, "default")
    );
    assert!(cert.auto_renewable());
    assert!(
        cert.next_due.is_some_and(|t| t <= time::now()),
        "an ACME certificate is on the schedule: {:?}",
        cert.next_due
    );
    assert_eq!(cert.current_version, Some(1), "versions are kept");
    assert_eq!(
        cert.declaration_mismatch(),
        None,
        "an imported version is no mismatch once managed"
    );
    store
        .set_source(name, Source::Manual, certfleet_core::MANUAL_ISSUER)
        .await
        .unwrap();
    let cert = store.certificate(name).await.unwrap().unwrap();
    assert_eq!(
        cert.next_due, None,
        "a manual certificate is off the schedule"
    );
    expect_not_found(
        store
            .set_source("suite-source-none", Source::Acme, "x")
            .await,
        "no such certificate",
    );
}
