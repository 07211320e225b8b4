//! Several issuers from the config file, external account binding (RFC 8555 §7.3.4).

use certfleet_testkit::{Pebble, PebbleOptions};

use crate::harness::{Server, stderr};

const KID: &str = "kid-certfleet-test";
/// base64url of 32 bytes, as CAs hand out HMAC keys.
const HMAC: &str = "c2l4dGVlbi1ieXRlcy1zaXh0ZWVuLWJ5dGVzLXh4eHg";
const WRONG_HMAC: &str = "d3JvbmctYnl0ZXMtd3JvbmctYnl0ZXMtd3JvbmctYWE";

#[tokio::test(flavor = "multi_thread")]
async fn external_account_binding_is_sent_when_configured() {
    let pebble = Pebble::start(PebbleOptions {
        eab_keys: vec![(KID.into(), HMAC.into())],
        ..PebbleOptions::fast()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let issuer = |hmac: &str| {
        format!(
            "directory = \"{}\"\nca_roots = [\"{}\"]\ncontacts = [\"mailto:ops@example.test\"]\neab = {{ key_id = \"{KID}\", hmac_key = \"{hmac}\" }}\n",
            pebble.directory_url(),
            pebble.ca_cert_path().display()
        )
    };
    let config = dir.path().join("certfleet.toml");
    std::fs::write(
        &config,
        format!(
            "[issuers.zerossl]\n{}\n[issuers.wrong-eab]\n{}",
            issuer(HMAC),
            issuer(WRONG_HMAC)
        ),
    )
    .unwrap();
    let server = Server::start_next_to(
        &pebble,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );

    server.cli_ok(&[
        "cert",
        "add",
        "bound",
        "--domain",
        "bound.example.test",
        "--issuer",
        "zerossl",
        "--wait",
    ]);

    // The `default` issuer (from the flags) has no EAB: the CA refuses the account.
    let out = server.cli(&["cert", "add", "unbound", "--domain", "unbound.example.test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("issuer: issuer \"default\""),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("externalAccountRequired"),
        "{}",
        stderr(&out)
    );

    // A wrong HMAC key is refused too.
    let out = server.cli(&[
        "cert",
        "add",
        "wrong",
        "--domain",
        "wrong.example.test",
        "--issuer",
        "wrong-eab",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("issuer: issuer \"wrong-eab\""),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));

    let list = server.list();
    assert_eq!(
        list.len(),
        1,
        "only the bound certificate was stored: {list:?}"
    );
    assert_eq!(list[0]["issuer"], "zerossl");
    let (_, issuers) = server.api_request("GET", "/api/v1/issuers", None);
    let issuers: Vec<serde_json::Value> = serde_json::from_str(&issuers).unwrap();
    let by_name = |n: &str| issuers.iter().find(|i| i["name"] == n).unwrap().clone();
    assert!(by_name("zerossl")["account_url"].is_string());
    assert!(by_name("default")["account_url"].is_null());
    assert!(by_name("wrong-eab")["account_url"].is_null());
    assert!(!server.log().contains(HMAC), "the HMAC key is not logged");
}
