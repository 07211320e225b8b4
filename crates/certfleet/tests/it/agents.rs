//! Agents deploying to real nginx and proving the new serial by handshake (issue 8).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use certfleet_testkit::nginx::NOGROUP;
use certfleet_testkit::{Nginx, NginxOptions, PebbleOptions, require_program};

use crate::fleet_harness::{
    AgentProc, AgentSpec, agent_token, converge, current_serial, deployed, events, nodes, served,
    tls_server, wait_for,
};
use crate::harness::stderr;

fn add_www(server: &crate::harness::Server) {
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
}

#[tokio::test(flavor = "multi_thread")]
async fn three_agents_deploy_and_prove_the_new_serial_then_again_after_a_renewal() {
    let (_pebble, tmp, server) = tls_server(PebbleOptions::fast()).await;
    let mut fleet = nodes(&server, tmp.path(), 3);
    for node in &mut fleet {
        node.agent.start();
    }
    add_www(&server);
    let first = current_serial(&server, "www");
    let all: Vec<_> = fleet.iter().collect();
    converge(&server, &all, &first, 3).await;
    assert_eq!(deployed(&server, "www"), (3, 3));
    let table = server.cli_ok(&["cert", "ls"]);
    assert!(
        table.lines().next().unwrap().contains("DEPLOYED"),
        "{table}"
    );
    assert!(table.lines().nth(1).unwrap().contains(" 3/3 "), "{table}");

    // The key keeps the group nginx reads it with (carried over from the placeholder).
    let key = fleet[0].nginx.cert_dir().join("privkey.pem");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(
        (meta.gid(), meta.permissions().mode() & 0o777),
        (NOGROUP, 0o640)
    );

    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let second = current_serial(&server, "www");
    assert_ne!(first, second);
    converge(&server, &all, &second, 3).await;
    assert_eq!(deployed(&server, "www"), (3, 3));
    let deployed_events = events(&server, "www", "deployed");
    for agent in ["web-1", "web-2", "web-3"] {
        assert!(
            deployed_events
                .iter()
                .any(|m| m.contains(agent) && m.contains(&second)),
            "{agent}: {deployed_events:?}"
        );
    }
    let agents = server.cli_ok(&["agent", "ls"]);
    for agent in ["web-1", "web-2", "web-3"] {
        let line = agents.lines().find(|l| l.starts_with(agent)).expect(agent);
        assert!(line.contains(" 1/1 "), "{agents}");
    }
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&server.cli_ok(&["agent", "ls", "--json"])).unwrap();
    for agent in &json {
        let offset = agent["clock_offset_ms"]
            .as_i64()
            .expect("clock offset reported");
        assert!(
            offset.abs() < 5_000,
            "same machine, same clock: {offset} ms"
        );
        assert!(agent["last_seen"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_under_load_fails_no_request() {
    let wrk = require_program("wrk", "apt-get install -y wrk (or run scripts/testbed)");
    let (_pebble, tmp, server) = tls_server(PebbleOptions::fast()).await;
    let mut fleet = nodes(&server, tmp.path(), 1);
    fleet[0].agent.start();
    add_www(&server);
    let first = current_serial(&server, "www");
    let all: Vec<_> = fleet.iter().collect();
    converge(&server, &all, &first, 1).await;

    let url = format!("https://{}/", fleet[0].nginx.tls_addr());
    let load = Command::new(&wrk)
        .args(["-t1", "-c2", "-d4s", "-H", "Connection: close", &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let second = current_serial(&server, "www");
    converge(&server, &all, &second, 1).await;
    let out = load.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    let requests: u64 = report
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count: {report}"));
    assert!(requests > 100, "the load ran: {report}");
    assert!(
        !report.contains("Socket errors"),
        "failed connections: {report}"
    );
    assert!(!report.contains("Non-2xx"), "failed requests: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_reload_is_rolled_back_recorded_and_the_next_version_converges() {
    let (_pebble, tmp, server) = tls_server(PebbleOptions::fast()).await;
    let mut fleet = nodes(&server, tmp.path(), 1);
    fleet[0].agent.start();
    add_www(&server);
    let first = current_serial(&server, "www");
    let all: Vec<_> = fleet.iter().collect();
    converge(&server, &all, &first, 1).await;
    let fullchain = fleet[0].nginx.cert_dir().join("fullchain.pem");
    let deployed_pem = std::fs::read_to_string(&fullchain).unwrap();

    fleet[0].nginx.write_config(true);
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let second = current_serial(&server, "www");
    wait_for("a deploy_failed event", Duration::from_secs(30), || {
        !events(&server, "www", "deploy_failed").is_empty()
    })
    .await;
    let failed = events(&server, "www", "deploy_failed");
    assert!(
        failed[0].contains("web-1") && failed[0].contains(&second) && failed[0].contains("check"),
        "{failed:?}"
    );
    assert!(
        failed[0].contains("this_is_not_a_directive"),
        "the hook's output: {failed:?}"
    );
    assert!(failed[0].contains("put back"), "{failed:?}");
    assert_eq!(
        served(fleet[0].nginx.tls_addr()).await.as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        std::fs::read_to_string(&fullchain).unwrap(),
        deployed_pem,
        "the files are rolled back"
    );
    assert_eq!(deployed(&server, "www"), (0, 1));
    let agents: Vec<serde_json::Value> =
        serde_json::from_str(&server.cli_ok(&["agent", "ls", "--json"])).unwrap();
    let report = &agents[0]["certificates"][0];
    assert_eq!(report["rolled_back"], true, "{report}");
    assert_eq!(report["hook_status"], 1, "{report}");

    fleet[0].nginx.write_config(false);
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let third = current_serial(&server, "www");
    converge(&server, &all, &third, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_does_not_take_effect_is_caught_by_the_handshake_and_rolled_back() {
    let (_pebble, tmp, server) = tls_server(PebbleOptions::fast()).await;
    let nginx = Nginx::start(NginxOptions::new("www", "www.example.test"));
    let token = agent_token(&server, "web-1", "app=www");
    let mut spec = AgentSpec::for_nginx(&server, "web-1", &token, &nginx);
    spec.reload = Some(vec!["true".into()]);
    spec.verify_timeout = 2;
    let mut agent = AgentProc::configure(tmp.path(), &spec);
    agent.start();
    add_www(&server);
    let serial = current_serial(&server, "www");
    wait_for("a served_mismatch event", Duration::from_secs(30), || {
        !events(&server, "www", "served_mismatch").is_empty()
    })
    .await;
    let failed = events(&server, "www", "deploy_failed");
    assert!(
        failed
            .iter()
            .any(|m| m.contains(&format!("does not serve serial {serial}"))),
        "{failed:?}\n{}",
        agent.log()
    );
    let mismatch = events(&server, "www", "served_mismatch");
    assert!(mismatch[0].contains("web-1"), "{mismatch:?}");
    let served_now = served(nginx.tls_addr()).await.unwrap();
    assert_ne!(
        served_now, serial,
        "the reload did nothing, so the placeholder is served"
    );
    let on_disk = std::fs::read_to_string(nginx.cert_dir().join("fullchain.pem")).unwrap();
    assert!(
        !on_disk.contains("Pebble"),
        "rolled back to the placeholder"
    );
    assert_eq!(deployed(&server, "www"), (0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_down_during_a_renewal_converges_when_it_starts() {
    let (_pebble, tmp, server) = tls_server(PebbleOptions::fast()).await;
    let mut fleet = nodes(&server, tmp.path(), 2);
    fleet[0].agent.start();
    fleet[1].agent.start();
    add_www(&server);
    let first = current_serial(&server, "www");
    let all: Vec<_> = fleet.iter().collect();
    converge(&server, &all, &first, 2).await;

    fleet[1].agent.kill();
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let second = current_serial(&server, "www");
    converge(&server, &[&fleet[0]], &second, 1).await;
    assert_eq!(
        served(fleet[1].nginx.tls_addr()).await.as_deref(),
        Some(first.as_str())
    );
    assert_eq!(deployed(&server, "www"), (1, 2));

    fleet[1].agent.start();
    let all: Vec<_> = fleet.iter().collect();
    converge(&server, &all, &second, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_brand_new_node_gets_the_current_certificate_with_once_before_nginx_starts() {
    let (_pebble, tmp, server) = tls_server(PebbleOptions::fast()).await;
    add_www(&server);
    let serial = current_serial(&server, "www");
    let mut options = NginxOptions::new("www", "www.example.test");
    options.no_placeholder = true;
    let mut nginx = Nginx::prepare(options);
    let token = agent_token(&server, "web-new", "app=www");
    let mut spec = AgentSpec::for_nginx(&server, "web-new", &token, &nginx);
    spec.group = Some("nogroup".into());
    let agent = AgentProc::configure(tmp.path(), &spec);

    let out = agent.once();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing listens"),
        "no web server yet, so nothing to verify: {}",
        stderr(&out)
    );
    let key = nginx.cert_dir().join("privkey.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().gid(), NOGROUP);
    nginx.spawn();
    assert_eq!(
        served(nginx.tls_addr()).await.as_deref(),
        Some(serial.as_str())
    );

    let out = agent.once();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deployed and verified"),
        "{}",
        stderr(&out)
    );
    assert_eq!(deployed(&server, "www"), (1, 1));
    let out = agent.once();
    assert!(
        stderr(&out).contains("already deployed and verified"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_between_writing_and_reloading_converges_after_restart() {
    let (_pebble, tmp, server) = tls_server(PebbleOptions::fast()).await;
    let nginx = Nginx::start(NginxOptions::new("www", "www.example.test"));
    let token = agent_token(&server, "web-1", "app=www");
    let mut spec = AgentSpec::for_nginx(&server, "web-1", &token, &nginx);
    let mark = tmp.path().join("check-started");
    let pid_file = tmp.path().join("check.pid");
    // The check hook stalls the first time it runs, after the files are written and before the
    // reload: the moment to kill the agent.
    let script = format!(
        "if [ -e {m} ]; then exit 0; fi; echo $$ > {p}; touch {m}; exec sleep 60",
        m = mark.display(),
        p = pid_file.display()
    );
    spec.check = Some(vec!["/bin/sh".into(), "-c".into(), script]);
    let mut agent = AgentProc::configure(tmp.path(), &spec);
    agent.start();
    add_www(&server);
    let serial = current_serial(&server, "www");
    wait_for("the check hook to start", Duration::from_secs(30), || {
        mark.exists()
    })
    .await;
    agent.kill();
    let sleeper = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let _ = Command::new("kill").args(["-KILL", &sleeper]).status();

    let dir = nginx.cert_dir();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("certfleet-tmp")
            || n.contains("certfleet-old")
            || n == ".certfleet-journal"),
        "no half-written files: {names:?}"
    );
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (cert, chain, full, key) = (
        read("cert.pem"),
        read("chain.pem"),
        read("fullchain.pem"),
        read("privkey.pem"),
    );
    assert_eq!(full, format!("{cert}{chain}"), "a consistent set");
    let leaf = certfleet_acme::inspect::ParsedChain::parse(&full).unwrap();
    assert_eq!(leaf.leaf().serial, serial, "the new files are in place");
    let public = certfleet_acme::keys::public_key_of(&key).unwrap();
    assert_eq!(leaf.leaf().public_key, public, "with their own key");
    assert_ne!(
        served(nginx.tls_addr()).await.as_deref(),
        Some(serial.as_str()),
        "not reloaded yet"
    );

    agent.start();
    wait_for(
        "the restarted agent to verify",
        Duration::from_secs(30),
        || deployed(&server, "www") == (1, 1),
    )
    .await;
    assert_eq!(
        served(nginx.tls_addr()).await.as_deref(),
        Some(serial.as_str()),
        "agent:\n{}\nnginx:\n{}",
        agent.log(),
        nginx.error_log()
    );
    assert!(stderr_free_of_panics(&agent.log()), "{}", agent.log());
}

fn stderr_free_of_panics(log: &str) -> bool {
    !log.contains("panicked")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_keeps_its_files_while_the_server_is_down_and_resyncs_when_it_is_back() {
    let (_pebble, tmp, mut server) = tls_server(PebbleOptions::fast()).await;
    let mut fleet = nodes(&server, tmp.path(), 1);
    fleet[0].agent.start();
    add_www(&server);
    let first = current_serial(&server, "www");
    let all: Vec<_> = fleet.iter().collect();
    converge(&server, &all, &first, 1).await;
    let fullchain = fleet[0].nginx.cert_dir().join("fullchain.pem");
    let files = std::fs::read_to_string(&fullchain).unwrap();

    server.stop();
    wait_for("the agent to notice", Duration::from_secs(30), || {
        fleet[0].agent.log().contains("lost the server")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        std::fs::read_to_string(&fullchain).unwrap(),
        files,
        "files kept"
    );
    assert_eq!(
        served(fleet[0].nginx.tls_addr()).await.as_deref(),
        Some(first.as_str())
    );

    server.restart();
    server.cli_ok(&["cert", "renew", "www", "--wait"]);
    let second = current_serial(&server, "www");
    converge(&server, &all, &second, 1).await;
    assert!(fleet[0].agent.log().contains("synced with the server"));
}
