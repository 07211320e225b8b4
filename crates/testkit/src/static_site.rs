//! [`StaticSite`]: a plain static file server over a directory — Python's `http.server`, a
//! real web server that knows nothing of ACME — on 127.0.0.1 and a given port, for HTTP-01
//! through a webroot (the CA fetches `/.well-known/acme-challenge/<token>` from the files).
//! Stopped by its PID on drop; its request log is readable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::process::{Guard, child_command, log_file, require_program, tail, tcp_open};

/// Bound on waiting for the server to listen: 100 × 50 ms.
const START_POLLS: u32 = 100;

/// A running static file server.
#[derive(Debug)]
pub struct StaticSite {
    child: Guard,
    port: u16,
    log: PathBuf,
    _logs: tempfile::TempDir,
}

impl StaticSite {
    /// Serve `root` on `127.0.0.1:port` (python3 -m http.server; fails with the install
    /// command when python3 is missing).
    pub async fn start(root: &Path, port: u16) -> StaticSite {
        let python = require_program("python3", "apt-get install -y python3");
        let logs = tempfile::tempdir().expect("log dir");
        let log = logs.path().join("http.log");
        let (out, err) = log_file(&log);
        let child = child_command(&python)
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(root)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn python3 -m http.server");
        let site = StaticSite {
            child: Guard(child),
            port,
            log,
            _logs: logs,
        };
        for _ in 0..START_POLLS {
            if tcp_open(port).await {
                return site;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "python3 -m http.server did not listen on port {port}:\n{}",
            tail(&site.log(), 20)
        );
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The server's log: one line per request (`"GET /path HTTP/1.1" 200 -`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
