//! The embedded default's first run, restarts, the config file, removal and the KEK.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use certfleet_testkit::{Pebble, PebbleOptions};

use crate::harness::{Server, pebble_and_server};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn first_run_creates_private_files_and_says_so() {
    let (_pebble, _dir, mut server) = pebble_and_server(PebbleOptions::fast()).await;
    let data = server.data_dir.clone();
    assert_eq!(mode(&data), 0o700);
    for file in ["kek", "admin-token", "certfleet.db", "server.json"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let log = server.log();
    assert!(log.contains("created a new key-encryption key"), "{log}");
    assert!(
        log.contains(&data.join("kek").display().to_string()),
        "the log names the file: {log}"
    );
    let token = server.token();
    assert_eq!(
        server.stdout().matches(&token).count(),
        1,
        "the token is printed once"
    );
    let kek = std::fs::read(data.join("kek")).unwrap();

    server.restart();
    assert_eq!(
        std::fs::read(data.join("kek")).unwrap(),
        kek,
        "the KEK is kept"
    );
    assert_eq!(server.token(), token, "the token is kept");
    assert_eq!(
        server.stdout().matches(&token).count(),
        1,
        "and not printed again"
    );
    assert_eq!(
        server
            .log()
            .matches("created a new key-encryption key")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_encryption_key_is_refused_and_nothing_is_lost() {
    let (_pebble, _dir, mut server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let before = server.cli_ok(&["cert", "show", "www", "--json"]);
    let kek_path = server.data_dir.join("kek");
    let good = std::fs::read(&kek_path).unwrap();
    std::fs::write(&kek_path, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let (code, stderr) = server.start_expecting_failure();
    assert_eq!(code, Some(1), "{stderr}");
    let kek = kek_path.display();
    let db = server.data_dir.join("certfleet.db");
    assert!(
        stderr.contains(&format!(
            "the key-encryption key in {kek} is not the one {} was written with.\nNothing was read or changed.",
            db.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("restore the kek file"), "{stderr}");

    std::fs::write(&kek_path, &good).unwrap();
    std::fs::set_permissions(&kek_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = server.start_expecting_failure();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("chmod 600"),
        "a readable KEK file is refused: {stderr}"
    );

    std::fs::set_permissions(&kek_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    server.restart();
    assert_eq!(server.cli_ok(&["cert", "show", "www", "--json"]), before);
    let dir = tempfile::tempdir().unwrap();
    server.cli_ok(&[
        "cert",
        "export",
        "www",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn kek_from_the_environment_leaves_no_key_file() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let kek = "c2l4dGVlbi1ieXRlcy1zaXh0ZWVuLWJ5dGVzLXh4eHg=";
    let data = dir.path().join("data");
    let server = Server::start_env(
        pebble.directory_url(),
        pebble.ca_cert_path().to_path_buf(),
        pebble.http01_port(),
        &data,
        &[],
        &[("CERTFLEET_KEK", kek)],
    );
    server.issue("www", "www.example.test");
    assert!(
        !data.join("kek").exists(),
        "no key file when CERTFLEET_KEK is set"
    );
    assert!(!server.log().contains(kek), "the KEK is not logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_in_the_config_file_are_issued_at_start() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certfleet.toml");
    std::fs::write(
        &config,
        "[[solvers]]\ntype = \"http-01\"\ntoken_ttl_secs = 600\n\n\
         [[certificates]]\nname = \"cfg\"\ndomains = [\"cfg.example.test\", \"www.cfg.example.test\"]\nkey = \"ecdsa-p384\"\n",
    )
    .unwrap();
    let mut server = Server::start_next_to(
        &pebble,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    server.wait_all_valid();
    let list = server.list();
    assert_eq!(list[0]["name"], "cfg");
    assert_eq!(list[0]["key"], "ecdsa-p384");
    assert_eq!(list[0]["domains"].as_array().unwrap().len(), 2);

    // A restart does not declare it again nor re-issue it.
    server.restart();
    let list = server.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[0]["status"], "valid");
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_removes_the_certificate_and_its_versions() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("gone", "gone.example.test");
    // Off a terminal, removing keys needs --yes: nothing is removed without it.
    let out = server.cli(&["cert", "rm", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --yes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.list().len(), 1, "nothing removed without --yes");
    server.cli_ok(&["cert", "rm", "gone", "--yes"]);
    assert!(server.list().is_empty());
    let out = server.cli(&["cert", "rm", "gone", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate \"gone\" not found"));
    let out = server.cli(&["cert", "show", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    // The name can be declared again afterwards.
    server.issue("gone", "again.example.test");
    let list = server.list();
    assert_eq!(list[0]["version"], 1);
    assert_eq!(
        list[0]["domains"],
        serde_json::json!(["again.example.test"])
    );
}
