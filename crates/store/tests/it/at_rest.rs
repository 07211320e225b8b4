//! What reaches the disk: sealed blobs only, files private to the owner, data that survives
//! a restart and stays locked under a different key-encryption key.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certfleet_core::{AccountRecord, Secret, Store, StoreError};
use certfleet_store::{SqliteStore, suite};

use crate::{db_path, open, sealer};

/// Width of a base64 line in PEM (RFC 7468 §2).
const PEM_LINE: usize = 64;

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(PEM_LINE)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

fn real_pkcs8() -> Vec<u8> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    doc.as_ref().to_vec()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .unwrap();
    bytes
}

/// The database file and its WAL/SHM companions, whichever exist.
fn db_files(dir: &Path) -> Vec<PathBuf> {
    let db = db_path(dir);
    ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())))
        .filter(|p| p.exists())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Assert that none of `secrets` appears in any database file of `dir`.
fn assert_absent(dir: &Path, secrets: &[(&str, &[u8])], when: &str) {
    let files = db_files(dir);
    assert!(!files.is_empty());
    for file in files {
        let bytes = fs::read(&file).unwrap();
        for (what, secret) in secrets {
            assert!(
                !contains(&bytes, secret),
                "{what} found in {} ({when})",
                file.display()
            );
        }
    }
}

fn account(credentials: &str) -> AccountRecord {
    AccountRecord {
        issuer: "default".into(),
        directory_url: "https://ca.test/dir".into(),
        account_url: "https://ca.test/acct/7".into(),
        credentials: Secret::new(credentials),
        created_at: 1_700_000_000,
        contacts: Vec::new(),
    }
}

#[tokio::test]
async fn no_plaintext_key_reaches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sealer(3));
    store
        .create_certificate(&suite::new_certificate("www", &["www.example.com"]))
        .await
        .unwrap();
    let ec_der = real_pkcs8();
    let random_der = random_bytes(1200);
    for (serial, der) in [("01", &ec_der), ("02", &random_der)] {
        let mut version = suite::new_version(serial, 1_700_000_000);
        version.key_pem = Secret::new(pem(der));
        store.add_version("www", version).await.unwrap();
    }
    let account_der = real_pkcs8();
    let account_b64 = STANDARD.encode(&account_der);
    let credentials = format!(r#"{{"account_key_pkcs8":"{account_b64}"}}"#);
    store.save_account(&account(&credentials)).await.unwrap();

    let ec_b64 = STANDARD.encode(&ec_der);
    let random_b64 = STANDARD.encode(&random_der);
    let secrets: [(&str, &[u8]); 8] = [
        ("a PEM private key marker", b"PRIVATE KEY"),
        ("the EC key's DER", &ec_der),
        ("the EC key's base64", ec_b64.as_bytes()),
        (
            "the EC key's first PEM line",
            &ec_b64.as_bytes()[..PEM_LINE],
        ),
        ("the random key's DER", &random_der),
        (
            "the random key's first PEM line",
            &random_b64.as_bytes()[..PEM_LINE],
        ),
        ("the account key's DER", &account_der),
        ("the account key's base64", account_b64.as_bytes()),
    ];
    // While open, recent writes sit in the WAL; after close they are checkpointed.
    assert_absent(dir.path(), &secrets, "store open");
    drop(store);
    assert_absent(dir.path(), &secrets, "store closed");

    // And the keys are all still there.
    let store = open(dir.path(), sealer(3));
    assert_eq!(
        store.version_key("www", 1).await.unwrap().expose(),
        pem(&ec_der)
    );
    assert_eq!(
        store.version_key("www", 2).await.unwrap().expose(),
        pem(&random_der)
    );
    let read = store
        .account("default", "https://ca.test/dir")
        .await
        .unwrap();
    assert_eq!(read.unwrap().credentials.expose(), credentials);
}

#[tokio::test]
async fn reopen_keeps_data_and_a_different_key_unlocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sealer(4));
    store
        .create_certificate(&suite::new_certificate("api", &["api.example.com"]))
        .await
        .unwrap();
    let version = suite::new_version("0a", 1_700_000_000);
    let key = version.key_pem.clone();
    store.add_version("api", version).await.unwrap();
    store.save_account(&account("creds")).await.unwrap();
    let before = (
        store.certificates().await.unwrap(),
        store.versions("api").await.unwrap(),
    );
    drop(store);

    let store = open(dir.path(), sealer(4));
    let after = (
        store.certificates().await.unwrap(),
        store.versions("api").await.unwrap(),
    );
    assert_eq!(after, before, "data intact after reopening");
    assert_eq!(store.version_key("api", 1).await.unwrap(), key);
    drop(store);

    match SqliteStore::open(&db_path(dir.path()), sealer(5)) {
        Err(StoreError::Unseal(what)) => {
            assert!(
                what.contains("not the one the store was written with"),
                "{what}"
            );
            assert!(what.contains("certfleet.db"), "names the file: {what}");
        }
        other => panic!("expected Unseal, got {other:?}"),
    }

    let store = open(dir.path(), sealer(4));
    assert_eq!(
        store.version_key("api", 1).await.unwrap(),
        key,
        "nothing was modified"
    );
    let creds = store
        .account("default", "https://ca.test/dir")
        .await
        .unwrap();
    assert_eq!(creds.unwrap().credentials.expose(), "creds");
}

#[tokio::test]
async fn database_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sealer(6));
    store
        .create_certificate(&suite::new_certificate("mode", &["mode.example.com"]))
        .await
        .unwrap();
    let files = db_files(dir.path());
    assert!(
        files.len() >= 2,
        "expected the database and its WAL, got {files:?}"
    );
    for file in files {
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:03o}", file.display());
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), sealer(7)));
    let raw = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    raw.pragma_update(None, "user_version", 999).unwrap();
    drop(raw);
    let err = SqliteStore::open(&db_path(dir.path()), sealer(7)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("schema version 999") && msg.contains("newer"),
        "{msg}"
    );
    assert!(msg.contains("certfleet.db"), "names the file: {msg}");
}
