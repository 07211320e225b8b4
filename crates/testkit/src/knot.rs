//! [`Knot`]: the Knot DNS authoritative server with a TSIG key allowed to update its zones
//! (RFC 2136), on a free loopback port, with zone files in a private temporary directory
//! (TESTBED.md §2). Stopped by its own PID on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{Guard, child_command, log_file, require_program, tail};

const INSTALL: &str =
    "apt-get install -y knot knot-dnsutils bind9-dnsutils (or run scripts/testbed)";
/// The TSIG key's name.
pub const KEY_NAME: &str = "certfleet-test-key";
/// The TSIG algorithm.
pub const KEY_ALGORITHM: &str = "hmac-sha256";

/// A running Knot.
pub struct Knot {
    guard: Guard,
    dir: tempfile::TempDir,
    port: u16,
    secret: String,
    zones: Vec<String>,
}

impl std::fmt::Debug for Knot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knot")
            .field("addr", &self.addr())
            .field("zones", &self.zones)
            .finish_non_exhaustive()
    }
}

fn random_secret() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sbin(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.is_file() {
        return sbin;
    }
    require_program(name, INSTALL)
}

impl Knot {
    /// Start Knot serving `zones` (each with an SOA, `ns1` and `@` and `*` A records pointing
    /// at 127.0.0.1), updatable with the TSIG key [`KEY_NAME`] / [`Knot::tsig_secret`].
    pub async fn start(zones: &[&str]) -> Knot {
        Self::start_with_secret(zones, &random_secret()).await
    }

    /// Like [`Knot::start`] with a given TSIG secret (a second server sharing one key).
    pub async fn start_with_secret(zones: &[&str], secret: &str) -> Knot {
        let knotd = sbin("knotd");
        require_program("dig", INSTALL);
        for attempt in 0..3 {
            match Self::try_start(&knotd, zones, secret).await {
                Ok(k) => return k,
                Err(e) if attempt < 2 && e.contains("Address already in use") => continue,
                Err(e) => panic!("starting Knot failed: {e}"),
            }
        }
        unreachable!()
    }

    async fn try_start(knotd: &Path, zones: &[&str], secret: &str) -> Result<Knot, String> {
        let dir = tempfile::Builder::new()
            .prefix("certfleet-knot-")
            .tempdir()
            .expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("run")).expect("run dir");
        std::fs::create_dir_all(root.join("db")).expect("db dir");
        let port = free_port();
        let mut zone_conf = String::new();
        for z in zones {
            let text = format!(
                "$ORIGIN {z}.\n$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\n\
                 ns1 A 127.0.0.1\n@ A 127.0.0.1\n* A 127.0.0.1\n"
            );
            std::fs::write(root.join(format!("{z}.zone")), text).expect("zone file");
            zone_conf.push_str(&format!(
                "  - domain: {z}\n    file: \"{z}.zone\"\n    acl: acme-update\n"
            ));
        }
        let conf = format!(
            "server:\n    rundir: \"{r}/run\"\n    listen: 127.0.0.1@{port}\n\
             database:\n    storage: \"{r}/db\"\n\
             key:\n  - id: {KEY_NAME}\n    algorithm: {KEY_ALGORITHM}\n    secret: {secret}\n\
             acl:\n  - id: acme-update\n    key: {KEY_NAME}\n    action: update\n\
             template:\n  - id: default\n    storage: \"{r}\"\n\
             zone:\n{zone_conf}\
             log:\n  - target: stderr\n    any: info\n",
            r = root.display()
        );
        std::fs::write(root.join("knot.conf"), conf).expect("knot.conf");
        let (out, err) = log_file(&root.join("knotd.log"));
        let guard = child_command(knotd)
            .arg("-c")
            .arg(root.join("knot.conf"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map(Guard)
            .map_err(|e| format!("spawn knotd: {e}"))?;
        let mut knot = Knot {
            guard,
            dir,
            port,
            secret: secret.to_string(),
            zones: zones.iter().map(|z| z.to_string()).collect(),
        };
        for _ in 0..100 {
            if let Ok(Some(status)) = knot.guard.0.try_wait() {
                return Err(format!(
                    "knotd exited ({status}):\n{}",
                    tail(&knot.log(), 20)
                ));
            }
            let ready = match zones.first() {
                Some(z) => !knot.dig(z, "SOA").await.is_empty(),
                None => crate::process::tcp_open(port).await,
            };
            if ready {
                return Ok(knot);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "knotd not ready after 5 s:\n{}",
            tail(&knot.log(), 20)
        ))
    }

    /// `127.0.0.1:PORT` (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TSIG secret (base64).
    pub fn tsig_secret(&self) -> &str {
        &self.secret
    }

    /// `dig +short` answers for `name`/`rtype` from this server (quotes kept off TXT).
    pub async fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = tokio::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+short",
                "+norecurse",
                "+time=2",
                "+tries=1",
                rtype,
                name,
            ])
            .output()
            .await
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| l.trim().trim_matches('"').to_string())
            .collect()
    }

    /// TXT values at `name`.
    pub async fn txt(&self, name: &str) -> Vec<String> {
        self.dig(name, "TXT").await
    }

    /// Run `knsupdate` with this server's key on `lines` (e.g. `update add NAME 60 TXT "v"`);
    /// panics unless it succeeds.
    pub async fn nsupdate(&self, zone: &str, lines: &[String]) {
        use tokio::io::AsyncWriteExt;
        let knsupdate = require_program("knsupdate", INSTALL);
        let mut script = format!("server 127.0.0.1 {}\nzone {zone}.\n", self.port);
        for l in lines {
            script.push_str(l);
            script.push('\n');
        }
        script.push_str("send\n");
        let mut child = tokio::process::Command::new(knsupdate)
            .arg("-y")
            .arg(format!("{KEY_ALGORITHM}:{KEY_NAME}:{}", self.secret))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn knsupdate");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .await
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "knsupdate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// knotd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default()
    }

    /// The private directory (config, zone files, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
