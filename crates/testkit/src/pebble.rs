//! [`Pebble`]: the Pebble ACME test CA with pebble-challtestsrv as its DNS resolver.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::ports::free_ports;
use crate::process::{Guard, child_command, log_file, require_program, tail, tcp_open};

/// Options for [`Pebble::start`].
#[derive(Clone, Debug)]
pub struct PebbleOptions {
    /// Percentage of requests Pebble rejects with badNonce; None keeps Pebble's default (5%).
    pub nonce_reject: Option<u32>,
    /// PEBBLE_AUTHZREUSE percentage; None keeps Pebble's default (50).
    pub authz_reuse: Option<u32>,
    /// PEBBLE_VA_NOSLEEP=1 when true (default true).
    pub va_nosleep: bool,
    /// certificateValidityPeriod in seconds; None = Pebble's default.
    pub validity_secs: Option<u64>,
    /// External account binding keys `(key id, base64url HMAC key)`; when not empty, Pebble
    /// requires EAB for new accounts (as ZeroSSL does).
    pub eab_keys: Vec<(String, String)>,
    /// Which Pebble release runs as the CA.
    pub release: PebbleRelease,
    /// DNS server Pebble resolves through (`127.0.0.1:PORT`, e.g. a [`crate::Knot`]) instead
    /// of pebble-challtestsrv, for DNS-01 end to end.
    pub dns_server: Option<String>,
    /// `PEBBLE_ALTERNATE_ROOTS`: how many extra root hierarchies sign every certificate;
    /// the CA then offers alternate chains (RFC 8555 §7.4.2). 0 = none.
    pub alternate_roots: u32,
    /// `PEBBLE_CHAIN_LENGTH`: certificates in a chain including the root (default 2).
    pub chain_length: Option<u32>,
    /// Extra environment variables for Pebble (`PEBBLE_VA_SLEEPTIME`, ...).
    pub env: Vec<(String, String)>,
    /// Extra members of the `pebble` object in Pebble's JSON config, written as given
    /// (`"profiles": {...}`, `"retryAfter": {...}`).
    pub extra_config: Vec<String>,
}

/// Which Pebble runs. Debian bookworm's 2.4 is installed by `apt-get`; the newer releases are
/// unpacked by `scripts/testbed` into [`testbed_cache`](crate::testbed_cache) (TESTBED.md §1c).
/// pebble-challtestsrv is always bookworm's, which serves as DNS for every release.
///
/// The default is trixie's 2.6: bookworm's 2.4 sometimes deadlocks under concurrent orders
/// (docs/benchmarks.md), and 2.6 answers ARI, so renewals send `replaces` as they would to
/// Let's Encrypt. 2.6 picks no random profile (2.10 does for orders that name none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PebbleRelease {
    /// Debian bookworm's 2.4.0 (`/usr/bin/pebble`): no ARI, no profiles.
    Bookworm,
    /// Debian trixie's 2.6.0: ARI (`renewalInfo`), no profiles. The default.
    #[default]
    Trixie,
    /// Debian sid's 2.10.0: ARI and profiles (`meta.profiles`).
    Sid,
}

impl PebbleRelease {
    /// The `pebble` binary of this release; panics with the command that installs it.
    pub fn binary(self) -> PathBuf {
        let suite = match self {
            PebbleRelease::Bookworm => {
                return require_program(
                    "pebble",
                    "apt-get install -y pebble (or run scripts/testbed)",
                );
            }
            PebbleRelease::Trixie => "trixie",
            PebbleRelease::Sid => "sid",
        };
        let path = crate::testbed_cache().join(format!("pebble-{suite}/root/usr/bin/pebble"));
        assert!(
            path.is_file(),
            "Pebble from Debian {suite} is not unpacked at {}; run scripts/testbed (TESTBED.md §1c)",
            path.display()
        );
        path
    }
}

impl Default for PebbleOptions {
    fn default() -> Self {
        PebbleOptions {
            nonce_reject: Some(0),
            authz_reuse: Some(0),
            va_nosleep: true,
            validity_secs: None,
            eab_keys: Vec::new(),
            release: PebbleRelease::default(),
            dns_server: None,
            alternate_roots: 0,
            chain_length: None,
            env: Vec::new(),
            extra_config: Vec::new(),
        }
    }
}

impl PebbleOptions {
    /// Deterministic and fast: no badNonce rejections, no authz reuse, no validation sleeps.
    pub fn fast() -> Self {
        Self::default()
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A running Pebble ACME CA plus pebble-challtestsrv as its DNS resolver
/// (every A query answers 127.0.0.1, no AAAA), all on free loopback ports, stopped on Drop.
pub struct Pebble {
    // Field order matters: processes stop before the temp dir is removed.
    pebble: Guard,
    challtestsrv: Guard,
    opts: PebbleOptions,
    dir: tempfile::TempDir,
    ca_pem: String,
    ca_path: PathBuf,
    port: u16,
    mgmt_port: u16,
    http01_port: u16,
    tls_alpn_port: u16,
    dns_port: u16,
    chall_mgmt_port: u16,
    client: HttpsClient,
}

impl std::fmt::Debug for Pebble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pebble")
            .field("directory_url", &self.directory_url())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// Writes ca.pem, cert.pem and key.pem into `dir`; returns the CA's PEM and DER.
fn write_tls_files(dir: &Path) -> (String, rustls_pki_types::CertificateDer<'static>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "certfleet testkit CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign CA");

    let key = KeyPair::generate().expect("generate listener key");
    let sans = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut params = CertificateParams::new(sans).expect("listener params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &ca).expect("sign listener cert");

    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key.pem");
    (ca.pem(), ca.der().clone())
}

fn https_client(ca: rustls_pki_types::CertificateDer<'static>) -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("add testkit CA to root store");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("rustls protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// GET `url`, returning the status and the body as text.
async fn https_get(client: &HttpsClient, url: &str) -> Result<(u16, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let fut = async {
        let request = http::Request::get(uri)
            .header(http::header::USER_AGENT, "certfleet-testkit")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| format!("GET {url} timed out"))?
}

/// Start the `pebble` process in `dir` (which holds pebble.json and the TLS files).
fn spawn_pebble(opts: &PebbleOptions, dir: &Path, dns: &str) -> Result<Guard, String> {
    let pebble_bin = opts.release.binary();
    let mut cmd = child_command(&pebble_bin);
    let resolver = opts.dns_server.as_deref().unwrap_or(dns);
    cmd.args(["-config", "pebble.json", "-dnsserver", resolver]);
    let envs = [
        (
            "PEBBLE_VA_NOSLEEP",
            opts.va_nosleep.then(|| "1".to_string()),
        ),
        (
            "PEBBLE_WFE_NONCEREJECT",
            opts.nonce_reject.map(|n| n.to_string()),
        ),
        ("PEBBLE_AUTHZREUSE", opts.authz_reuse.map(|n| n.to_string())),
        (
            "PEBBLE_ALTERNATE_ROOTS",
            (opts.alternate_roots > 0).then(|| opts.alternate_roots.to_string()),
        ),
        (
            "PEBBLE_CHAIN_LENGTH",
            opts.chain_length.map(|n| n.to_string()),
        ),
    ];
    for (key, value) in envs {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
    let (out, err) = log_file(&dir.join("pebble.log"));
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map(Guard)
        .map_err(|e| format!("spawn {}: {e}", pebble_bin.display()))
}

impl Pebble {
    /// Starts challtestsrv and Pebble and waits until Pebble's directory answers.
    ///
    /// Panics with a clear message (including the tail of Pebble's log) on failure.
    /// A start that loses a race for its ports is retried with fresh ports.
    pub async fn start(opts: PebbleOptions) -> Pebble {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(&opts).await {
                Ok(pebble) => return pebble,
                Err(msg) if attempt < 3 && msg.contains("address already in use") => continue,
                Err(msg) => panic!("starting Pebble failed: {msg}"),
            }
        }
    }

    async fn try_start(opts: &PebbleOptions) -> Result<Pebble, String> {
        let hint = "apt-get install -y pebble";
        opts.release.binary();
        let chall_bin = require_program("pebble-challtestsrv", hint);
        let dir = tempfile::Builder::new()
            .prefix("certfleet-pebble-")
            .tempdir()
            .expect("create temp dir");
        let (ca_pem, ca_der) = write_tls_files(dir.path());
        let ports = free_ports(6);
        let (port, mgmt_port, http01_port, tls_alpn_port, dns_port, chall_mgmt_port) =
            (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]);

        let validity = opts
            .validity_secs
            .map(|s| format!(",\n  \"certificateValidityPeriod\": {s}"))
            .into_iter()
            .chain(opts.extra_config.iter().map(|c| format!(",\n  {c}")))
            .collect::<String>();
        let eab_keys = opts
            .eab_keys
            .iter()
            .map(|(kid, hmac)| format!("\"{kid}\": \"{hmac}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let eab = format!(
            "\"externalAccountBindingRequired\": {},\n  \"externalAccountMACKeys\": {{{eab_keys}}}",
            !opts.eab_keys.is_empty()
        );
        let config = format!(
            "{{\"pebble\": {{\n  \"listenAddress\": \"127.0.0.1:{port}\",\n  \
             \"managementListenAddress\": \"127.0.0.1:{mgmt_port}\",\n  \
             \"certificate\": \"cert.pem\",\n  \"privateKey\": \"key.pem\",\n  \
             \"httpPort\": {http01_port},\n  \"tlsPort\": {tls_alpn_port},\n  \
             \"ocspResponderURL\": \"\",\n  \
             {eab}{validity}\n}}}}\n"
        );
        std::fs::write(dir.path().join("pebble.json"), config).expect("write pebble.json");

        let dns = format!("127.0.0.1:{dns_port}");
        let (out, err) = log_file(&dir.path().join("challtestsrv.log"));
        let challtestsrv = child_command(&chall_bin)
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &dns,
            ])
            .args(["-management", &format!("127.0.0.1:{chall_mgmt_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map(Guard)
            .map_err(|e| format!("spawn {}: {e}", chall_bin.display()))?;

        let pebble = spawn_pebble(opts, dir.path(), &dns)?;

        let mut this = Pebble {
            pebble,
            challtestsrv,
            opts: opts.clone(),
            ca_path: dir.path().join("ca.pem"),
            dir,
            ca_pem,
            port,
            mgmt_port,
            http01_port,
            tls_alpn_port,
            dns_port,
            chall_mgmt_port,
            client: https_client(ca_der),
        };
        this.wait_ready().await?;
        Ok(this)
    }

    /// Stop Pebble (by PID) and start it again with the same configuration on the same
    /// ports, as after a crash or a wiped database: every account, order and certificate is
    /// forgotten, and the roots and intermediates are new (fetch them again).
    pub async fn restart(&mut self) {
        let dns = format!("127.0.0.1:{}", self.dns_port);
        let _ = self.pebble.0.kill();
        let _ = self.pebble.0.wait();
        // The listening sockets close with the process; wait until the port is free.
        for _ in 0..100 {
            if !tcp_open(self.port).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.pebble = spawn_pebble(&self.opts, self.dir.path(), &dns)
            .unwrap_or_else(|e| panic!("restarting Pebble failed: {e}"));
        if let Err(e) = self.wait_ready().await {
            panic!("restarting Pebble failed: {e}");
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let url = self.directory_url();
        let mut last = String::from("never tried");
        let (mut pebble_up, mut mgmt_up, mut chall_up) = (false, false, false);
        for _ in 0..100 {
            for (name, guard) in [
                ("pebble", &mut self.pebble),
                ("challtestsrv", &mut self.challtestsrv),
            ] {
                if let Ok(Some(status)) = guard.0.try_wait() {
                    let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")));
                    let log = tail(&log.unwrap_or_default(), 30);
                    return Err(format!("{name} exited early ({status}); log tail:\n{log}"));
                }
            }
            // challtestsrv opens its DNS listener before its management one.
            chall_up = chall_up || tcp_open(self.chall_mgmt_port).await;
            mgmt_up = mgmt_up || tcp_open(self.mgmt_port).await;
            if !pebble_up {
                match https_get(&self.client, &url).await {
                    Ok((200, _)) => pebble_up = true,
                    Ok((status, body)) => last = format!("HTTP {status}: {body}"),
                    Err(e) => last = e,
                }
            }
            if pebble_up && mgmt_up && chall_up {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "not ready after 5 s (up: directory {pebble_up}, management {mgmt_up}, \
             challtestsrv {chall_up}); last error from {url}: {last}\npebble log tail:\n{}",
            tail(&self.log(), 30)
        ))
    }

    /// The ACME directory URL, `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Port of the ACME (directory) listener.
    pub fn acme_port(&self) -> u16 {
        self.port
    }

    /// Body of the ACME directory (JSON), fetched trusting only [`Pebble::ca_cert_path`].
    pub async fn directory_json(&self) -> String {
        self.get_ok(&self.directory_url()).await
    }

    /// Pebble's "httpPort": the port Pebble's VA connects to on 127.0.0.1 for HTTP-01.
    pub fn http01_port(&self) -> u16 {
        self.http01_port
    }

    /// Pebble's "tlsPort": the port Pebble's VA connects to on 127.0.0.1 for TLS-ALPN-01.
    pub fn tls_alpn_port(&self) -> u16 {
        self.tls_alpn_port
    }

    /// PEM file of the test CA that signed Pebble's own HTTPS listener certificate
    /// (what an ACME client must trust).
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_path
    }

    /// Contents of [`Pebble::ca_cert_path`].
    pub fn ca_cert_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// challtestsrv's DNS port (UDP and TCP on 127.0.0.1), Pebble's resolver.
    pub fn dns_port(&self) -> u16 {
        self.dns_port
    }

    /// challtestsrv's management API (plain HTTP), e.g. for `/set-txt`, `/add-a`.
    pub fn challtestsrv_management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.chall_mgmt_port)
    }

    /// Pebble's management API base URL (HTTPS, same listener certificate).
    pub fn management_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.mgmt_port)
    }

    /// GET `url` trusting only the generated CA; panics unless it answers 200.
    async fn get_ok(&self, url: &str) -> String {
        match https_get(&self.client, url).await {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("GET {url}: HTTP {status}: {body}"),
            Err(e) => panic!("GET {url}: {e}"),
        }
    }

    /// PEM of Pebble's root CA (regenerated at every start), from `/roots/0`.
    pub async fn root_pem(&self) -> String {
        self.root_pem_at(0).await
    }

    /// PEM of root `n`: 0 is the default chain's, 1.. the alternates'
    /// ([`PebbleOptions::alternate_roots`]).
    pub async fn root_pem_at(&self, n: u32) -> String {
        self.get_ok(&format!("{}/roots/{n}", self.management_url()))
            .await
    }

    /// PEM of Pebble's intermediate CA, from `/intermediates/0`.
    pub async fn intermediate_pem(&self) -> String {
        self.get_ok(&format!("{}/intermediates/0", self.management_url()))
            .await
    }

    /// Raw JSON body of `/cert-status-by-serial/<serial_hex>`; panics unless Pebble answers 200
    /// (it answers 404 for an unknown serial).
    pub async fn cert_status_by_serial(&self, serial_hex: &str) -> String {
        self.get_ok(&format!(
            "{}/cert-status-by-serial/{serial_hex}",
            self.management_url()
        ))
        .await
    }

    /// Contents of Pebble's log file so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The temporary directory holding the config, certificates and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
