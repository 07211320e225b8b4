//! HTTP-01 across the fleet (issue 8, item 7): Pebble validates against the node its DNS
//! points at, and that node's agent answers; the CA is told "ready" only after every entitled
//! agent confirmed; a node that does not confirm is named.

use std::net::SocketAddr;
use std::time::Duration;

use certfleet_testkit::{Nginx, NginxOptions, Pebble, PebbleOptions, free_port};

use crate::fleet_harness::{AgentProc, AgentSpec, agent_token, tls_endpoint, wait_for};
use crate::harness::{Server, raw_http, stderr};

/// Point Pebble's resolver (challtestsrv) for `host` at `ip`.
fn point_dns(pebble: &Pebble, host: &str, ip: &str) {
    let port: u16 = pebble
        .challtestsrv_management_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let clear = format!(r#"{{"host":"{host}"}}"#);
    let (status, answer) = raw_http(port, "POST", "/clear-a", "", Some(&clear));
    assert_eq!(status, 200, "challtestsrv /clear-a: {answer}");
    let body = format!(r#"{{"host":"{host}","addresses":["{ip}"]}}"#);
    let (status, answer) = raw_http(port, "POST", "/add-a", "", Some(&body));
    assert_eq!(status, 200, "challtestsrv /add-a: {answer}");
}

/// A node on loopback address `ip`: nginx with TLS on 127.0.0.1 and plain HTTP on `ip:http_port`
/// forwarding /.well-known/acme-challenge/ to its agent's responder, or (with `webroot`) serving
/// it from a directory the agent writes.
fn node(
    server: &Server,
    root: &std::path::Path,
    n: usize,
    ip: &str,
    http_port: u16,
    webroot: bool,
) -> (Nginx, AgentProc) {
    let responder: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let http: SocketAddr = format!("{ip}:{http_port}").parse().unwrap();
    let www = root.join(format!("webroot-{n}"));
    let mut options = NginxOptions::new("www", "www.example.test");
    options.http_listen = Some(http);
    if webroot {
        std::fs::create_dir_all(&www).unwrap();
        options.acme_webroot = Some(www.clone());
    } else {
        options.acme_proxy = Some(responder);
    }
    let nginx = Nginx::start(options);
    let name = format!("web-{n}");
    let token = agent_token(server, &name, "app=www");
    let mut spec = AgentSpec::for_nginx(server, &name, &token, &nginx);
    spec.http01 = Some((responder.to_string(), format!("http://{http}")));
    spec.webroot = webroot.then_some(www);
    let mut agent = AgentProc::configure(root, &spec);
    agent.start();
    (nginx, agent)
}

/// Wait until every agent told the server it answers HTTP-01.
async fn wait_introduced(server: &Server, n: usize) {
    wait_for(
        "agents to introduce themselves",
        Duration::from_secs(30),
        || {
            let agents: Vec<serde_json::Value> =
                serde_json::from_str(&server.cli_ok(&["agent", "ls", "--json"])).unwrap();
            agents.len() == n && agents.iter().all(|a| a["serves_http01"] == true)
        },
    )
    .await;
}

/// The HTTP-01 tokens the server publishes for an agent.
fn live_tokens(server: &Server, agent_token: &str) -> Vec<String> {
    let port: u16 = server.api.rsplit(':').next().unwrap().parse().unwrap();
    let auth = format!("Authorization: Bearer {agent_token}\r\n");
    let (status, body) = raw_http(port, "GET", "/api/v1/agent/state", &auth, None);
    assert_eq!(status, 200, "{body}");
    let state: serde_json::Value = serde_json::from_str(&body).unwrap();
    state["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["token"].as_str().unwrap().to_string())
        .collect()
}

fn challenge_lines(nginx: &Nginx) -> Vec<String> {
    nginx
        .access_log()
        .lines()
        .filter(|l| l.contains("/.well-known/acme-challenge/"))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_is_answered_by_the_node_pebble_picked_after_every_agent_confirmed() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    // The server's own responder listens elsewhere: only the nodes can answer Pebble.
    let tls = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(
        pebble.directory_url(),
        pebble.ca_cert_path().to_path_buf(),
        free_port(),
        &tmp.path().join("data"),
        &["--tls-listen", &tls],
    );
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let nodes: Vec<_> = ips
        .iter()
        .enumerate()
        // The third node answers from a webroot instead of a local responder.
        .map(|(i, ip)| node(&server, tmp.path(), i + 1, ip, pebble.http01_port(), i == 2))
        .collect();
    wait_introduced(&server, 3).await;
    point_dns(&pebble, "www.example.test", "127.0.0.3");

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
    let log = server.log();
    assert!(
        log.contains("every agent confirmed the HTTP-01 responses"),
        "{log}"
    );
    // Every node served the token to its own agent's self-check; only the picked node also
    // served it to Pebble.
    let lines: Vec<Vec<String>> = nodes
        .iter()
        .map(|(nginx, _)| challenge_lines(nginx))
        .collect();
    for (i, l) in lines.iter().enumerate() {
        assert!(!l.is_empty(), "node {} served its self-check: {l:?}", i + 1);
    }
    // Pebble's VA says "LetsEncrypt-Pebble-VA" (it may ask more than once).
    let from_pebble = |l: &Vec<String>| l.iter().filter(|line| line.contains("Pebble-VA")).count();
    let counts: Vec<usize> = lines.iter().map(from_pebble).collect();
    assert!(
        counts[0] == 0 && counts[1] > 0 && counts[2] == 0,
        "Pebble validated against 127.0.0.3 only: {lines:#?}"
    );
    let picked = &lines[1];
    assert!(
        picked
            .iter()
            .any(|l| l.contains("Pebble") && l.contains(" 200 ")),
        "the picked node answered 200: {picked:?}"
    );
    let agent_log = nodes[1].1.log();
    assert!(
        agent_log.contains("confirmed HTTP-01 responses"),
        "{agent_log}"
    );
    let token = std::fs::read_to_string(nodes[0].1.dir.join("token")).unwrap();
    assert!(
        live_tokens(&server, &token).is_empty(),
        "responses withdrawn after success"
    );

    // Now Pebble looks at the node that answers from its webroot.
    point_dns(&pebble, "www.example.test", "127.0.0.4");
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let webroot_lines = challenge_lines(&nodes[2].0);
    assert!(
        webroot_lines
            .iter()
            .any(|l| l.contains("Pebble-VA") && l.contains(" 200 ")),
        "the webroot node answered Pebble: {webroot_lines:?}"
    );
    let webroot = tmp.path().join("webroot-3/.well-known/acme-challenge");
    wait_for(
        "the webroot token to be removed",
        Duration::from_secs(30),
        || std::fs::read_dir(&webroot).is_ok_and(|d| d.count() == 0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_names_the_nodes_that_did_not_confirm_and_withdraws_the_tokens() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let tls = format!("127.0.0.1:{}", free_port());
    let server = Server::start_next_to(
        &pebble,
        &tmp.path().join("data"),
        &["--tls-listen", &tls, "--http01-confirm-timeout", "2"],
    );
    let (_n1, _a1) = node(&server, tmp.path(), 1, "127.0.0.2", free_port(), false);
    let (_n2, mut a2) = node(&server, tmp.path(), 2, "127.0.0.3", free_port(), false);
    wait_introduced(&server, 2).await;
    a2.kill();

    let out = server.cli(&[
        "cert",
        "add",
        "www",
        "--domain",
        "www.example.test",
        "--label",
        "app=www",
        "--wait",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "issuance failed: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("missing: web-2 (www.example.test)") && !err.contains("web-1 ("),
        "the error names the node that did not confirm: {err}"
    );
    let token = std::fs::read_to_string(a2.dir.join("token")).unwrap();
    assert!(
        live_tokens(&server, &token).is_empty(),
        "responses withdrawn after the failure"
    );
    let (url, _) = tls_endpoint(&server);
    assert!(url.starts_with("https://127.0.0.1:"));
}
