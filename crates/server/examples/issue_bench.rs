//! In-process issuance benchmark against a local Pebble (see docs/benchmarks.md, `bench/run`).
//!
//! Starts Pebble (no badNonce, no authz reuse, no validation sleeps), opens a SQLite store on a
//! temporary file exactly as the server does, serves the HTTP-01 responder on Pebble's httpPort
//! and drives [`AcmeIssuer`] directly. What is timed is `AcmeIssuer::issue` only: new order,
//! challenges published to the store, validation, finalize, download and chain check. Declaring
//! the certificate row beforehand (the solver's responses reference it), creating the ACME
//! account and starting Pebble are not timed, and the result is not stored as a version
//! (`Store::add_version`), unlike in the server.
//!
//! Each concurrent round runs against a fresh Pebble: Pebble 2.4 can deadlock under concurrent
//! orders (docs/benchmarks.md); a round that hits it is reported and run again on a new Pebble.
//!
//! ```sh
//! cargo run --release -p certfleet-server --example issue_bench -- [--sequential N] [--rounds R]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::serve::ListenerExt;
use certfleet_acme::{AcmeIssuer, IssuerConfig, OrderObserver};
use certfleet_core::{
    CertName, ChallengeKind, DnsName, KeyKind, NewCertificate, Secret, Solver, SolverSet, Source,
    Store, StoreError,
};
use certfleet_solvers::{Http01Solver, LiveTokens};
use certfleet_store::{Sealer, SqliteStore};
use certfleet_testkit::{Pebble, PebbleOptions};
use tokio::task::JoinHandle;

/// Names in the big certificate.
const BIG_NAMES: usize = 50;
/// Repetitions of the big certificate.
const BIG_RUNS: usize = 5;
/// Certificates issued at once in the concurrent phase.
const CONCURRENT: usize = 20;
/// Bound on one request to the CA; a deadlocked Pebble costs this much per attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh-Pebble attempts per concurrent round before giving up.
const ROUND_ATTEMPTS: usize = 4;

struct NoObserver;

#[async_trait]
impl OrderObserver for NoObserver {
    async fn order_created(&self, _url: &str) {}

    async fn key_generated(&self, _url: &str, _key: &Secret) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One Pebble with its responder and an issuer whose account is ready.
struct Env {
    issuer: AcmeIssuer,
    responder: JoinHandle<()>,
    // Dropped last: stops Pebble and removes its directory.
    pebble: Pebble,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.responder.abort();
    }
}

impl Env {
    async fn start(store: &Arc<dyn Store>, live: &Arc<LiveTokens>) -> Env {
        let pebble = Pebble::start(PebbleOptions {
            nonce_reject: Some(0),
            authz_reuse: Some(0),
            va_nosleep: true,
            validity_secs: None,
            eab_keys: Vec::new(),
            // The figures in docs/benchmarks.md were measured with Debian's 2.4.
            release: certfleet_testkit::PebbleRelease::Bookworm,
            ..PebbleOptions::fast()
        })
        .await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", pebble.http01_port()))
            .await
            .expect("bind the HTTP-01 responder on Pebble's httpPort");
        // As in the server (app.rs): no Nagle delays on the responder's connections.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let router = certfleet_solvers::responder::router(live.clone());
        let responder = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("responder");
        });
        let issuer = AcmeIssuer::new(
            IssuerConfig {
                name: "bench".into(),
                directory_url: pebble.directory_url(),
                contacts: vec!["mailto:bench@example.test".into()],
                ca_roots: vec![PathBuf::from(pebble.ca_cert_path())],
                eab: None,
                request_timeout: REQUEST_TIMEOUT,
                order_timeout: Duration::from_secs(120),
                preferred_chain: None,
                default_profile: None,
            },
            store.clone(),
        )
        .expect("issuer");
        issuer.account_url().await.expect("ACME account");
        Env {
            issuer,
            responder,
            pebble,
        }
    }

    /// Issue `name` for `domains`; returns the time `AcmeIssuer::issue` took.
    async fn issue(
        &self,
        solver: &Arc<Http01Solver>,
        name: &str,
        domains: &[DnsName],
    ) -> Result<Duration, String> {
        let start = Instant::now();
        self.issuer
            .issue(
                name,
                domains,
                KeyKind::EcdsaP256,
                &SolverSet::single(domains, solver.clone() as Arc<dyn Solver>),
                &NoObserver,
            )
            .await
            .map_err(|e| format!("issuing {name} ({} names): {e}", domains.len()))?;
        Ok(start.elapsed())
    }

    /// The last lines of Pebble's log, indented.
    fn log_tail(&self, lines: usize) -> String {
        let log = self.pebble.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| format!("  {l}\n"))
            .collect()
    }
}

/// Declare the certificate row the solver's responses point at (not timed).
async fn declare(store: &Arc<dyn Store>, name: &str, domains: &[DnsName]) {
    let new = NewCertificate {
        name: CertName::parse(name).expect("certificate name"),
        domains: domains.to_vec(),
        issuer: "bench".into(),
        key_kind: KeyKind::EcdsaP256,
        challenge: ChallengeKind::Http01,
        source: Source::Acme,
        solvers: Default::default(),
        profile: None,
        renew_before: None,
    };
    store
        .create_certificate(&new)
        .await
        .expect("declare certificate");
}

fn names(prefix: &str, count: usize) -> Vec<DnsName> {
    (0..count)
        .map(|i| DnsName::parse(&format!("{prefix}-{i}.bench.test")).expect("DNS name"))
        .collect()
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

/// `message` with the tail of `env`'s Pebble log, for a failed measurement.
fn failure(env: &Env, message: &str) -> String {
    format!("{message}\nPebble's log, last lines:\n{}", env.log_tail(20))
}

/// Sorted durations of the three measurements and the number of failed concurrent attempts.
struct Measured {
    single: Vec<Duration>,
    big: Vec<Duration>,
    together: Vec<Duration>,
    hangs: usize,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sequential = arg(&args, "--sequential", 20).max(1);
    let rounds = arg(&args, "--rounds", 3).max(1);

    let data = tempfile::tempdir().expect("temp dir");
    let sealer = Sealer::from_key_bytes([7u8; 32]);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&data.path().join("certfleet.db"), sealer).expect("open store"));
    let result = measure(&store, sequential, rounds).await;
    // Every Pebble is stopped by now; remove the store before a possible exit.
    drop(store);
    drop(data);
    let m = match result {
        Ok(m) => m,
        Err(e) => {
            eprintln!("issue_bench: {e}");
            std::process::exit(1);
        }
    };

    println!("in-process issuance against Pebble (ECDSA P-256 keys; times in ms)");
    println!("| case | runs | min | median | max |");
    println!("|---|---|---|---|---|");
    for (label, v) in [
        ("1 name, one after another".to_string(), &m.single),
        (format!("{BIG_NAMES} names in one certificate"), &m.big),
        (
            format!("{CONCURRENT} certificates at once (wall)"),
            &m.together,
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
    println!(
        "concurrent attempts that failed (Pebble deadlock, retried on a fresh Pebble): {}",
        m.hangs
    );
    if let Some(kib) = peak_rss_kib() {
        println!(
            "peak RSS of the benchmark process (Pebble not included): {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
}

async fn measure(
    store: &Arc<dyn Store>,
    sequential: usize,
    rounds: usize,
) -> Result<Measured, String> {
    let live = LiveTokens::new();
    let solver = Arc::new(
        Http01Solver::new(store.clone(), Duration::from_secs(3600)).with_live(live.clone()),
    );

    // (a) One name at a time, and (b) one certificate with 50 names, on one Pebble.
    let env = Env::start(store, &live).await;
    let mut single = Vec::with_capacity(sequential);
    for i in 0..sequential {
        let name = format!("seq-{i}");
        let domains = names(&name, 1);
        declare(store, &name, &domains).await;
        let took = env.issue(&solver, &name, &domains).await;
        single.push(took.map_err(|e| failure(&env, &e))?);
    }
    let mut big = Vec::with_capacity(BIG_RUNS);
    for r in 0..BIG_RUNS {
        let name = format!("big-{r}");
        let domains = names(&name, BIG_NAMES);
        declare(store, &name, &domains).await;
        let took = env.issue(&solver, &name, &domains).await;
        big.push(took.map_err(|e| failure(&env, &e))?);
    }
    drop(env);

    // (c) 20 distinct certificates at once, each round on a fresh Pebble with fresh names.
    let mut together = Vec::with_capacity(rounds);
    let mut hangs = 0;
    for r in 0..rounds {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let env = Arc::new(Env::start(store, &live).await);
            let mut jobs = Vec::with_capacity(CONCURRENT);
            for i in 0..CONCURRENT {
                let name = format!("b{r}a{attempt}-{i}");
                let domains = names(&name, 1);
                declare(store, &name, &domains).await;
                jobs.push((name, domains));
            }
            let start = Instant::now();
            let tasks: Vec<_> = jobs
                .into_iter()
                .map(|(name, domains)| {
                    let (env, solver) = (env.clone(), solver.clone());
                    tokio::spawn(async move { env.issue(&solver, &name, &domains).await })
                })
                .collect();
            let mut failures = Vec::new();
            for task in tasks {
                match task.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => failures.push(e),
                    Err(e) => failures.push(format!("task: {e}")),
                }
            }
            let wall = start.elapsed();
            if failures.is_empty() {
                together.push(wall);
                break;
            }
            hangs += 1;
            eprintln!(
                "concurrent round {r}, attempt {attempt}: {} of {CONCURRENT} failed after {} ms \
                 (first: {}); retrying on a fresh Pebble",
                failures.len(),
                ms(wall),
                failures[0]
            );
            if attempt >= ROUND_ATTEMPTS {
                return Err(failure(
                    &env,
                    &format!("concurrent round {r} failed {attempt} times"),
                ));
            }
        }
    }

    single.sort();
    big.sort();
    together.sort();
    Ok(Measured {
        single,
        big,
        together,
        hangs,
    })
}
