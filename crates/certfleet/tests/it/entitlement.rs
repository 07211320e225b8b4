//! Who gets what: agents only the certificates their selector matches, viewers no key bytes,
//! revoked and missing tokens nothing (issue 8, item 2).

use base64::Engine as _;
use certfleet_testkit::PebbleOptions;

use crate::fleet_harness::agent_token;
use crate::harness::{Server, pebble_and_server, raw_http};

fn port(server: &Server) -> u16 {
    server.api.rsplit(':').next().unwrap().parse().unwrap()
}

fn get(server: &Server, token: Option<&str>, path: &str) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    raw_http(port(server), "GET", path, &auth, None)
}

/// Panic if `body` holds any part of the private key `key_pem`.
fn assert_no_key_bytes(what: &str, body: &str, key_pem: &str) {
    assert!(
        !body.contains("PRIVATE KEY"),
        "{what}: a PEM private key in {body}"
    );
    let b64: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!body.contains(&b64[..32]), "{what}: key bytes in {body}");
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .unwrap();
    let hex: String = der[der.len() - 24..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!body.contains(&hex), "{what}: key bytes (hex) in {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_viewers_and_refused_tokens_get_no_key_bytes_outside_their_rights() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    for (name, label) in [("www", "app=www"), ("api", "app=api")] {
        let domain = format!("{name}.example.test");
        server.cli_ok(&[
            "cert", "add", name, "--domain", &domain, "--label", label, "--wait",
        ]);
    }
    let admin = server.token();
    let (status, bundle) = get(&server, Some(&admin), "/api/v1/certificates/api/bundle");
    assert_eq!(status, 200);
    let api_key = serde_json::from_str::<serde_json::Value>(&bundle).unwrap()["key_pem"]
        .as_str()
        .unwrap()
        .to_string();

    let agent = agent_token(&server, "web-1", "app=www");
    let viewer = server
        .cli_ok(&["token", "create", "dash", "--role", "viewer"])
        .trim()
        .to_string();
    let revoked = agent_token(&server, "web-old", "app=api");
    server.cli_ok(&["agent", "token", "revoke", "web-old"]);

    // The agent gets its own bundle...
    let (status, body) = get(&server, Some(&agent), "/api/v1/certificates/www/bundle");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("PRIVATE KEY"), "positive control");
    // ...and for another certificate exactly the answer for one that does not exist.
    let outside = get(&server, Some(&agent), "/api/v1/certificates/api/bundle");
    let missing = get(&server, Some(&agent), "/api/v1/certificates/nope/bundle");
    assert_eq!(outside.0, 404, "{}", outside.1);
    assert_eq!(
        outside.1.replace("\\\"api\\\"", "X"),
        missing.1.replace("\\\"nope\\\"", "X"),
        "the same 404 as a missing certificate"
    );
    let admin_missing = get(&server, Some(&admin), "/api/v1/certificates/nope/bundle");
    assert_eq!(
        missing, admin_missing,
        "agents see what admins see for a missing one"
    );
    assert_no_key_bytes("agent outside its selector", &outside.1, &api_key);

    let (status, body) = get(&server, Some(&agent), "/api/v1/certificates");
    assert_eq!(status, 403, "agents use their own routes: {body}");
    let (status, body) = get(&server, Some(&agent), "/api/v1/agent/state");
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = state["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["www"],
        "the agent's state lists only what it selects"
    );

    let (status, body) = get(&server, Some(&viewer), "/api/v1/certificates/api/bundle");
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("viewer tokens cannot read private keys"),
        "{body}"
    );
    assert_no_key_bytes("viewer", &body, &api_key);
    let (status, body) = get(&server, Some(&viewer), "/api/v1/certificates/api");
    assert_eq!(status, 200, "viewers read certificates: {body}");
    assert_no_key_bytes("viewer reading a certificate", &body, &api_key);
    let posted = raw_http(
        port(&server),
        "POST",
        "/api/v1/certificates/api/renew",
        &format!("Authorization: Bearer {viewer}\r\n"),
        None,
    );
    assert_eq!(posted.0, 403, "viewers are read-only: {}", posted.1);

    for (what, token) in [
        ("revoked", Some(revoked.as_str())),
        ("no", None),
        ("unknown", Some("cf_not-a-real-token")),
    ] {
        let (status, body) = get(&server, token, "/api/v1/certificates/api/bundle");
        assert_eq!(status, 401, "{what} token: {body}");
        assert_no_key_bytes(&format!("{what} token"), &body, &api_key);
    }
    let out = server.cli(&["cert", "ls", "--token", &revoked]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the CLI says the token was refused"
    );

    let tokens = server.cli_ok(&["token", "ls"]);
    assert!(
        tokens.contains("web-old") && tokens.contains("revoked"),
        "{tokens}"
    );
    assert!(
        !tokens.contains(&agent) && !tokens.contains(&viewer),
        "tokens are never listed"
    );
    let events = server.cli_ok(&["cert", "ls", "--json"]);
    assert_no_key_bytes("cert ls", &events, &api_key);
    let stored = std::fs::read(server.data_dir.join("certfleet.db")).unwrap();
    assert!(
        !stored.windows(agent.len()).any(|w| w == agent.as_bytes()),
        "tokens are stored hashed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_and_label_input_is_checked_and_named() {
    let (_pebble, _dir, server) = pebble_and_server(PebbleOptions::fast()).await;
    server.issue("www", "www.example.test");
    let out = server.cli(&["agent", "token", "create", "web-1", "--selector", "App=www"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("selector") && err.contains("App=www"), "{err}");
    let out = server.cli(&[
        "token",
        "create",
        "dash",
        "--role",
        "viewer",
        "--selector",
        "app=www",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent tokens only"));
    let out = server.cli(&["token", "create", "x", "--role", "agent"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a selector"));
    agent_token(&server, "web-1", "app=www");
    let out = server.cli(&["agent", "token", "create", "web-1", "--selector", "app=www"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));

    let out = server.cli(&["cert", "label", "www", "app=w w"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"w w\""));
    server.cli_ok(&["cert", "label", "www", "app=www", "tier=edge"]);
    server.cli_ok(&["cert", "label", "www", "tier-"]);
    let list = server.list();
    assert_eq!(list[0]["labels"], serde_json::json!({"app": "www"}));
    assert_eq!(
        list[0]["deployed"],
        serde_json::json!({"in_sync": 0, "entitled": 1})
    );
    let out = server.cli(&[
        "cert",
        "add",
        "x",
        "--domain",
        "x.example.test",
        "--label",
        "nolabel",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--label"));
}
