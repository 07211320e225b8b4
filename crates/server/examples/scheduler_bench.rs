//! Scheduler benchmark (docs/benchmarks.md): the cost of one scheduler pass with 10,000 and
//! 100,000 certificates in a SQLite store, and `certfleet cert ls --json` at 10,000.
//!
//! Rows are inserted directly (no CA). A pass is what the scheduler does each time it wakes:
//! `Store::claim_due` (find what is due, claim up to the free order slots) and
//! `Store::next_due` (when to wake next). Timed twice: with nothing due (the common case) and
//! with due certificates to claim (16 per pass, like a full set of order slots).
//!
//! `cargo run --release -p certfleet-server --example scheduler_bench [-- --certfleet PATH]`;
//! with `--certfleet` (the release binary) it also times the CLI against a real server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certfleet_core::Store;
use certfleet_core::time::{DAY, now};
use certfleet_store::{Sealer, SqliteStore};

const KEY: [u8; 32] = [42; 32];
/// Share of certificates due at the start of the "due" passes.
const DUE_PER_MILLE: usize = 10;
/// Claims per pass: the default order slots.
const SLOTS: u32 = 16;
const PASSES: usize = 50;

fn populate(db: &Path, count: usize) {
    let store = SqliteStore::open(db, Sealer::from_key_bytes(KEY)).expect("store");
    drop(store);
    let mut conn = rusqlite::Connection::open(db).expect("open");
    let tx = conn.transaction().expect("transaction");
    let t = now();
    {
        let mut cert = tx
            .prepare(
                "INSERT INTO certificates (id, name, domains, issuer, key_kind, challenge, source,
                    status, current_version, failure_streak, next_due, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'default', 'ecdsa-p256', 'http-01', 'acme', 'valid', 1, 0,
                    ?4, ?5, ?5)",
            )
            .expect("prepare");
        let mut version = tx
            .prepare(
                "INSERT INTO versions (certificate_id, seq, serial, not_before, not_after,
                    leaf_pem, chain_pem, key_kind, sealed_key, issued_at)
                 VALUES (?1, 1, ?2, ?3, ?4, ?5, '', 'ecdsa-p256', x'00', ?3)",
            )
            .expect("prepare");
        let leaf = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            "A".repeat(700)
        );
        for i in 0..count {
            let id = format!("{i:032x}");
            let name = format!("c{i:06}");
            let domains = format!("[\"{name}.example.com\"]");
            // Spread over the next 60 days; the first 1 % due now.
            let due = if i * 1000 < count * DUE_PER_MILLE {
                t - 60
            } else {
                t + 3600 + (i as i64 * 7919) % (60 * DAY)
            };
            cert.execute(rusqlite::params![id, name, domains, due, t])
                .expect("insert");
            version
                .execute(rusqlite::params![
                    id,
                    format!("{i:x}"),
                    t - DAY,
                    t + 89 * DAY,
                    leaf
                ])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn median_and_p95(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 95 / 100]),
    )
}

async fn passes(dir: &Path, count: usize) {
    let db = dir.join("certfleet.db");
    let started = Instant::now();
    populate(&db, count);
    let populated = started.elapsed();
    let store = SqliteStore::open(&db, Sealer::from_key_bytes(KEY)).expect("store");
    let t = now();
    let mut idle = Vec::new();
    for _ in 0..PASSES {
        let begin = Instant::now();
        let claimed = store.claim_due("bench", t - 3600, t, SLOTS).await.unwrap();
        let next = store.next_due().await.unwrap();
        idle.push(begin.elapsed());
        assert!(claimed.is_empty() && next.is_some());
    }
    // Claim the due certificates, SLOTS per pass, as a scheduler with free slots would.
    let mut due = Vec::new();
    let mut claimed_total = 0;
    loop {
        let begin = Instant::now();
        let claimed = store.claim_due("bench", t, t + 900, SLOTS).await.unwrap();
        let next = store.next_due().await.unwrap();
        let elapsed = begin.elapsed();
        assert!(next.is_some());
        if claimed.is_empty() {
            break;
        }
        due.push(elapsed);
        claimed_total += claimed.len();
    }
    let claiming_passes = due.len();
    let begin = Instant::now();
    let all = store.certificates().await.unwrap();
    let list = begin.elapsed();
    let (idle_med, idle_p95) = median_and_p95(idle);
    let (due_med, due_p95) = median_and_p95(due);
    println!(
        "{count:>7} certificates: pass with nothing due {idle_med:.2} ms (p95 {idle_p95:.2}); \
         pass claiming {SLOTS} due {due_med:.2} ms (p95 {due_p95:.2}; {claimed_total} claimed in {claiming_passes} passes); \
         listing all {} in {:.0} ms; inserting took {:.1} s",
        all.len(),
        list.as_secs_f64() * 1000.0,
        populated.as_secs_f64()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `certfleet cert ls --json` against a real server with `count` certificates.
fn cli_list(bin: &Path, dir: &Path, count: usize) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    populate(&data.join("certfleet.db"), count);
    // Nothing due: the server only serves.
    rusqlite::Connection::open(data.join("certfleet.db"))
        .unwrap()
        .execute("UPDATE certificates SET next_due = ?1", [now() + 30 * DAY])
        .unwrap();
    use base64::Engine as _;
    let kek = base64::engine::general_purpose::STANDARD.encode(KEY);
    let api = free_port();
    let mut server = Command::new(bin)
        .arg("--data-dir")
        .arg(&data)
        .args(["server", "--listen", &format!("127.0.0.1:{api}")])
        .args(["--http01-listen", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--directory",
            &format!("https://127.0.0.1:{}/dir", free_port()),
        ])
        .env("CERTFLEET_KEK", &kek)
        .env("CERTFLEET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start certfleet server");
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
            && data.join("server.json").exists()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let mut runs = Vec::new();
    for _ in 0..7 {
        let begin = Instant::now();
        let out = Command::new(bin)
            .arg("--data-dir")
            .arg(&data)
            .args(["cert", "ls", "--json"])
            .output()
            .expect("cert ls");
        runs.push(begin.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed.len(), count);
    }
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    let (med, p95) = median_and_p95(runs);
    println!(
        "{count:>7} certificates: `certfleet cert ls --json` end to end {med:.0} ms (max of 7: {p95:.0} ms)"
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args
        .iter()
        .position(|a| a == "--certfleet")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    for count in [10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        passes(dir.path(), count).await;
    }
    match bin {
        Some(bin) => {
            let dir = tempfile::tempdir().unwrap();
            cli_list(&bin, dir.path(), 10_000);
        }
        None => println!("(pass --certfleet target/release/certfleet to time `cert ls --json`)"),
    }
}
