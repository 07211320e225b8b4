//! The ACME account's life against real Pebble (issue 7, item 4): `account ls`, `account
//! update` (RFC 8555 §7.3.2: same account URL, the CA's refusals in its words, not undone by a
//! restart), `account rollover` (§7.3.5: same URL, new key, issuing goes on; a lost answer
//! does not lose the account).

use std::time::Duration;

use base64::Engine as _;
use certfleet_acme::http::CaClient;
use certfleet_acme::jws::{AccountKey, RawClient};
use certfleet_core::{AccountRecord, Store};
use certfleet_store::{Sealer, SqliteStore};
use certfleet_testkit::proxy::{Action, FaultProxy, Match, Rule};
use certfleet_testkit::{Pebble, PebbleOptions};

use crate::harness::{Server, stderr};
use crate::renewal::server_via;

/// The account record certfleet stored for the default issuer at `directory`.
async fn stored(server: &Server, directory: &str) -> AccountRecord {
    let (sealer, _) = Sealer::from_env_or_file(None, &server.data_dir.join("kek")).unwrap();
    let store = SqliteStore::open(&server.data_dir.join("certfleet.db"), sealer).unwrap();
    store
        .account("default", directory)
        .await
        .unwrap()
        .expect("an account is stored")
}

/// The signer of the stored account key.
fn key_of(record: &AccountRecord) -> AccountKey {
    let creds: serde_json::Value = serde_json::from_str(record.credentials.expose()).unwrap();
    let der = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(creds["key_pkcs8"].as_str().unwrap())
        .unwrap();
    AccountKey::new(&der, &record.account_url).unwrap()
}

/// POST-as-GET of the account with `key`, through the CA at `directory`: the account object,
/// or the CA's problem as text.
async fn at_the_ca(
    pebble: &Pebble,
    directory: &str,
    key: &AccountKey,
) -> Result<serde_json::Value, String> {
    let client = CaClient::new(&[pebble.ca_cert_path()], Duration::from_secs(10)).unwrap();
    let dir = RawClient::new(client.clone(), String::new())
        .get(directory)
        .await
        .unwrap();
    let dir: serde_json::Value = dir.json().unwrap();
    let raw = RawClient::new(client, dir["newNonce"].as_str().unwrap().to_string());
    match raw.post_as_get(key, key.kid()).await.unwrap().check() {
        Ok(rsp) => Ok(rsp.json().unwrap()),
        Err(e) => Err(e.to_string()),
    }
}

fn contacts_of(object: &serde_json::Value) -> Vec<String> {
    object["contact"]
        .as_array()
        .map(|a| a.iter().map(|c| c.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn accounts(server: &Server) -> serde_json::Value {
    serde_json::from_str(&server.cli_ok(&["account", "ls", "--json"])).unwrap()
}

fn updated_events(server: &Server) -> Vec<String> {
    server
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "account_updated")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn account_update_keeps_the_url_and_is_not_undone_by_a_restart() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let directory = pebble.directory_url();
    // The harness configures mailto:ops@example.test.
    let mut server = Server::start(&pebble, &dir.path().join("data"));
    server.issue("www", "www.example.test");
    let record = stored(&server, &directory).await;
    let url = record.account_url.clone();

    let table = server.cli_ok(&["account", "ls"]);
    assert!(
        table.contains("ISSUER") && table.contains(&url) && table.contains("ecdsa-p256"),
        "{table}"
    );
    let out = server.cli(&[
        "account",
        "update",
        "default",
        "--contact",
        "mailto:oncall@example.test",
        "--contact",
        "mailto:team@example.test",
    ]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), server.log());
    assert!(
        stderr(&out).contains("override the configured [mailto:ops@example.test]"),
        "{}",
        stderr(&out)
    );
    let wanted = ["mailto:oncall@example.test", "mailto:team@example.test"];
    let object = at_the_ca(&pebble, &directory, &key_of(&record))
        .await
        .unwrap();
    assert_eq!(contacts_of(&object), wanted, "the CA holds them");
    let listed = accounts(&server);
    assert_eq!(listed[0]["account_url"], url.as_str(), "same account");
    assert_eq!(listed[0]["contacts"], serde_json::json!(wanted));
    assert_eq!(
        listed[0]["configured_contacts"],
        serde_json::json!(["mailto:ops@example.test"])
    );
    assert_eq!(
        listed[0]["contacts_override"]["contacts"],
        serde_json::json!(wanted)
    );
    let events = updated_events(&server);
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains("by `certfleet account update`"),
        "{events:?}"
    );

    // A restart with the same configuration does not undo it.
    server.restart();
    let object = at_the_ca(&pebble, &directory, &key_of(&record))
        .await
        .unwrap();
    assert_eq!(
        contacts_of(&object),
        wanted,
        "still at the CA after a restart"
    );
    assert_eq!(updated_events(&server).len(), 1, "nothing sent at start-up");
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    assert_eq!(stored(&server, &directory).await.account_url, url);

    // Editing the configured contacts: the configuration rules again, and says so.
    server.restart_with(&["--contact", "mailto:new-team@example.test"]);
    let object = at_the_ca(&pebble, &directory, &key_of(&record))
        .await
        .unwrap();
    assert_eq!(
        contacts_of(&object),
        ["mailto:ops@example.test", "mailto:new-team@example.test"]
    );
    let events = updated_events(&server);
    assert!(
        events
            .iter()
            .any(|e| e.contains("following the configuration again")),
        "{events:?}"
    );
    assert!(accounts(&server)[0]["contacts_override"].is_null());

    // Back to the configuration explicitly, after another update.
    server.cli_ok(&[
        "account",
        "update",
        "default",
        "--contact",
        "mailto:x@example.test",
    ]);
    let done: serde_json::Value = serde_json::from_str(&server.cli_ok(&[
        "account",
        "update",
        "default",
        "--from-config",
        "--json",
    ]))
    .unwrap();
    assert_eq!(done["follows_configuration"], true);
    assert!(done["account"]["contacts_override"].is_null());
    assert_eq!(done["before"], serde_json::json!(["mailto:x@example.test"]));
    assert_eq!(done["account"]["account_url"], url.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contact_the_ca_refuses_is_reported_in_its_words() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let directory = pebble.directory_url();
    let server = Server::start(&pebble, &dir.path().join("data"));
    server.issue("www", "www.example.test");
    let record = stored(&server, &directory).await;

    // Pebble refuses a mailto: address that is not ASCII (as Boulder does).
    let out = server.cli(&[
        "account",
        "update",
        "default",
        "--contact",
        "mailto:jürgen@example.test",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("refused the contacts for issuer default")
            && said.contains("invalidContact: contact email \"jürgen@example.test\" contains non-ASCII characters"),
        "the CA's words: {said}"
    );
    // What certfleet refuses itself names the flag.
    let out = server.cli(&[
        "account",
        "update",
        "default",
        "--contact",
        "ops@example.test",
    ]);
    assert!(
        stderr(&out).contains("--contact: \"ops@example.test\" must be a mailto: URL"),
        "{}",
        stderr(&out)
    );
    let out = server.cli(&[
        "account",
        "update",
        "nope",
        "--contact",
        "mailto:a@example.test",
    ]);
    assert!(
        stderr(&out).contains("no issuer named \"nope\"; configured issuers: default"),
        "{}",
        stderr(&out)
    );
    let object = at_the_ca(&pebble, &directory, &key_of(&record))
        .await
        .unwrap();
    assert_eq!(
        contacts_of(&object),
        ["mailto:ops@example.test"],
        "unchanged"
    );
    assert!(
        accounts(&server)[0]["contacts_override"].is_null(),
        "nothing stored"
    );
    assert!(updated_events(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rollover_keeps_the_account_url_and_issuing_goes_on() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let directory = pebble.directory_url();
    let mut server = Server::start(&pebble, &dir.path().join("data"));
    server.issue("www", "www.example.test");
    let before = stored(&server, &directory).await;
    let old_key = key_of(&before);
    let old_thumbprint = accounts(&server)[0]["key_thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(old_thumbprint, old_key.thumbprint());

    let done: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["account", "rollover", "default", "--json"]))
            .unwrap();
    assert_eq!(done["account"]["account_url"], before.account_url.as_str());
    assert_eq!(done["old_thumbprint"], old_thumbprint.as_str());
    let new_thumbprint = done["account"]["key_thumbprint"].as_str().unwrap();
    assert_ne!(new_thumbprint, old_thumbprint);
    assert_eq!(done["answer_lost"], false);

    let after = stored(&server, &directory).await;
    assert_eq!(after.account_url, before.account_url);
    assert_eq!(
        key_of(&after).thumbprint(),
        new_thumbprint,
        "stored, sealed"
    );
    at_the_ca(&pebble, &directory, &key_of(&after))
        .await
        .expect("the CA knows the account by its new key");
    let refused = at_the_ca(&pebble, &directory, &old_key).await.unwrap_err();
    assert!(
        refused.contains("CA refused"),
        "the old key is refused: {refused}"
    );

    // Issuing goes on with the same account, now and after a restart.
    server.issue("api", "api.example.test");
    server.restart();
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    assert_eq!(
        stored(&server, &directory).await.account_url,
        before.account_url
    );
    let kinds: Vec<String> = server
        .events()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "account_created").count(),
        1,
        "no second account: {kinds:?}"
    );
    let created = server
        .events()
        .into_iter()
        .find(|e| e["kind"] == "account_created")
        .unwrap();
    assert_eq!(created["details"]["issuer"], "default", "{created}");
    assert!(
        !kinds.iter().any(|k| k == "account_reregistered"),
        "{kinds:?}"
    );
    let events = updated_events(&server);
    assert!(
        events.iter().any(|e| e.contains("rolled over the key")
            && e.contains(&old_thumbprint)
            && e.contains(new_thumbprint)),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollover_whose_answer_is_lost_keeps_the_account() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_via(&proxy, &pebble, dir.path(), &[]);
    let directory = proxy.directory_url();
    server.issue("www", "www.example.test");
    let before = stored(&server, &directory).await;

    // Pebble changes the key, but the answer never comes back.
    proxy.add(
        Rule::new(
            Match::post("/rollover-account-key"),
            Action::ForwardThenReset,
        )
        .times(1),
    );
    let done: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["account", "rollover", "default", "--json"]))
            .unwrap();
    assert_eq!(done["answer_lost"], true);
    assert_eq!(done["account"]["account_url"], before.account_url.as_str());
    assert_eq!(done["account"]["rollover_pending"], false);
    let after = stored(&server, &directory).await;
    assert_ne!(key_of(&after).thumbprint(), key_of(&before).thumbprint());
    at_the_ca(&pebble, &directory, &key_of(&after))
        .await
        .expect("the new key is the CA's");
    server.issue("api", "api.example.test");

    // Lost again, and the CA cannot be asked either (as if certfleet died right after
    // sending): both keys stay stored, and the next start finds out which one the CA holds.
    let mut server = server;
    let pending = stored(&server, &directory).await;
    proxy.add(
        Rule::new(
            Match::post("/rollover-account-key"),
            Action::ForwardThenReset,
        )
        .times(1),
    );
    proxy.add(Rule::new(Match::post("/my-account/"), Action::Reset).times(2));
    let out = server.cli(&["account", "rollover", "default"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("certfleet keeps both keys and finds out at the next use"),
        "{}",
        stderr(&out)
    );
    assert_eq!(accounts(&server)[0]["rollover_pending"], true);
    server.restart();
    let settled = stored(&server, &directory).await;
    assert_eq!(settled.account_url, before.account_url);
    assert_ne!(key_of(&settled).thumbprint(), key_of(&pending).thumbprint());
    assert_eq!(accounts(&server)[0]["rollover_pending"], false);
    at_the_ca(&pebble, &directory, &key_of(&settled))
        .await
        .expect("the key kept is the CA's");
    assert!(
        updated_events(&server)
            .iter()
            .any(|e| e.contains("interrupted key rollover") && e.contains("took effect")),
        "{:?}",
        updated_events(&server)
    );
    server.issue("late", "late.example.test");
    assert!(
        server
            .events()
            .iter()
            .all(|e| e["kind"] != "account_reregistered"),
        "the account was kept"
    );
}

/// A rollover left undecided (both keys stored), then a CA that forgot the account (its
/// database reset): the next use finds that the CA knows neither key and registers a new
/// account instead of failing every order with accountDoesNotExist.
#[tokio::test(flavor = "multi_thread")]
async fn an_undecided_rollover_at_a_ca_that_forgot_the_account_registers_anew() {
    let mut pebble = Pebble::start(PebbleOptions::fast()).await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_via(&proxy, &pebble, dir.path(), &[]);
    let directory = proxy.directory_url();
    server.issue("www", "www.example.test");
    let before = stored(&server, &directory).await;

    proxy.add(Rule::new(Match::post("/rollover-account-key"), Action::Reset).times(1));
    proxy.add(Rule::new(Match::post("/my-account/"), Action::Reset).times(2));
    let out = server.cli(&["account", "rollover", "default"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(accounts(&server)[0]["rollover_pending"], true);

    pebble.restart().await;
    let out = server.cli(&["cert", "renew", "www", "--wait"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), server.log());
    let after = stored(&server, &directory).await;
    assert_ne!(after.account_url, before.account_url, "a new account");
    assert_eq!(accounts(&server)[0]["rollover_pending"], false);
    at_the_ca(&pebble, &directory, &key_of(&after))
        .await
        .expect("the new account is the CA's");
    assert!(
        updated_events(&server)
            .iter()
            .any(|e| e.contains("under either key")),
        "{:?}",
        updated_events(&server)
    );
}
