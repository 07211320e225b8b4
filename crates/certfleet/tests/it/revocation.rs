//! `certfleet cert revoke` against real Pebble (issue 7, item 3): the serial is revoked at the
//! CA (Pebble's management API says so), the version is marked with time and reason, a
//! revoked current version is replaced by the scheduler without anyone asking, `--reissue`
//! gives a new serial at once, and an imported certificate is revoked only through the
//! account that ordered it.

use std::path::Path;
use std::time::Duration;

use certfleet_testkit::{Pebble, PebbleOptions, TestPki, Validity};

use crate::harness::{Server, pebble_and_server, stderr};

/// Bound on waiting for the scheduler: 400 × 25 ms.
const POLLS: u32 = 400;

fn detail(server: &Server, name: &str) -> serde_json::Value {
    serde_json::from_str(&server.cli_ok(&["cert", "show", name, "--json"])).unwrap()
}

/// Pebble's word on a serial: `Valid` or `Revoked`, and the reason code.
async fn at_pebble(pebble: &Pebble, serial: &str) -> (String, Option<u64>) {
    let status: serde_json::Value =
        serde_json::from_str(&pebble.cert_status_by_serial(serial).await).unwrap();
    (
        status["Status"].as_str().unwrap().to_string(),
        status["Reason"].as_u64(),
    )
}

fn events_of(server: &Server, kind: &str) -> Vec<serde_json::Value> {
    server
        .events()
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_current_version_is_renewed_by_the_scheduler_unasked() {
    let (pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let first = detail(&server, "www");
    let serial = first["versions"][0]["serial"].as_str().unwrap().to_string();
    assert_eq!(at_pebble(&pebble, &serial).await.0, "Valid");

    // Off a terminal nothing can answer the question: refused without --yes, nothing sent.
    let out = server.cli(&["cert", "revoke", "www", "--reason", "keyCompromise"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("www: not revoked: revocation cannot be undone")
            && stderr(&out).contains("pass --yes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(at_pebble(&pebble, &serial).await.0, "Valid");

    let out = server.cli_ok(&[
        "cert",
        "revoke",
        "www",
        "--reason",
        "keyCompromise",
        "--yes",
        "--json",
    ]);
    let view: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(view["version"], 1);
    assert_eq!(view["serial"], serial.as_str());
    assert_eq!(view["reason"], "keyCompromise");
    assert_eq!(view["issuer"], "default");
    assert_eq!(view["already_revoked"], false);
    assert_eq!(view["replacement"], "scheduled");
    assert_eq!(
        at_pebble(&pebble, &serial).await,
        ("Revoked".to_string(), Some(1)),
        "the CA revoked it, for keyCompromise (code 1)"
    );

    // Nobody asks for a renewal: the scheduler replaces the revoked current version.
    let mut renewed = None;
    for _ in 0..POLLS {
        let d = detail(&server, "www");
        if d["version"] == 2 && d["status"] == "valid" {
            renewed = Some(d);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let renewed = renewed.unwrap_or_else(|| {
        panic!(
            "the revoked version was not replaced: {}\n{}",
            detail(&server, "www"),
            server.log()
        )
    });
    let new_serial = renewed["versions"][1]["serial"].as_str().unwrap();
    assert_ne!(new_serial, serial);
    assert_eq!(at_pebble(&pebble, new_serial).await.0, "Valid");
    let old = &renewed["versions"][0];
    assert!(old["revoked_at"].is_string(), "{old}");
    assert_eq!(old["revocation_reason"], "keyCompromise");
    assert!(renewed["versions"][1]["revoked_at"].is_null());
    assert!(
        renewed["revoked_at"].is_null(),
        "the new current version is not revoked"
    );
    let text = server.cli_ok(&["cert", "show", "www"]);
    assert!(
        text.contains("Revoked:") && text.contains("(keyCompromise)"),
        "cert show shows the revocation:\n{text}"
    );

    let revoked = events_of(&server, "revoked");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["certificate"], "www");
    assert_eq!(revoked[0]["details"]["serial"], serial.as_str());
    assert_eq!(revoked[0]["details"]["reason"], "keyCompromise");
    assert_eq!(revoked[0]["details"]["version"], 1);
    let started = events_of(&server, "issuance_started");
    assert!(
        started[0]["message"]
            .as_str()
            .unwrap()
            .contains("replacing version 1, revoked at"),
        "the scheduler says why it ordered: {started:?}"
    );

    // A version is revoked once.
    let out = server.cli(&["cert", "revoke", "www", "--version", "1", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("version 1 of \"www\"")
            && stderr(&out).contains("was already revoked at"),
        "{}",
        stderr(&out)
    );
    // An unknown version, a bad reason: named, nothing sent.
    let out = server.cli(&["cert", "revoke", "www", "--version", "7", "--yes"]);
    assert!(
        stderr(&out).contains("has no version 7"),
        "{}",
        stderr(&out)
    );
    let (status, body) = server.api_request(
        "POST",
        "/api/v1/certificates/www/revoke",
        Some(r#"{"reason": "compromised"}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("unknown revocation reason \\\"compromised\\\""),
        "{body}"
    );
    assert_eq!(events_of(&server, "revoked").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_with_reissue_gives_a_new_serial() {
    let (pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("api", "api.example.test");
    let serial = detail(&server, "api")["versions"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let out = server.cli(&["cert", "revoke", "api", "--reissue", "--yes"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), server.log());
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "api: version 1 (serial {serial}) revoked at the CA, reason unspecified"
        )),
        "{said}"
    );
    assert!(said.contains("api: issued version 2"), "{said}");
    let d = detail(&server, "api");
    assert_eq!(d["version"], 2);
    let new_serial = d["versions"][1]["serial"].as_str().unwrap();
    assert_ne!(new_serial, serial);
    assert_eq!(at_pebble(&pebble, &serial).await, ("Revoked".into(), None));
    assert_eq!(at_pebble(&pebble, new_serial).await.0, "Valid");
    assert_eq!(d["versions"][0]["revocation_reason"], "unspecified");

    // --reissue only replaces the current version.
    let out = server.cli(&[
        "cert",
        "revoke",
        "api",
        "--version",
        "1",
        "--reissue",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let out = server.cli(&[
        "cert",
        "revoke",
        "api",
        "--version",
        "2",
        "--reason",
        "superseded",
        "--yes",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["replacement"], "scheduled");
    assert_eq!(
        at_pebble(&pebble, new_serial).await,
        ("Revoked".into(), Some(4))
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_certificate_is_revoked_only_by_the_account_that_ordered_it() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Another ACME client (another certfleet, so another account) orders `shop`.
    let files = d.join("shop");
    {
        let other = Server::start(&pebble, &d.join("other"));
        other.issue("shop", "shop.example.test");
        other.cli_ok(&["cert", "export", "shop", "--dir", files.to_str().unwrap()]);
    }
    let server = Server::start(&pebble, &d.join("data"));
    let root = write(d, "root.pem", &pebble.root_pem().await);
    let cert = files.join("cert.pem");
    let key = files.join("privkey.pem");
    let chain = files.join("chain.pem");
    server.cli_ok(&[
        "cert",
        "import",
        "shop",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--chain",
        chain.to_str().unwrap(),
        "--ca-file",
        &root,
    ]);
    let serial = detail(&server, "shop")["versions"][0]["serial"]
        .as_str()
        .unwrap()
        .to_string();

    let out = server.cli(&["cert", "revoke", "shop", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("was imported (issuer manual): name the configured issuer")
            && stderr(&out).contains("--issuer"),
        "{}",
        stderr(&out)
    );
    let out = server.cli(&[
        "cert",
        "revoke",
        "shop",
        "--issuer",
        "default",
        "--reissue",
        "--yes",
    ]);
    assert!(
        stderr(&out).contains("certfleet cert manage shop --issuer ISSUER"),
        "{}",
        stderr(&out)
    );

    let out = server.cli(&["cert", "revoke", "shop", "--issuer", "default", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("refused to revoke version 1 of \"shop\"")
            && said.contains(
                "unauthorized: The certificate being revoked is not associated with account"
            )
            && said.contains("revoke only the certificates it ordered"),
        "the CA's words and what to do: {said}"
    );
    let out = server.cli(&["cert", "revoke", "shop", "--issuer", "nope", "--yes"]);
    assert!(
        stderr(&out).contains("--issuer: unknown issuer \"nope\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        at_pebble(&pebble, &serial).await.0,
        "Valid",
        "still valid at the CA"
    );
    assert!(detail(&server, "shop")["versions"][0]["revoked_at"].is_null());
    assert!(events_of(&server, "revoked").is_empty(), "nothing recorded");

    // A certificate this CA never issued: the CA's words again.
    let pki = TestPki::new("Elsewhere");
    let leaf = pki.leaf(&["old.example.test"], Validity::Current);
    server.cli_ok(&[
        "cert",
        "import",
        "old",
        "--cert",
        &write(d, "old.crt", &leaf.cert_pem),
        "--key",
        &write(d, "old.key", &leaf.key_pem),
        "--chain",
        &write(d, "old-chain.pem", &pki.intermediate_pem()),
        "--ca-file",
        &write(d, "old-root.pem", &pki.root_pem()),
    ]);
    let out = server.cli(&["cert", "revoke", "old", "--issuer", "default", "--yes"]);
    assert!(
        stderr(&out).contains("malformed: Unable to find specified certificate")
            && stderr(&out).contains("check that this CA issued the certificate"),
        "{}",
        stderr(&out)
    );
    assert!(events_of(&server, "revoked").is_empty());
}

/// Until its replacement exists, exporting a revoked current version says so on stderr (the
/// files are still written: a revoked certificate may be all there is).
#[tokio::test(flavor = "multi_thread")]
async fn exporting_a_revoked_current_version_warns() {
    use certfleet_testkit::proxy::{Action, FaultProxy, Match, Rule};
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let server = crate::renewal::server_via(&proxy, &pebble, dir.path(), &[]);
    server.issue("www", "www.example.test");
    // No replacement can be ordered for now.
    let refusal = Action::problem(403, "rejectedIdentifier", "fault proxy: not now", None);
    proxy.add(Rule::new(Match::post("/order-plz"), refusal));
    server.cli_ok(&[
        "cert",
        "revoke",
        "www",
        "--reason",
        "keyCompromise",
        "--yes",
    ]);
    let out_dir = dir.path().join("out");
    let out = server.cli(&["cert", "export", "www", "--dir", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: www: version 1 (serial ")
            && stderr(&out).contains("was revoked at the CA at"),
        "{}",
        stderr(&out)
    );
    assert!(out_dir.join("privkey.pem").is_file());
}
