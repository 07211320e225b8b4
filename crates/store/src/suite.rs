//! A conformance battery for [`Store`] implementations.
//!
//! Every documented behaviour of the trait is asserted here against `&dyn Store` only, so
//! each backend (SQLite today, PostgreSQL later) runs the same tests:
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     let store = MyStore::connect(...).await.unwrap();
//!     certfleet_store::suite::run_all(&store).await;
//! }
//! ```
//!
//! The checks panic with a message on failure, like `assert!`. Each uses its own certificate
//! names and cleans up the challenges it publishes, so they can share one store; start
//! [`run_all`] on an empty one.

mod certificates;
mod fleet;
mod lifecycle;
mod presented;
mod records;
mod renewal;
mod versions;

use certfleet_core::time::{self, UnixTime};
use certfleet_core::{
    CertName, ChallengeKind, DnsName, KeyKind, NewCertificate, NewVersion, Secret, Source, Store,
    StoreError,
};

pub use certificates::{
    certificate_lifecycle, declaration_updates, delete_cascades, order_url_round_trip,
    status_transitions,
};
pub use fleet::{confirmations, deployments, labels, revision, tokens};
pub use lifecycle::{event_listener, event_queries, expiry_thresholds, source_switch};
pub use presented::{live_challenges, presented_challenges};
pub use records::{accounts, challenges, contacts_overrides, events};
pub use renewal::{
    ari_windows, claims, claims_by_name, pending_keys_and_retry_after, renewal_settings,
};
pub use versions::{revocations, versions_and_keys};

/// Slack allowed between the test's clock and the store's timestamps, in seconds.
const CLOCK_SLACK: i64 = 5;

/// Run every check in turn on `store`, which should start empty.
pub async fn run_all(store: &dyn Store) {
    certificate_lifecycle(store).await;
    status_transitions(store).await;
    order_url_round_trip(store).await;
    declaration_updates(store).await;
    versions_and_keys(store).await;
    delete_cascades(store).await;
    accounts(store).await;
    challenges(store).await;
    events(store).await;
    event_queries(store).await;
    event_listener(store).await;
    expiry_thresholds(store).await;
    source_switch(store).await;
    labels(store).await;
    tokens(store).await;
    deployments(store).await;
    confirmations(store).await;
    revision(store).await;
    live_challenges(store).await;
    presented_challenges(store).await;
    renewal_settings(store).await;
    claims(store).await;
    claims_by_name(store).await;
    pending_keys_and_retry_after(store).await;
    ari_windows(store).await;
    revocations(store).await;
    contacts_overrides(store).await;
}

/// A certificate declaration with default issuer, key kind and challenge.
pub fn new_certificate(name: &str, domains: &[&str]) -> NewCertificate {
    NewCertificate {
        name: CertName::parse(name).expect("test certificate name"),
        domains: domains
            .iter()
            .map(|d| DnsName::parse(d).expect("test domain"))
            .collect(),
        issuer: "default".to_string(),
        key_kind: KeyKind::EcdsaP256,
        challenge: ChallengeKind::Http01,
        source: Source::Acme,
        solvers: Default::default(),
        profile: None,
        renew_before: None,
    }
}

/// A version valid for 90 days from `not_before`, with a placeholder key built from `serial`.
pub fn new_version(serial: &str, not_before: UnixTime) -> NewVersion {
    NewVersion {
        serial: serial.to_string(),
        not_before,
        not_after: not_before + 90 * time::DAY,
        leaf_pem: format!(
            "-----BEGIN CERTIFICATE-----\nleaf-{serial}\n-----END CERTIFICATE-----\n"
        ),
        chain_pem: format!("-----BEGIN CERTIFICATE-----\nca-{serial}\n-----END CERTIFICATE-----\n"),
        key_kind: KeyKind::EcdsaP256,
        key_pem: Secret::new(format!(
            "-----BEGIN PRIVATE KEY-----\nkey-{serial}\n-----END PRIVATE KEY-----\n"
        )),
        order_url: Some(format!("https://ca.test/order/{serial}")),
        domains: vec![DnsName::parse("www.example.test").expect("test domain")],
        issuer: "default".to_string(),
    }
}

/// Panic unless `result` is [`StoreError::NotFound`].
fn expect_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("{what}: expected StoreError::NotFound, got {other:?}"),
    }
}

/// Panic unless `at` is within [`CLOCK_SLACK`] of the current time.
fn assert_recent(at: UnixTime, what: &str) {
    let now = time::now();
    assert!(
        (now - CLOCK_SLACK..=now + CLOCK_SLACK).contains(&at),
        "{what}: {at} is not close to now ({now})"
    );
}
