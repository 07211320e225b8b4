//! The whole renewal engine — policy, scheduler, claims, the SQLite store, backoff — through a
//! simulated year (`tokio::time::pause`) against the fake CA (`fake_ca`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use certfleet_acme::Acme;
use certfleet_core::policy::{self, Lifetime};
use certfleet_core::time::{Clock, DAY, UnixTime};
use certfleet_core::{
    CertName, ChallengeKind, DnsName, KeyKind, NewCertificate, PendingChallenge, Solver,
    SolverError, Source, Store,
};
use certfleet_server::clock::TokioClock;
use certfleet_server::issuance::Issuance;
use certfleet_server::scheduler;
use certfleet_store::{Sealer, SqliteStore};
use tokio::sync::watch;

use crate::fake_ca::{FakeCa, Outcome, half_with_ari, six_or_ninety_days};

/// Publishes nothing: the fake CA validates nothing.
struct NoSolver;

#[async_trait]
impl Solver for NoSolver {
    fn kind(&self) -> ChallengeKind {
        ChallengeKind::Http01
    }
    async fn present(&self, _: &[PendingChallenge]) -> Result<(), SolverError> {
        Ok(())
    }
    async fn cleanup(&self, _: &[PendingChallenge]) -> Result<(), SolverError> {
        Ok(())
    }
}

/// How late a first attempt may start after its planned moment (queueing for a slot, the
/// scheduler's one-second resolution, a busy burst).
const SLACK: i64 = 15 * 60;

struct World {
    store: Arc<dyn Store>,
    ca: Arc<FakeCa>,
    issuance: Arc<Issuance>,
    start: UnixTime,
}

async fn world(count: usize, seed: u64, configure: impl FnOnce(&mut FakeCa, UnixTime)) -> World {
    let start: UnixTime = 1_900_000_000;
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(start));
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_in_memory(Sealer::from_key_bytes([5; 32])).unwrap());
    let mut ca = FakeCa::new(clock.clone(), seed, six_or_ninety_days);
    configure(&mut ca, start);
    let ca = Arc::new(ca);
    for i in 0..count {
        let name = if i % 2 == 0 {
            format!("short{i}")
        } else {
            format!("long{i}")
        };
        store
            .create_certificate(&NewCertificate {
                name: CertName::parse(&name).unwrap(),
                domains: vec![DnsName::parse(&format!("{name}.example.test")).unwrap()],
                issuer: "fake".into(),
                key_kind: KeyKind::EcdsaP256,
                challenge: ChallengeKind::Http01,
                source: Source::Acme,
                profile: None,
                renew_before: None,
                solvers: Default::default(),
            })
            .await
            .unwrap();
    }
    // Created with the system's time: due at once in simulated time too.
    let mut issuers: BTreeMap<String, Arc<dyn Acme>> = BTreeMap::new();
    issuers.insert("fake".into(), ca.clone());
    let mut solvers: BTreeMap<String, Arc<dyn Solver>> = BTreeMap::new();
    solvers.insert("http-01".into(), Arc::new(NoSolver));
    let solvers = Arc::new(certfleet_server::registry::SolverRegistry::with_solvers(
        solvers,
    ));
    let issuance = Arc::new(Issuance::new(
        store.clone(),
        issuers,
        solvers,
        16,
        clock,
        "simulation".into(),
    ));
    World {
        store,
        ca,
        issuance,
        start,
    }
}

/// The lifetime rule's moment for a version, and the earliest the jitter can move it to.
fn rule_band(name: &str, not_before: UnixTime, not_after: UnixTime) -> (UnixTime, UnixTime) {
    let life = Lifetime {
        not_before,
        not_after,
    };
    let rule = policy::lifetime_rule(life);
    (rule - policy::jitter(name, life.secs()), rule)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_simulated_year_of_renewals_lets_nothing_expire() {
    let wall = Instant::now();
    let days: i64 = std::env::var("SIM_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(365);
    let count: usize = std::env::var("SIM_CERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let year = days * DAY;
    let w = world(count, 7, |ca, start| {
        ca.failure_rate = 0.01;
        ca.outage = (start + 100 * DAY, start + 100 * DAY + 6 * 3600);
        ca.ari_for = Box::new(half_with_ari);
    })
    .await;
    let (stop, stopped) = watch::channel(false);
    let scheduler = scheduler::spawn(w.issuance.clone(), stopped);
    tokio::time::sleep(Duration::from_secs(year as u64)).await;
    let end = w.start + year;
    let _ = stop.send(true);
    let _ = scheduler.await;

    verify(&w.ca.log.lock().unwrap(), w.start, count, days, end, wall);
    for cert in w.store.certificates().await.unwrap() {
        assert!(
            cert.not_after.unwrap() > end,
            "{}: the stored current version is valid",
            cert.name
        );
    }
}

fn verify(
    log: &crate::fake_ca::Log,
    start: UnixTime,
    count: usize,
    days: i64,
    end: UnixTime,
    wall: Instant,
) {
    let mut by_name: HashMap<&str, Vec<_>> = HashMap::new();
    for cert in &log.issued {
        by_name.entry(cert.name.as_str()).or_default().push(cert);
    }
    let mut calls: HashMap<&str, Vec<_>> = HashMap::new();
    for call in &log.calls {
        calls.entry(call.name.as_str()).or_default().push(call);
    }
    assert_eq!(by_name.len(), count, "every certificate was issued");
    let (mut renewals, mut in_window, mut by_rule) = (0, 0, 0);
    let mut ari_fallbacks = 0;
    for (name, versions) in &by_name {
        // 0 expirations: each version is replaced before it expires, the last outlives the year.
        assert!(
            versions[0].not_before <= start + 3600,
            "{name}: first issued late"
        );
        for pair in versions.windows(2) {
            let (old, new) = (pair[0], pair[1]);
            assert!(
                new.not_before < old.not_after,
                "{name}: expired at {} before {}",
                old.not_after,
                new.not_before
            );
            renewals += 1;
            // The first attempt of this renewal, and where it had to fall.
            let first = calls[name]
                .iter()
                .find(|c| c.at > old.not_before)
                .expect("an attempt");
            assert_eq!(
                first.replaces.as_deref(),
                Some(format!("fake-leaf:{name}:{}", old.order).as_str()),
                "{name}: the renewal order replaces the current version"
            );
            let window = old.window;
            let (low, high) = rule_band(name, old.not_before, old.not_after);
            let ari = half_with_ari(name);
            if ari && first.at >= window.start && first.at <= window.end + SLACK {
                in_window += 1;
            } else if first.at >= low && first.at <= high + SLACK {
                by_rule += 1;
                ari_fallbacks += usize::from(ari);
            } else {
                panic!(
                    "{name}: renewal attempt at {} outside the ARI window {}..{} and the lifetime rule {low}..{high}",
                    first.at, window.start, window.end
                );
            }
        }
        let last = versions.last().unwrap();
        assert!(
            last.not_after > end,
            "{name}: expires at the end of the year"
        );
    }
    // At most one order per renewal, plus the orders that real failures made useless.
    let invalid = log
        .calls
        .iter()
        .filter(|c| c.outcome == Outcome::Invalid)
        .count() as u64;
    assert_eq!(
        log.orders_created,
        log.issued.len() as u64 + invalid,
        "orders created = versions issued + orders the CA invalidated"
    );
    let failures = log
        .calls
        .iter()
        .filter(|c| c.outcome != Outcome::Issued)
        .count();
    let outage = log
        .calls
        .iter()
        .filter(|c| c.outcome == Outcome::Outage)
        .count();
    let resumed = log.calls.iter().filter(|c| c.resumed.is_some()).count();
    eprintln!(
        "simulated year: {} certificates, {} versions, {renewals} renewals ({in_window} in the ARI window, {by_rule} by the lifetime rule, {ari_fallbacks} of them after an ARI failure), \
         {} order calls ({failures} failed, {outage} in the outage, {resumed} continuing an order), {} orders created, {} ARI calls ({} failed), {:.1} s wall time",
        by_name.len(),
        log.issued.len(),
        log.calls.len(),
        log.orders_created,
        log.ari_calls,
        log.ari_failures,
        wall.elapsed().as_secs_f64()
    );
    assert!(outage > 0 || days < 101, "the outage hit some renewals");
}
