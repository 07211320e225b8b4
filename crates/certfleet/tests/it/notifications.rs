//! Events reach people: a real SMTP sink (aiosmtpd, STARTTLS + AUTH) and a local webhook
//! receiver get the expected events and no key material; a receiver that fails or hangs
//! delays no issuance; short-lived certificates get their `expiring` event once.

use std::path::Path;
use std::time::Duration;

use certfleet_testkit::{
    Answer, Pebble, PebbleOptions, SmtpSink, SmtpSinkOptions, WebhookReceiver,
};

use crate::harness::Server;

const SMTP_PASSWORD: &str = "smtp-pass-5d1c0e";
const HOOK_SECRET: &str = "hook-secret-93fa2b";

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("certfleet.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A mail's header, with folded lines joined.
fn header(mail: &str, name: &str) -> String {
    let head = mail
        .split("\r\n\r\n")
        .next()
        .unwrap_or(mail)
        .replace("\r\n", "\n");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    unfolded
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_default()
        .to_string()
}

fn kinds(received: &[certfleet_testkit::Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every line of base64 in a PEM private key, to look for in what receivers got.
fn key_lines(server: &Server, name: &str) -> Vec<String> {
    let (status, bundle) =
        server.api_request("GET", &format!("/api/v1/certificates/{name}/bundle"), None);
    assert_eq!(status, 200, "{bundle}");
    let bundle: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    bundle["key_pem"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_reach_a_real_smtp_sink_and_a_webhook_without_key_material() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let sink = SmtpSink::start(SmtpSinkOptions {
        starttls: true,
        auth: Some(("certfleet".into(), SMTP_PASSWORD.into())),
        ..SmtpSinkOptions::default()
    })
    .await;
    let hook = WebhookReceiver::start(Answer::Status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("smtp-password");
    std::fs::write(&password_file, format!("{SMTP_PASSWORD}\n")).unwrap();
    let smtp = |name: &str, to: &str, extra: &str| {
        format!(
            "[[notifiers]]\ntype = \"smtp\"\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\n\
             username = \"certfleet\"\npassword_file = \"{}\"\n\
             from = \"certfleet <certfleet@example.test>\"\nto = [\"{to}\"]\nca_roots = [\"{}\"]\n{extra}\n",
            sink.port(),
            password_file.display(),
            sink.ca_cert_path().display()
        )
    };
    let config = format!(
        "[[notifiers]]\ntype = \"webhook\"\nname = \"chat\"\nurl = \"{}\"\n\
         events = [\"issued\", \"renewed\", \"imported\", \"renewal_failed\", \"expiring\"]\n\n{}{}",
        hook.url(&format!("/services/T0/B0/{HOOK_SECRET}")),
        smtp(
            "mail",
            "ops@example.test",
            "events = [\"issued\", \"renewed\"]"
        ),
        smtp(
            "digest",
            "digest@example.test",
            "events = [\"issued\"]\ndigest_secs = 8"
        ),
    );
    let config = write_config(dir.path(), &config);
    let server = Server::start_next_to(&pebble, &dir.path().join("data"), &["--config", &config]);

    server.cli_ok(&["cert", "add", "www", "--domain", "www.example.test"]);
    server.cli_ok(&["cert", "add", "api", "--domain", "api.example.test"]);
    server.wait_all_valid();
    server.cli_ok(&["cert", "renew", "www", "--wait"]);

    let received = hook
        .wait_until("issued ×2 and renewed", |r| {
            let k = kinds(r);
            k.iter().filter(|k| *k == "issued").count() == 2 && k.contains(&"renewed".to_string())
        })
        .await;
    assert!(
        kinds(&received)
            .iter()
            .all(|k| k == "issued" || k == "renewed"),
        "the filter holds: {:?}",
        kinds(&received)
    );
    let renewed = received
        .iter()
        .map(|r| r.json())
        .find(|j| j["event"] == "renewed")
        .unwrap();
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "www", "--json"])).unwrap();
    assert_eq!(renewed["certificate"], "www");
    assert_eq!(renewed["severity"], "info");
    assert_eq!(renewed["details"]["version"], 2);
    assert_eq!(
        renewed["details"]["serial"],
        detail["versions"][1]["serial"]
    );
    let text = renewed["text"].as_str().unwrap();
    assert!(
        text.starts_with("[certfleet] www renewed: issued version 2 serial "),
        "a chat line: {text}"
    );
    assert_eq!(
        received[0]
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .unwrap()
            .1,
        "application/json"
    );

    let mails = sink
        .wait_until("3 mails to ops@ and a digest", |m| {
            let to = |who: &str| m.iter().filter(|x| header(x, "To").contains(who)).count();
            to("ops@example.test") == 3 && to("digest@example.test") == 1
        })
        .await;
    let subjects: Vec<String> = mails
        .iter()
        .filter(|m| header(m, "To").contains("ops@"))
        .map(|m| header(m, "Subject"))
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("[certfleet] www renewed: issued version 2")),
        "{subjects:?}"
    );
    let digest = mails
        .iter()
        .find(|m| header(m, "To").contains("digest@"))
        .unwrap();
    assert_eq!(header(digest, "Subject"), "[certfleet] 2 events: 2 issued");
    assert!(digest.contains("certificate:    www") && digest.contains("certificate:    api"));
    assert!(header(digest, "From").contains("certfleet@example.test"));

    // No key, token or password anywhere a person or a log could see it.
    let mut secrets: Vec<String> = key_lines(&server, "www");
    secrets.extend(key_lines(&server, "api"));
    secrets.extend([
        "PRIVATE KEY".to_string(),
        server.token(),
        SMTP_PASSWORD.to_string(),
    ]);
    let bodies: Vec<String> = received.iter().map(|r| r.body.clone()).collect();
    for (what, text) in bodies
        .iter()
        .map(|b| ("webhook body", b))
        .chain(mails.iter().map(|m| ("mail", m)))
    {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} holds a secret: {text}"
            );
        }
    }
    let log = server.log();
    for secret in secrets.iter().chain([&HOOK_SECRET.to_string()]) {
        assert!(
            !log.contains(secret.as_str()),
            "the server log holds a secret ({secret})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_or_hanging_receiver_delays_no_issuance() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let hang = WebhookReceiver::start(Answer::Hang).await;
    let failing = WebhookReceiver::start(Answer::Status(500)).await;
    let good = WebhookReceiver::start(Answer::Status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let hook = |name: &str, url: String, extra: &str| {
        format!("[[notifiers]]\ntype = \"webhook\"\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
    };
    let config = [
        hook("hangs", hang.url("/"), "timeout_secs = 3600"),
        hook(
            "fails",
            failing.url("/"),
            "max_attempts = 3\nevents = [\"issued\"]",
        ),
        hook("works", good.url("/"), ""),
    ]
    .concat();
    let config = write_config(dir.path(), &config);
    let server = Server::start_next_to(&pebble, &dir.path().join("data"), &["--config", &config]);

    server.cli_ok(&[
        "cert",
        "add",
        "www",
        "--domain",
        "www.example.test",
        "--wait",
    ]);
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    // Both issuances are done, and the hanging receiver has been asked and never answered.
    let asked = hang.wait_until("a first request", |r| !r.is_empty()).await;
    assert_eq!(hang.answered(), 0);
    assert_eq!(
        asked.len(),
        1,
        "its queue waits on the first notification; the rest wait behind it"
    );
    assert_eq!(server.list()[0]["version"], 2);

    let got = good
        .wait_until("issued and renewed", |r| {
            let k = kinds(r);
            k.contains(&"issued".to_string()) && k.contains(&"renewed".to_string())
        })
        .await;
    assert!(
        kinds(&got).contains(&"created".to_string()),
        "{:?}",
        kinds(&got)
    );

    let tries = failing
        .wait_until("three attempts at the issued event", |r| r.len() >= 3)
        .await;
    let ids: Vec<i64> = tries
        .iter()
        .map(|r| r.json()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![ids[0]; 3], "the same event, retried: {ids:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        failing.received().len(),
        3,
        "max_attempts bounds the retries"
    );
    let log = server.log();
    assert!(
        log.contains("notification given up"),
        "the give-up is logged"
    );
    assert!(!log.contains(&failing.url("/")), "the URL is not logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_certificates_get_one_expiring_event_at_a_sixth_of_their_life() {
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(30),
        ..PebbleOptions::fast()
    })
    .await;
    let hook = WebhookReceiver::start(Answer::Status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[notifiers]]\ntype = \"webhook\"\nurl = \"{}\"\nevents = [\"expiring\"]\n",
        hook.url("/")
    );
    let config = write_config(dir.path(), &config);
    let mut server =
        Server::start_next_to(&pebble, &dir.path().join("data"), &["--config", &config]);
    // Renewed with 1 s left, so the version lives past its 1/6 threshold (5 s left).
    server.cli_ok(&[
        "cert",
        "add",
        "short",
        "--domain",
        "short.example.test",
        "--renew-before",
        "1s",
        "--wait",
    ]);
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "short", "--json"])).unwrap();
    let unix = |field: &str| {
        let text = detail["versions"][0][field].as_str().unwrap();
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    let (not_before, not_after) = (unix("not_before"), unix("not_after"));
    let threshold_at = not_after - (not_after - not_before) / 6;

    let got = hook
        .wait_until("an expiring event", |r| !r.is_empty())
        .await;
    let event = got[0].json();
    assert_eq!(event["certificate"], "short");
    assert_eq!(event["details"]["threshold"], "1/6");
    assert_eq!(event["severity"], "error", "less than a day left");
    let events: Vec<serde_json::Value> = serde_json::from_str(
        &server.cli_ok(&["events", "--cert", "short", "--kind", "expiring", "--json"]),
    )
    .unwrap();
    assert_eq!(events.len(), 1);
    let at = events[0]["at"].as_i64().unwrap();
    assert!(
        at >= threshold_at,
        "not before the threshold ({at} < {threshold_at})"
    );
    assert!(at < not_after, "before expiry");

    // Recorded once per version: a restart does not report it again.
    server.restart();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events: Vec<serde_json::Value> = serde_json::from_str(
        &server.cli_ok(&["events", "--cert", "short", "--kind", "expiring", "--json"]),
    )
    .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(hook.received().len(), 1);
    let table = server.cli_ok(&["events", "--since", "5m", "--kind", "expiring"]);
    assert!(
        table.contains("short") && table.contains("threshold: 1/6 of its lifetime left"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_renewal_is_a_renewal_failed_event_with_its_streak() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let hook = WebhookReceiver::start(Answer::Status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[notifiers]]\ntype = \"webhook\"\nurl = \"{}\"\nmin_severity = \"error\"\n",
        hook.url("/")
    );
    let config = write_config(dir.path(), &config);
    let server = Server::start_next_to(&pebble, &dir.path().join("data"), &["--config", &config]);
    server.cli_ok(&[
        "cert",
        "add",
        "www",
        "--domain",
        "www.example.test",
        "--wait",
    ]);
    drop(pebble); // the CA goes away
    for _ in 0..2 {
        let out = server.cli(&["cert", "renew", "www", "--wait"]);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{}",
            crate::harness::stderr(&out)
        );
    }
    let events: Vec<serde_json::Value> = serde_json::from_str(&server.cli_ok(&[
        "events",
        "--cert",
        "www",
        "--kind",
        "renewal_failed",
        "--kind",
        "failed",
        "--json",
    ]))
    .unwrap();
    let summary: Vec<(&str, u64)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["details"]["failure_streak"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("renewal_failed", 2), ("renewal_failed", 1)],
        "newest first"
    );
    assert_eq!(
        events[0]["details"]["version"], 1,
        "the version still served"
    );
    let got = hook.wait_until("two failures", |r| r.len() >= 2).await;
    assert!(
        kinds(&got).iter().all(|k| k == "renewal_failed"),
        "min_severity = error lets only failures through: {:?}",
        kinds(&got)
    );
    assert!(
        got[0].json()["text"]
            .as_str()
            .unwrap()
            .starts_with("[certfleet] ERROR: www renewal failed: ")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_goes_over_implicit_tls_with_auth_and_a_wrong_password_is_given_up_not_leaked() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let sink = SmtpSink::start(SmtpSinkOptions {
        implicit_tls: true,
        auth: Some(("certfleet".into(), SMTP_PASSWORD.into())),
        ..SmtpSinkOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let entry = |name: &str, password: &str| {
        format!(
            "[[notifiers]]\ntype = \"smtp\"\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"tls\"\nusername = \"certfleet\"\npassword_env = \"{password}\"\n\
             from = \"certfleet@example.test\"\nto = [\"{name}@example.test\"]\nca_roots = [\"{}\"]\n\
             events = [\"issued\"]\nmax_attempts = 1\ntimeout_secs = 3\n",
            sink.port(),
            sink.ca_cert_path().display()
        )
    };
    let config = [
        entry("right", "GOOD_SMTP_PASSWORD"),
        entry("wrong", "BAD_SMTP_PASSWORD"),
    ]
    .concat();
    let config = write_config(dir.path(), &config);
    let mut server = Server::start_env(
        pebble.directory_url(),
        pebble.ca_cert_path().to_path_buf(),
        pebble.http01_port(),
        &dir.path().join("data"),
        &["--config", &config],
        &[
            ("GOOD_SMTP_PASSWORD", SMTP_PASSWORD),
            ("BAD_SMTP_PASSWORD", "not-the-password-77"),
        ],
    );
    server.cli_ok(&[
        "cert",
        "add",
        "www",
        "--domain",
        "www.example.test",
        "--wait",
    ]);
    for _ in 0..300 {
        if !sink.messages().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = sink.messages();
    assert!(
        !mails.is_empty(),
        "no mail; server log:\n{}\nsink log:\n{}",
        server.log(),
        sink.log()
    );
    assert!(header(&mails[0], "To").contains("right@example.test"));
    assert!(header(&mails[0], "Subject").starts_with("[certfleet] www issued: issued version 1"));
    for _ in 0..200 {
        if server.log().contains("notification given up") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("notification given up"))
        .unwrap_or_else(|| panic!("the failed delivery is logged:\n{log}"));
    assert!(refusal.contains("notifier=\"wrong\""), "{refusal}");
    assert!(!log.contains("not-the-password-77") && !log.contains(SMTP_PASSWORD));
    assert_eq!(sink.messages().len(), 1, "nothing for the wrong password");
    server.stop();
}
