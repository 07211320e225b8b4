//! The API over TLS with an internal CA: the fingerprint is printed and shown by `server info`,
//! the CLI and agents connect with it pinned, and a wrong fingerprint is refused plainly
//! (issue 8, item 1).

use std::process::{Command, Stdio};

use rustls_pki_types::pem::PemObject;

use certfleet_testkit::{Nginx, NginxOptions, PebbleOptions, free_port};

use crate::fleet_harness::{AgentProc, AgentSpec, agent_token, tls_endpoint, tls_server};
use crate::harness::{bin, stderr};

/// A fingerprint that belongs to nothing.
const WRONG: &str = "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_and_agents_pin_the_servers_fingerprint_and_a_wrong_one_is_refused() {
    let (_pebble, tmp, mut server) = tls_server(PebbleOptions::fast()).await;
    let (url, fingerprint) = tls_endpoint(&server);
    assert!(
        server.stdout().contains(&format!(
            "REST API over TLS at {url}; clients pin the fingerprint {fingerprint}"
        )),
        "printed at start: {}",
        server.stdout()
    );
    let ca = server.data_dir.join("tls/ca.pem");
    let ca_der = rustls_pki_types::CertificateDer::from_pem_file(&ca).unwrap();
    assert_eq!(
        format!("SHA256:{}", certfleet_deploy::probe::fingerprint(&ca_der)),
        fingerprint
    );
    let info = server.cli_ok(&["server", "info"]);
    assert!(
        info.contains(&fingerprint) && info.contains("pin = "),
        "{info}"
    );

    let admin = server.token();
    let remote = |extra: &[&str]| {
        let mut args = vec![
            "cert",
            "ls",
            "--server",
            url.as_str(),
            "--token",
            admin.as_str(),
        ];
        args.extend_from_slice(extra);
        Command::new(bin())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = remote(&["--server-pin", &fingerprint]);
    assert!(out.status.success(), "pinned: {}", stderr(&out));
    let out = remote(&["--server-ca-file", ca.to_str().unwrap()]);
    assert!(out.status.success(), "CA file: {}", stderr(&out));
    let out = remote(&[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "not trusted by the system roots"
    );
    let out = remote(&["--server-pin", WRONG]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("does not match the pinned fingerprint {WRONG}"))
            && err.contains("it presented")
            && err.contains(&fingerprint),
        "{err}"
    );

    server.cli_ok(&[
        "cert",
        "add",
        "www",
        "--domain",
        "www.example.test",
        "--label",
        "app=www",
        "--wait",
    ]);
    let nginx = Nginx::start(NginxOptions::new("www", "www.example.test"));
    let token = agent_token(&server, "web-1", "app=www");
    let spec = AgentSpec::for_nginx(&server, "web-1", &token, &nginx);
    let agent = AgentProc::configure(tmp.path(), &spec);
    let out = agent.once();
    assert!(out.status.success(), "pinned agent: {}", stderr(&out));

    let mut wrong = AgentSpec::for_nginx(&server, "web-2", &token, &nginx);
    wrong.trust = format!("pin = {WRONG:?}");
    let out = AgentProc::configure(tmp.path(), &wrong).once();
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("does not match the pinned fingerprint"),
        "{err}"
    );

    let mut plain = AgentSpec::for_nginx(&server, "web-3", &token, &nginx);
    plain.server = format!("http://10.1.2.3:{}", free_port());
    let out = AgentProc::configure(tmp.path(), &plain).once();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));

    server.restart();
    assert_eq!(
        tls_endpoint(&server).1,
        fingerprint,
        "the internal CA is kept across restarts"
    );
}

#[test]
fn plain_http_off_loopback_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["server", "--listen", &format!("0.0.0.0:{}", free_port())])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("plain HTTP is allowed on loopback only") && err.contains("--tls-listen"),
        "{err}"
    );
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["server", "--tls-cert", "/nonexistent.pem"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_listener_with_its_own_certificate_is_pinned_by_that_certificate() {
    let pebble = certfleet_testkit::Pebble::start(PebbleOptions::fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (tmp.path().join("api.pem"), tmp.path().join("api-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let tls = format!("127.0.0.1:{}", free_port());
    let server = crate::harness::Server::start_next_to(
        &pebble,
        &tmp.path().join("data"),
        &[
            "--tls-listen",
            &tls,
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let (url, fingerprint) = tls_endpoint(&server);
    assert_eq!(
        fingerprint,
        format!(
            "SHA256:{}",
            certfleet_deploy::probe::fingerprint(cert.der())
        )
    );
    assert!(
        !server.data_dir.join("tls/ca.pem").exists(),
        "no internal CA when a certificate is given"
    );
    let out = Command::new(bin())
        .args(["cert", "ls", "--server", &url, "--token", &server.token()])
        .args(["--server-pin", &fingerprint])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
