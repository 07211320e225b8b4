//! TLS-ALPN-01 validated by real Pebble, and HTTP-01 answered by a second responder on
//! another port that reads the Redis mirror (`certfleet responder`).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use certfleet_testkit::{Guard, Pebble, PebbleOptions, Redis, child_command, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::dns01::{leaf_names, start, write_config};
use crate::harness::{Server, bin, stderr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_validated_by_pebble() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let listen = format!("127.0.0.1:{}", pebble.tls_alpn_port());
    let server = start(
        &pebble,
        dir.path(),
        &config,
        &["--tls-alpn-listen", &listen],
    );
    server.cli_ok(&[
        "cert",
        "add",
        "alpn",
        "-d",
        "alpn.example.test",
        "-d",
        "www.alpn.example.test",
        "--challenge",
        "tls-alpn-01",
        "--wait",
    ]);
    assert_eq!(
        leaf_names(&server, "alpn", dir.path()),
        ["alpn.example.test", "www.alpn.example.test"]
    );
    assert!(
        server.log().contains("answered a TLS-ALPN-01 handshake"),
        "{}",
        server.log()
    );
    // Without the listener there is no tls-alpn-01 solver: a clear refusal.
    let out = server.cli(&[
        "cert",
        "add",
        "wild",
        "-d",
        "*.alpn.example.test",
        "--challenge",
        "tls-alpn-01",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("only dns-01"), "{}", stderr(&out));
}

/// `certfleet responder` reading `redis`, on `port`.
/// Killed by PID when dropped.
struct Responder {
    _guard: Guard,
}

impl Responder {
    fn start(redis: &Redis, port: u16) -> Responder {
        let guard = Guard(
            child_command(std::path::Path::new(bin()))
                .args([
                    "responder",
                    "--redis",
                    &redis.url(),
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--resync-ms",
                    "200",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn certfleet responder"),
        );
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Responder { _guard: guard };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("certfleet responder did not listen on {port}");
    }
}

/// The status the responder on `port` gives `GET path` for `host`.
async fn status_for(port: u16, path: &str, host: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Stands on Pebble's httpPort and forwards to the responder on `target`. When `flush` is
/// set, it first flushes Redis and waits until the responder stops serving the token: a flush
/// in the middle of the challenge, between "ready" and the CA's request.
async fn proxy(listener: TcpListener, target: u16, redis: Arc<Redis>, flush: Arc<AtomicBool>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let (redis, flush) = (redis.clone(), flush.clone());
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let Ok(n) = client.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&buf[..n]);
            }
            if flush.load(Ordering::SeqCst) {
                let text = String::from_utf8_lossy(&head).to_string();
                let path = text.split(' ').nth(1).unwrap_or_default().to_string();
                let host = text
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Host: ")
                            .or_else(|| l.strip_prefix("host: "))
                    })
                    .unwrap_or_default()
                    .to_string();
                redis.cli(&["FLUSHALL"]).await;
                let started = Instant::now();
                loop {
                    if status_for(target, &path, &host).await == 404 {
                        break;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "the responder kept serving after FLUSHALL"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            if upstream.write_all(&head).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_responders_reading_redis_answer_pebble_and_a_flush_fails_cleanly() {
    let redis = Arc::new(Redis::start().await);
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    // Two responders on different loopback ports, both reading the one Redis; Pebble reaches
    // the second one (through the proxy), the self-check asks both.
    let (first_port, remote_port) = (free_port(), free_port());
    let _first = Responder::start(&redis, first_port);
    let _second = Responder::start(&redis, remote_port);
    let flush = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind(("127.0.0.1", pebble.http01_port()))
        .await
        .unwrap();
    tokio::spawn(proxy(listener, remote_port, redis.clone(), flush.clone()));

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[solvers]]\ntype = \"http-01\"\nredis = {{ url = \"{}\" }}\n\
             self_check = [\"http://127.0.0.1:{first_port}\", \"http://127.0.0.1:{remote_port}\"]\n",
            redis.url()
        ),
    );
    // The server's own responder listens elsewhere: Pebble only ever reaches the second one.
    let server = Server::start_with(
        pebble.directory_url(),
        pebble.ca_cert_path().to_path_buf(),
        free_port(),
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    server.cli_ok(&["cert", "add", "first", "-d", "first.example.test", "--wait"]);
    assert_eq!(
        leaf_names(&server, "first", dir.path()),
        ["first.example.test"]
    );

    flush.store(true, Ordering::SeqCst);
    let out = server.cli(&[
        "cert",
        "add",
        "flushed",
        "-d",
        "flushed.example.test",
        "--wait",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "the authorization failed: {}",
        stderr(&out)
    );
    let shown: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", "flushed", "--json"])).unwrap();
    let error = shown["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("flushed.example.test") && error.contains("404"),
        "{error}"
    );
    assert_eq!(
        redis.cli(&["DBSIZE"]).await.trim(),
        "0",
        "nothing left in Redis"
    );

    flush.store(false, Ordering::SeqCst);
    server.cli_ok(&["cert", "renew", "flushed", "--wait"]);
    assert_eq!(
        leaf_names(&server, "flushed", dir.path()),
        ["flushed.example.test"]
    );
}

/// `certfleet dns acme-dns register` against a local server speaking acme-dns's documented
/// `/register`: the account is saved (mode 0600) and the CNAME to create is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_dns_register_prints_the_cname_and_saves_the_account() {
    use axum::Router;
    use axum::routing::post;
    let app = Router::new().route(
        "/register",
        post(|| async {
            (
                axum::http::StatusCode::CREATED,
                r#"{"username":"u-1","password":"p-1","fulldomain":"d420c923-bbd7-4056-ab64-c3ca54c9b3cf.auth.acme-dns.test","subdomain":"d420c923-bbd7-4056-ab64-c3ca54c9b3cf","allowfrom":[]}"#,
            )
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("acme-dns.json");
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args([
            "dns",
            "acme-dns",
            "register",
            "--api",
            &format!("http://{addr}"),
            "--credentials",
            creds.to_str().unwrap(),
        ]);
        cmd.args(extra);
        cmd.output().unwrap()
    };
    // Blocking is fine here: the second worker thread serves the API.
    let out = run(&["--domain", "*.example.test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "_acme-challenge.example.test. CNAME d420c923-bbd7-4056-ab64-c3ca54c9b3cf.auth.acme-dns.test.\n"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&creds).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(saved["example.test"]["username"], "u-1");
    let out = run(&["--domain", "bad_name.test"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad_name.test"), "{}", stderr(&out));
}
