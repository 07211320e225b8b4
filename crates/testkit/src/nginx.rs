//! [`Nginx`]: a private nginx instance (TESTBED.md §4) serving TLS on a free loopback port.
//!
//! Everything lives in a temporary directory; the master process runs in the foreground
//! (`daemon off`) as `nobody:nogroup` through `setpriv`, which also ties its life to the test
//! (`PR_SET_PDEATHSIG`). Certificates are read from `DIR/certs/NAME/{fullchain,privkey}.pem`,
//! where a deploy target writes them; a placeholder self-signed pair (group `nogroup`, key
//! 0640) is put there first so that nginx can start. The instance is stopped gracefully by its
//! PID (SIGQUIT, then SIGKILL) when dropped.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{require_program, tail};

/// nobody's uid and nogroup's gid on Debian.
pub const NOBODY: u32 = 65534;
/// nogroup's gid on Debian.
pub const NOGROUP: u32 = 65534;
/// Bound on waiting for nginx to listen or stop.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What the instance serves.
#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// Certificate name: files come from `DIR/certs/NAME/`.
    pub certificate: String,
    /// The server name (and the placeholder certificate's name).
    pub server_name: String,
    /// TLS listener (a free loopback port when `None`).
    pub tls_listen: Option<SocketAddr>,
    /// An extra plain-HTTP listener that forwards `/.well-known/acme-challenge/` to
    /// `acme_proxy` (an agent's responder), as docs/agent.md shows.
    pub http_listen: Option<SocketAddr>,
    /// Where the HTTP listener forwards challenge requests.
    pub acme_proxy: Option<SocketAddr>,
    /// Or: the webroot from which the HTTP listener serves `/.well-known/acme-challenge/`.
    pub acme_webroot: Option<PathBuf>,
    /// Write no placeholder certificate (a node whose agent provides it before nginx starts).
    pub no_placeholder: bool,
}

impl NginxOptions {
    /// TLS for `server_name` with certificate `certificate`, on a free port.
    pub fn new(certificate: &str, server_name: &str) -> Self {
        Self {
            certificate: certificate.to_string(),
            server_name: server_name.to_string(),
            tls_listen: None,
            http_listen: None,
            acme_proxy: None,
            acme_webroot: None,
            no_placeholder: false,
        }
    }
}

/// A running nginx.
pub struct Nginx {
    child: Option<Child>,
    dir: tempfile::TempDir,
    options: NginxOptions,
    tls_addr: SocketAddr,
    nginx: PathBuf,
    setpriv: PathBuf,
}

impl Nginx {
    /// Prepare the directory and config (and the placeholder certificate), then start.
    pub fn start(options: NginxOptions) -> Nginx {
        let mut nginx = Self::prepare(options);
        nginx.spawn();
        nginx
    }

    /// Prepare everything but do not start (see [`Nginx::spawn`]).
    pub fn prepare(mut options: NginxOptions) -> Nginx {
        let nginx = require_program("nginx", "apt-get install -y nginx (or run scripts/testbed)");
        let setpriv = require_program("setpriv", "apt-get install -y util-linux");
        let dir = tempfile::Builder::new()
            .prefix("certfleet-nginx-")
            .tempdir()
            .expect("create nginx temp dir");
        let tls_addr = *options
            .tls_listen
            .get_or_insert_with(|| SocketAddr::from(([127, 0, 0, 1], crate::free_port())));
        for sub in ["logs", "tmp", "certs"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("create nginx dirs");
        }
        let this = Nginx {
            child: None,
            dir,
            options,
            tls_addr,
            nginx,
            setpriv,
        };
        if !this.options.no_placeholder {
            this.write_placeholder();
        }
        this.write_config(false);
        for sub in ["logs", "tmp"] {
            chown_tree(&this.dir.path().join(sub));
        }
        chown_nobody(this.dir.path());
        std::fs::set_permissions(this.dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod nginx dir");
        this
    }

    /// Start the master process and wait until the TLS port accepts connections.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "nginx is already running");
        let mut cmd = Command::new(&self.setpriv);
        cmd.args(nobody_args()).args(["--pdeathsig", "KILL", "--"]);
        cmd.arg(&self.nginx).args(self.base_args());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.tls_addr).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("nginx exited with {status}:\n{}", self.error_log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "nginx did not listen on {} within {START_TIMEOUT:?}:\n{}",
            self.tls_addr,
            self.error_log_tail()
        );
    }

    fn base_args(&self) -> Vec<String> {
        let d = self.dir.path().display().to_string();
        vec![
            "-p".into(),
            format!("{d}/"),
            "-c".into(),
            format!("{d}/nginx.conf"),
            "-e".into(),
            format!("{d}/logs/error.log"),
        ]
    }

    /// argv that runs nginx as `nobody` with this instance's paths and `extra` arguments.
    fn as_nobody(&self, extra: &[&str]) -> Vec<String> {
        let mut argv = vec![self.setpriv.display().to_string()];
        argv.extend(nobody_args().iter().map(|s| s.to_string()));
        argv.push("--".into());
        argv.push(self.nginx.display().to_string());
        argv.extend(self.base_args());
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv
    }

    /// `nginx -s reload` for this instance, as an argv list (an agent's reload hook).
    pub fn reload_argv(&self) -> Vec<String> {
        self.as_nobody(&["-s", "reload"])
    }

    /// `nginx -t` for this instance, as an argv list (an agent's check hook).
    pub fn check_argv(&self) -> Vec<String> {
        self.as_nobody(&["-t", "-q"])
    }

    /// Reload now (SIGHUP through `nginx -s reload`); panics if nginx refuses.
    pub fn reload(&self) {
        let argv = self.reload_argv();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .expect("run nginx -s reload");
        assert!(
            out.status.success(),
            "nginx -s reload failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Make the config file invalid (`broken`) or valid again.
    pub fn write_config(&self, broken: bool) {
        let d = self.dir.path().display().to_string();
        let o = &self.options;
        let cert_dir = self.cert_dir();
        let http = match (o.http_listen, o.acme_proxy) {
            (Some(listen), None) if o.acme_webroot.is_some() => format!(
                "  server {{\n    listen {listen};\n    location /.well-known/acme-challenge/ {{\n      root {};\n      default_type application/octet-stream;\n    }}\n    location / {{ return 404; }}\n  }}\n",
                o.acme_webroot
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            (Some(listen), Some(proxy)) => format!(
                "  server {{\n    listen {listen};\n    location /.well-known/acme-challenge/ {{\n      proxy_pass http://{proxy};\n      proxy_set_header Host $host;\n    }}\n    location / {{ return 404; }}\n  }}\n"
            ),
            (Some(listen), None) => format!(
                "  server {{\n    listen {listen};\n    location / {{ return 404; }}\n  }}\n"
            ),
            _ => String::new(),
        };
        let junk = if broken {
            "  this_is_not_a_directive on;\n"
        } else {
            ""
        };
        let config = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log notice;\nevents {{ worker_connections 1024; }}\nhttp {{\n{junk}  access_log {d}/logs/access.log;\n  client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;\n  server {{\n    listen {tls} ssl;\n    server_name {name};\n    ssl_certificate {cert}/fullchain.pem;\n    ssl_certificate_key {cert}/privkey.pem;\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n{http}}}\n",
            tls = self.tls_addr,
            name = o.server_name,
            cert = cert_dir.display(),
        );
        std::fs::write(self.dir.path().join("nginx.conf"), config).expect("write nginx.conf");
    }

    fn write_placeholder(&self) {
        let key = rcgen::KeyPair::generate().expect("placeholder key");
        let params = rcgen::CertificateParams::new(vec![self.options.server_name.clone()])
            .expect("placeholder params");
        let cert = params.self_signed(&key).expect("placeholder cert");
        let dir = self.cert_dir();
        std::fs::create_dir_all(&dir).expect("create cert dir");
        let full = dir.join("fullchain.pem");
        let key_path = dir.join("privkey.pem");
        std::fs::write(&full, cert.pem()).expect("write placeholder cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write placeholder key");
        std::os::unix::fs::chown(&key_path, None, Some(NOGROUP)).expect("chgrp key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o640))
            .expect("chmod key");
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o644))
            .expect("chmod cert");
    }

    /// Where nginx reads the certificate: `DIR/certs/NAME`.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir
            .path()
            .join("certs")
            .join(&self.options.certificate)
    }

    /// `DIR/certs/{name}`: a deploy target's directory template for this instance.
    pub fn cert_dir_template(&self) -> String {
        format!("{}/certs/{{name}}", self.dir.path().display())
    }

    /// The TLS listener.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    /// The instance's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The master's PID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default()
    }

    fn error_log_tail(&self) -> String {
        tail(&self.error_log(), 30)
    }

    /// Stop gracefully (SIGQUIT to the master, by PID), then SIGKILL after a bound.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), nix::sys::signal::Signal::SIGQUIT);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Nginx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nginx")
            .field("tls_addr", &self.tls_addr)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn nobody_args() -> [&'static str; 3] {
    ["--reuid=65534", "--regid=65534", "--clear-groups"]
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOGROUP)).expect("chown to nobody");
}

fn chown_tree(path: &Path) {
    chown_nobody(path);
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir").flatten() {
            chown_tree(&entry.path());
        }
    }
}
