//! Field reports, round 1 (issue 5): what users of other ACME tools ran into, each as a
//! regression test named after what it protects.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certfleet_testkit::{Pebble, PebbleOptions, child_command, free_port};

use crate::harness::{Server, bin, pebble_and_server, stderr};

/// A listener on `port` that records every byte any client sends it, until dropped.
struct Recorder {
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<u32>>,
}

impl Recorder {
    fn listen(port: u16) -> Recorder {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the foreign listener");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (r, c) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                *c.lock().unwrap() += 1;
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    r.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }
        });
        Recorder {
            received,
            connections,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    fn connections(&self) -> u32 {
        *self.connections.lock().unwrap()
    }
}

fn api_port(server: &Server) -> u16 {
    server.api.rsplit(':').next().unwrap().parse().unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn unicode_names_are_issued_as_a_labels_and_shown_in_unicode() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.cli_ok(&[
        "cert",
        "add",
        "idn",
        "--domain",
        "Bücher.example.test",
        "--domain",
        "www.example.test",
        "--wait",
    ]);
    let list = server.list();
    assert_eq!(
        list[0]["domains"],
        serde_json::json!(["xn--bcher-kva.example.test", "www.example.test"]),
        "stored and ordered as A-labels"
    );
    assert_eq!(
        list[0]["domains_unicode"],
        serde_json::json!(["bücher.example.test", "www.example.test"])
    );
    assert_eq!(list[0]["status"], "valid");
    let table = server.cli_ok(&["cert", "ls"]);
    assert!(
        table.contains("xn--bcher-kva.example.test (bücher.example.test),www.exampl"),
        "{table}"
    );
    let show = server.cli_ok(&["cert", "show", "idn"]);
    assert!(
        show.contains("xn--bcher-kva.example.test (bücher.example.test)"),
        "{show}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_never_sends_the_token_to_a_stale_port() {
    let (_pebble, _dir, mut server) = pebble_and_server(PebbleOptions::fast()).await;
    let port = api_port(&server);
    server.cli_ok(&["cert", "ls"]);

    // A clean stop removes what only a running server may leave.
    server.stop();
    for file in ["api.sock", "server.json"] {
        assert!(
            !server.data_dir.join(file).exists(),
            "{file} is removed on stop"
        );
    }
    let foreign = Recorder::listen(port);
    let out = server.cli(&["cert", "ls"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "no certfleet server is running on data directory {}",
            server.data_dir.display()
        )),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        foreign.connections(),
        0,
        "nothing connected to the old port"
    );
    assert!(foreign.bytes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_never_sends_the_token_to_a_stale_port_after_a_crash() {
    let (_pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let port = api_port(&server);
    let pid: u32 = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(server.data_dir.join("server.json")).unwrap(),
    )
    .unwrap()["pid"]
        .as_u64()
        .unwrap() as u32;
    // SIGKILL: the server cannot clean up; server.json and api.sock stay behind.
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(server.data_dir.join("api.sock").exists(), "stale socket");
    let foreign = Recorder::listen(port);
    let out = server.cli(&["cert", "ls"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing listens on") && stderr(&out).contains("api.sock"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        foreign.connections(),
        0,
        "nothing connected to the old port"
    );
    let token = server.token();
    assert!(
        !String::from_utf8_lossy(&foreign.bytes()).contains(&token),
        "the admin token never reached the foreign listener"
    );
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn second_server_on_a_data_directory_exits_naming_the_first() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let info_before = std::fs::read_to_string(server.data_dir.join("server.json")).unwrap();
    let first_pid = serde_json::from_str::<serde_json::Value>(&info_before).unwrap()["pid"]
        .as_u64()
        .unwrap();
    let mut second = child_command(Path::new(bin()))
        .arg("--data-dir")
        .arg(&server.data_dir)
        .arg("server")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--http01-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--directory", &server.directory])
        .arg("--ca-root")
        .arg(&server.ca_root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..400 {
        if let Some(s) = second.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let Some(status) = status else {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second server on the same data directory kept running");
    };
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "another certfleet process (pid {first_pid}) is already running on data directory {}",
            server.data_dir.display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(server.data_dir.join("server.json")).unwrap(),
        info_before,
        "the running server's files are untouched"
    );
    server.cli_ok(&["cert", "ls"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_tokens_say_where_they_came_from() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let out = server.cli(&["cert", "ls", "--token", "wrong"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused the token given with --token"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["cert", "ls"])
        .env("CERTFLEET_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused the token in CERTFLEET_TOKEN"),
        "{}",
        stderr(&out)
    );
    let token_file = server.data_dir.join("admin-token");
    let good = std::fs::read(&token_file).unwrap();
    std::fs::write(&token_file, "replaced\n").unwrap();
    let out = server.cli(&["cert", "ls"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "refused the admin token in {}",
            token_file.display()
        )),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&token_file).unwrap();
    let out = server.cli(&["cert", "ls"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a missing token is not 'unreachable'"
    );
    assert!(
        stderr(&out).contains(&format!(
            "there is no admin token in {}",
            token_file.display()
        )),
        "{}",
        stderr(&out)
    );
    std::fs::write(&token_file, good).unwrap();
    server.cli_ok(&["cert", "ls"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_name_the_real_problem() {
    let (_pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    // A URL without a scheme.
    let out = server.cli(&["cert", "ls", "--server", "127.0.0.1:8555", "--token", "x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "--server \"127.0.0.1:8555\" has no scheme; write it as http://127.0.0.1:8555"
        ),
        "{}",
        stderr(&out)
    );
    // The data directory's token never goes to an explicit --server.
    let out = server.cli(&["cert", "ls", "--server", &server.api]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("needs a token"), "{}", stderr(&out));
    let out = server.cli(&[
        "cert",
        "ls",
        "--server",
        &server.api,
        "--token",
        &server.token(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A data directory the user cannot read is not "no running server".
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .arg("--data-dir")
        .arg(&server.data_dir)
        .args(["cert", "ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "cannot read data directory {}: Permission denied",
            server.data_dir.display()
        )),
        "{}",
        stderr(&out)
    );
    // A data directory that does not exist.
    let missing = dir.path().join("nowhere");
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(&missing)
        .args(["cert", "ls"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the data directory does not exist"),
        "{}",
        stderr(&out)
    );
    // Flag errors are named as flags, file errors as fields.
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .args([
            "server",
            "--check-config",
            "--listen",
            "nope",
            "--contact",
            "ops@example.test",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--listen: \"nope\" is not an address:port"),
        "{err}"
    );
    assert!(
        err.contains("--contact: \"ops@example.test\" must be a mailto: URL"),
        "{err}"
    );
    assert!(!err.contains("server.listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kek_from_the_environment_that_does_not_fit_says_it_overrode_the_file() {
    let (_pebble, _dir, mut server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    server.set_env(
        "CERTFLEET_KEK",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let (code, err) = server.start_expecting_failure();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the key-encryption key from CERTFLEET_KEK (set in the environment, it takes precedence over the file {})",
            server.data_dir.join("kek").display()
        )),
        "{err}"
    );
    assert!(err.contains("unset it to use the kek file"), "{err}");
    server.set_env("CERTFLEET_KEK", "not base64!");
    let (code, err) = server.start_expecting_failure();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("CERTFLEET_KEK: key-encryption key is not valid"),
        "{err}"
    );
    server.clear_envs();
    server.restart();
    assert_eq!(server.list()[0]["status"], "valid", "nothing was lost");
}

fn write_config(path: &Path, pebble: &Pebble, domains: &[&str], key: &str) {
    let list = domains
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[issuers.default]\ndirectory = \"{}\"\nca_roots = [\"{}\"]\n\n\
         [[certificates]]\nname = \"cfg\"\ndomains = [{list}]\nkey = \"{key}\"\n",
        pebble.directory_url(),
        pebble.ca_cert_path().display()
    );
    std::fs::write(path, text).unwrap();
}

fn events_of(server: &Server, name: &str) -> Vec<serde_json::Value> {
    let (status, body) =
        server.api_request("GET", &format!("/api/v1/events?certificate={name}"), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_for_version(server: &Server, name: &str, version: u64) -> serde_json::Value {
    for _ in 0..800 {
        let list = server.list();
        if let Some(c) = list.iter().find(|c| c["name"] == name)
            && c["version"] == version
            && c["status"] == "valid"
        {
            return c.clone();
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "{name} never reached version {version}: {:?}\n{}",
        server.list(),
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn config_edits_reach_the_certificate() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certfleet.toml");
    let config_arg = config.to_str().unwrap().to_string();
    write_config(
        &config,
        &pebble,
        &["a.example.test", "b.example.test"],
        "ecdsa-p256",
    );
    let mut server = Server::start_next_to(
        &pebble,
        &dir.path().join("data"),
        &["--config", &config_arg],
    );
    wait_for_version(&server, "cfg", 1);

    // The same names in another order: nothing to do, no warning, no new version.
    write_config(
        &config,
        &pebble,
        &["b.example.test", "a.example.test"],
        "ecdsa-p256",
    );
    server.restart();
    let c = wait_for_version(&server, "cfg", 1);
    assert_eq!(c["status_reason"], serde_json::Value::Null);
    assert!(!server.log().contains("differently"), "{}", server.log());
    assert!(
        !events_of(&server, "cfg")
            .iter()
            .any(|e| e["kind"] == "changed"),
        "reordering names is not a change"
    );

    // A name added: the declaration follows the file and a new version is issued at once.
    write_config(
        &config,
        &pebble,
        &["a.example.test", "b.example.test", "c.example.test"],
        "ecdsa-p256",
    );
    server.restart();
    let c = wait_for_version(&server, "cfg", 2);
    assert_eq!(
        c["domains"],
        serde_json::json!(["a.example.test", "b.example.test", "c.example.test"])
    );
    assert_eq!(c["status_reason"], serde_json::Value::Null);
    let changed: Vec<_> = events_of(&server, "cfg")
        .into_iter()
        .filter(|e| e["kind"] == "changed")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0]["message"]
            .as_str()
            .unwrap()
            .contains("names added: c.example.test"),
        "{changed:?}"
    );
    let show: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "cfg", "--json"])).unwrap();
    assert_eq!(
        show["versions"].as_array().unwrap().len(),
        2,
        "version 1 is kept"
    );

    // A renewal setting edited: stored and planned again, no new version.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}renew_before = \"10d\"\n")).unwrap();
    server.restart();
    let mut c = serde_json::Value::Null;
    for _ in 0..400 {
        c = server.list()[0].clone();
        if c["renew_before"] == "10d" && c["in_progress"] == false {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(c["renew_before"], "10d", "{c}");
    assert_eq!(
        c["version"], 2,
        "a setting is no reason for a new version: {c}"
    );
    assert!(
        events_of(&server, "cfg").iter().any(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("renew_before (default) → 10d")),
        "the change is recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_declaration_keeps_the_old_version_until_a_new_one_exists() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certfleet.toml");
    let config_arg = config.to_str().unwrap().to_string();
    write_config(&config, &pebble, &["a.example.test"], "ecdsa-p256");
    // Keep Pebble's listener CA: the config file names it after Pebble is stopped.
    let ca = dir.path().join("pebble-ca.pem");
    std::fs::copy(pebble.ca_cert_path(), &ca).unwrap();
    let directory = pebble.directory_url();
    let ca_line = format!("ca_roots = [\"{}\"]", pebble.ca_cert_path().display());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(&ca_line, &format!("ca_roots = [\"{}\"]", ca.display())),
    )
    .unwrap();
    let mut server = Server::start_with(
        directory,
        ca.clone(),
        pebble.http01_port(),
        &dir.path().join("data"),
        &["--config", &config_arg],
    );
    wait_for_version(&server, "cfg", 1);

    // A change the CA cannot issue right now: the CA is stopped.
    write_config(&config, &pebble, &["a.example.test"], "rsa2048");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(&ca_line, &format!("ca_roots = [\"{}\"]", ca.display())),
    )
    .unwrap();
    drop(pebble);
    server.restart();
    let mut last = serde_json::Value::Null;
    for _ in 0..800 {
        last = server.list()[0].clone();
        if last["status"] == "failed" {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(last["status"], "failed", "{last}");
    assert_eq!(last["key"], "rsa2048", "the declaration follows the file");
    assert_eq!(last["version"], 1, "version 1 stays current");
    assert!(
        last["status_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("key ecdsa-p256 → rsa2048"),
        "{last}"
    );
    let export = dir.path().join("export");
    server.cli_ok(&["cert", "export", "cfg", "--dir", export.to_str().unwrap()]);
    assert!(
        export.join("fullchain.pem").exists(),
        "the old version is still exported"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_of_a_config_declared_certificate_is_refused_with_the_reason() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("certfleet.toml");
    let config_arg = config.to_str().unwrap().to_string();
    write_config(&config, &pebble, &["a.example.test"], "ecdsa-p256");
    let server = Server::start_next_to(
        &pebble,
        &dir.path().join("data"),
        &["--config", &config_arg],
    );
    wait_for_version(&server, "cfg", 1);
    let out = server.cli(&["cert", "rm", "cfg", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "certificate \"cfg\" is declared in the config file {}",
            config.display()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.list().len(), 1, "nothing was removed");
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_cancels_an_order_in_flight_cleanly() {
    // Validation sleeps (up to 15 s in Pebble) keep the order in flight while it is removed.
    let opts = PebbleOptions {
        va_nosleep: false,
        ..PebbleOptions::fast()
    };
    let (_pebble, _dir, server) = pebble_and_server(opts).await;
    server.cli_ok(&["cert", "add", "slow", "--domain", "slow.example.test"]);
    assert_eq!(server.list()[0]["status"], "issuing");
    server.cli_ok(&["cert", "rm", "slow", "--yes"]);
    assert!(server.list().is_empty());
    let events = events_of(&server, "slow");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds[0], "deleted",
        "the newest event is the removal: {kinds:?}"
    );
    assert!(
        events[0]["message"].as_str().unwrap().contains("cancelled"),
        "{events:?}"
    );
    // Whatever the CA does next, nothing more is written about the removed certificate.
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<String> = events_of(&server, "slow")
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(after, kinds, "no event after the removal");
    assert!(server.log().contains("order cancelled"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_asks_for_confirmation_on_a_terminal() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let command = format!(
        "{} --data-dir {} cert rm www",
        bin(),
        server.data_dir.display()
    );
    for (answer, removed) in [("n\n", false), ("y\n", true)] {
        // `script` gives the CLI a terminal; the answer is typed into it.
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Remove certificate www (www.example.test) with its 1 version(s)"),
            "{text}"
        );
        assert_eq!(
            server.list().is_empty(),
            removed,
            "answer {answer:?}: {text}"
        );
        assert_eq!(out.status.success(), removed, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_speaks_json_and_errors_too() {
    let (_pebble, dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let out = server.cli(&[
        "cert",
        "add",
        "www",
        "--domain",
        "www.example.test",
        "--wait",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let view = json(&out);
    assert_eq!(
        (view["name"].as_str(), view["status"].as_str()),
        (Some("www"), Some("valid"))
    );
    let out = server.cli(&["cert", "renew", "www", "--wait", "--json"]);
    assert_eq!(json(&out)["version"], 2);
    let export = dir.path().join("export");
    let out = server.cli(&[
        "--json",
        "cert",
        "export",
        "www",
        "--dir",
        export.to_str().unwrap(),
    ]);
    assert_eq!(json(&out)["files"].as_array().unwrap().len(), 5);
    let out = server.cli(&["cert", "rm", "www", "--yes", "--json"]);
    assert_eq!(json(&out)["removed"], true);

    // Errors: a JSON problem on stderr, the same exit codes.
    let out = server.cli(&["cert", "show", "nope", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let problem: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(problem["type"], "urn:certfleet:problem:not-found");
    assert_eq!(problem["exit_code"], 1);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("\"nope\" not found")
    );
    let out = server.cli(&["cert", "add", "bad", "--domain", "a..b.test", "--json"]);
    let problem: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(problem["field"], "domains[0]");
    let out = server.cli(&["cert", "ls", "--json", "--token", "wrong"]);
    assert_eq!(out.status.code(), Some(3));
    let problem: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(problem["type"], "urn:certfleet:problem:unauthorized");

    // Contradictory flags are refused; usage errors with --json are JSON too.
    let out = server.cli(&[
        "cert",
        "add",
        "x",
        "--domain",
        "x.example.test",
        "--timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(2), "--timeout needs --wait");
    assert!(stderr(&out).contains("--wait"), "{}", stderr(&out));
    let out = server.cli(&["cert", "renew", "x", "--timeout", "5", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let problem: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(problem["type"], "urn:certfleet:problem:usage");

    // Placeholders that say what goes where; times marked UTC.
    let help = server.cli_ok(&["cert", "add", "--help"]);
    assert!(
        help.contains("Usage: certfleet cert add [OPTIONS] --domain <DOMAIN> <NAME>"),
        "{help}"
    );
    server.issue("utc", "utc.example.test");
    let table = server.cli_ok(&["cert", "ls"]);
    assert!(table.lines().nth(1).unwrap().contains(" UTC "), "{table}");

    // Every config error in one run, as JSON too.
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"nope\"\n[[certificates]]\nname = \"w\"\ndomains = [\"a..b\"]\nkey = \"dsa\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path().join("d2"))
        .args(["server", "--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = stderr(&out);
    for field in [
        "server.listen",
        "certificates[0].domains[0]",
        "certificates[0].key",
    ] {
        assert!(err.contains(field), "{field} missing: {err}");
    }
}
