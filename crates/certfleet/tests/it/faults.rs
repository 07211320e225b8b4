//! What the CA's faults do, injected by the fault proxy in front of real Pebble: Retry-After
//! (429 and 503, seconds and HTTP dates), connection resets, slow answers, a CA that keeps
//! refusing the account.

use std::time::Duration;

use certfleet_core::policy::http_date;
use certfleet_testkit::proxy::{Action, FaultProxy, Match, Record, Rule};
use certfleet_testkit::{Pebble, PebbleOptions};

use crate::harness::stderr;
use crate::renewal::{server_via, unix_now, wait_for};

fn new_orders(proxy: &FaultProxy, name: &str) -> Vec<Record> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| Match::post("/order-plz").with_payload(name).matches(r))
        .collect()
}

/// Seconds from `a` to `b`.
fn gap(a: &Record, b: &Record) -> f64 {
    b.at.duration_since(a.at).as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_for_that_certificate_only() {
    // 16 s certificates renew every 8 s by themselves.
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(16),
        ..PebbleOptions::fast()
    })
    .await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_via(&proxy, &pebble, dir.path(), &[]);
    server.issue("limited", "limited.example.test");
    server.issue("other", "other.example.test");

    for (round, retry_after) in [(1, "10".to_string()), (2, http_date(unix_now() + 30))] {
        let limited = Match::post("/order-plz").with_payload("limited.example.test");
        proxy.add(Rule::new(limited.clone(), Action::rate_limited(&retry_after)).times(1));
        // The next renewal of `limited` is refused with 429 and the Retry-After.
        let refused = wait_for(&server, "limited", 20, |d| d["retry_after"].is_string());
        assert_eq!(refused["status"], "failed");
        assert!(
            refused["last_error"]
                .as_str()
                .unwrap()
                .contains("rateLimited"),
            "{refused}"
        );
        let until = crate::renewal::unix(&refused["retry_after"]);
        let table = server.cli_ok(&["cert", "ls"]);
        assert!(table.contains("(CA asked)"), "{table}");
        // A person's renewal respects it too, unless forced.
        let out = server.cli(&["cert", "renew", "limited"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("Retry-After") && stderr(&out).contains("--force"),
            "{}",
            stderr(&out)
        );
        let other_before = wait_for(&server, "other", 1, |_| true)["version"]
            .as_u64()
            .unwrap();
        let version = refused["version"].as_u64().unwrap();
        let renewed = wait_for(&server, "limited", 45, |d| {
            d["version"].as_u64() == Some(version + 1)
        });
        let orders = new_orders(&proxy, "limited.example.test");
        let refusal = orders.iter().rposition(|r| r.status == 429).unwrap();
        let next = &orders[refusal + 1];
        assert!(
            next.unix >= until as f64,
            "round {round}: next request for it at {}, the CA asked for {until}",
            next.unix
        );
        assert!(
            crate::renewal::unix(&renewed["versions"][version as usize]["issued_at"]) >= until,
            "round {round}: nothing ordered for it before {until}: {renewed:#}"
        );
        // Meanwhile the other certificate kept renewing.
        let other_after = wait_for(&server, "other", 1, |_| true)["version"]
            .as_u64()
            .unwrap();
        assert!(
            other_after > other_before,
            "round {round}: other renewed meanwhile"
        );
        assert_eq!(renewed["retry_after"], serde_json::Value::Null);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn service_unavailable_with_retry_after_is_retried_after_the_delay() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_via(&proxy, &pebble, dir.path(), &[]);
    for (name, retry_after, date) in [
        ("seconds", "2".to_string(), None),
        ("date", http_date(unix_now() + 3), Some(unix_now() + 3)),
    ] {
        let domain = format!("{name}.example.test");
        proxy.add(
            Rule::new(
                Match::post("/order-plz").with_payload(&domain),
                Action::unavailable(&retry_after),
            )
            .times(1),
        );
        server.issue(name, &domain);
        let list = server.list();
        let cert = list.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(cert["failure_streak"], 0, "{cert}");
        let orders = new_orders(&proxy, &domain);
        assert_eq!(orders.len(), 2, "{name}");
        assert_eq!((orders[0].status, orders[1].status), (503, 201));
        // Seconds count from the answer; an HTTP date is a moment (whole seconds), however
        // late the first request came.
        match date {
            None => assert!(
                gap(&orders[0], &orders[1]) >= 1.9,
                "{name}: sent again after the delay"
            ),
            Some(at) => assert!(
                orders[1].unix >= (at - 1) as f64,
                "{name}: sent again at {} although the CA asked for {at}",
                orders[1].unix
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resets_and_slow_answers_resume_the_same_order() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_via(&proxy, &pebble, dir.path(), &[]);
    proxy.add(
        Rule::new(
            Match::post("/my-order/"),
            Action::Delay(Duration::from_secs(2)),
        )
        .times(2),
    );
    server.issue("www", "www.example.test");

    // The finalize request is reset: the order stays, with its key, to be continued.
    proxy.add(Rule::new(Match::post("/finalize-order/"), Action::Reset).times(1));
    let out = server.cli(&["cert", "renew", "www", "--wait"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let failed = wait_for(&server, "www", 1, |_| true);
    let order = failed["order_url"]
        .as_str()
        .expect("the order is kept")
        .to_string();
    server.cli_ok(&["cert", "renew", "www", "--wait"]);

    // The certificate download is reset: the finalized order's certificate is downloaded
    // on the next attempt, with the key kept before finalize.
    proxy.add(Rule::new(Match::post("/certZ/"), Action::Reset).times(1));
    let out = server.cli(&["cert", "renew", "www", "--wait"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    server.cli_ok(&["cert", "renew", "www", "--wait"]);

    let detail = wait_for(&server, "www", 1, |d| d["version"] == 3);
    let orders = new_orders(&proxy, "www.example.test");
    assert_eq!(
        orders.len(),
        3,
        "one order per version, none for the retries"
    );
    assert_eq!(
        detail["versions"][1]["order_url"],
        order.as_str(),
        "version 2 came from the order kept after the reset"
    );
    assert_eq!(
        detail["order_url"],
        serde_json::Value::Null,
        "nothing in flight"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path.contains(order.rsplit('/').next().unwrap())),
        "the kept order was continued"
    );
    let downloads = proxy.count(&Match::post("/certZ/"));
    assert_eq!(
        downloads, 4,
        "3 certificates, one download reset and done again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_account_refusal_right_after_is_reported_not_looped() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let proxy = FaultProxy::start(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let server = server_via(&proxy, &pebble, dir.path(), &[]);
    server.issue("www", "www.example.test");
    let accounts = proxy.count(&Match::post("/sign-me-up"));
    proxy.add(Rule::new(
        Match::post("/order-plz"),
        Action::problem(
            400,
            "accountDoesNotExist",
            "fault proxy: no such account",
            None,
        ),
    ));
    let out = server.cli(&["cert", "renew", "www", "--wait"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("no longer accepts ACME account"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        proxy.count(&Match::post("/sign-me-up")),
        accounts + 1,
        "registered again once"
    );
    assert_eq!(
        new_orders(&proxy, "www.example.test").len(),
        3,
        "the first order, then two"
    );
    let events = server.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["kind"] == "account_reregistered")
            .count(),
        1
    );
}
