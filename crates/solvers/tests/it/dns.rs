//! DNS-01 against real Knot: RFC 2136 updates with TSIG, refusals, zone discovery, the
//! propagation check over two authoritative servers, CNAME delegation, and the exec provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use certfleet_core::{Secret, Solver};
use certfleet_solvers::dns::exec::{Exec, ExecSettings};
use certfleet_solvers::dns::propagation::{Propagation, PropagationSettings};
use certfleet_solvers::dns::rfc2136::{Rfc2136, Rfc2136Settings, Tsig};
use certfleet_solvers::dns::{Dns01Solver, DnsProvider, TxtRecord, txt_value};
use certfleet_testkit::Knot;
use certfleet_testkit::knot::{KEY_ALGORITHM, KEY_NAME};

use crate::dns_challenge;

const ZONE: &str = "example.test";

fn rfc2136(knot: &Knot, secret: &str, zone: Option<&str>) -> Rfc2136 {
    Rfc2136::new(
        "solvers[0].",
        Rfc2136Settings {
            server: knot.addr(),
            zone: zone.map(str::to_string),
            tsig: Some(Tsig {
                name: KEY_NAME.into(),
                algorithm: KEY_ALGORITHM.into(),
                secret: Secret::new(secret),
            }),
            ttl: 60,
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap()
}

fn propagation(servers: &[&Knot], timeout: Duration) -> Propagation {
    Propagation::new(PropagationSettings {
        nameservers: servers.iter().map(|k| k.addr()).collect(),
        interval: Duration::from_millis(50),
        timeout,
        query_timeout: Duration::from_secs(2),
        ..Default::default()
    })
}

fn record(name: &str, value: &str) -> TxtRecord {
    TxtRecord {
        domain: name.trim_start_matches("_acme-challenge.").to_string(),
        name: name.into(),
        value: value.into(),
    }
}

#[tokio::test]
async fn rfc2136_adds_and_removes_exactly_one_value_with_tsig() {
    let knot = Knot::start(&[ZONE]).await;
    // No zone configured: found by asking the server for the SOA.
    let provider = rfc2136(&knot, knot.tsig_secret(), None);
    let name = "_acme-challenge.example.test";
    let (apex, wildcard) = (
        record(name, "value-for-the-apex"),
        record(name, "value-for-the-wildcard"),
    );
    provider.present(&apex).await.unwrap();
    provider.present(&wildcard).await.unwrap();
    let mut seen = knot.txt(name).await;
    seen.sort();
    assert_eq!(
        seen,
        ["value-for-the-apex", "value-for-the-wildcard"],
        "both values share one name"
    );
    provider.cleanup(&apex).await.unwrap();
    assert_eq!(
        knot.txt(name).await,
        ["value-for-the-wildcard"],
        "only the apex's value went"
    );
    provider.cleanup(&wildcard).await.unwrap();
    provider.cleanup(&wildcard).await.unwrap(); // absent: not an error
    assert!(knot.txt(name).await.is_empty());
}

#[tokio::test]
async fn wrong_tsig_secret_names_the_server_and_the_refusal() {
    let knot = Knot::start(&[ZONE]).await;
    let wrong = "c2VjcmV0LXRoYXQta25vdC1kb2VzLW5vdC1rbm93LTAxMjM0NTY3OA==";
    let provider = rfc2136(&knot, wrong, Some(ZONE));
    let err = provider
        .present(&record("_acme-challenge.example.test", "v"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&knot.addr().to_string()),
        "names the server: {err}"
    );
    assert!(err.contains("NOTAUTH"), "names the response code: {err}");
    assert!(err.contains("BADSIG"), "names the TSIG error: {err}");
    assert!(err.contains("tsig_secret"), "says what to check: {err}");
    assert!(
        knot.txt("_acme-challenge.example.test").await.is_empty(),
        "nothing was written"
    );

    // A key the server does not know.
    let unknown = Rfc2136::new(
        "",
        Rfc2136Settings {
            server: knot.addr(),
            zone: Some(ZONE.into()),
            tsig: Some(Tsig {
                name: "no-such-key".into(),
                algorithm: KEY_ALGORITHM.into(),
                secret: Secret::new(knot.tsig_secret()),
            }),
            ttl: 60,
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let err = unknown
        .present(&record("_acme-challenge.example.test", "v"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("NOTAUTH") && err.contains("BADKEY"), "{err}");
}

#[tokio::test]
async fn bad_tsig_settings_are_refused_before_anything_is_sent() {
    let settings = |alg: &str, secret: &str| Rfc2136Settings {
        server: "127.0.0.1:1".parse().unwrap(),
        zone: None,
        tsig: Some(Tsig {
            name: "k".into(),
            algorithm: alg.into(),
            secret: Secret::new(secret),
        }),
        ttl: 60,
        timeout: Duration::from_secs(1),
    };
    let err = Rfc2136::new("solvers[1].", settings("hmac-md5", "c2VjcmV0"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("solvers[1].tsig_algorithm"), "{err}");
    let err = Rfc2136::new("solvers[1].", settings("hmac-sha256", "not base64!"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("solvers[1].tsig_secret"), "{err}");
    for alg in ["hmac-sha256", "hmac-sha384", "hmac-sha512", "HMAC-SHA512."] {
        assert!(Rfc2136::new("", settings(alg, "c2VjcmV0")).is_ok(), "{alg}");
    }
}

/// A record visible on one of two authoritative servers only is not ready until both show it.
#[tokio::test]
async fn propagation_waits_for_every_authoritative_server() {
    let primary = Knot::start(&[ZONE]).await;
    let lagging = Knot::start_with_secret(&[ZONE], primary.tsig_secret()).await;
    let provider: Arc<dyn DnsProvider> =
        Arc::new(rfc2136(&primary, primary.tsig_secret(), Some(ZONE)));
    let solver = Arc::new(Dns01Solver::new(
        "knot",
        provider,
        propagation(&[&primary, &lagging], Duration::from_secs(60)),
    ));
    let challenge = dns_challenge("www.example.test", "token-one.thumb", false);
    let value = txt_value("token-one.thumb");
    let name = "_acme-challenge.www.example.test";
    let task = tokio::spawn({
        let (solver, c) = (solver.clone(), challenge.clone());
        async move { solver.present(&[c]).await }
    });
    // The primary shows it...
    let started = Instant::now();
    while primary.txt(name).await != [value.clone()] {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "primary never showed the record"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and well after that, present has still not returned, because the other has not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !task.is_finished(),
        "ready although {} lacks the record",
        lagging.addr()
    );
    lagging
        .nsupdate(ZONE, &[format!("update add {name}. 60 TXT \"{value}\"")])
        .await;
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("present returns once both servers show the record")
        .unwrap()
        .unwrap();
    solver.cleanup(&[challenge]).await.unwrap();
    assert!(
        primary.txt(name).await.is_empty(),
        "cleanup removed it from the primary"
    );
}

#[tokio::test]
async fn propagation_timeout_names_the_lagging_server() {
    let primary = Knot::start(&[ZONE]).await;
    let lagging = Knot::start_with_secret(&[ZONE], primary.tsig_secret()).await;
    let provider: Arc<dyn DnsProvider> =
        Arc::new(rfc2136(&primary, primary.tsig_secret(), Some(ZONE)));
    let solver = Dns01Solver::new(
        "knot",
        provider,
        propagation(&[&primary, &lagging], Duration::from_secs(1)),
    );
    let challenge = dns_challenge("www.example.test", "token-two.thumb", false);
    let err = solver
        .present(std::slice::from_ref(&challenge))
        .await
        .unwrap_err()
        .to_string();
    let (lag, ok) = (lagging.addr().to_string(), primary.addr().to_string());
    assert!(
        err.contains(&format!("not visible on {lag}")),
        "names the lagging server: {err}"
    );
    assert!(
        err.contains(&format!("visible on: {ok}")),
        "and the one that had it: {err}"
    );
    assert!(err.contains("_acme-challenge.www.example.test"), "{err}");
    solver.cleanup(&[challenge]).await.unwrap();
}

/// A CNAME at `_acme-challenge` delegates the record: it is written and checked at the target.
#[tokio::test]
async fn cname_on_acme_challenge_is_followed() {
    let knot = Knot::start(&[ZONE, "delegated.test"]).await;
    knot.nsupdate(
        ZONE,
        &[
            "update add _acme-challenge.shop.example.test. 60 CNAME shop.delegated.test."
                .to_string(),
        ],
    )
    .await;
    let provider: Arc<dyn DnsProvider> = Arc::new(rfc2136(&knot, knot.tsig_secret(), None));
    let solver = Dns01Solver::new(
        "knot",
        provider,
        propagation(&[&knot], Duration::from_secs(10)),
    );
    let challenge = dns_challenge("shop.example.test", "token-three.thumb", false);
    solver
        .present(std::slice::from_ref(&challenge))
        .await
        .unwrap();
    assert_eq!(
        knot.txt("shop.delegated.test").await,
        [txt_value("token-three.thumb")]
    );
    solver.cleanup(&[challenge]).await.unwrap();
    assert!(knot.txt("shop.delegated.test").await.is_empty());

    // Delegation to a zone the checked servers do not serve (as with acme-dns): the chain
    // ends at the target, which is then polled on the configured servers.
    let elsewhere = Knot::start(&["acme-dns.test"]).await;
    knot.nsupdate(
        ZONE,
        &["update add _acme-challenge.api.example.test. 60 CNAME abc.acme-dns.test.".to_string()],
    )
    .await;
    let check = propagation(&[&knot], Duration::from_secs(10));
    assert_eq!(
        check
            .follow_cname("_acme-challenge.api.example.test")
            .await
            .unwrap(),
        "abc.acme-dns.test"
    );
    let value = txt_value("token-six.thumb");
    elsewhere
        .nsupdate(
            "acme-dns.test",
            &[format!("update add abc.acme-dns.test. 60 TXT \"{value}\"")],
        )
        .await;
    propagation(&[&elsewhere], Duration::from_secs(10))
        .wait_visible(&[("abc.acme-dns.test".to_string(), value)])
        .await
        .unwrap();
}

/// The exec provider runs the configured argv with the record in the environment; here the
/// scripts call knsupdate against a real Knot.
#[tokio::test]
async fn exec_provider_scripts_update_knot() {
    let knot = Knot::start(&[ZONE]).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dns-hook");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\n[ \"$CERTFLEET_DNS_ACTION\" = \"$1\" ]\n\
             if [ \"$1\" = present ]; then op=add; else op=delete; fi\n\
             printf 'server 127.0.0.1 {port}\\nzone {ZONE}.\\nupdate %s %s 60 TXT \"%s\"\\nsend\\n' \
             \"$op\" \"$CERTFLEET_DNS_RECORD_NAME\" \"$CERTFLEET_DNS_RECORD_VALUE\" \
             | knsupdate -y {KEY_ALGORITHM}:{KEY_NAME}:{secret}\n",
            port = knot.port(),
            secret = knot.tsig_secret()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let argv = |action: &str| vec![script.display().to_string(), action.to_string()];
    let provider = Exec::new(
        "solvers[0].",
        ExecSettings {
            present: argv("present"),
            cleanup: argv("cleanup"),
            timeout: Duration::from_secs(20),
        },
    )
    .unwrap();
    let solver = Dns01Solver::new(
        "hook",
        Arc::new(provider),
        propagation(&[&knot], Duration::from_secs(10)),
    );
    let challenge = dns_challenge("api.example.test", "token-four.thumb", false);
    solver
        .present(std::slice::from_ref(&challenge))
        .await
        .unwrap();
    assert_eq!(
        knot.txt("_acme-challenge.api.example.test").await,
        [txt_value("token-four.thumb")]
    );
    solver.cleanup(&[challenge]).await.unwrap();
    assert!(
        knot.txt("_acme-challenge.api.example.test")
            .await
            .is_empty()
    );

    // A failing command: its exit status and standard error are in the error.
    let failing = Exec::new(
        "",
        ExecSettings {
            present: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo zone is locked >&2; exit 3".into(),
            ],
            cleanup: vec!["/bin/true".into()],
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let err = failing
        .present(&record("_acme-challenge.x.example.test", "v"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exit status: 3") && err.contains("zone is locked"),
        "{err}"
    );
    let err = Exec::new(
        "solvers[2].",
        ExecSettings {
            present: vec![],
            cleanup: vec!["/bin/true".into()],
            timeout: Duration::from_secs(1),
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.starts_with("solvers[2].present"), "{err}");
}

/// Without configured nameservers the zone's authoritative servers are discovered: SOA owner,
/// NS records, their addresses, asked on `authoritative_port` (here Knot answers for itself).
#[tokio::test]
async fn authoritative_servers_are_discovered_from_soa_and_ns() {
    let knot = Knot::start(&[ZONE]).await;
    let discovery = Propagation::new(PropagationSettings {
        resolvers: vec![knot.addr()],
        authoritative_port: knot.port(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(10),
        ..Default::default()
    });
    let servers = discovery
        .authoritative_servers("_acme-challenge.deep.www.example.test")
        .await
        .unwrap();
    assert_eq!(
        servers,
        [knot.addr()],
        "ns1.example.test A 127.0.0.1, on the configured port"
    );
    let provider: Arc<dyn DnsProvider> = Arc::new(rfc2136(&knot, knot.tsig_secret(), None));
    let solver = Dns01Solver::new("knot", provider, discovery);
    let challenge = dns_challenge("deep.www.example.test", "token-five.thumb", true);
    solver
        .present(std::slice::from_ref(&challenge))
        .await
        .unwrap();
    assert_eq!(
        knot.txt("_acme-challenge.deep.www.example.test").await,
        [txt_value("token-five.thumb")]
    );
    solver.cleanup(&[challenge]).await.unwrap();

    let lost = Propagation::new(PropagationSettings {
        resolvers: vec![knot.addr()],
        ..Default::default()
    });
    let err = lost
        .authoritative_servers("www.unknown.invalid")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("www.unknown.invalid"), "{err}");
}
