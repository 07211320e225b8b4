//! The CLI's HTTP client for the REST API.
//!
//! On the server's machine the CLI talks to the server over the Unix socket in the data
//! directory (`api.sock`) and reads the admin token from `admin-token`: the token only ever
//! goes to the process that holds that data directory, never to a TCP port that may have been
//! taken by another program since the server stopped. Elsewhere, `--server URL` with `--token`
//! (or `CERTFLEET_SERVER` / `CERTFLEET_TOKEN`) reaches the API over TCP.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use certfleet_server::datadir::DataDir;
use certfleet_server::problem::Problem;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::remote::{HttpClient, Trust};
use crate::{CliError, exit};
use certfleet_core::text::error_chain;

/// Bound on one API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Environment variable naming the server's URL (like `--server`).
pub const SERVER_ENV: &str = "CERTFLEET_SERVER";
/// Environment variable holding the API token (like `--token`).
pub const TOKEN_ENV: &str = "CERTFLEET_TOKEN";

/// Where the token came from, so a refusal can say which one to fix.
#[derive(Debug, Clone)]
enum TokenSource {
    Flag,
    Env,
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Flag => f.write_str("the token given with --token"),
            TokenSource::Env => write!(f, "the token in {TOKEN_ENV}"),
            TokenSource::File(path) => write!(f, "the admin token in {}", path.display()),
        }
    }
}

enum Transport {
    /// The local server's socket in its data directory.
    Unix { socket: PathBuf, data_dir: PathBuf },
    /// A server reached by URL.
    Tcp { base: String, http: Box<HttpClient> },
}

/// Where the server is and how to prove who we are.
pub struct Api {
    transport: Transport,
    token: String,
    token_source: TokenSource,
}

/// `--server` and `--token` as given (flags win over the environment).
#[derive(Debug, Default)]
pub struct Target {
    /// `--server`
    pub server: Option<String>,
    /// `--token`
    pub token: Option<String>,
}

impl Api {
    /// From flags, then the environment, then the data directory's socket and token; `trust`
    /// says how an https:// server's certificate is checked (see `remote.rs`).
    pub fn connect(target: Target, trust: &Trust, data_dir: &Path) -> Result<Self, CliError> {
        let server = match target.server {
            Some(s) => Some(("--server", s)),
            None => std::env::var(SERVER_ENV).ok().map(|s| (SERVER_ENV, s)),
        };
        let token = match target.token {
            Some(t) => Some((t, TokenSource::Flag)),
            None => std::env::var(TOKEN_ENV).ok().map(|t| (t, TokenSource::Env)),
        };
        match server {
            Some((origin, url)) => Self::remote(origin, &url, token, trust),
            None => Self::local(data_dir, token),
        }
    }

    fn remote(
        origin: &str,
        url: &str,
        token: Option<(String, TokenSource)>,
        trust: &Trust,
    ) -> Result<Self, CliError> {
        let base = check_url(origin, url)?;
        let Some((token, token_source)) = token else {
            return Err(CliError::failure(format!(
                "{origin} {url:?} needs a token: pass --token or set {TOKEN_ENV} (the data \
                 directory's admin token is only ever sent over the local server's socket)"
            )));
        };
        let http = Box::new(crate::remote::client(trust)?);
        Ok(Self {
            transport: Transport::Tcp { base, http },
            token,
            token_source,
        })
    }

    fn local(data_dir: &Path, token: Option<(String, TokenSource)>) -> Result<Self, CliError> {
        let data = DataDir::new(data_dir);
        check_data_dir(data_dir)?;
        let (token, token_source) = match token {
            Some(t) => t,
            None => match data.read_token_if_present() {
                Ok(Some(t)) => (t, TokenSource::File(data.token_path())),
                Ok(None) => {
                    return Err(CliError::failure(format!(
                        "there is no admin token in {}: no `certfleet server` has run on this \
                         data directory (it creates the token on its first run); pass --token, \
                         or --data-dir with the server's data directory. Certificates kept by \
                         `certfleet run --once` are listed by `certfleet run --list --config FILE`",
                        data.token_path().display()
                    ))
                    .kind("no-token"));
                }
                Err(e) => {
                    return Err(CliError::failure(format!(
                        "cannot read the admin token {}: {e}",
                        data.token_path().display()
                    )));
                }
            },
        };
        Ok(Self {
            transport: Transport::Unix {
                socket: data.socket_path(),
                data_dir: data_dir.to_path_buf(),
            },
            token,
            token_source,
        })
    }

    /// Where requests go, for messages.
    fn describe(&self) -> String {
        match &self.transport {
            Transport::Unix { socket, .. } => format!("the local server ({})", socket.display()),
            Transport::Tcp { base, .. } => format!("the server at {base}"),
        }
    }

    /// GET and decode.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let body = self.send(Method::GET, path, None::<&()>).await?;
        decode(&body)
    }

    /// POST a JSON body and decode the answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, CliError> {
        let body = self.send(Method::POST, path, body).await?;
        decode(&body)
    }

    /// PATCH a JSON body and decode the answer.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        let body = self.send(Method::PATCH, path, Some(body)).await?;
        decode(&body)
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(Method::DELETE, path, None::<&()>)
            .await
            .map(|_| ())
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Bytes, CliError> {
        let payload = match body {
            Some(b) => {
                Bytes::from(serde_json::to_vec(b).map_err(|e| CliError::failure(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let uri = match &self.transport {
            Transport::Unix { .. } => path.to_string(),
            Transport::Tcp { base, .. } => format!("{base}{path}"),
        };
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(header::HOST, "localhost")
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(payload))
            .map_err(|e| CliError::failure(format!("{uri}: {e}")))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.request(request))
            .await
            .map_err(|_| {
                self.unreachable(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))
            })??;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(self.problem_error(status, &bytes))
    }

    async fn request(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, CliError> {
        match &self.transport {
            Transport::Tcp { http, .. } => http
                .request(request)
                .await
                .map_err(|e| self.unreachable(crate::remote::describe(&e))),
            Transport::Unix { socket, data_dir } => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|e| socket_error(data_dir, socket, &e))?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| self.unreachable(error_chain(&e)))?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| self.unreachable(error_chain(&e)))
            }
        }
    }

    fn unreachable(&self, why: String) -> CliError {
        CliError::with_code(
            exit::UNREACHABLE,
            format!("cannot reach {}: {why}", self.describe()),
        )
        .kind("unreachable")
    }

    fn problem_error(&self, status: StatusCode, body: &[u8]) -> CliError {
        if status == StatusCode::UNAUTHORIZED {
            let hint = match &self.token_source {
                TokenSource::File(_) => {
                    " (the server holding this data directory should have written it; was the file replaced?)"
                }
                _ => "",
            };
            return CliError::with_code(
                exit::UNREACHABLE,
                format!("{} refused {}{hint}", self.describe(), self.token_source),
            )
            .kind("unauthorized");
        }
        match serde_json::from_slice::<Problem>(body) {
            Ok(p) => CliError::from_problem(p),
            Err(_) => CliError::failure(format!(
                "{} answered {status}: {}",
                self.describe(),
                String::from_utf8_lossy(body).trim()
            )),
        }
    }
}

/// Check `--server`'s value: `https://HOST:PORT`, or `http://` to a loopback address (the
/// rules of `certfleet_agent::transport::check_server_url`). A value without a scheme is
/// answered with the URL the user probably meant. Returns it without a trailing slash.
fn check_url(origin: &str, url: &str) -> Result<String, CliError> {
    let base = url.trim().trim_end_matches('/');
    if !base.contains("://") {
        let loopback = ["127.", "localhost", "[::1]"]
            .iter()
            .any(|p| base.starts_with(p));
        let suggestion = if loopback { "http" } else { "https" };
        return Err(CliError::failure(format!(
            "{origin} {url:?} has no scheme; write it as {suggestion}://{base}"
        ))
        .kind("usage"));
    }
    crate::remote::check_url(base).map_err(|e| {
        let message = e.to_string();
        let detail = message.strip_prefix("--server: ").unwrap_or(&message);
        CliError::failure(format!("{origin}: {detail}")).kind("usage")
    })
}

/// The data directory must exist and be readable before "not running" can be said.
fn check_data_dir(dir: &Path) -> Result<(), CliError> {
    match std::fs::read_dir(dir) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_running(
            dir,
            "the data directory does not exist (pass --data-dir, or set CERTFLEET_DATA_DIR, to the server's)",
        )),
        Err(e) => Err(CliError::failure(format!(
            "cannot read data directory {}: {e} (run as the user that runs the server, or pass --data-dir)",
            dir.display()
        ))),
    }
}

fn not_running(dir: &Path, why: &str) -> CliError {
    CliError::with_code(
        exit::UNREACHABLE,
        format!(
            "no certfleet server is running on data directory {}: {why}; start it with `certfleet server`, or reach another one with --server URL --token TOKEN",
            dir.display()
        ),
    )
    .kind("not-running")
}

fn socket_error(data_dir: &Path, socket: &Path, e: &io::Error) -> CliError {
    match e.kind() {
        io::ErrorKind::NotFound => {
            not_running(data_dir, &format!("{} does not exist", socket.display()))
        }
        io::ErrorKind::ConnectionRefused => not_running(
            data_dir,
            &format!(
                "nothing listens on {} (left behind by a server that stopped)",
                socket.display()
            ),
        ),
        _ => CliError::failure(format!("cannot connect to {}: {e}", socket.display())),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, CliError> {
    serde_json::from_slice(body)
        .map_err(|e| CliError::failure(format!("unexpected answer from the server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_say_what_is_wrong() {
        assert_eq!(
            check_url("--server", "http://127.0.0.1:8555/").unwrap(),
            "http://127.0.0.1:8555"
        );
        let e = check_url("--server", "127.0.0.1:8555")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no scheme; write it as http://127.0.0.1:8555"),
            "{e}"
        );
        let e = check_url("--server", "ca.example.com:8556")
            .unwrap_err()
            .to_string();
        assert!(e.contains("write it as https://ca.example.com:8556"), "{e}");
        let e = check_url(SERVER_ENV, "ftp://x:1").unwrap_err().to_string();
        assert!(e.starts_with(SERVER_ENV) && e.contains("\"ftp\""), "{e}");
    }
}
