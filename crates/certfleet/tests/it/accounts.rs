//! The ACME account follows the configuration and survives a CA that forgot it
//! (RFC 8555 §7.3, §7.3.2), against real Pebble.

use std::time::Duration;

use base64::Engine as _;
use certfleet_acme::http::CaClient;
use certfleet_acme::jws::{AccountKey, RawClient};
use certfleet_core::Store;
use certfleet_store::{Sealer, SqliteStore};
use certfleet_testkit::{Pebble, PebbleOptions};

use crate::harness::{Server, pebble_and_server};

/// The account as the CA holds it: its URL (from certfleet's store) and the contacts Pebble
/// answers a POST-as-GET of that URL with, signed with the stored account key.
pub async fn account_at_the_ca(server: &Server, pebble: &Pebble) -> (String, Vec<String>) {
    let (sealer, _) = Sealer::from_env_or_file(None, &server.data_dir.join("kek")).unwrap();
    let store = SqliteStore::open(&server.data_dir.join("certfleet.db"), sealer).unwrap();
    let record = store
        .account("default", &pebble.directory_url())
        .await
        .unwrap()
        .expect("an account is stored");
    let creds: serde_json::Value = serde_json::from_str(record.credentials.expose()).unwrap();
    let der = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(creds["key_pkcs8"].as_str().unwrap())
        .unwrap();
    let key = AccountKey::new(&der, &record.account_url).unwrap();
    let directory: serde_json::Value =
        serde_json::from_str(&pebble.directory_json().await).unwrap();
    let client = CaClient::new(&[pebble.ca_cert_path()], Duration::from_secs(10)).unwrap();
    let raw = RawClient::new(client, directory["newNonce"].as_str().unwrap().to_string());
    let object: serde_json::Value = raw
        .post_as_get(&key, &record.account_url)
        .await
        .unwrap()
        .check()
        .unwrap()
        .json()
        .unwrap();
    let contacts = object["contact"]
        .as_array()
        .map(|a| a.iter().map(|c| c.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (record.account_url, contacts)
}

fn kinds(events: &[serde_json::Value], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn account_contact_change_reaches_the_ca() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let old = "mailto:old@example.test";
    let new = "mailto:new@example.test";
    let mut server = Server::start_next_to(&pebble, &dir.path().join("data"), &["--contact", old]);
    server.issue("www", "www.example.test");
    let (url, at_ca) = account_at_the_ca(&server, &pebble).await;
    assert!(at_ca.contains(&old.to_string()), "{at_ca:?}");

    server.restart_with(&["--contact", new]);
    let (same_url, at_ca) = account_at_the_ca(&server, &pebble).await;
    assert_eq!(same_url, url, "the account is updated, not replaced");
    assert!(
        at_ca.contains(&new.to_string()),
        "the CA holds the new contact: {at_ca:?}"
    );
    assert!(
        !at_ca.contains(&old.to_string()),
        "and not the old one: {at_ca:?}"
    );

    let issuers = server.issuers();
    assert_eq!(issuers[0]["account_url"], url.as_str());
    let shown: Vec<&str> = issuers[0]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        shown.contains(&new) && !shown.contains(&old),
        "API shows what the CA holds: {issuers:?}"
    );
    assert_eq!(issuers[0]["configured_contacts"], issuers[0]["contacts"]);
    let updated = kinds(&server.events(), "account_updated");
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert!(
        updated[0].contains(old) && updated[0].contains(new),
        "{updated:?}"
    );

    // The update happened before serving, and an unchanged restart sends none.
    server.restart();
    assert_eq!(kinds(&server.events(), "account_updated").len(), 1);
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    assert_eq!(account_at_the_ca(&server, &pebble).await.0, url);
}

#[tokio::test(flavor = "multi_thread")]
async fn forgotten_account_is_registered_again() {
    let (mut pebble, _dir, mut server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let first = server.issuers()[0]["account_url"]
        .as_str()
        .unwrap()
        .to_string();

    // The CA loses every account (a restart of Pebble, a wiped staging database).
    pebble.restart().await;
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let second = server.issuers()[0]["account_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(second, first, "a new account is stored");
    let events = server.events();
    let again = kinds(&events, "account_reregistered");
    assert_eq!(again.len(), 1, "{events:?}");
    assert!(
        again[0].contains(&first) && again[0].contains(&second),
        "{again:?}"
    );
    assert!(
        server.log().contains("no longer accepts ACME account"),
        "logged"
    );
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "www", "--json"])).unwrap();
    assert_eq!(detail["version"], 2);
    assert_eq!(detail["failure_streak"], 0);
    // The new chain leads to the restarted CA's new root.
    let export = tempfile::tempdir().unwrap();
    server.cli_ok(&[
        "cert",
        "export",
        "www",
        "--dir",
        export.path().to_str().unwrap(),
    ]);
    let full = std::fs::read_to_string(export.path().join("fullchain.pem")).unwrap();
    crate::chains::verify_against(&pebble.root_pem().await, &full, "www.example.test");

    // Forgotten again while certfleet is down: found at start-up, before any order.
    pebble.restart().await;
    server.restart();
    let third = server.issuers()[0]["account_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(third, second);
    assert_eq!(kinds(&server.events(), "account_reregistered").len(), 2);
    assert_eq!(account_at_the_ca(&server, &pebble).await.0, third);
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
}
