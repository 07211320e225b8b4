//! The agent's configuration file (TOML), validated as a whole before anything runs; every
//! error names the field (`targets[0].key_mode`). See `docs/agent.md` for a full example.
//!
//! ```toml
//! server = "https://certfleet.example.com:8556"
//! token_file = "/etc/certfleet/agent.token"
//! pin = "SHA256:AB:CD:..."          # or ca_file = "/etc/certfleet/ca.pem"
//!
//! [http01]
//! listen = "127.0.0.1:8402"          # nginx forwards /.well-known/acme-challenge/ here
//! self_check = "http://127.0.0.1:80" # the CA's way in, to check tokens are really served
//!
//! [[targets]]
//! type = "files"
//! dir = "/etc/ssl/certfleet/{name}"
//! group = "www-data"
//! check = ["nginx", "-t"]
//! reload = ["nginx", "-s", "reload"]
//! verify = "127.0.0.1:443"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certfleet_core::Secret;
use certfleet_deploy::perms::{self, Ownership};
use certfleet_deploy::{DeployTarget, FileSpec, FileTarget, HookCommand, Part};
use serde::Deserialize;

use crate::AgentError;
use crate::pin::Fingerprint;
use crate::transport::{Trust, check_server_url};

/// Environment variable that holds the agent token (wins over the file's `token_file`).
pub const TOKEN_ENV: &str = "CERTFLEET_AGENT_TOKEN";
/// Default long-poll length, seconds: the agent wakes no more often than this when idle.
pub const DEFAULT_WATCH_TIMEOUT_SECS: u64 = 120;
/// Longest long-poll the server accepts, seconds.
pub const MAX_WATCH_TIMEOUT_SECS: u64 = 300;
/// Default bound on a check or reload hook, seconds.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 30;
/// Default endpoint whose served certificate proves a deployment.
pub const DEFAULT_VERIFY: &str = "127.0.0.1:443";
/// Default bound on waiting for the new serial to be served, seconds.
pub const DEFAULT_VERIFY_TIMEOUT_SECS: u64 = 30;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The server's URL.
    pub server: String,
    /// The agent token (prefer `token_file` or the environment).
    pub token: Option<String>,
    /// File holding the agent token.
    pub token_file: Option<PathBuf>,
    /// CA certificates to trust for the server's TLS.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint to pin for the server's TLS.
    pub pin: Option<String>,
    /// Where the agent keeps what it verified.
    pub state_dir: Option<PathBuf>,
    /// Long-poll length, seconds.
    pub watch_timeout_secs: Option<u64>,
    /// HTTP-01 answering.
    pub http01: Option<Http01Section>,
    /// Where certificates go.
    #[serde(default)]
    pub targets: Vec<TargetSection>,
}

/// `[http01]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http01Section {
    /// Address of the local responder.
    pub listen: Option<String>,
    /// Directory under which `.well-known/acme-challenge/TOKEN` files are written.
    pub webroot: Option<PathBuf>,
    /// Base URL through which a token is checked before confirming it.
    pub self_check: Option<String>,
}

/// `[[targets]]`, selected by `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum TargetSection {
    /// Files in a directory per certificate.
    #[serde(rename = "files")]
    Files {
        /// Directory; `{name}` becomes the certificate name.
        dir: String,
        /// Only these certificates (default: every one the agent is entitled to).
        certificates: Option<Vec<String>>,
        /// Owner (user name or uid).
        owner: Option<String>,
        /// Group (name or gid).
        group: Option<String>,
        /// Mode of files without the key (octal string).
        mode: Option<String>,
        /// Mode of files with the key (octal string).
        key_mode: Option<String>,
        /// Custom files (default: cert.pem, chain.pem, fullchain.pem, privkey.pem, bundle.pem).
        files: Option<Vec<FileSection>>,
        /// Check command, argv list.
        check: Option<Vec<String>>,
        /// Reload command, argv list.
        reload: Option<Vec<String>>,
        /// Bound on each hook, seconds.
        hook_timeout_secs: Option<u64>,
        /// `host:port` whose served certificate must show the new serial.
        verify: Option<String>,
        /// Bound on waiting for it, seconds.
        verify_timeout_secs: Option<u64>,
    },
}

/// `files = [{ name = "fullbundle.pem", contents = ["cert", "chain", "key"] }]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSection {
    /// File name.
    pub name: String,
    /// Parts, in order: `cert`, `chain`, `key`.
    pub contents: Vec<Part>,
    /// Mode of this file (octal string).
    pub mode: Option<String>,
}

/// One validated target with its hooks and verification.
pub struct TargetSettings {
    /// Where files go.
    pub target: Arc<dyn DeployTarget>,
    /// Only these certificates, if set.
    pub certificates: Option<Vec<String>>,
    /// Check hook.
    pub check: Option<HookCommand>,
    /// Reload hook.
    pub reload: Option<HookCommand>,
    /// Verify endpoint, `host:port`.
    pub verify: String,
    /// Bound on verification.
    pub verify_timeout: Duration,
}

impl TargetSettings {
    /// Whether this target takes `certificate`.
    pub fn covers(&self, certificate: &str) -> bool {
        self.certificates
            .as_ref()
            .is_none_or(|list| list.iter().any(|c| c == certificate))
    }
}

/// Validated HTTP-01 settings.
#[derive(Debug, Clone)]
pub struct Http01Settings {
    /// Local responder address.
    pub listen: Option<SocketAddr>,
    /// Webroot.
    pub webroot: Option<PathBuf>,
    /// Self-check base URL.
    pub self_check: String,
}

/// Everything the agent needs, validated.
pub struct AgentConfig {
    /// Server URL.
    pub server: String,
    /// The token.
    pub token: Secret,
    /// How the server's TLS is trusted.
    pub trust: Trust,
    /// State directory.
    pub state_dir: PathBuf,
    /// Long-poll length.
    pub watch_timeout: Duration,
    /// HTTP-01 answering.
    pub http01: Option<Http01Settings>,
    /// Targets.
    pub targets: Vec<TargetSettings>,
}

fn err(field: impl std::fmt::Display, message: impl std::fmt::Display) -> AgentError {
    AgentError::Config(format!("{field}: {message}"))
}

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Result<AgentConfig, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path.display(), e))?;
    let file: FileConfig = parse(&text).map_err(|e| err(path.display(), e))?;
    resolve(file, std::env::var(TOKEN_ENV).ok())
}

/// Validate a parsed file; `env_token` is [`TOKEN_ENV`]'s value.
pub fn resolve(file: FileConfig, env_token: Option<String>) -> Result<AgentConfig, AgentError> {
    let server = check_server_url(&file.server).map_err(|e| err("server", e))?;
    let token = resolve_token(&file, env_token)?;
    let trust = match (&file.ca_file, &file.pin) {
        (Some(_), Some(_)) => return Err(err("pin", "give ca_file or pin, not both")),
        (Some(ca), None) => {
            certfleet_deploy::probe::roots(Some(ca)).map_err(|e| err("ca_file", e))?;
            Trust::CaFile(ca.clone())
        }
        (None, Some(pin)) => Trust::Pin(Fingerprint::parse(pin).map_err(|e| err("pin", e))?),
        (None, None) => Trust::System,
    };
    let watch = file
        .watch_timeout_secs
        .unwrap_or(DEFAULT_WATCH_TIMEOUT_SECS);
    if !(1..=MAX_WATCH_TIMEOUT_SECS).contains(&watch) {
        return Err(err(
            "watch_timeout_secs",
            format!("must be 1 to {MAX_WATCH_TIMEOUT_SECS} seconds"),
        ));
    }
    if file.targets.is_empty() {
        return Err(err(
            "targets",
            "at least one [[targets]] section is needed (where certificates are written)",
        ));
    }
    let targets = file
        .targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| resolve_target(&format!("targets[{i}]"), t))
        .collect::<Result<_, _>>()?;
    Ok(AgentConfig {
        server,
        token,
        trust,
        state_dir: file.state_dir.unwrap_or_else(default_state_dir),
        watch_timeout: Duration::from_secs(watch),
        http01: file.http01.map(resolve_http01).transpose()?,
        targets,
    })
}

fn resolve_token(file: &FileConfig, env_token: Option<String>) -> Result<Secret, AgentError> {
    let (token, source) = match (env_token, &file.token_file, &file.token) {
        (Some(t), _, _) => (t, format!("the {TOKEN_ENV} environment variable")),
        (None, Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err("token_file", format!("cannot read {}: {e}", path.display())))?;
            (text, format!("token_file {}", path.display()))
        }
        (None, None, Some(t)) => (t.clone(), "the token field".to_string()),
        (None, None, None) => {
            return Err(err(
                "token_file",
                format!(
                    "no agent token: set token_file (or {TOKEN_ENV}); create one with `certfleet agent token create NAME --selector app=www`"
                ),
            ));
        }
    };
    let token = token.trim().to_string();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AgentError::Config(format!(
            "the agent token from {source} is empty or has spaces in it"
        )));
    }
    Ok(Secret::new(token))
}

fn resolve_http01(s: Http01Section) -> Result<Http01Settings, AgentError> {
    let listen = s
        .listen
        .as_deref()
        .map(|a| {
            a.parse::<SocketAddr>()
                .map_err(|_| err("http01.listen", format!("{a:?} is not an address:port")))
        })
        .transpose()?;
    if listen.is_none() && s.webroot.is_none() {
        return Err(err(
            "http01",
            "set listen (a local responder) or webroot (files the web server serves), or both",
        ));
    }
    let self_check = match (s.self_check, listen) {
        (Some(url), _) => url,
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => "http://127.0.0.1:80".to_string(),
    };
    let self_check = self_check.trim_end_matches('/').to_string();
    if !self_check.starts_with("http://") {
        return Err(err(
            "http01.self_check",
            format!("{self_check:?} must be an http:// URL (HTTP-01 is plain HTTP)"),
        ));
    }
    Ok(Http01Settings {
        listen,
        webroot: s.webroot,
        self_check,
    })
}

fn hook(
    field: &str,
    argv: Option<Vec<String>>,
    timeout: Duration,
) -> Result<Option<HookCommand>, AgentError> {
    match argv {
        None => Ok(None),
        Some(argv) if argv.is_empty() || argv[0].trim().is_empty() => Err(err(
            field,
            "give the command as a list, such as [\"nginx\", \"-s\", \"reload\"]",
        )),
        Some(argv) => Ok(Some(HookCommand { argv, timeout })),
    }
}

fn resolve_target(field: &str, section: TargetSection) -> Result<TargetSettings, AgentError> {
    let TargetSection::Files {
        dir,
        certificates,
        owner,
        group,
        mode,
        key_mode,
        files,
        check,
        reload,
        hook_timeout_secs,
        verify,
        verify_timeout_secs,
    } = section;
    let f = |name: &str| format!("{field}.{name}");
    if dir.trim().is_empty() || !dir.starts_with('/') {
        return Err(err(f("dir"), format!("{dir:?} must be an absolute path")));
    }
    let ownership = Ownership {
        owner: owner
            .as_deref()
            .map(perms::resolve_user)
            .transpose()
            .map_err(|e| err(f("owner"), e))?,
        group: group
            .as_deref()
            .map(perms::resolve_group)
            .transpose()
            .map_err(|e| err(f("group"), e))?,
        mode: mode
            .as_deref()
            .map(perms::parse_mode)
            .transpose()
            .map_err(|e| err(f("mode"), e))?,
        key_mode: key_mode
            .as_deref()
            .map(perms::parse_key_mode)
            .transpose()
            .map_err(|e| err(f("key_mode"), e))?,
    };
    let mut target = FileTarget::new(dir);
    target.ownership = ownership;
    if let Some(files) = files {
        target.files = resolve_files(&f("files"), files)?;
    }
    let hook_timeout = Duration::from_secs(
        hook_timeout_secs
            .unwrap_or(DEFAULT_HOOK_TIMEOUT_SECS)
            .max(1),
    );
    let verify = verify.unwrap_or_else(|| DEFAULT_VERIFY.to_string());
    if verify
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(err(
            f("verify"),
            format!("{verify:?} is not host:port, such as 127.0.0.1:443"),
        ));
    }
    Ok(TargetSettings {
        target: Arc::new(target),
        certificates,
        check: hook(&f("check"), check, hook_timeout)?,
        reload: hook(&f("reload"), reload, hook_timeout)?,
        verify,
        verify_timeout: Duration::from_secs(
            verify_timeout_secs
                .unwrap_or(DEFAULT_VERIFY_TIMEOUT_SECS)
                .max(1),
        ),
    })
}

fn resolve_files(field: &str, files: Vec<FileSection>) -> Result<Vec<FileSpec>, AgentError> {
    if files.is_empty() {
        return Err(err(
            field,
            "list at least one file, or leave files out for the default set",
        ));
    }
    let mut out: Vec<FileSpec> = Vec::new();
    for (i, file) in files.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        if file.contents.is_empty() {
            return Err(err(format!("{at}.contents"), "list cert, chain and/or key"));
        }
        if out.iter().any(|o| o.name == file.name) {
            return Err(err(
                format!("{at}.name"),
                format!("{:?} is listed twice", file.name),
            ));
        }
        let secret = file.contents.contains(&Part::Key);
        let parse = if secret {
            perms::parse_key_mode
        } else {
            perms::parse_mode
        };
        let mode = file
            .mode
            .as_deref()
            .map(parse)
            .transpose()
            .map_err(|e| err(format!("{at}.mode"), e))?;
        out.push(FileSpec {
            name: file.name,
            parts: file.contents,
            mode,
        });
    }
    Ok(out)
}

fn default_state_dir() -> PathBuf {
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    match std::env::var_os("HOME") {
        Some(home) if !root => PathBuf::from(home).join(".local/state/certfleet-agent"),
        _ => PathBuf::from("/var/lib/certfleet-agent"),
    }
}

/// Parse the file's text (unknown keys are refused by name). The error gives the line and
/// column, never the quoted line, which may hold the token.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    certfleet_core::text::parse_toml(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_text(text: &str) -> Result<AgentConfig, String> {
        let file = parse(text)?;
        resolve(file, Some("cf_test".into())).map_err(|e| e.to_string())
    }

    const BASE: &str = "server = \"https://127.0.0.1:8556\"\n[[targets]]\ntype = \"files\"\ndir = \"/tmp/x/{name}\"\n";

    #[test]
    fn a_minimal_file_gets_defaults() {
        let c = resolve_text(BASE).unwrap();
        assert_eq!(
            c.watch_timeout,
            Duration::from_secs(DEFAULT_WATCH_TIMEOUT_SECS)
        );
        assert_eq!(c.targets[0].verify, DEFAULT_VERIFY);
        assert_eq!(c.trust, Trust::System);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "server = \"http://10.1.1.1:8555\"\n[[targets]]\ntype = \"files\"\ndir = \"/x\"",
                "server",
            ),
            (&format!("{BASE}key_mode = \"0644\""), "targets[0].key_mode"),
            (
                &format!("{BASE}group = \"no-such-group-x\""),
                "targets[0].group",
            ),
            (&format!("{BASE}reload = []"), "targets[0].reload"),
            (&format!("{BASE}verify = \"nowhere\""), "targets[0].verify"),
            (&format!("pin = \"abc\"\n{BASE}"), "pin"),
            (
                &format!("watch_timeout_secs = 900\n{BASE}"),
                "watch_timeout_secs",
            ),
            ("server = \"https://a.example:1\"", "targets"),
            (
                &format!("{BASE}files = [{{ name = \"a\", contents = [] }}]"),
                "targets[0].files[0].contents",
            ),
            (
                &format!(
                    "{BASE}files = [{{ name = \"k\", contents = [\"key\"], mode = \"0604\" }}]"
                ),
                "targets[0].files[0].mode",
            ),
        ];
        for (text, field) in cases {
            let Err(e) = resolve_text(text) else {
                panic!("accepted: {text}");
            };
            assert!(e.starts_with(&format!("{field}: ")), "{text}\n=> {e}");
        }
        let e = parse(&format!("{BASE}colour = \"red\"")).unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn custom_files() {
        let c = resolve_text(&format!(
            "{BASE}files = [{{ name = \"fullbundle.pem\", contents = [\"cert\", \"chain\", \"key\"] }}]"
        ))
        .unwrap();
        assert!(c.targets[0].covers("anything"));
    }
}
