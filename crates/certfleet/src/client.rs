//! The CLI's HTTP client for the REST API.
//!
//! On the server's machine the address and admin token come from the data directory
//! (`server.json`, `admin-token`); elsewhere from `--server` and `--token`.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use certfleet_server::datadir::DataDir;
use certfleet_server::problem::Problem;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::remote::{HttpClient, Trust};
use crate::{CliError, exit};

/// Bound on one API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server is and how to prove who we are.
pub struct Api {
    base: String,
    token: String,
    http: HttpClient,
}

impl Api {
    /// From flags, falling back to the data directory; `trust` says how an https:// server's
    /// certificate is checked (see `remote.rs`).
    pub fn connect(
        server: Option<String>,
        token: Option<String>,
        trust: &Trust,
        data_dir: &Path,
    ) -> Result<Self, CliError> {
        let data = DataDir::new(data_dir);
        let base = match server {
            Some(s) => s,
            None => data.read_server_info().map(|i| i.api).map_err(|e| {
                CliError::with_code(
                    exit::UNREACHABLE,
                    format!(
                        "cannot find a running server in {} ({e}); start `certfleet server`, or pass --server URL and --token",
                        data_dir.display()
                    ),
                )
            })?,
        };
        let base = crate::remote::check_url(&base)?;
        let token = match token {
            Some(t) => t,
            None => data.read_token().map_err(|e| {
                CliError::with_code(
                    exit::UNREACHABLE,
                    format!(
                        "cannot read the admin token from {} ({e}); pass --token",
                        data.token_path().display()
                    ),
                )
            })?,
        };
        let http = crate::remote::client(trust)?;
        Ok(Self { base, token, http })
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
        let url = format!("{}{path}", self.base);
        let payload = match body {
            Some(b) => {
                Bytes::from(serde_json::to_vec(b).map_err(|e| CliError::failure(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(payload))
            .map_err(|e| CliError::failure(format!("{url}: {e}")))?;
        let unreachable = |why: String| {
            CliError::with_code(
                exit::UNREACHABLE,
                format!("cannot reach the certfleet server at {}: {why}", self.base),
            )
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(crate::remote::describe(&e)))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(problem_error(status, &bytes))
    }
}

fn problem_error(status: StatusCode, body: &[u8]) -> CliError {
    let code = if status == StatusCode::UNAUTHORIZED {
        exit::UNREACHABLE
    } else {
        exit::FAILURE
    };
    match serde_json::from_slice::<Problem>(body) {
        Ok(p) => {
            let message = match p.field {
                Some(field) => format!("{field}: {}", p.detail),
                None => p.detail,
            };
            CliError::with_code(code, message)
        }
        Err(_) => CliError::with_code(
            code,
            format!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(body).trim()
            ),
        ),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, CliError> {
    serde_json::from_slice(body)
        .map_err(|e| CliError::failure(format!("unexpected answer from the server: {e}")))
}
