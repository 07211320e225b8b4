//! Bad input of every kind gets a clear error naming the problem and stores nothing.

use std::net::TcpListener;

use certfleet_testkit::{PebbleOptions, free_port};

use crate::harness::{Server, pebble_and_server, raw_http, stderr};

fn assert_nothing_stored(server: &Server) {
    assert_eq!(
        server.list(),
        Vec::<serde_json::Value>::new(),
        "nothing was stored"
    );
    let (status, events) = server.api_request("GET", "/api/v1/events", None);
    assert_eq!(status, 200);
    assert!(
        !events.contains("\"created\""),
        "no certificate was declared: {events}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_names_and_options_are_refused() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    // The event limit documented (1 to 1000) is the one enforced.
    for limit in ["0", "1001"] {
        let (status, body) =
            server.api_request("GET", &format!("/api/v1/events?limit={limit}"), None);
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("is not a number of events from 1 to 1000"),
            "{body}"
        );
    }
    let long_label = format!("{}.example.test", "a".repeat(64));
    let long_name = format!("{}.example.test", vec!["a".repeat(61); 4].join("."));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--domain".into(), "a..example.test".into()],
            "domains[0]: domain name \"a..example.test\" has an empty label",
        ),
        (
            vec!["--domain".into(), long_label.clone()],
            "has a label of 64 characters; the limit is 63",
        ),
        (
            vec!["--domain".into(), long_name.clone()],
            "characters long; the limit is 253",
        ),
        (
            vec!["--domain".into(), "foo_bar.example.test".into()],
            "contains '_'",
        ),
        (
            vec!["--domain".into(), "-foo.example.test".into()],
            "starts or ends with '-'",
        ),
        (
            vec!["--domain".into(), "www.*.example.test".into()],
            "a wildcard must be the whole leftmost label",
        ),
        (
            vec!["--domain".into(), "192.0.2.10".into()],
            "\"192.0.2.10\" is an IP address, not a DNS name",
        ),
        (vec!["--domain".into(), "::1".into()], "is an IP address"),
        (
            vec!["--domain".into(), "*.example.test".into()],
            "*.example.test is a wildcard, which only dns-01 can prove",
        ),
        (
            vec![
                "--domain".into(),
                "ok.example.test".into(),
                "--domain".into(),
                "OK.example.test".into(),
            ],
            "domains[1]: OK.example.test is listed twice (also as domains[0], ok.example.test)",
        ),
        (
            vec![
                "--domain".into(),
                "xn--bcher-kva.example.test".into(),
                "--domain".into(),
                "Bücher.example.test".into(),
            ],
            "domains[1]: Bücher.example.test is listed twice (also as domains[0], xn--bcher-kva.example.test)",
        ),
        (
            vec!["--domain".into(), "xn--zz.example.test".into()],
            "domains[0]: domain name \"xn--zz.example.test\": label \"xn--zz\" is not a valid A-label",
        ),
        (
            vec!["--domain".into(), "www.XN--A.example.test".into()],
            "label \"XN--A\" is not a valid A-label",
        ),
        (
            vec!["--domain".into(), "ab--cd.example.test".into()],
            "label \"ab--cd\" has '--' in the third and fourth positions",
        ),
        (
            vec!["--domain".into(), "bü_cher.example.test".into()],
            "label \"bü_cher\" cannot be converted to an A-label",
        ),
        (
            vec![
                "--domain".into(),
                "ok.example.test".into(),
                "--issuer".into(),
                "nope".into(),
            ],
            "issuer: unknown issuer \"nope\"; configured issuers: default",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["cert".to_string(), "add".into(), "bad".into()];
        full.extend(args.iter().cloned());
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = server.cli(&refs);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: expected {expected:?} in {:?}",
            stderr(&out)
        );
    }
    let out = server.cli(&["cert", "add", "Bad Name", "--domain", "ok.example.test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("name: certificate name \"Bad Name\" is not valid"),
        "{}",
        stderr(&out)
    );
    assert_nothing_stored(&server);

    // The API answers RFC 7807 problems naming the field.
    let (status, body) = server.api_request(
        "POST",
        "/api/v1/certificates",
        Some(r#"{"name":"k","domains":["k.example.test"],"key":"dsa1024"}"#),
    );
    assert_eq!(status, 400, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["field"], "key");
    assert_eq!(problem["status"], 400);
    assert_eq!(problem["type"], "urn:certfleet:problem:invalid-input");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("unknown key kind \"dsa1024\""),
        "{body}"
    );
    let (status, body) = server.api_request(
        "POST",
        "/api/v1/certificates",
        Some(r#"{"name":"k","domains":"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"field\":\"body\""), "{body}");
    let (status, body) = server.api_request(
        "POST",
        "/api/v1/certificates",
        Some(r#"{"name":"k","domains":["k.example.test"],"colour":"red"}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("colour"), "unknown fields are named: {body}");
    let (status, body) = server.api_request(
        "POST",
        "/api/v1/certificates",
        Some(r#"{"name":"k","domains":[]}"#),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"field\":\"domains\""), "{body}");
    assert_nothing_stored(&server);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_name_is_refused_and_the_original_kept() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("dup", "one.example.test");
    let out = server.cli(&["cert", "add", "dup", "--domain", "two.example.test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("name: certificate \"dup\" already exists"),
        "{}",
        stderr(&out)
    );
    let list = server.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["domains"], serde_json::json!(["one.example.test"]));
    assert_eq!(list[0]["version"], 1);
    let (status, body) = server.api_request(
        "POST",
        "/api/v1/certificates",
        Some(r#"{"name":"dup","domains":["three.example.test"]}"#),
    );
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_the_token_are_refused() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    let port: u16 = server.api.rsplit(':').next().unwrap().parse().unwrap();
    for (path, auth) in [
        ("/api/v1/certificates", ""),
        ("/api/v1/certificates", "Authorization: Bearer wrong\r\n"),
        (
            "/api/v1/issuers",
            "Authorization: Basic YWRtaW46YWRtaW4=\r\n",
        ),
        ("/api/v1/nothing-here", ""),
    ] {
        let (status, body) = raw_http(port, "GET", path, auth, None);
        assert_eq!(status, 401, "{path} {auth:?}: {body}");
        assert!(body.contains("bearer token"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_ca_directories_are_reported_and_nothing_stored() {
    let pebble = certfleet_testkit::Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pebble.ca_cert_path().to_path_buf();

    // Nothing listens there.
    let closed = format!("https://127.0.0.1:{}/dir", free_port());
    let server = Server::start_with(
        closed.clone(),
        ca.clone(),
        free_port(),
        &dir.path().join("closed"),
        &[],
    );
    let out = server.cli(&["cert", "add", "www", "--domain", "www.example.test"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(
        msg.contains(&format!(
            "issuer: issuer \"default\": ACME directory {closed} did not answer"
        )),
        "{msg}"
    );
    assert_nothing_stored(&server);
    drop(server);

    // An HTTPS server that answers, but not with an ACME directory (Pebble's root PEM).
    let not_acme = format!("{}/roots/0", pebble.management_url());
    let server = Server::start_with(
        not_acme.clone(),
        ca.clone(),
        free_port(),
        &dir.path().join("notacme"),
        &[],
    );
    let out = server.cli(&["cert", "add", "www", "--domain", "www.example.test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("{not_acme} is not an ACME directory")),
        "{}",
        stderr(&out)
    );
    assert_nothing_stored(&server);
    drop(server);

    // A server that accepts connections and never answers: bounded by request_timeout_secs.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!(
        "https://127.0.0.1:{}/dir",
        silent.local_addr().unwrap().port()
    );
    let config = dir.path().join("silent.toml");
    std::fs::write(
        &config,
        format!("[issuers.default]\ndirectory = \"{silent_url}\"\nca_roots = [\"{}\"]\nrequest_timeout_secs = 1\n", ca.display()),
    )
    .unwrap();
    let server = Server::start_with(
        silent_url.clone(),
        ca.clone(),
        free_port(),
        &dir.path().join("silent"),
        &["--config", config.to_str().unwrap()],
    );
    let out = server.cli(&["cert", "add", "www", "--domain", "www.example.test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no answer within 1"),
        "{}",
        stderr(&out)
    );
    assert_nothing_stored(&server);
}

#[test]
fn invalid_config_files_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[issuers.le]\ndirectory = \"http://ca.example/dir\"\n",
            "issuers.le.directory: \"http://ca.example/dir\" is not an https:// URL",
        ),
        (
            "[issuers.le]\ndirectory = \"https://ca.example/dir\"\ncontacts = [\"ops@example.com\"]\n",
            "issuers.le.contacts[0]: \"ops@example.com\" must be a mailto: URL",
        ),
        (
            "[issuers.le]\ndirectory = \"https://ca.example/dir\"\nca_roots = [\"/nonexistent/root.pem\"]\n",
            "issuers.le.ca_roots[0]: /nonexistent/root.pem",
        ),
        (
            "[server]\nlisten = \"localhost\"\n",
            "server.listen: \"localhost\" is not an address:port",
        ),
        (
            "[server]\nlsten = \"127.0.0.1:1\"\n",
            "unknown field `lsten`",
        ),
        (
            "[[certificates]]\nname = \"www\"\ndomains = [\"www.example.com\", \"bad_name.example.com\"]\n",
            "certificates[0].domains[1]: domain name \"bad_name.example.com\" contains '_'",
        ),
        (
            "[[certificates]]\nname = \"www\"\ndomains = [\"www.example.com\"]\nissuer = \"zerossl\"\n",
            "certificates[0].issuer: unknown issuer \"zerossl\"",
        ),
        (
            "[[solvers]]\ntype = \"dns-01\"\n",
            "unknown variant `dns-01`",
        ),
        (
            "[[solvers]]\nname = \"knot\"\ntype = \"rfc2136\"\nserver = \"127.0.0.1:53\"\ntsig_key = \"k\"\ntsig_secret = \"not base64!\"\n",
            "solvers[0].tsig_secret: is not base64",
        ),
        (
            "[[certificates]]\nname = \"www\"\ndomains = [\"example.com\", \"*.example.com\"]\n",
            "certificates[0].domains[1]: *.example.com is a wildcard, which only dns-01 can prove",
        ),
        (
            "[[solvers]]\nname = \"knot\"\ntype = \"rfc2136\"\nserver = \"127.0.0.1:53\"\n\
             [[certificates]]\nname = \"www\"\ndomains = [\"example.com\", \"*.example.com\"]\n\
             solvers = { \"*.example.com\" = \"knott\" }\n",
            "certificates[0].solvers.\"*.example.com\": unknown solver \"knott\"; configured solvers: http-01, knot",
        ),
        ("this is not toml", "invalid configuration"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(crate::harness::bin())
            .args([
                "--data-dir",
                dir.path().join("data").to_str().unwrap(),
                "server",
                "--check-config",
                "--config",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            stderr(&out).contains(expected),
            "{text}: expected {expected:?} in {:?}",
            stderr(&out)
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "--check-config creates nothing"
    );
}
