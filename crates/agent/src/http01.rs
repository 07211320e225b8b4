//! HTTP-01 on the agent's node (RFC 8555 §8.3): the server's pending responses for the names
//! this agent serves are answered on a local responder (the web server forwards
//! `/.well-known/acme-challenge/` to it) and/or written into a webroot. Each new token is then
//! fetched through `self_check` (the way the CA comes in) and, when the body is right,
//! confirmed to the server, which tells the CA "ready" only once every agent has confirmed.
//!
//! The responder answers only a live token for its host, with one constant 404 for anything
//! else; tokens and hosts from the server are checked again here.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use certfleet_core::fleet::AgentChallenge;
use certfleet_core::{DnsName, validate_token};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::AgentError;
use crate::config::Http01Settings;

/// The path prefix of RFC 8555 §8.3.
const PREFIX: &str = "/.well-known/acme-challenge/";
/// Attempts of the self-check per token.
const SELF_CHECK_TRIES: u32 = 20;
/// Pause between self-check attempts (a webroot may need a moment to be seen).
const SELF_CHECK_PAUSE: Duration = Duration::from_millis(100);
/// Bound on one self-check request.
const SELF_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

type Tokens = Arc<RwLock<HashMap<String, (String, String)>>>;

/// The agent's HTTP-01 answering.
pub struct Http01 {
    settings: Http01Settings,
    tokens: Tokens,
    confirmed: HashSet<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
    /// Where the responder listens, once bound.
    pub local_addr: Option<SocketAddr>,
}

impl Http01 {
    /// Bind the responder (if configured) and start serving.
    pub async fn start(settings: Http01Settings) -> Result<Self, AgentError> {
        let tokens: Tokens = Arc::default();
        let mut local_addr = None;
        if let Some(addr) = settings.listen {
            let listener =
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| AgentError::Io {
                        what: format!("binding the HTTP-01 responder (http01.listen) to {addr}"),
                        source: e,
                    })?;
            local_addr = listener.local_addr().ok();
            let router = Router::new().fallback(respond).with_state(tokens.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the HTTP-01 responder stopped");
                }
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Self {
            settings,
            tokens,
            confirmed: HashSet::new(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            local_addr,
        })
    }

    /// Serve exactly `challenges` from now on; returns the new tokens that passed the
    /// self-check (to confirm to the server).
    pub async fn update(&mut self, challenges: &[AgentChallenge]) -> Vec<String> {
        let wanted: HashMap<String, (String, String)> = challenges
            .iter()
            .filter(|c| {
                let ok = validate_token(&c.token).is_ok() && DnsName::parse(&c.host).is_ok();
                if !ok {
                    tracing::warn!(host = %c.host, "ignored a malformed HTTP-01 challenge from the server");
                }
                ok
            })
            .map(|c| {
                (
                    c.token.clone(),
                    (c.host.to_ascii_lowercase(), c.key_authorization.clone()),
                )
            })
            .collect();
        let gone: Vec<String> = {
            let current = self
                .tokens
                .read()
                .map(|t| t.keys().cloned().collect::<Vec<_>>());
            current
                .unwrap_or_default()
                .into_iter()
                .filter(|t| !wanted.contains_key(t))
                .collect()
        };
        for token in &gone {
            self.withdraw(token).await;
        }
        let mut fresh = Vec::new();
        for (token, (host, key_authorization)) in &wanted {
            if self.confirmed.contains(token) {
                continue;
            }
            self.publish(token, host, key_authorization).await;
            if self.self_check(token, host, key_authorization).await {
                fresh.push(token.clone());
            }
        }
        fresh
    }

    /// Remember that the server recorded these confirmations.
    pub fn confirmed(&mut self, tokens: &[String]) {
        self.confirmed.extend(tokens.iter().cloned());
    }

    async fn publish(&self, token: &str, host: &str, key_authorization: &str) {
        if let Ok(mut map) = self.tokens.write() {
            map.insert(
                token.to_string(),
                (host.to_string(), key_authorization.to_string()),
            );
        }
        if let Some(path) = self.webroot_path(token) {
            let body = key_authorization.as_bytes().to_vec();
            let written = tokio::task::spawn_blocking(move || {
                if let Some(dir) = path.parent() {
                    create_dirs(dir)?;
                }
                certfleet_deploy::files::write_one(&path, &body, 0o644)
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "could not write an HTTP-01 token into the webroot")
                }
                Err(e) => tracing::error!(error = %e, "webroot write task failed"),
            }
        }
        tracing::info!(host, "serving an HTTP-01 response");
    }

    async fn withdraw(&mut self, token: &str) {
        if let Ok(mut map) = self.tokens.write() {
            map.remove(token);
        }
        self.confirmed.remove(token);
        if let Some(path) = self.webroot_path(token) {
            let _ = tokio::fs::remove_file(path).await;
        }
    }

    fn webroot_path(&self, token: &str) -> Option<PathBuf> {
        self.settings
            .webroot
            .as_ref()
            .map(|root| root.join(".well-known/acme-challenge").join(token))
    }

    /// Fetch the token through `self_check` with the CA's Host header, a few times.
    async fn self_check(&self, token: &str, host: &str, key_authorization: &str) -> bool {
        let url = format!("{}{PREFIX}{token}", self.settings.self_check);
        let mut last = String::new();
        for _ in 0..SELF_CHECK_TRIES {
            match self.fetch(&url, host).await {
                Ok((200, body)) if body == key_authorization.as_bytes() => return true,
                Ok((status, _)) => last = format!("HTTP {status} or a wrong body"),
                Err(e) => last = e,
            }
            tokio::time::sleep(SELF_CHECK_PAUSE).await;
        }
        tracing::warn!(host, self_check = %self.settings.self_check, last = %last, "an HTTP-01 response is not served through the self-check URL; not confirming it");
        false
    }

    async fn fetch(&self, url: &str, host: &str) -> Result<(u16, Bytes), String> {
        let request = http::Request::get(url)
            .header(header::HOST, host)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(SELF_CHECK_TIMEOUT, exchange)
            .await
            .map_err(|_| "timed out".to_string())?
    }
}

fn create_dirs(dir: &std::path::Path) -> Result<(), certfleet_deploy::DeployError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| certfleet_deploy::DeployError::Io {
            action: "creating the directory",
            path: dir.to_path_buf(),
            source: e,
        })
}

async fn respond(State(tokens): State<Tokens>, request: Request) -> Response {
    let found = (|| {
        if request.method() != Method::GET || request.uri().query().is_some() {
            return None;
        }
        let token = request.uri().path().strip_prefix(PREFIX)?;
        validate_token(token).ok()?;
        let host = request_host(&request)?;
        let map = tokens.read().ok()?;
        let (want_host, key_authorization) = map.get(token)?;
        (*want_host == host).then(|| key_authorization.clone())
    })();
    match found {
        Some(body) => {
            let mut rsp = Response::new(Body::from(body));
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            rsp
        }
        None => {
            let mut rsp = Response::new(Body::from("not found\n"));
            *rsp.status_mut() = StatusCode::NOT_FOUND;
            rsp
        }
    }
}

/// The Host header, lowercase, without port or final dot.
fn request_host(request: &Request) -> Option<String> {
    let raw = request.headers().get(header::HOST)?.to_str().ok()?;
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => raw,
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}
