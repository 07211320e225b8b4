//! Runs the real `certfleet` binary against a real Pebble, on free loopback ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use certfleet_testkit::{Pebble, PebbleOptions, child_command, free_port};

/// Debug logs from every certfleet crate, so the tests that look for secrets in the log see
/// everything certfleet could write.
const LOG_FILTER: &str = "info,certfleet=debug,certfleet_server=debug,certfleet_acme=debug,\
                          certfleet_solvers=debug,certfleet_store=debug";

/// Bound on waiting for the server to come up: 400 × 25 ms.
const START_POLLS: u32 = 400;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_certfleet")
}

/// A `certfleet server` child process with its own data directory.
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub api: String,
    pub http01_port: u16,
    pub log_path: PathBuf,
    pub stdout_path: PathBuf,
    extra: Vec<String>,
    envs: Vec<(String, String)>,
    pub directory: String,
    pub ca_root: PathBuf,
}

impl Server {
    /// Start a server pointed at `pebble` with a fresh data directory.
    pub fn start(pebble: &Pebble, data_dir: &Path) -> Server {
        Self::start_with(
            pebble.directory_url(),
            pebble.ca_cert_path().to_path_buf(),
            pebble.http01_port(),
            data_dir,
            &[],
        )
    }

    /// Start next to `pebble` with extra flags.
    pub fn start_next_to(pebble: &Pebble, data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with(
            pebble.directory_url(),
            pebble.ca_cert_path().to_path_buf(),
            pebble.http01_port(),
            data_dir,
            extra,
        )
    }

    /// Start with an explicit directory URL and extra flags.
    pub fn start_with(
        directory: String,
        ca_root: PathBuf,
        http01_port: u16,
        data_dir: &Path,
        extra: &[&str],
    ) -> Server {
        Self::start_env(directory, ca_root, http01_port, data_dir, extra, &[])
    }

    /// Start with extra flags and environment variables.
    pub fn start_env(
        directory: String,
        ca_root: PathBuf,
        http01_port: u16,
        data_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        let mut server = Server {
            child: None,
            data_dir: data_dir.to_path_buf(),
            api: String::new(),
            http01_port,
            log_path: data_dir.with_extension("log"),
            stdout_path: data_dir.with_extension("out"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            directory,
            ca_root,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let api_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("server log file");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdout_path)
            .expect("server stdout file");
        let child = child_command(Path::new(bin()))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("server")
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .args([
                "--http01-listen",
                &format!("127.0.0.1:{}", self.http01_port),
            ])
            .args(["--directory", &self.directory])
            .arg("--ca-root")
            .arg(&self.ca_root)
            .args(["--contact", "mailto:ops@example.test"])
            .args(&self.extra)
            .env("CERTFLEET_LOG", LOG_FILTER)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(out)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn certfleet server");
        let pid = child.id();
        self.child = Some(child);
        self.api = format!("http://127.0.0.1:{api_port}");
        for _ in 0..START_POLLS {
            let info =
                std::fs::read_to_string(self.data_dir.join("server.json")).unwrap_or_default();
            if info.contains(&format!("\"pid\": {pid}"))
                && TcpStream::connect(("127.0.0.1", api_port)).is_ok()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("certfleet server exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("certfleet server did not come up:\n{}", self.log());
    }

    /// Set an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.to_string(), value.to_string()));
    }

    /// Forget the extra environment variables.
    pub fn clear_envs(&mut self) {
        self.envs.clear();
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Everything the server printed on stdout so far (across restarts).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Stop with SIGTERM (by PID) and wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            for _ in 0..200 {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill with SIGKILL (by PID), as a crash would, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop; then run the server once more on the same data directory, expecting it to exit
    /// (within a bounded wait) because start-up fails. Returns its exit code and stderr.
    pub fn start_expecting_failure(&mut self) -> (Option<i32>, String) {
        self.stop();
        let mut child = child_command(Path::new(bin()))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("server")
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--http01-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--directory", &self.directory])
            .arg("--ca-root")
            .arg(&self.ca_root)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn certfleet server");
        for _ in 0..START_POLLS {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.code(), err);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server kept running although start-up should have failed");
    }

    /// Start again after [`Server::kill`] (or stop) on the same data directory.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Stop and start again on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stop and start again on the same data directory with other extra flags.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.stop();
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }

    /// `GET /api/v1/events?limit=1000`, newest first.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let (status, body) = self.api_request("GET", "/api/v1/events?limit=1000", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("events JSON")
    }

    /// `GET /api/v1/issuers`.
    pub fn issuers(&self) -> Vec<serde_json::Value> {
        let (status, body) = self.api_request("GET", "/api/v1/issuers", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("issuers JSON")
    }

    /// Run `certfleet --data-dir D <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run certfleet")
    }

    /// Run the CLI and require success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "certfleet {args:?} failed with {}:\nstdout: {}\nstderr: {}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// `cert add NAME --domain DOMAIN --wait`, which must succeed.
    pub fn issue(&self, name: &str, domain: &str) {
        self.cli_ok(&["cert", "add", name, "--domain", domain, "--wait"]);
    }

    /// Poll `cert ls --json` (bounded) until there are certificates and all are valid.
    pub fn wait_all_valid(&self) -> Vec<serde_json::Value> {
        for _ in 0..START_POLLS {
            let list = self.list();
            if !list.is_empty() && list.iter().all(|c| c["status"] == "valid") {
                return list;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("not all valid: {:?}\n{}", self.list(), self.log());
    }

    /// `cert ls --json` parsed.
    pub fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.cli_ok(&["cert", "ls", "--json"])).expect("ls --json")
    }

    /// The admin token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("token")
            .trim()
            .to_string()
    }

    /// A raw HTTP request to the API with the admin token.
    pub fn api_request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let port: u16 = self.api.rsplit(':').next().unwrap().parse().unwrap();
        let auth = format!("Authorization: Bearer {}\r\n", self.token());
        raw_http(port, method, path, &auth, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A command's standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Send one HTTP/1.1 request over a fresh connection and return (status, body).
pub fn raw_http(
    port: u16,
    method: &str,
    target: &str,
    extra_headers: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Pebble with fast validation and a fresh server next to it.
pub async fn pebble_and_server(opts: PebbleOptions) -> (Pebble, tempfile::TempDir, Server) {
    let pebble = Pebble::start(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&pebble, &dir.path().join("data"));
    (pebble, dir, server)
}
