//! [`Redis`]: a private redis-server on a free loopback port, no persistence, in a temporary
//! directory (TESTBED.md §3), stopped by its own PID on drop.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{Guard, child_command, log_file, require_program, tail};

const INSTALL: &str = "apt-get install -y redis-server redis-tools (or run scripts/testbed)";

/// A running Redis.
pub struct Redis {
    guard: Guard,
    dir: tempfile::TempDir,
    port: u16,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Start redis-server on 127.0.0.1 and wait until it answers PING.
    pub async fn start() -> Redis {
        let server = require_program("redis-server", INSTALL);
        require_program("redis-cli", INSTALL);
        for attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("certfleet-redis-")
                .tempdir()
                .expect("temp dir");
            let port = free_port();
            let (out, err) = log_file(&dir.path().join("redis.log"));
            let guard = child_command(&server)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .arg("--dir")
                .arg(dir.path())
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .map(Guard)
                .expect("spawn redis-server");
            let mut redis = Redis { guard, dir, port };
            for _ in 0..100 {
                if let Ok(Some(_)) = redis.guard.0.try_wait() {
                    break;
                }
                if redis.cli(&["PING"]).await.trim() == "PONG" {
                    return redis;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let log = tail(&redis.log(), 20);
            if attempt == 2 || !log.contains("Address already in use") {
                panic!("redis-server did not start:\n{log}");
            }
        }
        unreachable!()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Run `redis-cli` against this server; returns standard output.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .await
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many times `command` (lowercase, e.g. `hgetall`) ran, from `INFO commandstats`.
    pub async fn command_calls(&self, command: &str) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]).await;
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// redis-server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// The private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
