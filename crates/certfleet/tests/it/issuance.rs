//! Issuance against real Pebble: keys, names, chains, exported files, restarts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use certfleet_acme::inspect::ParsedChain;
use certfleet_testkit::{Pebble, PebbleOptions};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::harness::{Server, pebble_and_server};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Verify `fullchain` for every name against Pebble's root, as a TLS client would.
async fn verify_chain(pebble: &Pebble, fullchain: &str, names: &[&str]) {
    let root = pebble.root_pem().await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(fullchain.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(certs.len() >= 2, "leaf and at least one intermediate");
    for name in names {
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(&certs[0], &certs[1..], &server_name, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("chain does not verify for {name}: {e:?}"));
    }
}

/// Export, check modes and contents, and that the key matches the leaf.
fn export_and_check(server: &Server, name: &str, dir: &Path, names: &[&str]) -> (String, String) {
    server.cli_ok(&["cert", "export", name, "--dir", dir.to_str().unwrap()]);
    for (file, want) in [
        ("cert.pem", 0o644),
        ("chain.pem", 0o644),
        ("fullchain.pem", 0o644),
        ("privkey.pem", 0o600),
        ("bundle.pem", 0o600),
    ] {
        assert_eq!(mode(&dir.join(file)), want, "{file}");
    }
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (cert, chain, full, key, bundle) = (
        read("cert.pem"),
        read("chain.pem"),
        read("fullchain.pem"),
        read("privkey.pem"),
        read("bundle.pem"),
    );
    assert_eq!(full, format!("{cert}{chain}"));
    assert_eq!(bundle, format!("{full}{key}"));
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let parsed = ParsedChain::parse(&full).unwrap();
    let wanted: Vec<_> = names
        .iter()
        .map(|n| certfleet_core::DnsName::parse(n).unwrap())
        .collect();
    let public = certfleet_acme::keys::public_key_of(&key).unwrap();
    parsed
        .check_matches(&wanted, &public)
        .expect("key matches the leaf and names are exact");
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    (full, key)
}

fn assert_no_key_material(db_dir: &Path, key_pem: &str) {
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(db_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("certfleet.db") {
            continue;
        }
        checked += 1;
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{name} holds a PEM private key"
        );
        assert!(!text.contains(&body[..40]), "{name} holds the key's base64");
        assert!(
            !bytes.windows(der.len()).any(|w| w == der.as_slice()),
            "{name} holds the raw key"
        );
        // The EC private scalar or RSA modulus alone is also key material: check a 32-byte slice.
        let inner = &der[der.len() - 48..der.len() - 16];
        assert!(
            !bytes.windows(inner.len()).any(|w| w == inner),
            "{name} holds raw key bytes"
        );
    }
    assert!(checked >= 1, "found the SQLite file");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_name_ecdsa_issues_exports_and_keeps_keys_sealed() {
    let (pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let list = server.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "valid");
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[0]["key"], "ecdsa-p256");
    assert_eq!(list[0]["auto_renew"], true);
    assert!(
        list[0]["days_left"].as_i64().unwrap() > 300,
        "Pebble's default lifetime is years"
    );
    let table = server.cli_ok(&["cert", "ls"]);
    let header = table.lines().next().unwrap();
    for col in [
        "NAME",
        "DOMAINS",
        "ISSUER",
        "NOT AFTER",
        "DAYS LEFT",
        "AUTO-RENEW",
        "STATUS",
        "NEXT",
        "LAST ERROR",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(table.lines().nth(1).unwrap().starts_with("www "), "{table}");

    let export = dir.path().join("export");
    let (full, key) = export_and_check(&server, "www", &export, &["www.example.test"]);
    verify_chain(&pebble, &full, &["www.example.test"]).await;

    let show = server.cli_ok(&["cert", "show", "www"]);
    assert!(show.contains("Version 1 (current)"), "{show}");
    assert!(show.contains("Key:         ecdsa-p256"), "{show}");
    assert!(
        show.contains("Pebble Intermediate"),
        "chain subjects are shown: {show}"
    );

    assert_no_key_material(&server.data_dir, &key);
    let log = server.log();
    assert!(
        !log.contains(&server.token()),
        "the admin token reached the log"
    );
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!log.contains(&key_body[..40]), "key bytes reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_name_rsa_and_p384() {
    let (pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let names = ["a.example.test", "b.example.test", "c.other.test"];
    server.cli_ok(&[
        "cert", "add", "multi", "--key", "rsa2048", "--wait", "--domain", names[0], "--domain",
        names[1], "--domain", names[2],
    ]);
    server.cli_ok(&[
        "cert",
        "add",
        "p384",
        "--key",
        "ecdsa-p384",
        "--wait",
        "--domain",
        "p384.example.test",
    ]);
    let export = dir.path().join("multi");
    let (full, key) = export_and_check(&server, "multi", &export, &names);
    assert!(
        key.len() > 1000,
        "an RSA-2048 PKCS#8 key is over 1 kB of PEM"
    );
    verify_chain(&pebble, &full, &names).await;
    let export = dir.path().join("p384");
    let (full, _) = export_and_check(&server, "p384", &export, &["p384.example.test"]);
    verify_chain(&pebble, &full, &["p384.example.test"]).await;
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "multi", "--json"])).unwrap();
    assert_eq!(detail["key"], "rsa2048");
    assert_eq!(detail["versions"][0]["key"], "rsa2048");
    assert_eq!(detail["domains"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_certificates_with_default_nonce_rejection() {
    let opts = PebbleOptions {
        nonce_reject: None,
        ..PebbleOptions::fast()
    };
    let (_pebble, _dir, server) = pebble_and_server(opts).await;
    for i in 0..20 {
        let name = format!("c{i}");
        let domain = format!("host{i}.example.test");
        server.cli_ok(&["cert", "add", &name, "--domain", &domain, "--wait"]);
    }
    let list = server.list();
    assert_eq!(list.len(), 20);
    for cert in &list {
        assert_eq!(cert["status"], "valid", "{cert}\n{}", server.log());
        assert_eq!(cert["failure_streak"], 0, "{cert}");
        assert_eq!(cert["version"], 1, "{cert}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_account_certificates_and_versions() {
    let (_pebble, _dir, mut server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let (status, issuers) = server.api_request("GET", "/api/v1/issuers", None);
    assert_eq!(status, 200, "{issuers}");
    let issuers: serde_json::Value = serde_json::from_str(&issuers).unwrap();
    let account = issuers[0]["account_url"]
        .as_str()
        .expect("account registered")
        .to_string();
    let before = server.cli_ok(&["cert", "show", "www", "--json"]);

    server.restart();
    let (_, issuers) = server.api_request("GET", "/api/v1/issuers", None);
    let issuers: serde_json::Value = serde_json::from_str(&issuers).unwrap();
    assert_eq!(issuers[0]["account_url"], account.as_str());
    assert_eq!(server.cli_ok(&["cert", "show", "www", "--json"]), before);

    // The reloaded account key still works with the CA: renew, and no new account appears.
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "www", "--json"])).unwrap();
    assert_eq!(detail["version"], 2);
    assert_eq!(detail["versions"][1]["replaces"], 1);
    assert_ne!(
        detail["versions"][0]["serial"],
        detail["versions"][1]["serial"]
    );
    let (_, issuers) = server.api_request("GET", "/api/v1/issuers", None);
    let issuers: serde_json::Value = serde_json::from_str(&issuers).unwrap();
    assert_eq!(issuers[0]["account_url"], account.as_str());
    let printed = server.stdout();
    assert_eq!(
        printed.matches(&server.token()).count(),
        1,
        "the token is printed once, on first run: {printed}"
    );
    let (_, events) = server.api_request("GET", "/api/v1/events?limit=1000", None);
    assert_eq!(events.matches("account_created").count(), 1, "{events}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_validation_is_reported_with_the_cas_reason() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    // The responder listens elsewhere than where Pebble looks, so validation must fail.
    let wrong_port = certfleet_testkit::free_port();
    let server = Server::start_with(
        pebble.directory_url(),
        pebble.ca_cert_path().to_path_buf(),
        wrong_port,
        &dir.path().join("data"),
        &[],
    );
    let out = server.cli(&[
        "cert",
        "add",
        "www",
        "--domain",
        "www.example.test",
        "--wait",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("www: issuance failed: validation failed for www.example.test"),
        "{stderr}"
    );
    let list = server.list();
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[0]["failure_streak"], 1);
    assert_eq!(list[0]["version"], serde_json::Value::Null);
    assert!(
        list[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("validation failed"),
        "{}",
        list[0]
    );
    let table = server.cli_ok(&["cert", "ls"]);
    assert!(
        table.contains("failed") && table.contains("validation failed"),
        "{table}"
    );
    let out = server.cli(&[
        "cert",
        "export",
        "www",
        "--dir",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no issued version yet"));
    assert!(!dir.path().join("x").exists(), "nothing exported");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_orders_bounds_orders_in_flight() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_next_to(
        &pebble,
        &dir.path().join("data"),
        &["--max-concurrent-orders", "1"],
    );
    for i in 0..4 {
        server.cli_ok(&[
            "cert",
            "add",
            &format!("q{i}"),
            "--domain",
            &format!("q{i}.example.test"),
        ]);
    }
    server.wait_all_valid();
    // With one permit, every order is finished before the next one starts.
    let (_, events) = server.api_request("GET", "/api/v1/events?limit=1000", None);
    let events: Vec<serde_json::Value> = serde_json::from_str(&events).unwrap();
    let order: Vec<&str> = events
        .iter()
        .rev()
        .filter_map(|e| match e["kind"].as_str() {
            Some("issuance_started") => Some("start"),
            Some("issued") | Some("failed") => Some("end"),
            _ => None,
        })
        .collect();
    assert!(order.len() >= 8, "{order:?}");
    for pair in order.chunks(2) {
        assert_eq!(pair, ["start", "end"], "orders overlapped: {order:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_nonces_are_retried_even_when_frequent() {
    // One request in four is refused with badNonce: instant-acme retries each request with
    // the fresh nonce from the error (RFC 8555 §6.5), and the issuer retries a whole order
    // whose requests kept failing.
    let opts = PebbleOptions {
        nonce_reject: Some(25),
        ..PebbleOptions::fast()
    };
    let (_pebble, _dir, server) = pebble_and_server(opts).await;
    for i in 0..5 {
        server.issue(&format!("n{i}"), &format!("n{i}.example.test"));
    }
    assert!(
        server
            .list()
            .iter()
            .all(|c| c["status"] == "valid" && c["failure_streak"] == 0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_kind_with_one_and_several_names() {
    let (pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let cases: [(&str, &[&str]); 4] = [
        ("ecdsa-p256", &["p256a.example.test", "p256b.example.test"]),
        ("ecdsa-p384", &["p384a.example.test", "p384b.example.test"]),
        ("rsa3072", &["r3072.example.test"]),
        ("rsa4096", &["r4096.example.test", "www.r4096.example.test"]),
    ];
    for (key, names) in cases {
        let mut args = vec!["cert", "add", key, "--key", key, "--wait"];
        for name in names {
            args.extend(["--domain", name]);
        }
        server.cli_ok(&args);
        let (full, _) = export_and_check(&server, key, &dir.path().join(key), names);
        verify_chain(&pebble, &full, names).await;
        let detail: serde_json::Value =
            serde_json::from_str(&server.cli_ok(&["cert", "show", key, "--json"])).unwrap();
        assert_eq!(detail["versions"][0]["key"], key);
        let leaf = ParsedChain::parse(&full).unwrap();
        assert_eq!(leaf.leaf().key, key, "the leaf carries a {key} key");
    }
}
