//! Renewal by itself against real Pebble: inside the ARI window with `replaces` (RFC 9773),
//! with the `shortlived` profile, and the renewal settings' errors.

use std::time::{Duration, Instant};

use certfleet_testkit::proxy::{Action, FaultProxy, Match, Rule};
use certfleet_testkit::{Pebble, PebbleOptions, PebbleRelease};

use crate::harness::{Server, stderr};

/// Unix seconds now.
pub fn unix_now() -> i64 {
    certfleet_core::time::now()
}

/// Unix seconds of an RFC 3339 time as the API prints it.
pub fn unix(rfc3339: &serde_json::Value) -> i64 {
    let text = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {rfc3339}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

/// Poll `cert show NAME --json` (every 200 ms, at most `secs`) until `done` holds.
pub fn wait_for(
    server: &Server,
    name: &str,
    secs: u64,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let detail: serde_json::Value =
            serde_json::from_str(&server.cli_ok(&["cert", "show", name, "--json"])).unwrap();
        if done(&detail) {
            return detail;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: condition not reached within {secs} s: {detail:#}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server next to `pebble` that talks to the CA through `proxy`.
pub fn server_via(
    proxy: &FaultProxy,
    pebble: &Pebble,
    dir: &std::path::Path,
    extra: &[&str],
) -> Server {
    Server::start_with(
        proxy.directory_url(),
        pebble.ca_cert_path().to_path_buf(),
        pebble.http01_port(),
        &dir.join("data"),
        extra,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn renews_by_itself_inside_the_ari_window_with_replaces() {
    let pebble = Pebble::start(PebbleOptions {
        release: PebbleRelease::Trixie,
        validity_secs: Some(300),
        ..PebbleOptions::fast()
    })
    .await;
    let proxy = FaultProxy::start(&pebble).await;
    // Not before 1/20 of the lifetime (15 s): a CA answering "now" cannot cause a loop.
    let (start, end) = (unix_now() + 20, unix_now() + 30);
    proxy.add(
        Rule::new(
            Match::get("renewalInfo/"),
            Action::ari_window(start, end, Some("3600")),
        )
        .times(1),
    );
    let dir = tempfile::tempdir().unwrap();
    let server = server_via(&proxy, &pebble, dir.path(), &[]);
    server.issue("ari", "ari.example.test");
    let shown = wait_for(&server, "ari", 10, |d| d["ari_window"].is_object());
    assert_eq!(unix(&shown["ari_window"]["start"]), start);
    assert_eq!(unix(&shown["ari_window"]["end"]), end);
    let next = unix(&shown["next_attempt"]);
    assert!(
        (start..end).contains(&next),
        "planned inside the window: {shown:#}"
    );

    // No API call from here on: the scheduler renews it.
    let renewed = wait_for(&server, "ari", 40, |d| d["version"] == 2);
    let issued_at = unix(&renewed["versions"][1]["issued_at"]);
    assert!(
        issued_at >= start && issued_at <= end + 3,
        "renewed at {issued_at}, window {start}..{end}"
    );
    let orders: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| Match::post("/order-plz").matches(r))
        .collect();
    assert_eq!(orders.len(), 2, "one order per version");
    assert!(!orders[0].payload.contains("replaces"));
    assert!(
        orders[1].payload.contains("\"replaces\""),
        "{}",
        orders[1].payload
    );
    assert!(
        orders[1].body.contains("\"replaces\""),
        "Pebble accepted it: {}",
        orders[1].body
    );
    assert_eq!(renewed["versions"][1]["replaces"], 1);
    let events = server.events();
    let renewal = events.iter().find(|e| e["kind"] == "renewed").unwrap();
    assert!(
        renewal["message"]
            .as_str()
            .unwrap()
            .contains("(named in the order's ARI `replaces`)"),
        "{renewal}"
    );
}

fn profiles() -> String {
    r#""profiles": {"default": {"description": "ninety days", "validityPeriod": 7776000}, "shortlived": {"description": "twenty seconds", "validityPeriod": 20}}"#.into()
}

#[tokio::test(flavor = "multi_thread")]
async fn shortlived_profile_gives_its_lifetime_and_renews_by_itself() {
    let pebble = Pebble::start(PebbleOptions {
        release: PebbleRelease::Sid,
        extra_config: vec![profiles()],
        ..PebbleOptions::fast()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&pebble, &dir.path().join("data"));
    server.cli_ok(&[
        "cert",
        "add",
        "short",
        "--domain",
        "short.example.test",
        "--profile",
        "shortlived",
        "--wait",
    ]);
    let list = server.list();
    assert_eq!(list[0]["profile"], "shortlived");
    let detail = wait_for(&server, "short", 1, |_| true);
    let v1 = &detail["versions"][0];
    let lifetime = unix(&v1["not_after"]) - unix(&v1["not_before"]);
    assert!(
        (18..=21).contains(&lifetime),
        "the profile's 20 s lifetime: {lifetime}"
    );

    // Pebble 2.10 suggests renewing between a second after issuance and expiry (ARI); the
    // scheduler renews it by itself, at least twice within 40 s.
    let renewed = wait_for(&server, "short", 40, |d| d["version"].as_u64() >= Some(3));
    for v in renewed["versions"].as_array().unwrap() {
        let lifetime = unix(&v["not_after"]) - unix(&v["not_before"]);
        assert!((18..=21).contains(&lifetime), "{v}");
    }
    for pair in renewed["versions"].as_array().unwrap().windows(2) {
        assert!(
            unix(&pair[1]["not_before"]) < unix(&pair[0]["not_after"]),
            "renewed before expiry: {pair:?}"
        );
    }

    // An unknown profile is refused with the CA's own list.
    let out = server.cli(&[
        "cert",
        "add",
        "nope",
        "--domain",
        "nope.example.test",
        "--profile",
        "tlsserver",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown profile \"tlsserver\"; the CA offers: default, shortlived"),
        "{}",
        stderr(&out)
    );

    // In the config file, an issuer's unknown profile stops the start, naming the field.
    let config = dir.path().join("bad-issuer-profile.toml");
    std::fs::write(
        &config,
        format!(
            "[issuers.default]\ndirectory = \"{}\"\nca_roots = [\"{}\"]\nprofile = \"bogus\"\n",
            pebble.directory_url(),
            pebble.ca_cert_path().display()
        ),
    )
    .unwrap();
    let mut child = certfleet_testkit::child_command(std::path::Path::new(crate::harness::bin()))
        .arg("--data-dir")
        .arg(dir.path().join("data2"))
        .args(["server", "--config"])
        .arg(&config)
        .args([
            "--listen",
            &format!("127.0.0.1:{}", certfleet_testkit::free_port()),
        ])
        .args([
            "--http01-listen",
            &format!("127.0.0.1:{}", certfleet_testkit::free_port()),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..400 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    if status.is_none() {
        let _ = child.kill();
        panic!("the server started with an unknown issuer profile");
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.unwrap().code(), Some(1), "{err}");
    assert!(
        err.contains("issuers.default.profile: unknown profile \"bogus\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_renewal_settings_are_refused_naming_the_field() {
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(3600),
        ..PebbleOptions::fast()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Config file: every bad value names its field.
    for (value, field, message) in [
        ("-7d", "certificates[0].renew_before", "is negative"),
        ("150%", "certificates[0].renew_before", "is over 99%"),
        ("0d", "certificates[0].renew_before", "is zero"),
        (
            "7 days",
            "certificates[0].renew_before",
            "is not a duration",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(
            &config,
            format!("[[certificates]]\nname = \"w\"\ndomains = [\"w.example.test\"]\nrenew_before = \"{value}\"\n"),
        )
        .unwrap();
        let out = std::process::Command::new(crate::harness::bin())
            .args([
                "server",
                "--check-config",
                "--config",
                config.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{value}");
        let err = stderr(&out);
        assert!(
            err.contains(field) && err.contains(value) && err.contains(message),
            "{value}: {err}"
        );
    }
    let config = dir.path().join("bad-profile.toml");
    std::fs::write(
        &config,
        "[issuers.default]\ndirectory = \"https://ca.example/dir\"\nprofile = \"short lived\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .args([
            "server",
            "--check-config",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("issuers.default.profile"),
        "{}",
        stderr(&out)
    );

    // API and CLI: the same words, field named, nothing stored.
    let server = Server::start(&pebble, &dir.path().join("data"));
    for (args, field, message) in [
        (vec!["--renew-before", "-1h"], "renew_before", "is negative"),
        (
            vec!["--renew-before", "101%"],
            "renew_before",
            "is over 99%",
        ),
        (
            vec!["--profile", "no/slashes"],
            "profile",
            "is not a profile name",
        ),
        (
            vec!["--profile", "shortlived"],
            "profile",
            "the CA offers no ACME profiles",
        ),
    ] {
        let mut all = vec!["cert", "add", "w", "--domain", "w.example.test"];
        all.extend(args.iter().copied());
        let out = server.cli(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(message), "{args:?}: {err}");
        let (status, body) = server.api_request(
            "POST",
            "/api/v1/certificates",
            Some(&format!(
                "{{\"name\":\"w\",\"domains\":[\"w.example.test\"],\"{}\":\"{}\"}}",
                field,
                args[1].replace('"', "")
            )),
        );
        assert_eq!(status, 400, "{body}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["field"], field, "{body}");
    }
    assert!(server.list().is_empty(), "nothing stored");

    // A renew_before longer than the lifetime the CA gave: said at issuance, the lifetime
    // rule applies instead.
    server.cli_ok(&[
        "cert",
        "add",
        "long",
        "--domain",
        "long.example.test",
        "--renew-before",
        "2h",
        "--wait",
    ]);
    let detail = wait_for(&server, "long", 10, |d| d["next_attempt"].is_string());
    let events = server.events();
    let warning = events
        .iter()
        .find(|e| e["kind"] == "policy_warning")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("renew_before 2h is not shorter than the certificate's lifetime"),
        "{warning}"
    );
    let v = &detail["versions"][0];
    let lifetime = unix(&v["not_after"]) - unix(&v["not_before"]);
    let next = unix(&detail["next_attempt"]) - unix(&v["not_before"]);
    // Under 10 days of lifetime: renewed when half is left, less the jitter (1/20).
    assert!(
        next >= lifetime / 2 - lifetime / 20 && next <= lifetime / 2,
        "the lifetime rule: {next} of {lifetime}"
    );
}
