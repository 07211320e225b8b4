//! `certfleet check` against real nginx: ok, expiring, wrong name, untrusted, mismatch,
//! expired and unreachable, each with its exit code (issue 8, item 8).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use certfleet_testkit::nginx::NOGROUP;
use certfleet_testkit::{Nginx, NginxOptions, PebbleOptions, free_port};

use crate::fleet_harness::{current_serial, served, wait_for};
use crate::harness::{Server, pebble_and_server, stderr};

fn check(server: &Server, target: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["check", target];
    args.extend_from_slice(extra);
    let out = server.cli(&args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

/// Put a self-made certificate for www.example.test valid from `from` to `until` (days from
/// now) in place of nginx's files, and reload.
async fn serve_self_made(nginx: &Nginx, from: i64, until: i64) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["www.example.test".to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from);
    params.not_after = now + time::Duration::days(until);
    let cert = params.self_signed(&key).unwrap();
    let dir = nginx.cert_dir();
    std::fs::write(dir.join("fullchain.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("privkey.pem"), key.serialize_pem()).unwrap();
    std::os::unix::fs::chown(dir.join("privkey.pem"), None, Some(NOGROUP)).unwrap();
    std::fs::set_permissions(
        dir.join("privkey.pem"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    nginx.reload();
    let serial = certfleet_deploy::probe::describe(cert.der())
        .unwrap()
        .serial;
    wait_until_served(nginx, &serial).await;
    serial
}

/// Handshakes in a row that must see the serial: right after `nginx -s reload` an old worker
/// may still accept a connection or two with the previous certificate.
const SERVED_IN_A_ROW: u32 = 5;

async fn wait_until_served(nginx: &Nginx, serial: &str) {
    let mut in_a_row = 0;
    for _ in 0..400 {
        if served(nginx.tls_addr()).await.as_deref() == Some(serial) {
            in_a_row += 1;
            if in_a_row == SERVED_IN_A_ROW {
                return;
            }
            continue;
        }
        in_a_row = 0;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx does not serve {serial}:\n{}", nginx.error_log());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_tells_ok_expiring_wrong_name_untrusted_mismatch_expired_and_unreachable_apart() {
    let (pebble, tmp, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let nginx = Nginx::start(NginxOptions::new("www", "www.example.test"));
    server.cli_ok(&[
        "cert",
        "export",
        "www",
        "--dir",
        nginx.cert_dir().to_str().unwrap(),
    ]);
    nginx.reload();
    let first = current_serial(&server, "www");
    wait_until_served(&nginx, &first).await;
    let root = tmp.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.root_pem().await).unwrap();
    let addr = nginx.tls_addr().to_string();
    let trusted = [
        "--servername",
        "www.example.test",
        "--ca-file",
        root.to_str().unwrap(),
    ];

    let (code, out, err) = check(&server, &addr, &trusted);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Result:      OK"), "{out}");
    assert!(out.contains(&format!("Serial:      {first}")), "{out}");
    assert!(
        out.contains("the current version of www (version 1)"),
        "{out}"
    );
    let (_, json, _) = check(&server, &addr, &[&trusted[..], &["--json"]].concat());
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["result"], "ok");
    assert_eq!(json["chain"]["verified"], true);
    assert_eq!(json["certfleet"]["status"], "match");
    assert_eq!(json["names"], serde_json::json!(["www.example.test"]));
    assert!(json["days_left"].as_i64().unwrap() > 300, "{json}");

    let (code, out, _) = check(
        &server,
        &addr,
        &[&trusted[..], &["--warn-days", "100000"]].concat(),
    );
    assert_eq!(code, Some(9), "{out}");
    assert!(out.contains("EXPIRING"), "{out}");

    let (code, out, _) = check(
        &server,
        &addr,
        &[
            "--servername",
            "other.example.test",
            "--ca-file",
            root.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(7), "{out}");
    assert!(out.contains("not valid for other.example.test"), "{out}");

    let (code, out, _) = check(&server, &addr, &["--servername", "www.example.test"]);
    assert_eq!(code, Some(7), "Pebble's root is not a system root: {out}");
    assert!(out.contains("does not lead to a trusted root"), "{out}");

    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let second = current_serial(&server, "www");
    let (code, out, err) = check(&server, &addr, &trusted);
    assert_eq!(code, Some(8), "{out}");
    assert!(
        out.contains(&format!(
            "current version of www is version 2, serial {second}"
        )),
        "{out}"
    );
    assert!(err.contains("MISMATCH"), "{err}");

    serve_self_made(&nginx, -30, -1).await;
    let (code, out, _) = check(&server, &addr, &trusted);
    assert_eq!(code, Some(6), "{out}");
    assert!(out.contains("EXPIRED"), "{out}");

    let closed = format!("127.0.0.1:{}", free_port());
    let (code, out, err) = check(&server, &closed, &["--timeout", "2"]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains(&closed), "{err}");
    wait_for("nothing", Duration::from_millis(1), || true).await;
}
