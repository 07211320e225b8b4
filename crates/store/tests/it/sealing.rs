//! Sealed blobs are bound to their rows: copying one into another row must not open.

use certfleet_core::{AccountRecord, Secret, Store, StoreError};
use certfleet_store::suite;
use rusqlite::Connection;

use crate::{db_path, open, sealer};

fn raw(dir: &std::path::Path) -> Connection {
    Connection::open(db_path(dir)).unwrap()
}

fn expect_unseal<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Unseal(_)) => {}
        other => panic!("{what}: expected StoreError::Unseal, got {other:?}"),
    }
}

#[tokio::test]
async fn swapped_version_keys_do_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sealer(8));
    for name in ["one", "two"] {
        store
            .create_certificate(&suite::new_certificate(name, &["x.example.com"]))
            .await
            .unwrap();
        for serial in ["01", "02"] {
            let version = suite::new_version(&format!("{name}{serial}"), 1_700_000_000);
            store.add_version(name, version).await.unwrap();
        }
    }
    drop(store);

    // Another certificate's key for the same seq, and another seq of the same certificate.
    raw(dir.path())
        .execute_batch(
            "UPDATE versions SET sealed_key = (
                 SELECT v.sealed_key FROM versions v JOIN certificates c ON c.id = v.certificate_id
                 WHERE c.name = 'two' AND v.seq = 1)
             WHERE seq = 1 AND certificate_id = (SELECT id FROM certificates WHERE name = 'one');
             UPDATE versions SET sealed_key = (
                 SELECT v.sealed_key FROM versions v JOIN certificates c ON c.id = v.certificate_id
                 WHERE c.name = 'two' AND v.seq = 1)
             WHERE seq = 2 AND certificate_id = (SELECT id FROM certificates WHERE name = 'two');",
        )
        .unwrap();

    let store = open(dir.path(), sealer(8));
    expect_unseal(
        store.version_key("one", 1).await,
        "key of another certificate",
    );
    expect_unseal(store.version_key("two", 2).await, "key of another seq");
    let untouched = store.version_key("two", 1).await.unwrap();
    assert!(untouched.expose().contains("key-two01"));
    assert!(store.version_key("one", 2).await.is_ok());
}

#[tokio::test]
async fn swapped_account_credentials_do_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sealer(9));
    for (issuer, url) in [
        ("prod", "https://ca.test/dir"),
        ("staging", "https://ca.test/stg"),
    ] {
        let account = AccountRecord {
            issuer: issuer.into(),
            directory_url: url.into(),
            account_url: format!("{url}/acct"),
            credentials: Secret::new(format!("{issuer} credentials")),
            created_at: 1_700_000_000,
            contacts: Vec::new(),
        };
        store.save_account(&account).await.unwrap();
    }
    drop(store);

    raw(dir.path())
        .execute(
            "UPDATE accounts SET sealed_credentials =
                 (SELECT sealed_credentials FROM accounts WHERE issuer = 'staging')
             WHERE issuer = 'prod'",
            [],
        )
        .unwrap();

    let store = open(dir.path(), sealer(9));
    expect_unseal(
        store.account("prod", "https://ca.test/dir").await,
        "moved account",
    );
    let staging = store
        .account("staging", "https://ca.test/stg")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staging.credentials.expose(), "staging credentials");
}

#[tokio::test]
async fn corrupt_stored_values_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sealer(10));
    store
        .create_certificate(&suite::new_certificate("bad", &["bad.example.com"]))
        .await
        .unwrap();
    store
        .create_certificate(&suite::new_certificate("worse", &["worse.example.com"]))
        .await
        .unwrap();
    drop(store);
    raw(dir.path())
        .execute_batch(
            "UPDATE certificates SET status = 'exploded' WHERE name = 'bad';
             UPDATE certificates SET domains = 'not json' WHERE name = 'worse';",
        )
        .unwrap();
    let store = open(dir.path(), sealer(10));
    for name in ["bad", "worse"] {
        match store.certificate(name).await {
            Err(StoreError::Corrupt(msg)) => assert!(!msg.is_empty()),
            other => panic!("{name}: expected Corrupt, got {other:?}"),
        }
    }
}
