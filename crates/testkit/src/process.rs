//! Child processes of tests: tied to the test's life, stopped by their own PID.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// util-linux's `setpriv`, used to tie a child's life to the test process.
const SETPRIV: &str = "/usr/bin/setpriv";

/// A command for a long-running child of a test. When `setpriv` is available the child gets
/// `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the test process even if that process is
/// killed before it can stop the child by PID (a timeout, a SIGKILL). `setpriv` execs the
/// program, so the child's PID is the program's PID.
pub fn child_command(program: &Path) -> Command {
    if Path::new(SETPRIV).exists() {
        let mut cmd = Command::new(SETPRIV);
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Find a program on PATH (or at absolute path); if missing, panic with a message
/// naming the program and the install command (e.g. "apt-get install -y pebble").
pub fn require_program(name: &str, install_hint: &str) -> PathBuf {
    let candidate = Path::new(name);
    let found = if candidate.is_absolute() {
        candidate.is_file().then(|| candidate.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    found.unwrap_or_else(|| {
        panic!("required program `{name}` not found on PATH; install it with: {install_hint}")
    })
}

/// A child process that is killed (by its own PID) and reaped when dropped.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Guard {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Stdout and stderr of a child, both appended to one log file at `path`.
pub fn log_file(path: &Path) -> (Stdio, Stdio) {
    let out = File::options()
        .create(true)
        .append(true)
        .open(path)
        .expect("create log file");
    let err = out.try_clone().expect("clone log file handle");
    (out.into(), err.into())
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub async fn tcp_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
