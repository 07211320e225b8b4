//! Integration tests: start real Pebble instances (needs `apt-get install -y pebble`).

use std::time::{Duration, Instant};

use certfleet_testkit::{Pebble, PebbleOptions, free_port, require_program};

#[test]
fn free_port_is_bindable() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port from free_port is free");
}

#[test]
fn require_program_finds_pebble_and_names_missing_ones() {
    assert!(require_program("pebble", "apt-get install -y pebble").is_file());
    assert!(require_program("/bin/sh", "n/a").is_absolute());
    let err =
        std::panic::catch_unwind(|| require_program("no-such-prog-xyz", "apt-get install -y xyz"))
            .expect_err("missing program must panic");
    let msg = err.downcast_ref::<String>().expect("panic message");
    assert!(
        msg.contains("no-such-prog-xyz") && msg.contains("apt-get install -y xyz"),
        "{msg}"
    );
}

#[tokio::test]
async fn pebble_serves_directory_and_roots() {
    let started = Instant::now();
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    eprintln!("Pebble ready in {:?}", started.elapsed());

    let url = pebble.directory_url();
    assert!(
        url.starts_with("https://127.0.0.1:") && url.ends_with("/dir"),
        "{url}"
    );
    let dir = std::fs::read_to_string(pebble.dir().join("pebble.json")).unwrap();
    assert!(
        dir.contains(&format!("\"httpPort\": {}", pebble.http01_port())),
        "{dir}"
    );
    assert!(
        dir.contains(&format!("\"tlsPort\": {}", pebble.tls_alpn_port())),
        "{dir}"
    );
    assert!(!dir.contains("certificateValidityPeriod"), "{dir}");
    assert_eq!(
        std::fs::read_to_string(pebble.ca_cert_path()).unwrap(),
        pebble.ca_cert_pem()
    );

    let root = pebble.root_pem().await;
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    let intermediate = pebble.intermediate_pem().await;
    assert!(
        intermediate.starts_with("-----BEGIN CERTIFICATE-----"),
        "{intermediate}"
    );
    assert_ne!(root, intermediate);
    assert!(pebble.log().contains("Listening on"), "{}", pebble.log());
    assert!(
        pebble
            .challtestsrv_management_url()
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(
        dns_a(pebble.dns_port(), "www.example.test").await,
        [127, 0, 0, 1]
    );
}

/// One raw DNS A query to challtestsrv over UDP; returns the first answer's address.
async fn dns_a(port: u16, name: &str) -> [u8; 4] {
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]; // id, RD, 1 question
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query, ("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 512];
    let recv = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf));
    let n = recv.await.expect("DNS answer in time").unwrap();
    assert_eq!(
        u16::from_be_bytes([buf[6], buf[7]]),
        1,
        "one answer: {:?}",
        &buf[..n]
    );
    // Skip the echoed question, then the answer's owner name (a pointer or labels).
    let mut i = query.len();
    while buf[i] != 0 && buf[i] & 0xC0 == 0 {
        i += 1 + buf[i] as usize;
    }
    i += if buf[i] == 0 { 1 } else { 2 };
    // type A, class IN, TTL (4), rdlength 4, then the address.
    assert_eq!(&buf[i..i + 4], &[0, 1, 0, 1], "{:?}", &buf[..n]);
    assert_eq!(&buf[i + 8..i + 10], &[0, 4], "{:?}", &buf[..n]);
    buf[i + 10..i + 14].try_into().unwrap()
}

#[tokio::test]
async fn directory_lists_new_order() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let body = pebble.directory_json().await;
    assert!(body.contains("newOrder"), "{body}");
}

#[tokio::test]
async fn two_pebbles_run_at_once_and_stop_on_drop() {
    let opts = PebbleOptions {
        validity_secs: Some(600),
        ..PebbleOptions::default()
    };
    let (a, b) = tokio::join!(Pebble::start(opts.clone()), Pebble::start(opts));
    assert_ne!(a.directory_url(), b.directory_url());
    assert_ne!(a.ca_cert_pem(), b.ca_cert_pem());
    let config = std::fs::read_to_string(a.dir().join("pebble.json")).unwrap();
    assert!(
        config.contains("\"certificateValidityPeriod\": 600"),
        "{config}"
    );
    assert!(
        a.root_pem()
            .await
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(
        b.root_pem()
            .await
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let port = a.acme_port();
    let dir = a.dir().to_path_buf();
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "port {port} still open after drop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!dir.exists(), "temp dir removed on drop");
    assert!(
        b.root_pem()
            .await
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "b survives a's drop"
    );
}

#[test]
fn nginx_starts_as_nobody_reloads_refuses_a_broken_config_and_stops() {
    use certfleet_testkit::{Nginx, NginxOptions};
    let mut nginx = Nginx::start(NginxOptions::new("www", "www.example.test"));
    let addr = nginx.tls_addr();
    let pid = nginx.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains("65534"), "runs as nobody: {uid_line}");
    nginx.reload();
    nginx.write_config(true);
    let argv = nginx.check_argv();
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nginx -t refuses the broken config");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("this_is_not_a_directive"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nginx.write_config(false);
    nginx.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "nginx still listens after stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// GET `url` through a client that trusts only `ca_pem`; (status, Retry-After, body) or the error.
async fn get(ca_pem: &str, url: &str) -> Result<(u16, Option<String>, String), String> {
    use http_body_util::{BodyExt, Empty};
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Empty<bytes::Bytes>>(connector);
    let request = http::Request::get(url)
        .header("User-Agent", "testkit-test")
        .body(Empty::new())
        .unwrap();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((
        status,
        retry_after,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

#[tokio::test]
async fn fault_proxy_forwards_injects_and_records() {
    use certfleet_testkit::proxy::{Action, FaultProxy, Match, Rule};
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let proxy = FaultProxy::start(&pebble).await;
    let ca = pebble.ca_cert_pem();

    // Forwarded with the client's Host: Pebble's URLs lead back to the proxy.
    let (status, _, body) = get(&ca, &proxy.directory_url()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("https://127.0.0.1:{}/order-plz", proxy.port())),
        "{body}"
    );

    // An injected 503 with Retry-After, once; then Pebble again.
    proxy.add(Rule::new(Match::get("/dir"), Action::unavailable("7")).times(1));
    let (status, retry_after, body) = get(&ca, &proxy.directory_url()).await.unwrap();
    assert_eq!((status, retry_after.as_deref()), (503, Some("7")));
    assert!(
        body.contains("urn:ietf:params:acme:error:serverInternal"),
        "{body}"
    );
    assert_eq!(get(&ca, &proxy.directory_url()).await.unwrap().0, 200);

    // A reset: the client gets no answer at all.
    proxy.add(Rule::new(Match::get("/dir"), Action::Reset).times(1));
    assert!(get(&ca, &proxy.directory_url()).await.is_err());
    assert_eq!(get(&ca, &proxy.directory_url()).await.unwrap().0, 200);

    // A slow answer.
    proxy.add(
        Rule::new(
            Match::get("/dir"),
            Action::Delay(Duration::from_millis(600)),
        )
        .times(1),
    );
    let started = Instant::now();
    assert_eq!(get(&ca, &proxy.directory_url()).await.unwrap().0, 200);
    assert!(started.elapsed() >= Duration::from_millis(600));

    let records = proxy.requests();
    let statuses: Vec<u16> = records.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 503, 200, 0, 200, 200]);
    assert_eq!(records.iter().filter(|r| r.injected).count(), 2);
    assert_eq!(proxy.count(&Match::get("/dir")), 6);
}

#[tokio::test]
async fn pebble_restarts_on_the_same_ports_with_new_roots() {
    let mut pebble = Pebble::start(PebbleOptions::fast()).await;
    let (url, root) = (pebble.directory_url(), pebble.root_pem().await);
    pebble.restart().await;
    assert_eq!(pebble.directory_url(), url);
    assert!(pebble.directory_json().await.contains("newOrder"));
    assert_ne!(pebble.root_pem().await, root, "the roots are regenerated");
}
