//! DNS-01 end to end: the real `certfleet` binary, real Pebble resolving through a real Knot,
//! records written with RFC 2136 + TSIG (or by exec hooks calling knsupdate).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certfleet_acme::inspect::ParsedChain;
use certfleet_core::Store;
use certfleet_store::{Sealer, SqliteStore};
use certfleet_testkit::knot::{KEY_ALGORITHM, KEY_NAME};
use certfleet_testkit::{Knot, Pebble, PebbleOptions, Redis};

use crate::harness::{Server, stderr};

pub const ZONE: &str = "example.test";

/// Pebble resolving every name through `knot`.
pub async fn pebble_on(knot: &Knot) -> Pebble {
    Pebble::start(PebbleOptions {
        dns_server: Some(knot.addr().to_string()),
        ..PebbleOptions::fast()
    })
    .await
}

/// An rfc2136 solver section for `knot`, checking propagation on `nameservers`.
pub fn rfc2136_solver(
    name: &str,
    knot: &Knot,
    secret: &str,
    nameservers: &[&Knot],
    timeout_secs: u64,
) -> String {
    let ns: Vec<String> = nameservers
        .iter()
        .map(|k| format!("\"{}\"", k.addr()))
        .collect();
    format!(
        "[[solvers]]\nname = \"{name}\"\ntype = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{KEY_NAME}\"\n\
         tsig_algorithm = \"{KEY_ALGORITHM}\"\ntsig_secret = \"{secret}\"\nttl = 10\n\
         propagation = {{ nameservers = [{}], interval_ms = 50, timeout_secs = {timeout_secs} }}\n",
        knot.addr(),
        ns.join(", ")
    )
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("certfleet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn start(pebble: &Pebble, dir: &Path, config: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start_next_to(pebble, &dir.join("data"), &args)
}

/// The DNS names of the current leaf of `name`.
pub fn leaf_names(server: &Server, name: &str, dir: &Path) -> Vec<String> {
    let out = dir.join(format!("export-{name}"));
    server.cli_ok(&["cert", "export", name, "--dir", out.to_str().unwrap()]);
    let pem = std::fs::read_to_string(out.join("fullchain.pem")).unwrap();
    let mut names = ParsedChain::parse(&pem).unwrap().leaf().dns_names.clone();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_apex_issued_through_knot_with_rfc2136() {
    let knot = Knot::start(&[ZONE]).await;
    let pebble = pebble_on(&knot).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &rfc2136_solver("knot", &knot, knot.tsig_secret(), &[&knot], 30),
    );
    let server = start(&pebble, dir.path(), &config, &[]);
    server.cli_ok(&[
        "cert",
        "add",
        "wild",
        "-d",
        ZONE,
        "-d",
        "*.example.test",
        "--challenge",
        "dns-01",
        "--wait",
    ]);
    assert_eq!(
        leaf_names(&server, "wild", dir.path()),
        ["*.example.test", "example.test"]
    );
    assert!(
        knot.txt("_acme-challenge.example.test").await.is_empty(),
        "records withdrawn after success"
    );
    let log = server.log();
    assert!(
        !log.contains(knot.tsig_secret()),
        "the TSIG secret never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_by_http01_and_wildcard_by_dns01() {
    let knot = Knot::start(&[ZONE]).await;
    let pebble = pebble_on(&knot).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &rfc2136_solver("knot", &knot, knot.tsig_secret(), &[&knot], 30),
    );
    let server = start(&pebble, dir.path(), &config, &[]);
    server.cli_ok(&[
        "cert",
        "add",
        "mixed",
        "-d",
        ZONE,
        "-d",
        "*.example.test",
        "--solver-for",
        "*.example.test=knot",
        "--wait",
    ]);
    assert_eq!(
        leaf_names(&server, "mixed", dir.path()),
        ["*.example.test", "example.test"]
    );
    let shown: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "mixed", "--json"])).unwrap();
    assert_eq!(
        shown["solvers"]["rules"]["*.example.test"], "knot",
        "{shown}"
    );
    // Both challenge types were answered: the responder served a token, Knot took an update.
    let log = server.log();
    assert!(log.contains("served an HTTP-01 response"), "{log}");
    assert!(log.contains("DNS update accepted"), "{log}");

    // The same wildcard with http-01 is refused, naming the field.
    let out = server.cli(&[
        "cert",
        "add",
        "bad",
        "-d",
        "*.example.test",
        "--solver-for",
        "*.example.test=http-01",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("solvers.\"*.example.test\"") && err.contains("only dns-01"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tsig_secret_fails_naming_the_server_and_the_refusal() {
    let knot = Knot::start(&[ZONE]).await;
    let pebble = pebble_on(&knot).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZy0wMDA=";
    let config = write_config(
        dir.path(),
        &rfc2136_solver("knot", &knot, wrong, &[&knot], 5),
    );
    let server = start(&pebble, dir.path(), &config, &[]);
    let out = server.cli(&[
        "cert",
        "add",
        "denied",
        "-d",
        "*.example.test",
        "--challenge",
        "dns-01",
        "--wait",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "issuance failed: {}",
        stderr(&out)
    );
    let shown: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "denied", "--json"])).unwrap();
    let error = shown["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(&knot.addr().to_string()),
        "names the server: {error}"
    );
    assert!(
        error.contains("NOTAUTH") && error.contains("BADSIG"),
        "names the refusal: {error}"
    );
    assert!(!server.log().contains(wrong), "the secret is not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_provider_issues_through_knsupdate_scripts() {
    let knot = Knot::start(&[ZONE]).await;
    let pebble = pebble_on(&knot).await;
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("knot-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\ncase \"$CERTFLEET_DNS_ACTION\" in present) op=add;; cleanup) op=delete;; *) exit 9;; esac\n\
             echo \"$CERTFLEET_DNS_ACTION $CERTFLEET_DNS_DOMAIN $CERTFLEET_DNS_RECORD_NAME\" >> {log}\n\
             printf 'server 127.0.0.1 {port}\\nzone {ZONE}.\\nupdate %s %s 10 TXT \"%s\"\\nsend\\n' \
             \"$op\" \"$CERTFLEET_DNS_RECORD_NAME\" \"$CERTFLEET_DNS_RECORD_VALUE\" \
             | knsupdate -y {KEY_ALGORITHM}:{KEY_NAME}:{secret}\n",
            log = dir.path().join("hook.log").display(),
            port = knot.port(),
            secret = knot.tsig_secret()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!(
        "[[solvers]]\nname = \"hook\"\ntype = \"exec\"\npresent = [\"{h}\"]\ncleanup = [\"{h}\"]\n\
         propagation = {{ nameservers = [\"{}\"], interval_ms = 50, timeout_secs = 30 }}\n",
        knot.addr(),
        h = hook.display()
    );
    let config = write_config(dir.path(), &config);
    let server = start(&pebble, dir.path(), &config, &[]);
    server.cli_ok(&[
        "cert",
        "add",
        "hooked",
        "-d",
        "api.example.test",
        "-d",
        "*.api.example.test",
        "--solver",
        "hook",
        "--wait",
    ]);
    assert_eq!(
        leaf_names(&server, "hooked", dir.path()),
        ["*.api.example.test", "api.example.test"]
    );
    let log = std::fs::read_to_string(dir.path().join("hook.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("present api.example.test _acme-challenge.api.example.test."))
            .count(),
        2,
        "{log}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("cleanup ")).count(),
        2,
        "{log}"
    );
    assert!(
        knot.txt("_acme-challenge.api.example.test")
            .await
            .is_empty()
    );
}

/// Open the server's store read-side, as a second process would.
pub fn open_store(data_dir: &Path) -> Arc<dyn Store> {
    let (sealer, _) = Sealer::from_env_or_file(None, &data_dir.join("kek")).unwrap();
    Arc::new(SqliteStore::open(&data_dir.join("certfleet.db"), sealer).unwrap())
}

/// A server killed after presenting withdraws, at its next start, the TXT record and the
/// HTTP-01 token (store and Redis mirror) it had published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_present_then_restart_withdraws_the_txt_record_and_the_token() {
    let primary = Knot::start(&[ZONE]).await;
    // A second authoritative server that never gets the record: present never finishes.
    let lagging = Knot::start_with_secret(&[ZONE], primary.tsig_secret()).await;
    let redis = Redis::start().await;
    let pebble = pebble_on(&primary).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[solvers]]\ntype = \"http-01\"\nredis = {{ url = \"{}\" }}\n",
        rfc2136_solver(
            "knot",
            &primary,
            primary.tsig_secret(),
            &[&primary, &lagging],
            600
        ),
        redis.url()
    );
    let config = write_config(dir.path(), &config);
    let mut server = start(&pebble, dir.path(), &config, &[]);
    server.cli_ok(&[
        "cert",
        "add",
        "crash",
        "-d",
        ZONE,
        "-d",
        "*.example.test",
        "--solver-for",
        "*.example.test=knot",
    ]);
    let store = open_store(&server.data_dir);
    let started = Instant::now();
    let (txt, presented) = loop {
        let presented = store.presented_challenges().await.unwrap();
        let txt = primary.txt("_acme-challenge.example.test").await;
        if presented.len() == 2 && !txt.is_empty() {
            break (txt, presented);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never presented: {presented:?} {txt:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let token = presented
        .iter()
        .find(|p| p.solver == "http-01")
        .map(|p| p.challenge.token.clone())
        .expect("the HTTP-01 token was recorded");
    let key = format!("certfleet:acme-challenge:{token}");
    assert_eq!(
        redis.cli(&["EXISTS", &key]).await.trim(),
        "1",
        "mirrored before the crash"
    );
    assert!(
        store
            .live_challenges(0)
            .await
            .unwrap()
            .iter()
            .any(|c| c.token == token)
    );

    server.kill();
    assert_eq!(
        primary.txt("_acme-challenge.example.test").await,
        txt,
        "the crash left the record"
    );
    // Restarted without the lagging server: the leftovers are withdrawn first, then the
    // order in flight is resumed (its challenges presented again), validated and cleaned up.
    let healthy = format!(
        "{}\n[[solvers]]\ntype = \"http-01\"\nredis = {{ url = \"{}\" }}\n",
        rfc2136_solver("knot", &primary, primary.tsig_secret(), &[&primary], 600),
        redis.url()
    );
    write_config(dir.path(), &healthy);
    server.restart();
    let started = Instant::now();
    loop {
        let still_txt = primary
            .txt("_acme-challenge.example.test")
            .await
            .iter()
            .any(|v| txt.contains(v));
        let still_token = store
            .live_challenges(0)
            .await
            .unwrap()
            .iter()
            .any(|c| c.token == token);
        let still_redis = redis.cli(&["EXISTS", &key]).await.trim() == "1";
        let still_recorded = store
            .presented_challenges()
            .await
            .unwrap()
            .iter()
            .any(|p| p.challenge.token == token);
        let valid = server
            .list()
            .iter()
            .any(|c| c["name"] == "crash" && c["status"] == "valid");
        if !still_txt && !still_token && !still_redis && !still_recorded && valid {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "left behind after restart: txt {still_txt}, token {still_token}, redis {still_redis}, record {still_recorded}, issued {valid}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        server
            .log()
            .contains("withdrew challenge responses left by the last run"),
        "{}",
        server.log()
    );
}
