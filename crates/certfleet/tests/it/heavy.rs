//! The heavy renewal tests against real Pebble: many issuances under badNonce storms and
//! validation delays, a slow CA, and SIGKILLs at random moments during renewals.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use certfleet_testkit::proxy::{Action, FaultProxy, Match, Record, Rule};
use certfleet_testkit::{Pebble, PebbleOptions, PebbleRelease};

use crate::harness::Server;
use crate::renewal::{server_via, wait_for};

/// A config file declaring `count` certificates `c<i>` for `c<i>.example.test`.
fn declare(
    dir: &std::path::Path,
    count: usize,
    issuer_extra: &str,
    directory: &str,
    ca: &std::path::Path,
) -> std::path::PathBuf {
    let mut text = format!(
        "[issuers.default]\ndirectory = \"{directory}\"\nca_roots = [\"{}\"]\n{issuer_extra}\n",
        ca.display()
    );
    for i in 0..count {
        text.push_str(&format!(
            "[[certificates]]\nname = \"c{i}\"\ndomains = [\"c{i}.example.test\"]\n"
        ));
    }
    let path = dir.join("certfleet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Poll `cert ls --json` (every 250 ms, at most `secs`) until `done` holds for the list.
fn wait_list(
    server: &Server,
    secs: u64,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let list = server.list();
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "not reached within {secs} s: {list:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn count_kind(server: &Server, kind: &str) -> usize {
    server.events().iter().filter(|e| e["kind"] == kind).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_issuances_under_bad_nonces_and_validation_delays_all_succeed() {
    let started = Instant::now();
    let pebble = Pebble::start(PebbleOptions {
        release: PebbleRelease::Trixie,
        nonce_reject: Some(30),
        va_nosleep: false,
        env: vec![("PEBBLE_VA_SLEEPTIME".into(), "3".into())],
        validity_secs: Some(20),
        ..PebbleOptions::fast()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = declare(
        dir.path(),
        50,
        "",
        &pebble.directory_url(),
        pebble.ca_cert_path(),
    );
    let server = Server::start_next_to(
        &pebble,
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    // 50 certificates issued, then each renewed by itself three times (20 s lifetimes renew
    // when half is left): 200 versions.
    let list = wait_list(&server, 150, |l| {
        l.len() == 50 && l.iter().all(|c| c["version"].as_u64() >= Some(4))
    });
    let versions: u64 = list.iter().map(|c| c["version"].as_u64().unwrap()).sum();
    assert!(versions >= 200, "{versions}");
    assert_eq!(
        count_kind(&server, "failed"),
        0,
        "no attempt failed:\n{}",
        server.log()
    );
    assert!(list.iter().all(|c| c["failure_streak"] == 0));
    eprintln!(
        "{versions} versions with 30% badNonce and validation delays in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_ca_is_waited_for_and_nothing_is_abandoned() {
    let started = Instant::now();
    // Each challenge takes Pebble 0-15 s (three validations, each sleeping up to 15 s), with
    // an order timeout of 20 s.
    let pebble = Pebble::start(PebbleOptions {
        release: PebbleRelease::Trixie,
        va_nosleep: false,
        env: vec![("PEBBLE_VA_SLEEPTIME".into(), "16".into())],
        ..PebbleOptions::fast()
    })
    .await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let config = declare(
        dir.path(),
        20,
        "order_timeout_secs = 20",
        &proxy.directory_url(),
        pebble.ca_cert_path(),
    );
    let server = server_via(
        &proxy,
        &pebble,
        dir.path(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-concurrent-orders",
            "20",
        ],
    );
    let list = wait_list(&server, 120, |l| {
        l.len() == 20 && l.iter().all(|c| c["status"] == "valid")
    });
    assert!(
        list.iter()
            .all(|c| c["version"] == 1 && c["failure_streak"] == 0),
        "{list:#?}"
    );
    assert_eq!(
        count_kind(&server, "failed"),
        0,
        "none reported timed out:\n{}",
        server.log()
    );
    assert_eq!(count_kind(&server, "order_abandoned"), 0);
    assert_eq!(
        proxy.count(&Match::post("/order-plz")),
        20,
        "one order each, none abandoned"
    );
    eprintln!("20 certificates from a slow CA in {:?}", started.elapsed());

    // An order the CA keeps `processing`, asking (Retry-After: 25) to come back after the
    // 20 s timeout: left at the CA, resumed then, its certificate downloaded.
    let late = Instant::now();
    proxy.add(Rule::new(Match::post("/my-order/"), Action::StillProcessing(25)).times(1));
    server.cli_ok(&["cert", "renew", "c0"]);
    let pending = wait_for(&server, "c0", 60, |d| {
        d["order_url"].is_string()
            && d["status"] == "issuing"
            && !d["in_progress"].as_bool().unwrap()
    });
    assert!(pending["next_attempt"].is_string(), "{pending:#}");
    let renewed = wait_for(&server, "c0", 60, |d| d["version"] == 2);
    assert!(
        late.elapsed() >= Duration::from_secs(25),
        "resumed when the CA asked"
    );
    assert_eq!(renewed["failure_streak"], 0);
    assert_eq!(count_kind(&server, "order_pending"), 1);
    assert_eq!(
        proxy.count(&Match::post("/order-plz").with_payload("c0.example.test")),
        2,
        "not ordered again"
    );
    assert_eq!(proxy.count(&Match::post("/finalize-order/")), 21);
}

/// When to kill the server during a renewal.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// A random moment after the request.
    Random,
    /// Right after the CA created the order, before finalize.
    OrderCreated,
    /// Right after finalize was answered.
    Finalized,
    /// Just after the certificate was downloaded, before it is stored.
    Downloaded,
}

/// Wait (bounded) for the proxy to answer a request matching `m`.
async fn answered(
    events: &mut tokio::sync::broadcast::Receiver<Record>,
    m: &Match,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(record)) if m.matches(&record) && record.status < 400 => return true,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            _ => return false,
        }
    }
}

fn small_random(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % bound.max(1)
}

/// Every certificate has a current version whose key matches its leaf; SQLite is intact.
fn check_state(server: &Server, names: &[String]) {
    let db = rusqlite::Connection::open_with_flags(
        server.data_dir.join("certfleet.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);
    for name in names {
        let (status, body) =
            server.api_request("GET", &format!("/api/v1/certificates/{name}/bundle"), None);
        assert_eq!(status, 200, "{name}: {body}");
        let bundle: serde_json::Value = serde_json::from_str(&body).unwrap();
        let chain =
            certfleet_acme::inspect::ParsedChain::parse(bundle["fullchain_pem"].as_str().unwrap())
                .unwrap();
        let key = certfleet_acme::keys::public_key_of(bundle["key_pem"].as_str().unwrap()).unwrap();
        assert_eq!(
            chain.leaf().public_key,
            key,
            "{name}: the key matches the leaf"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkills_during_renewals_lose_nothing_and_duplicate_no_order() {
    let started = Instant::now();
    let pebble = Pebble::start(PebbleOptions {
        release: PebbleRelease::Trixie,
        validity_secs: Some(3600),
        ..PebbleOptions::fast()
    })
    .await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = server_via(&proxy, &pebble, dir.path(), &[]);
    let names: Vec<String> = (0..4).map(|i| format!("k{i}")).collect();
    for name in &names {
        server.issue(name, &format!("{name}.example.test"));
    }
    let mut events = proxy.subscribe();
    let kills = 60;
    let mut hit: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..kills {
        let name = &names[round % names.len()];
        let other = &names[(round + 1) % names.len()];
        let domain = format!("{name}.example.test");
        let mode = [
            KillAt::Random,
            KillAt::OrderCreated,
            KillAt::Finalized,
            KillAt::Downloaded,
        ][round % 4];
        while events.try_recv().is_ok() {}
        // Two renewals in flight; the server dies during the first.
        for n in [name, other] {
            let out = server.cli(&["cert", "renew", n]);
            let text = crate::harness::stderr(&out);
            assert!(
                out.status.success() || text.contains("already in progress"),
                "{text}"
            );
        }
        let reached = match mode {
            KillAt::Random => {
                tokio::time::sleep(Duration::from_millis(small_random(150))).await;
                true
            }
            KillAt::OrderCreated => {
                answered(
                    &mut events,
                    &Match::post("/order-plz").with_payload(&domain),
                    Duration::from_secs(5),
                )
                .await
            }
            KillAt::Finalized => {
                answered(
                    &mut events,
                    &Match::post("/finalize-order/"),
                    Duration::from_secs(5),
                )
                .await
            }
            KillAt::Downloaded => {
                let seen =
                    answered(&mut events, &Match::post("/certZ/"), Duration::from_secs(5)).await;
                tokio::time::sleep(Duration::from_millis(small_random(15))).await;
                seen
            }
        };
        if reached {
            *hit.entry(format!("{mode:?}")).or_default() += 1;
        }
        server.kill();
        server.start_again();
        // Whatever was in flight is finished (resumed or found not due) after the restart.
        wait_list(&server, 30, |l| {
            l.iter()
                .all(|c| c["status"] == "valid" && !c["in_progress"].as_bool().unwrap())
        });
        check_state(&server, &names);
    }

    // Every order the CA created either became exactly one version, or was never touched
    // after its creation (the kill came before its URL was stored): none was duplicated.
    let requests = proxy.requests();
    let mut version_orders: BTreeMap<String, usize> = BTreeMap::new();
    for name in &names {
        let detail = wait_for(&server, name, 1, |_| true);
        for v in detail["versions"].as_array().unwrap() {
            *version_orders
                .entry(v["order_url"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    assert!(
        version_orders.values().all(|n| *n == 1),
        "an order made two versions: {version_orders:?}"
    );
    let created: Vec<&Record> = requests
        .iter()
        .filter(|r| Match::post("/order-plz").matches(r) && r.status == 201)
        .collect();
    let (mut untouched, mut invalid) = (0, 0);
    for order in &created {
        let url = order.location.clone().unwrap();
        if version_orders.contains_key(&url) {
            continue;
        }
        let body: serde_json::Value = serde_json::from_str(&order.body).unwrap();
        let mut paths: BTreeSet<String> = BTreeSet::new();
        for u in body["authorizations"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&body["finalize"], &serde_json::Value::String(url.clone())])
        {
            let u = u.as_str().unwrap();
            paths.insert(
                u[u.find("://").unwrap() + 3..]
                    .split_once('/')
                    .unwrap()
                    .1
                    .to_string(),
            );
        }
        let touching: Vec<String> = requests
            .iter()
            .filter(|r| {
                r.at > order.at && paths.iter().any(|p| r.path.trim_start_matches('/') == p)
            })
            .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
            .collect();
        // The kill can take the HTTP-01 responder down while the CA validates: the CA then
        // invalidates the order (its last answer says so), and a new order is right.
        let order_path = paths
            .iter()
            .find(|p| p.starts_with("my-order/"))
            .unwrap()
            .clone();
        let invalidated = requests.iter().any(|r| {
            r.path.trim_start_matches('/') == order_path && r.body.contains("\"invalid\"")
        });
        if invalidated {
            invalid += 1;
            continue;
        }
        let id = url.rsplit('/').next().unwrap().to_string();
        let log = server.log();
        let mentions: Vec<&str> = log.lines().filter(|l| l.contains(&id)).collect();
        assert!(
            touching.is_empty(),
            "order {url} was worked on but produced no version (duplicated instead of resumed):\n{touching:#?}\nlog:\n{}",
            mentions.join("\n")
        );
        untouched += 1;
    }
    // Certificates downloaded twice: the kill came after the download, before the version
    // was stored, and the restarted server downloaded the finalized order's certificate.
    let mut downloads: BTreeMap<&str, usize> = BTreeMap::new();
    for r in requests
        .iter()
        .filter(|r| Match::post("/certZ/").matches(r) && r.status == 200)
    {
        *downloads.entry(r.path.as_str()).or_default() += 1;
    }
    let downloaded_again = downloads.values().filter(|n| **n > 1).count();
    let versions: usize = version_orders.len();
    eprintln!(
        "{kills} SIGKILLs in {:?}: kill points reached {hit:?}; {} orders created, {versions} versions, {untouched} orders created just before a kill, {invalid} invalidated by the CA while the responder was down, {downloaded_again} certificates downloaded again after a kill between download and store",
        started.elapsed(),
        created.len()
    );
    assert!(
        versions > names.len() + kills / 2,
        "most renewals completed: {versions}"
    );
    for mode in ["OrderCreated", "Finalized", "Downloaded"] {
        assert!(
            hit.get(mode).copied().unwrap_or(0) >= 5,
            "kill point {mode} reached: {hit:?}"
        );
    }
}
