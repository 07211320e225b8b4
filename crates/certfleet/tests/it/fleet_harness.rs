//! Fleets for the end-to-end tests: a server with its API over TLS, nginx nodes, and
//! `certfleet agent` processes configured for them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use certfleet_testkit::{Nginx, NginxOptions, Pebble, PebbleOptions, child_command, free_port};

use crate::harness::{Server, bin};

/// Log filter of agent processes.
const AGENT_LOG: &str = "info,certfleet_agent=debug,certfleet_deploy=debug";
/// Bound on waiting for a fleet to converge.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Pebble and a server whose API also listens over TLS (internal CA).
pub async fn tls_server(opts: PebbleOptions) -> (Pebble, tempfile::TempDir, Server) {
    let pebble = Pebble::start(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let tls = format!("127.0.0.1:{}", free_port());
    let server = Server::start_next_to(&pebble, &dir.path().join("data"), &["--tls-listen", &tls]);
    (pebble, dir, server)
}

/// `server.json` parsed.
pub fn server_info(server: &Server) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(server.data_dir.join("server.json")).unwrap())
        .unwrap()
}

/// The TLS API's URL and the fingerprint to pin.
pub fn tls_endpoint(server: &Server) -> (String, String) {
    let info = server_info(server);
    (
        info["tls_api"].as_str().expect("tls_api").to_string(),
        info["tls_fingerprint"]
            .as_str()
            .expect("tls_fingerprint")
            .to_string(),
    )
}

/// `agent token create NAME --selector SELECTOR`; the token.
pub fn agent_token(server: &Server, name: &str, selector: &str) -> String {
    server
        .cli_ok(&["agent", "token", "create", name, "--selector", selector])
        .trim()
        .to_string()
}

/// How an agent is set up.
pub struct AgentSpec {
    /// Agent (token) name.
    pub name: String,
    /// Its token.
    pub token: String,
    /// Server URL.
    pub server: String,
    /// `pin = ...` or `ca_file = ...` line.
    pub trust: String,
    /// Target directory template.
    pub dir: String,
    /// Check hook.
    pub check: Option<Vec<String>>,
    /// Reload hook.
    pub reload: Option<Vec<String>>,
    /// Verify endpoint.
    pub verify: String,
    /// Verify timeout, seconds.
    pub verify_timeout: u64,
    /// `[http01]` listen and self_check.
    pub http01: Option<(String, String)>,
    /// `[http01]` webroot instead of the listener (with `http01`'s self_check).
    pub webroot: Option<PathBuf>,
    /// Target's `group`.
    pub group: Option<String>,
}

impl AgentSpec {
    /// An agent for `nginx`, with its check and reload hooks, talking to `server` over TLS.
    pub fn for_nginx(server: &Server, name: &str, token: &str, nginx: &Nginx) -> Self {
        let (url, pin) = tls_endpoint(server);
        Self {
            name: name.to_string(),
            token: token.to_string(),
            server: url,
            trust: format!("pin = {pin:?}"),
            dir: nginx.cert_dir_template(),
            check: Some(nginx.check_argv()),
            reload: Some(nginx.reload_argv()),
            verify: nginx.tls_addr().to_string(),
            verify_timeout: 10,
            http01: None,
            webroot: None,
            group: None,
        }
    }
}

fn toml_list(argv: &[String]) -> String {
    let items: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// A `certfleet agent` process.
pub struct AgentProc {
    child: Option<Child>,
    /// Its name.
    pub name: String,
    /// Its directory (config, token, state, log).
    pub dir: PathBuf,
}

impl AgentProc {
    /// Write the config for `spec` into a fresh directory under `root`.
    pub fn configure(root: &Path, spec: &AgentSpec) -> AgentProc {
        let dir = root.join(format!("agent-{}", spec.name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), &spec.token).unwrap();
        let mut text = format!(
            "server = {:?}\ntoken_file = {:?}\n{}\nstate_dir = {:?}\nwatch_timeout_secs = 60\n",
            spec.server,
            dir.join("token").display().to_string(),
            spec.trust,
            dir.join("state").display().to_string(),
        );
        if let Some((listen, self_check)) = &spec.http01 {
            text.push_str(&format!("\n[http01]\nself_check = {self_check:?}\n"));
            match &spec.webroot {
                Some(root) => {
                    text.push_str(&format!("webroot = {:?}\n", root.display().to_string()))
                }
                None => text.push_str(&format!("listen = {listen:?}\n")),
            }
        }
        text.push_str(&format!(
            "\n[[targets]]\ntype = \"files\"\ndir = {:?}\nverify = {:?}\nverify_timeout_secs = {}\nhook_timeout_secs = 60\n",
            spec.dir, spec.verify, spec.verify_timeout
        ));
        if let Some(check) = &spec.check {
            text.push_str(&format!("check = {}\n", toml_list(check)));
        }
        if let Some(reload) = &spec.reload {
            text.push_str(&format!("reload = {}\n", toml_list(reload)));
        }
        if let Some(group) = &spec.group {
            text.push_str(&format!("group = {group:?}\n"));
        }
        std::fs::write(dir.join("agent.toml"), text).unwrap();
        AgentProc {
            child: None,
            name: spec.name.clone(),
            dir,
        }
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    /// Start `certfleet agent --config F` in the background.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "agent {} already runs", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let child = child_command(Path::new(bin()))
            .args(["agent", "--config"])
            .arg(self.config())
            .env("CERTFLEET_LOG", AGENT_LOG)
            .env_remove("CERTFLEET_AGENT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn certfleet agent");
        self.child = Some(child);
    }

    /// Run `certfleet agent --config F --once` and return its output.
    pub fn once(&self) -> Output {
        Command::new(bin())
            .args(["agent", "--config"])
            .arg(self.config())
            .arg("--once")
            .env("CERTFLEET_LOG", AGENT_LOG)
            .stdin(Stdio::null())
            .output()
            .expect("run certfleet agent --once")
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A web server node: nginx and its agent.
pub struct Node {
    /// nginx.
    pub nginx: Nginx,
    /// The agent.
    pub agent: AgentProc,
}

/// `n` nginx nodes for certificate `www` (`www.example.test`), each with an agent entitled by
/// `app=www`, not yet started.
pub fn nodes(server: &Server, root: &Path, n: usize) -> Vec<Node> {
    (1..=n)
        .map(|i| {
            let nginx = Nginx::start(NginxOptions::new("www", "www.example.test"));
            let name = format!("web-{i}");
            let token = agent_token(server, &name, "app=www");
            let spec = AgentSpec::for_nginx(server, &name, &token, &nginx);
            let agent = AgentProc::configure(root, &spec);
            Node { nginx, agent }
        })
        .collect()
}

/// The serial `addr` serves for `www.example.test`, if a handshake succeeds.
pub async fn served(addr: std::net::SocketAddr) -> Option<String> {
    certfleet_deploy::probe::fetch(
        &addr.to_string(),
        "www.example.test",
        Duration::from_secs(5),
    )
    .await
    .ok()
    .map(|s| s.leaf.serial)
}

/// The current version's serial of certificate `name`.
pub fn current_serial(server: &Server, name: &str) -> String {
    let detail: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["cert", "show", name, "--json"])).unwrap();
    detail["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["current"] == true)
        .expect("a current version")["serial"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `(in_sync, entitled)` of certificate `name` from `cert ls --json`.
pub fn deployed(server: &Server, name: &str) -> (u64, u64) {
    let list = server.list();
    let c = list.iter().find(|c| c["name"] == name).expect("listed");
    (
        c["deployed"]["in_sync"].as_u64().unwrap(),
        c["deployed"]["entitled"].as_u64().unwrap(),
    )
}

/// Wait (bounded by [`CONVERGE`]) until every node serves `serial` and `cert ls` shows
/// `in_sync` of `entitled`; panics with the agents' logs otherwise.
pub async fn converge(server: &Server, nodes: &[&Node], serial: &str, in_sync: u64) {
    let deadline = Instant::now() + CONVERGE;
    let mut last = (Vec::new(), (0, 0));
    while Instant::now() < deadline {
        let mut serials = Vec::new();
        for node in nodes {
            serials.push(served(node.nginx.tls_addr()).await);
        }
        let counts = deployed(server, "www");
        if serials.iter().all(|s| s.as_deref() == Some(serial)) && counts.0 == in_sync {
            return;
        }
        last = (serials, counts);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs: Vec<String> = nodes
        .iter()
        .map(|n| format!("--- {}:\n{}", n.agent.name, n.agent.log()))
        .collect();
    panic!(
        "no convergence on {serial}: served {:?}, deployed {:?}\n{}\nserver log:\n{}",
        last.0,
        last.1,
        logs.join("\n"),
        server.log()
    );
}

/// Events of `kind` about `certificate`, newest first.
pub fn events(server: &Server, certificate: &str, kind: &str) -> Vec<String> {
    let (status, body) = server.api_request(
        "GET",
        &format!("/api/v1/events?certificate={certificate}&limit=1000"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    events
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// Poll `f` every 50 ms until it holds or `timeout` passes.
pub async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
