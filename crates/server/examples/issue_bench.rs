//! In-process issuance benchmark against a local Pebble (see docs/benchmarks.md, `bench/run`).
//!
//! Starts Pebble (no badNonce, no authz reuse, no validation sleeps), opens a SQLite store on a
//! temporary file exactly as the server does, serves the HTTP-01 responder on Pebble's httpPort
//! and drives [`AcmeIssuer`] directly. What is timed is `AcmeIssuer::issue` only: new order,
//! challenges published to the store, validation, finalize, download and chain check. Declaring
//! the certificate row beforehand (the solver's responses reference it) is not timed, and the
//! result is not stored as a version (`Store::add_version`), unlike in the server.
//!
//! ```sh
//! cargo run --release -p certfleet-server --example issue_bench -- [--sequential N] [--rounds R]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use certfleet_acme::{AcmeIssuer, IssuerConfig, OrderObserver};
use certfleet_core::{
    CertName, ChallengeKind, DnsName, KeyKind, NewCertificate, Solver, Source, Store,
};
use certfleet_solvers::Http01Solver;
use certfleet_store::{Sealer, SqliteStore};
use certfleet_testkit::{Pebble, PebbleOptions};

/// Names in the big certificate.
const BIG_NAMES: usize = 50;
/// Repetitions of the big certificate.
const BIG_RUNS: usize = 5;
/// Certificates issued at once in the concurrent phase.
const CONCURRENT: usize = 20;

struct NoObserver;

#[async_trait]
impl OrderObserver for NoObserver {
    async fn order_created(&self, _url: &str) {}
}

struct Bench {
    store: Arc<dyn Store>,
    issuer: Arc<AcmeIssuer>,
    solver: Arc<Http01Solver>,
}

impl Bench {
    /// Declare the certificate row the solver's responses point at (not timed).
    async fn declare(&self, name: &str, domains: &[DnsName]) {
        let new = NewCertificate {
            name: CertName::parse(name).expect("certificate name"),
            domains: domains.to_vec(),
            issuer: "bench".into(),
            key_kind: KeyKind::EcdsaP256,
            challenge: ChallengeKind::Http01,
            source: Source::Acme,
        };
        self.store
            .create_certificate(&new)
            .await
            .expect("declare certificate");
    }

    /// Issue `name` for `domains`; returns the time `AcmeIssuer::issue` took.
    async fn issue(&self, name: &str, domains: &[DnsName]) -> Duration {
        let start = Instant::now();
        let issued = self
            .issuer
            .issue(
                name,
                domains,
                KeyKind::EcdsaP256,
                self.solver.as_ref() as &dyn Solver,
                &NoObserver,
            )
            .await
            .unwrap_or_else(|e| panic!("issuing {name}: {e}"));
        let took = start.elapsed();
        assert!(!issued.chain.leaf_pem.is_empty());
        took
    }
}

fn names(prefix: &str, count: usize) -> Vec<DnsName> {
    (0..count)
        .map(|i| DnsName::parse(&format!("{prefix}-{i}.bench.test")).expect("DNS name"))
        .collect()
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

/// Median of a sorted slice (mean of the middle two for an even count).
fn median(v: &[Duration]) -> Duration {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn arg(args: &[String], flag: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{flag} takes a number"))
        })
        .unwrap_or(default)
}

/// Peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sequential = arg(&args, "--sequential", 20).max(1);
    let rounds = arg(&args, "--rounds", 3).max(1);

    let pebble = Pebble::start(PebbleOptions {
        nonce_reject: Some(0),
        authz_reuse: Some(0),
        va_nosleep: true,
        validity_secs: None,
    })
    .await;

    let data = tempfile::tempdir().expect("temp dir");
    let sealer = Sealer::from_key_bytes([7u8; 32]);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&data.path().join("certfleet.db"), sealer).expect("open store"));

    let responder = tokio::net::TcpListener::bind(("127.0.0.1", pebble.http01_port()))
        .await
        .expect("bind the HTTP-01 responder on Pebble's httpPort");
    let router = certfleet_solvers::responder::router(store.clone());
    tokio::spawn(async move {
        axum::serve(responder, router).await.expect("responder");
    });

    let issuer = AcmeIssuer::new(
        IssuerConfig {
            name: "bench".into(),
            directory_url: pebble.directory_url(),
            contacts: vec!["mailto:bench@example.test".into()],
            ca_roots: vec![PathBuf::from(pebble.ca_cert_path())],
            eab: None,
            request_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(120),
        },
        store.clone(),
    )
    .expect("issuer");
    let warm = Instant::now();
    issuer.account_url().await.expect("ACME account");
    println!("account ready in {} ms (not counted)", ms(warm.elapsed()));

    let bench = Arc::new(Bench {
        store: store.clone(),
        issuer: Arc::new(issuer),
        solver: Arc::new(Http01Solver::new(store.clone(), Duration::from_secs(3600))),
    });

    // (a) One name at a time.
    let mut single = Vec::with_capacity(sequential);
    for i in 0..sequential {
        let name = format!("seq-{i}");
        let domains = names(&name, 1);
        bench.declare(&name, &domains).await;
        single.push(bench.issue(&name, &domains).await);
    }
    let single = sorted(single);

    // (b) One certificate with 50 names.
    let mut big = Vec::with_capacity(BIG_RUNS);
    for r in 0..BIG_RUNS {
        let name = format!("big-{r}");
        let domains = names(&name, BIG_NAMES);
        bench.declare(&name, &domains).await;
        big.push(bench.issue(&name, &domains).await);
    }
    let big = sorted(big);

    // (c) 20 distinct certificates at once, fresh names every round.
    let mut together = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let mut jobs = Vec::with_capacity(CONCURRENT);
        for i in 0..CONCURRENT {
            let name = format!("b{r}-{i}");
            let domains = names(&name, 1);
            bench.declare(&name, &domains).await;
            jobs.push((name, domains));
        }
        let start = Instant::now();
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|(name, domains)| {
                let bench = bench.clone();
                tokio::spawn(async move { bench.issue(&name, &domains).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("issuance task");
        }
        together.push(start.elapsed());
    }
    let together = sorted(together);

    println!();
    println!("in-process issuance against Pebble (ECDSA P-256 keys; times in ms)");
    println!("| case | runs | min | median | max |");
    println!("|---|---|---|---|---|");
    for (label, v) in [
        ("1 name, sequential".to_string(), &single),
        (format!("{BIG_NAMES} names in one certificate"), &big),
        (
            format!("{CONCURRENT} certificates at once (wall)"),
            &together,
        ),
    ] {
        println!(
            "| {label} | {} | {} | {} | {} |",
            v.len(),
            ms(v[0]),
            ms(median(v)),
            ms(v[v.len() - 1])
        );
    }
    if let Some(kib) = peak_rss_kib() {
        println!(
            "peak RSS of the benchmark process: {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
}
