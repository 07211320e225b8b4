//! Fleet benchmark (docs/benchmarks.md): time from a new version stored to every agent
//! verified, with N agents as separate `certfleet agent` processes, against real nginx or stub
//! TLS endpoints; then the agents' idle memory and wake-ups.
//!
//! ```text
//! fleet_bench --bin target/release/certfleet --agents 10 --nginx --rounds 20
//! fleet_bench --bin target/release/certfleet --agents 100 --rounds 20 --idle-secs 30
//! ```
//!
//! A stub endpoint is a TLS listener in this process that reads the agent's `fullchain.pem` and
//! `privkey.pem` at every handshake (so its "reload" hook is `true`). Everything listens on
//! 127.0.0.1 at free ports; every process started is stopped by its PID at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certfleet_testkit::{Nginx, NginxOptions, Pebble, PebbleOptions, child_command, free_port};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Bound on one round (a renewal until every agent verified it).
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
/// Interval of the polls that time a round (each is one API request on loopback).
const POLL: Duration = Duration::from_millis(10);

struct Args {
    bin: PathBuf,
    agents: usize,
    nginx: bool,
    rounds: usize,
    idle_secs: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        bin: PathBuf::from("target/release/certfleet"),
        agents: 10,
        nginx: false,
        rounds: 20,
        idle_secs: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("a value after the flag");
        match a.as_str() {
            "--bin" => args.bin = PathBuf::from(value()),
            "--agents" => args.agents = value().parse().expect("--agents N"),
            "--nginx" => args.nginx = true,
            "--rounds" => args.rounds = value().parse().expect("--rounds N"),
            "--idle-secs" => args.idle_secs = value().parse().expect("--idle-secs N"),
            other => panic!("unknown argument {other}; see the file's docs"),
        }
    }
    args
}

/// A child process killed by PID on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the files at every handshake.
#[derive(Debug)]
struct FileResolver {
    dir: PathBuf,
}

impl ResolvesServerCert for FileResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.dir.join("fullchain.pem"))
                .ok()?
                .collect::<Result<_, _>>()
                .ok()?;
        let key = PrivateKeyDer::from_pem_file(self.dir.join("privkey.pem")).ok()?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = provider.key_provider.load_private_key(key).ok()?;
        Some(Arc::new(CertifiedKey::new(chain, key)))
    }
}

/// A stub TLS endpoint serving whatever is in `dir`.
async fn stub(dir: PathBuf) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FileResolver { dir }));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await;
            });
        }
    });
    addr
}

fn cli(bin: &Path, data: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certfleet {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `GET /api/v1/certificates/www` over one plain loopback connection (no CLI process per poll,
/// so that polling does not load the machine being measured).
fn cert(api: &str, token: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api).expect("connect to the API");
    let request = format!(
        "GET /api/v1/certificates/www HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn status_value(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Context switches of every thread of `pid`, and its CPU time in clock ticks.
fn activity(pid: u32) -> (u64, u64) {
    let mut switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            for key in ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"] {
                switches += text
                    .lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    (switches, ticks)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let bin = std::fs::canonicalize(&args.bin).expect("--bin: the release certfleet binary");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let tls = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(work.path().join("server.log")).unwrap();
    let _server = Proc(
        child_command(&bin)
            .arg("--data-dir")
            .arg(&data)
            .args(["server", "--listen", &format!("127.0.0.1:{}", free_port())])
            .args([
                "--http01-listen",
                &format!("127.0.0.1:{}", pebble.http01_port()),
            ])
            .args(["--tls-listen", &tls, "--directory", &pebble.directory_url()])
            .arg("--ca-root")
            .arg(pebble.ca_cert_path())
            .env("CERTFLEET_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let info = loop {
        let read = std::fs::read_to_string(data.join("server.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|v| v["tls_fingerprint"].is_string());
        if let Some(v) = read {
            break v;
        }
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = info["tls_api"].as_str().unwrap().to_string();
    let api = info["api"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let admin = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let pin = info["tls_fingerprint"].as_str().unwrap().to_string();
    cli(
        &bin,
        &data,
        &[
            "cert",
            "add",
            "www",
            "--domain",
            "www.example.test",
            "--label",
            "app=www",
            "--wait",
        ],
    );

    let mut nginxes = Vec::new();
    let mut agents = Vec::new();
    for i in 0..args.agents {
        let dir = work.path().join(format!("agent-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (target, verify, reload) = if args.nginx {
            let nginx = Nginx::start(NginxOptions::new("www", "www.example.test"));
            let reload = nginx.reload_argv();
            let out = (nginx.cert_dir_template(), nginx.tls_addr(), reload);
            nginxes.push(nginx);
            out
        } else {
            let certs = dir.join("certs");
            let addr = stub(certs.join("www")).await;
            (
                format!("{}/{{name}}", certs.display()),
                addr,
                vec!["true".to_string()],
            )
        };
        let token = cli(
            &bin,
            &data,
            &[
                "agent",
                "token",
                "create",
                &format!("bench-{i}"),
                "--selector",
                "app=www",
            ],
        );
        std::fs::write(dir.join("token"), token.trim()).unwrap();
        let reload: Vec<String> = reload.iter().map(|a| format!("{a:?}")).collect();
        let config = format!(
            "server = {url:?}\ntoken_file = {:?}\npin = {pin:?}\nstate_dir = {:?}\nwatch_timeout_secs = 120\n\n[[targets]]\ntype = \"files\"\ndir = {target:?}\nreload = [{}]\nverify = \"{verify}\"\n",
            dir.join("token").display().to_string(),
            dir.join("state").display().to_string(),
            reload.join(", ")
        );
        std::fs::write(dir.join("agent.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        agents.push(Proc(
            child_command(&bin)
                .args(["agent", "--config"])
                .arg(dir.join("agent.toml"))
                .env("CERTFLEET_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
    }
    let n = args.agents as u64;
    let in_sync = |v: &serde_json::Value| v["deployed"]["in_sync"].as_u64().unwrap_or(0);
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while in_sync(&cert(&api, &admin)) < n {
        assert!(
            Instant::now() < deadline,
            "the first deployment did not converge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{} agents in sync; timing {} renewals", n, args.rounds);

    let mut times = Vec::new();
    for round in 0..args.rounds {
        let before = cert(&api, &admin)["version"].as_u64().unwrap();
        cli(&bin, &data, &["cert", "renew", "www"]);
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let stored = loop {
            let c = cert(&api, &admin);
            if c["version"].as_u64().unwrap() > before {
                break Instant::now();
            }
            assert!(Instant::now() < deadline, "round {round}: no new version");
            tokio::time::sleep(POLL).await;
        };
        loop {
            if in_sync(&cert(&api, &admin)) == n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: agents did not converge"
            );
            tokio::time::sleep(POLL).await;
        }
        let ms = stored.elapsed().as_secs_f64() * 1000.0;
        eprintln!("round {round}: {ms:.0} ms");
        times.push(ms);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "agents={} endpoints={} rounds={} stored->all verified ms: p50={:.0} p90={:.0} p99={:.0} max={:.0}",
        n,
        if args.nginx { "nginx" } else { "stub" },
        times.len(),
        percentile(&times, 50.0),
        percentile(&times, 90.0),
        percentile(&times, 99.0),
        times.last().copied().unwrap_or(f64::NAN)
    );

    // Idle: let blocking threads wind down, then watch for `idle_secs`.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let pids: Vec<u32> = agents.iter().map(|a| a.0.id()).collect();
    let before: Vec<(u64, u64)> = pids.iter().map(|p| activity(*p)).collect();
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let after: Vec<(u64, u64)> = pids.iter().map(|p| activity(*p)).collect();
    let mut rss: Vec<f64> = pids
        .iter()
        .map(|p| status_value(*p, "VmRSS:") as f64 / 1024.0)
        .collect();
    rss.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let switches: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a.0 - b.0).collect();
    let ticks: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a.1 - b.1).collect();
    let threads: Vec<u64> = pids.iter().map(|p| status_value(*p, "Threads:")).collect();
    println!(
        "idle agent RSS MiB: median={:.1} max={:.1}; over {} s idle: context switches max={} total={}, CPU ticks max={}; threads max={}",
        percentile(&rss, 50.0),
        rss.last().copied().unwrap_or(0.0),
        args.idle_secs,
        switches.iter().max().unwrap_or(&0),
        switches.iter().sum::<u64>(),
        ticks.iter().max().unwrap_or(&0),
        threads.iter().max().unwrap_or(&0),
    );
    drop(agents);
    drop(nginxes);
}
