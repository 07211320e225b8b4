//! Check and reload commands (`nginx -t`, `nginx -s reload`), run as argv lists, never
//! through a shell built from server or CA data.
//!
//! A hook gets the deployment in environment variables: `CERTFLEET_NAME`,
//! `CERTFLEET_DOMAINS` (space-separated), `CERTFLEET_DIR`, `CERTFLEET_SERIAL`,
//! `CERTFLEET_VERSION`, and certbot's `RENEWED_LINEAGE` (= the directory) and
//! `RENEWED_DOMAINS`, so existing deploy scripts keep working. It runs in its own process
//! group, which is killed when the timeout passes; its standard output and error are kept,
//! cut to their last [`MAX_OUTPUT`] bytes.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// Bytes of a hook's output kept (the end of it, where errors usually are).
pub const MAX_OUTPUT: usize = 2048;
/// How long output is still read after the hook exited (a child it left may hold the pipe).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Bound on its run time.
    pub timeout: Duration,
}

/// What the hook is told about the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookEnv {
    /// Certificate name.
    pub name: String,
    /// DNS names.
    pub domains: Vec<String>,
    /// Where the files are, when the target is a directory.
    pub dir: Option<PathBuf>,
    /// Serial of the deployed version.
    pub serial: String,
    /// Version number.
    pub version: u32,
}

impl HookEnv {
    /// The environment variables, in a fixed order.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let domains = self.domains.join(" ");
        let dir = self
            .dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        vec![
            ("CERTFLEET_NAME", self.name.clone()),
            ("CERTFLEET_DOMAINS", domains.clone()),
            ("CERTFLEET_DIR", dir.clone()),
            ("CERTFLEET_SERIAL", self.serial.clone()),
            ("CERTFLEET_VERSION", self.version.to_string()),
            ("RENEWED_LINEAGE", dir),
            ("RENEWED_DOMAINS", domains),
        ]
    }
}

/// How a hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    /// The command as given (for messages).
    pub command: String,
    /// Exit status, if it exited.
    pub status: Option<i32>,
    /// Whether it exited with status 0 in time.
    pub success: bool,
    /// Whether it was killed because the timeout passed.
    pub timed_out: bool,
    /// The end of its standard output and error (interleaved as written).
    pub output: String,
}

impl HookOutcome {
    /// One line for a report: `"nginx -t" exited with 1: <output>`.
    pub fn summary(&self) -> String {
        let how = if self.timed_out {
            "was killed after its timeout".to_string()
        } else {
            match self.status {
                Some(code) => format!("exited with {code}"),
                None => "could not run or was killed by a signal".to_string(),
            }
        };
        let output = self.output.trim();
        if output.is_empty() {
            format!("{:?} {how}", self.command)
        } else {
            format!("{:?} {how}: {output}", self.command)
        }
    }
}

/// An argv list for people to read: arguments separated by spaces, each one that is not
/// plain (`[A-Za-z0-9_@%+=:,./-]`) in single quotes as a POSIX shell would need it, so the
/// boundaries between arguments stay visible (`/bin/deploy 'arg one' '$(x);y'`). For display
/// only: commands are always run as the list itself, never through a shell.
pub fn display_argv(argv: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c))
    };
    argv.iter()
        .map(|a| {
            if plain(a) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `hook` with the deployment's variables.
pub async fn run_hook(hook: &HookCommand, env: &HookEnv) -> HookOutcome {
    let command = display_argv(&hook.argv);
    let failed = |output: String| HookOutcome {
        command: command.clone(),
        status: None,
        success: false,
        timed_out: false,
        output,
    };
    let Some((program, args)) = hook.argv.split_first() else {
        return failed("empty command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {program:?}: {e}")),
    };
    let buffer = Arc::new(Mutex::new(Tail::default()));
    let readers = [
        child.stdout.take().map(|s| spawn_reader(s, buffer.clone())),
        child.stderr.take().map(|s| spawn_reader(s, buffer.clone())),
    ];
    let (status, timed_out) = match tokio::time::timeout(hook.timeout, child.wait()).await {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            kill_group(child.id());
            let _ = child.kill().await;
            (None, true)
        }
    };
    for reader in readers.into_iter().flatten() {
        if tokio::time::timeout(DRAIN_GRACE, reader).await.is_err() {
            tracing::debug!(
                command,
                "hook output still open after it exited; not waiting"
            );
        }
    }
    let output = buffer.lock().map(|t| t.text()).unwrap_or_default();
    let code = status.and_then(|s| s.code());
    HookOutcome {
        command,
        status: code,
        success: !timed_out && code == Some(0),
        timed_out,
        output,
    }
}

fn kill_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn spawn_reader<R>(mut stream: R, buffer: Arc<Mutex<Tail>>) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Ok(mut tail) = buffer.lock() {
                        tail.push(&chunk[..n]);
                    }
                }
            }
        }
    })
}

/// The last [`MAX_OUTPUT`] bytes written.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    cut: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > MAX_OUTPUT {
            let excess = self.bytes.len() - MAX_OUTPUT;
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        if self.cut {
            format!("…{}", text.trim_start_matches('\u{FFFD}'))
        } else {
            text.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(argv: &[&str], timeout_ms: u64) -> HookCommand {
        HookCommand {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn env() -> HookEnv {
        HookEnv {
            name: "www".into(),
            domains: vec!["www.example.test".into(), "example.test".into()],
            dir: Some("/etc/ssl/www".into()),
            serial: "0abc".into(),
            version: 3,
        }
    }

    #[tokio::test]
    async fn hooks_see_the_deployment_in_their_environment() {
        let out = run_hook(
            &hook(
                &["sh", "-c", "echo $CERTFLEET_NAME $CERTFLEET_SERIAL $RENEWED_LINEAGE \"$RENEWED_DOMAINS\"; exit 3"],
                5000,
            ),
            &env(),
        )
        .await;
        assert_eq!(out.status, Some(3));
        assert!(!out.success);
        assert_eq!(
            out.output.trim(),
            "www 0abc /etc/ssl/www www.example.test example.test"
        );
        assert!(out.summary().contains("exited with 3"), "{}", out.summary());
    }

    #[tokio::test]
    async fn a_hook_past_its_timeout_is_killed_with_its_children() {
        let started = std::time::Instant::now();
        let out = run_hook(&hook(&["sh", "-c", "sleep 30 & sleep 30"], 200), &env()).await;
        assert!(out.timed_out && !out.success);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn output_is_cut_to_its_end_and_a_missing_program_is_named() {
        let out = run_hook(
            &hook(
                &["sh", "-c", "head -c 10000 /dev/zero | tr '\\0' a; echo END"],
                5000,
            ),
            &env(),
        )
        .await;
        assert!(out.success);
        assert!(out.output.len() <= MAX_OUTPUT + 4, "{}", out.output.len());
        assert!(out.output.trim_end().ends_with("END"));
        let out = run_hook(&hook(&["/nonexistent/reload"], 1000), &env()).await;
        assert!(!out.success);
        assert!(out.output.contains("/nonexistent/reload"), "{}", out.output);
    }

    #[test]
    fn argv_is_shown_with_its_argument_boundaries() {
        let argv: Vec<String> = [
            "/bin/deploy",
            "arg one",
            "$(x);y",
            "it's",
            "",
            "a=b,c:d/e.f",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            display_argv(&argv),
            "/bin/deploy 'arg one' '$(x);y' 'it'\\''s' '' a=b,c:d/e.f"
        );
    }
}
