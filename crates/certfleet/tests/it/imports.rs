//! `certfleet cert import` and `cert manage`: manual certificates, each refusal with its
//! message and nothing stored.

use std::path::{Path, PathBuf};

use certfleet_testkit::{PebbleOptions, TestPki, Validity};

use crate::harness::{Server, pebble_and_server, stderr};

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run `cert import NAME ARGS...`, expecting a refusal; returns stderr.
fn refused(server: &Server, name: &str, args: &[&str]) -> String {
    let mut all = vec!["cert", "import", name];
    all.extend_from_slice(args);
    let out = server.cli(&all);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    stderr(&out)
}

fn imported_events(server: &Server) -> usize {
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&server.cli_ok(&["events", "--kind", "imported", "--json"])).unwrap();
    events.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_refuse_bad_material_by_file_and_store_nothing() {
    let (_pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let d = dir.path();
    let pki = TestPki::new("Import Test");
    let other = TestPki::new("Other");
    let leaf = pki.leaf(&["shop.example.test"], Validity::Current);
    let cert = write(d, "shop.crt", &leaf.cert_pem);
    let key = write(d, "shop.key", &leaf.key_pem);
    let chain = write(d, "chain.pem", &pki.intermediate_pem());
    let root = write(d, "root.pem", &pki.root_pem());
    let garbage = write(d, "garbage.pem", "this is not a certificate\n");
    let other_key = write(
        d,
        "other.key",
        &other.leaf(&["x.example.test"], Validity::Current).key_pem,
    );
    let expired = pki.leaf(&["old.example.test"], Validity::Expired);
    let expired_cert = write(d, "old.crt", &expired.cert_pem);
    let expired_key = write(d, "old.key", &expired.key_pem);
    let other_root = write(d, "other-root.pem", &other.root_pem());
    let stray = write(
        d,
        "stray.pem",
        &format!("{}{}", pki.intermediate_pem(), other.intermediate_pem()),
    );

    let missing = d.join("missing.pem");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "--cert",
                s(&garbage),
                "--key",
                s(&key),
                "--ca-file",
                s(&root),
            ],
            format!("--cert {}: holds no PEM certificate", s(&garbage)),
        ),
        (
            vec![
                "--cert",
                s(&cert),
                "--key",
                s(&garbage),
                "--ca-file",
                s(&root),
            ],
            format!("--key {}: holds no private key", s(&garbage)),
        ),
        (
            vec![
                "--cert",
                s(&cert),
                "--key",
                s(&other_key),
                "--chain",
                s(&chain),
                "--ca-file",
                s(&root),
            ],
            format!(
                "--key {}: the private key does not match the certificate (CN=shop.example.test)",
                s(&other_key)
            ),
        ),
        (
            vec![
                "--cert",
                s(&expired_cert),
                "--key",
                s(&expired_key),
                "--chain",
                s(&chain),
                "--ca-file",
                s(&root),
            ],
            format!(
                "--cert {}: the certificate (CN=old.example.test) expired at",
                s(&expired_cert)
            ),
        ),
        (
            vec![
                "--cert",
                s(&cert),
                "--key",
                s(&key),
                "--chain",
                s(&chain),
                "--ca-file",
                s(&other_root),
            ],
            format!(
                "--chain {}: the chain does not verify: no trusted root issued CN=Import Test Intermediate",
                s(&chain)
            ),
        ),
        (
            vec![
                "--cert",
                s(&cert),
                "--key",
                s(&key),
                "--chain",
                s(&stray),
                "--ca-file",
                s(&root),
            ],
            format!(
                "--chain {}: the certificate CN=Other Intermediate does not chain to the leaf CN=shop.example.test",
                s(&stray)
            ),
        ),
        (
            vec!["--cert", s(&cert), "--key", s(&key), "--ca-file", s(&root)],
            format!(
                "the chain of --cert {}: the chain does not verify: no trusted root issued CN=shop.example.test",
                s(&cert)
            ),
        ),
        (
            vec!["--cert", s(&missing), "--key", s(&key)],
            format!("--cert {}: cannot read it", s(&missing)),
        ),
    ];
    for (args, want) in &cases {
        let err = refused(&server, "shop", args);
        assert!(
            err.contains(want.as_str()),
            "{args:?}\nwant: {want}\ngot: {err}"
        );
    }
    let err = refused(&server, "shop", &cases[2].0);
    assert!(
        !err.contains("PRIVATE KEY") && !err.contains(leaf.key_pem.lines().nth(1).unwrap()),
        "no key material in messages: {err}"
    );
    assert!(server.list().is_empty(), "nothing stored");
    let out = server.cli(&["events", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--since: \"yesterday\" is neither an RFC 3339 time"),
        "{}",
        stderr(&out)
    );
    let out = server.cli(&["events", "--kind", "renewd"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown event kind \"renewd\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(imported_events(&server), 0, "no event either");

    // Expired, but asked for.
    let out = server.cli_ok(&[
        "cert",
        "import",
        "old",
        "--cert",
        s(&expired_cert),
        "--key",
        s(&expired_key),
        "--chain",
        s(&chain),
        "--ca-file",
        s(&root),
        "--allow-expired",
        "--json",
    ]);
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["source"], "manual");
    assert!(view["days_left"].as_i64().unwrap() < 0);
    // Not shown as healthy.
    assert_eq!(view["status"], "expired", "{view}");
    let ls = server.cli_ok(&["cert", "ls"]);
    assert!(ls.contains("expired"), "{ls}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_is_manual_ordered_sealed_then_replaced_and_managed() {
    let (pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let d = dir.path();
    let pki = TestPki::new("Import Test");
    let leaf = pki.leaf(&["www.example.test", "example.test"], Validity::Current);
    // The full chain backwards in one file: root, intermediate, leaf.
    let cert = write(
        d,
        "backwards.pem",
        &format!(
            "{}{}{}",
            pki.root_pem(),
            pki.intermediate_pem(),
            leaf.cert_pem
        ),
    );
    let key = write(d, "www.key", &leaf.key_pem);
    let root = write(d, "root.pem", &pki.root_pem());
    let out = server.cli(&[
        "cert",
        "import",
        "www",
        "--cert",
        s(&cert),
        "--key",
        s(&key),
        "--ca-file",
        s(&root),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("www: imported version 1 for www.example.test, example.test"),
        "{}",
        stderr(&out)
    );

    // The same certificate again is refused, not stored as a second identical version.
    let again = refused(
        &server,
        "www",
        &["--cert", s(&cert), "--key", s(&key), "--ca-file", s(&root)],
    );
    assert!(
        again.contains("is already version 1 of \"www\"; nothing was imported"),
        "{again}"
    );

    let ls = server.cli_ok(&["cert", "ls"]);
    let row = ls.lines().find(|l| l.starts_with("www ")).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2], "manual", "ISSUER column: {ls}");
    assert!(row.contains(" no "), "AUTO-RENEW no: {ls}");
    let view = &server.list()[0];
    assert_eq!(view["source"], "manual");
    assert_eq!(view["auto_renew"], false);

    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "www", "--json"])).unwrap();
    let subjects: Vec<&str> = detail["versions"][0]["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            "CN=www.example.test",
            "CN=Import Test Intermediate",
            "CN=Import Test Root"
        ],
        "leaf first, whatever order it came in"
    );
    let (status, bundle) = server.api_request("GET", "/api/v1/certificates/www/bundle", None);
    assert_eq!(status, 200);
    let bundle: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    assert_eq!(
        bundle["key_pem"],
        leaf.key_pem.as_str(),
        "the key comes back intact"
    );
    let db = std::fs::read(server.data_dir.join("certfleet.db")).unwrap();
    let body = leaf.key_pem.lines().nth(1).unwrap();
    assert!(
        !db.windows(body.len()).any(|w| w == body.as_bytes()),
        "the key is sealed at rest"
    );

    let out = server.cli(&["cert", "renew", "www"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("certfleet cert manage www --issuer ISSUER"),
        "{}",
        stderr(&out)
    );

    // A newer import of the same name is a new version.
    let newer = pki.leaf(&["www.example.test"], Validity::Current);
    let cert2 = write(d, "www2.crt", &newer.cert_pem);
    // Its key in the traditional EC form (SEC1), as older tools write it.
    let pkcs8 = write(d, "www2-pkcs8.key", &newer.key_pem);
    let openssl = certfleet_testkit::require_program("openssl", "apt-get install -y openssl");
    let sec1 = std::process::Command::new(openssl)
        .args(["pkey", "-traditional", "-in"])
        .arg(&pkcs8)
        .output()
        .unwrap();
    let sec1 = String::from_utf8(sec1.stdout).unwrap();
    assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{sec1}");
    let key2 = write(d, "www2.key", &sec1);
    let chain = write(d, "chain.pem", &pki.intermediate_pem());
    server.cli_ok(&[
        "cert",
        "import",
        "www",
        "--cert",
        s(&cert2),
        "--key",
        s(&key2),
        "--chain",
        s(&chain),
        "--ca-file",
        s(&root),
    ]);
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "www", "--json"])).unwrap();
    assert_eq!(detail["version"], 2);
    assert_eq!(detail["versions"][1]["replaces"], 1);
    assert_eq!(detail["domains"], serde_json::json!(["www.example.test"]));
    let (_, bundle) = server.api_request("GET", "/api/v1/certificates/www/bundle", None);
    let bundle: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    assert_eq!(
        bundle["key_pem"],
        sec1.as_str(),
        "a SEC1 key is kept as given"
    );

    // Under ACME management it renews from the CA like any other.
    let out = server.cli(&["cert", "manage", "www", "--issuer", "nope"]);
    assert!(
        stderr(&out).contains("unknown issuer \"nope\"; configured issuers: default"),
        "{}",
        stderr(&out)
    );
    server.cli_ok(&["cert", "manage", "www", "--issuer", "default"]);
    let view = &server.list()[0];
    assert_eq!(
        (view["source"].as_str(), view["auto_renew"].as_bool()),
        (Some("acme"), Some(true))
    );
    assert_eq!(
        view["status"], "valid",
        "the imported version stays good: {view}"
    );
    // The scheduler takes it on: its renewal is planned (a third of its 90 days before expiry).
    let mut planned = serde_json::Value::Null;
    for _ in 0..400 {
        planned = server.list()[0].clone();
        if planned["next_attempt"].is_string() && planned["in_progress"] == false {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(
        planned["next_attempt"].is_string(),
        "a managed certificate is on the schedule: {planned}"
    );
    assert_eq!(planned["version"], 2, "not due yet: {planned}");
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "www", "--json"])).unwrap();
    assert_eq!(detail["version"], 3);
    let issuer_dn = detail["versions"][2]["chain"][0]["issuer"]
        .as_str()
        .unwrap();
    assert!(
        issuer_dn.contains("Pebble"),
        "issued by the CA: {issuer_dn}"
    );
    let _ = pebble;

    let kinds: Vec<serde_json::Value> =
        serde_json::from_str(&server.cli_ok(&["events", "--cert", "www", "--json"])).unwrap();
    let kinds: Vec<&str> = kinds
        .iter()
        .rev()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "imported",
            "imported",
            "changed",
            "issuance_started",
            "renewed"
        ],
        "the event log tells the story"
    );
}

/// A wildcard certificate cannot be renewed over HTTP-01: handing it to an issuer (`import
/// --issuer`, `cert manage`) is refused naming the name, and it stays manual.
#[tokio::test(flavor = "multi_thread")]
async fn a_wildcard_is_not_put_under_acme_without_a_dns_solver() {
    let (_pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let d = dir.path();
    let pki = TestPki::new("Import Test");
    let leaf = pki.leaf(&["*.wild.example.test"], Validity::Current);
    let cert = write(
        d,
        "wild.pem",
        &format!("{}{}", leaf.cert_pem, pki.intermediate_pem()),
    );
    let key = write(d, "wild.key", &leaf.key_pem);
    let root = write(d, "root.pem", &pki.root_pem());
    let files = ["--cert", s(&cert), "--key", s(&key), "--ca-file", s(&root)];

    let mut with_issuer = files.to_vec();
    with_issuer.extend_from_slice(&["--issuer", "default"]);
    let said = refused(&server, "wild", &with_issuer);
    assert!(
        said.contains("domains[0]") && said.contains("*.wild.example.test is a wildcard"),
        "{said}"
    );
    assert_eq!(imported_events(&server), 0, "nothing stored");

    let mut import = vec!["cert", "import", "wild"];
    import.extend_from_slice(&files);
    server.cli_ok(&import);
    let out = server.cli(&["cert", "manage", "wild", "--issuer", "default"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("*.wild.example.test is a wildcard"),
        "{}",
        stderr(&out)
    );
    let show: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "wild", "--json"])).unwrap();
    assert_eq!(show["source"], "manual", "{show}");
}

/// A config file that declares the name of an imported certificate does not leave it stuck
/// as "pending": it stays as it is, and a warning says how to hand it over.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_entry_naming_an_imported_certificate_leaves_it_alone_and_says_so() {
    let (_pebble, dir, mut server) = pebble_and_server(PebbleOptions::fast()).await;
    let d = dir.path();
    let pki = TestPki::new("Import Test");
    let leaf = pki.leaf(&["m1.example.test"], Validity::Current);
    let cert = write(
        d,
        "m1.pem",
        &format!("{}{}", leaf.cert_pem, pki.intermediate_pem()),
    );
    let key = write(d, "m1.key", &leaf.key_pem);
    let root = write(d, "root.pem", &pki.root_pem());
    server.cli_ok(&[
        "cert",
        "import",
        "m1",
        "--cert",
        s(&cert),
        "--key",
        s(&key),
        "--ca-file",
        s(&root),
    ]);
    let config = write(
        d,
        "certfleet.toml",
        "[[certificates]]\nname = \"m1\"\ndomains = [\"other.example.test\"]\n",
    );
    server.restart_with(&["--config", s(&config)]);
    let show: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "m1", "--json"])).unwrap();
    assert_eq!(show["source"], "manual", "{show}");
    assert_eq!(show["status"], "valid", "{show}");
    assert_eq!(show["domains"][0], "m1.example.test", "{show}");
    let warning = server
        .events()
        .into_iter()
        .find(|e| e["kind"] == "policy_warning")
        .expect("a warning");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("certfleet cert manage m1 --issuer default"),
        "{warning}"
    );
}
