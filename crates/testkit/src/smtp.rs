//! [`SmtpSink`]: a real SMTP server (aiosmtpd, TESTBED.md §7, in the virtualenv
//! `scripts/testbed` makes) on 127.0.0.1 and a free port, storing every mail it accepts in a
//! Maildir; optionally with TLS from the first byte, or with STARTTLS required (a certificate for `127.0.0.1` signed by a
//! throw-away CA, [`SmtpSink::ca_cert_path`]) and AUTH required (one user and password).
//! Stopped by its PID when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{Guard, child_command, log_file, tail, tcp_open};

/// The sink's server: aiosmtpd's `Controller` with the `Mailbox` handler.
const SCRIPT: &str = r#"
import signal, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, mode, cert, key, user, password = sys.argv[1:8]

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == user and auth_data.password.decode() == password)
    return AuthResult(success=ok)

kwargs, implicit = {}, {}
if mode:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if mode == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    else:
        implicit["ssl_context"] = context
if user:
    # With implicit TLS aiosmtpd does not see the session as TLS; the socket is TLS anyway.
    kwargs.update(authenticator=authenticate, auth_required=True,
                  auth_require_tls=(mode == "starttls"))
controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port), **implicit, **kwargs)
controller.start()
print("ready", flush=True)
signal.sigwait([signal.SIGTERM, signal.SIGINT])
controller.stop()
"#;

/// Options for [`SmtpSink::start`].
#[derive(Debug, Clone, Default)]
pub struct SmtpSinkOptions {
    /// Require STARTTLS before anything else.
    pub starttls: bool,
    /// Speak TLS from the first byte (SMTPS); wins over `starttls`.
    pub implicit_tls: bool,
    /// Require AUTH with this user and password.
    pub auth: Option<(String, String)>,
}

/// A running SMTP sink.
pub struct SmtpSink {
    guard: Guard,
    dir: tempfile::TempDir,
    port: u16,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("port", &self.port)
            .field("pid", &self.guard.pid())
            .finish_non_exhaustive()
    }
}

fn python() -> PathBuf {
    let python = crate::testbed_cache().join("smtp/bin/python");
    assert!(
        python.is_file(),
        "the SMTP sink's virtualenv is missing at {}; run scripts/testbed (it runs \
         `python3 -m venv` and `pip install aiosmtpd==1.4.6` there)",
        python.display()
    );
    python
}

impl SmtpSink {
    /// Start the sink and wait (bounded) until it accepts connections.
    pub async fn start(opts: SmtpSinkOptions) -> SmtpSink {
        let python = python();
        let dir = tempfile::Builder::new()
            .prefix("certfleet-smtp-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("sink.py"), SCRIPT).expect("write sink.py");
        let mode = match (opts.implicit_tls, opts.starttls) {
            (true, _) => "tls",
            (false, true) => "starttls",
            (false, false) => "",
        };
        let (cert, key) = if !mode.is_empty() {
            write_tls_files(dir.path());
            (
                dir.path().join("cert.pem").display().to_string(),
                dir.path().join("key.pem").display().to_string(),
            )
        } else {
            (String::new(), String::new())
        };
        let (user, password) = opts.auth.clone().unwrap_or_default();
        let port = free_port();
        let maildir = dir.path().join("maildir");
        let (out, err) = log_file(&dir.path().join("sink.log"));
        let child = child_command(&python)
            .arg(dir.path().join("sink.py"))
            .arg(port.to_string())
            .arg(&maildir)
            .arg(mode)
            .args([&cert, &key, &user, &password])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn the SMTP sink");
        let mut sink = SmtpSink {
            guard: Guard(child),
            dir,
            port,
        };
        for _ in 0..200 {
            if let Ok(Some(status)) = sink.guard.0.try_wait() {
                panic!("the SMTP sink exited ({status}):\n{}", sink.log());
            }
            if sink.log().contains("ready") && tcp_open(port).await {
                return sink;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the SMTP sink did not start in 10 s:\n{}", sink.log());
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM of the CA that signed the STARTTLS certificate (for the client's trust roots).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The sink's log so far.
    pub fn log(&self) -> String {
        tail(
            &std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default(),
            40,
        )
    }

    /// Every mail received so far, raw (headers and body), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir/new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&new)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
            .collect()
    }

    /// Wait (bounded: 30 s) until `pred` holds for the mails so far; panics with them otherwise.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        for _ in 0..600 {
            let got = self.messages();
            if pred(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "SMTP sink: {what} never happened; mails: {:#?}\nsink log:\n{}",
            self.messages(),
            self.log()
        );
    }
}

/// ca.pem, cert.pem (for 127.0.0.1 and localhost) and key.pem in `dir`.
fn write_tls_files(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "certfleet testkit SMTP CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key"))
        .expect("CA");
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca).expect("sign");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca.pem");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key.pem");
}
